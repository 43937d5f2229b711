// Package attest is the registry's side of TPM attestation: it parses a
// node's identity (AK) and endorsement (EK) keys, verifies quotes, replays
// the firmware and zeroboot measurement logs against the quoted PCRs and
// checks EK certificates. It never talks to a TPM.
package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"
)

// AK is a parsed identity (attestation) key.
type AK struct {
	Public tpm2.TPMTPublic
	Key    crypto.PublicKey // *ecdsa.PublicKey or *rsa.PublicKey
	Name   []byte           // TPM2B_NAME contents: nameAlg || digest
}

// EK is a parsed endorsement key.
type EK struct {
	Public tpm2.TPMTPublic
	Key    crypto.PublicKey // *ecdsa.PublicKey or *rsa.PublicKey
	Name   []byte           // TPM2B_NAME contents: nameAlg || digest
}

// ParseAK parses a marshaled TPMT_PUBLIC and requires a restricted signing
// key that cannot leave its TPM: only such a key's signature over a
// TPMS_ATTEST proves the TPM produced it (a restricted key refuses to sign
// data that starts with TPM_GENERATED_VALUE unless the TPM generated it).
func ParseAK(pub []byte) (*AK, error) {
	p, key, name, err := parsePublic("AK", pub)
	if err != nil {
		return nil, err
	}
	a := p.ObjectAttributes
	if err := checkAttrs([]attr{
		{"fixedTPM", a.FixedTPM, true},
		{"fixedParent", a.FixedParent, true},
		{"sensitiveDataOrigin", a.SensitiveDataOrigin, true},
		{"restricted", a.Restricted, true},
		{"sign", a.SignEncrypt, true},
		{"decrypt", a.Decrypt, false},
	}); err != nil {
		return nil, fmt.Errorf("parse AK: %w", err)
	}
	if _, err := sigScheme(p); err != nil {
		return nil, fmt.Errorf("parse AK: %w", err)
	}
	return &AK{Public: *p, Key: key, Name: name}, nil
}

// ParseEK parses the EK's marshaled TPMT_PUBLIC: an RSA 2048 or ECC P-256
// restricted decryption key, the only kind TPM2_ActivateCredential uses
// to unwrap a credential.
func ParseEK(pub []byte) (*EK, error) {
	p, key, name, err := parsePublic("EK", pub)
	if err != nil {
		return nil, err
	}
	if err := checkEK(p); err != nil {
		return nil, fmt.Errorf("parse EK: %w", err)
	}
	return &EK{Public: *p, Key: key, Name: name}, nil
}

func checkEK(p *tpm2.TPMTPublic) error {
	a := p.ObjectAttributes
	if err := checkAttrs([]attr{
		{"fixedTPM", a.FixedTPM, true},
		{"fixedParent", a.FixedParent, true},
		{"restricted", a.Restricted, true},
		{"decrypt", a.Decrypt, true},
		{"sign", a.SignEncrypt, false},
	}); err != nil {
		return err
	}
	if p.Type == tpm2.TPMAlgRSA {
		if d, err := p.Parameters.RSADetail(); err == nil && d.KeyBits != 2048 {
			return fmt.Errorf("RSA key is %d bits, want 2048", d.KeyBits)
		}
	}
	return nil
}

// attr is one object attribute a key must have set (want) or clear.
type attr struct {
	name      string
	got, want bool
}

// checkAttrs names the first attribute that is not as wanted.
func checkAttrs(as []attr) error {
	for _, a := range as {
		if a.got != a.want {
			return attrError(a.name, a.want)
		}
	}
	return nil
}

func attrError(attr string, want bool) error {
	if want {
		return fmt.Errorf("attribute %s is clear, must be set", attr)
	}
	return fmt.Errorf("attribute %s is set, must be clear", attr)
}

// parsePublic parses a TPMT_PUBLIC with nothing after it, nameAlg SHA-256
// and an ECC P-256 or RSA >= 2048 key.
func parsePublic(what string, b []byte) (*tpm2.TPMTPublic, crypto.PublicKey, []byte, error) {
	p, err := tpm2.Unmarshal[tpm2.TPMTPublic](b)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse %s: TPMT_PUBLIC: %w", what, err)
	}
	if n := len(tpm2.Marshal(p)); n != len(b) {
		return nil, nil, nil, fmt.Errorf("parse %s: TPMT_PUBLIC is %d bytes followed by %d more", what, n, len(b)-n)
	}
	if p.NameAlg != tpm2.TPMAlgSHA256 {
		return nil, nil, nil, fmt.Errorf("parse %s: nameAlg is %s, want SHA256", what, algName(p.NameAlg))
	}
	key, err := publicKey(p)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse %s: %w", what, err)
	}
	name, err := tpm2.ObjectName(p)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse %s: name: %w", what, err)
	}
	return p, key, name.Buffer, nil
}

func publicKey(p *tpm2.TPMTPublic) (crypto.PublicKey, error) {
	switch p.Type {
	case tpm2.TPMAlgECC:
		d, err := p.Parameters.ECCDetail()
		if err != nil {
			return nil, err
		}
		if d.CurveID != tpm2.TPMECCNistP256 {
			return nil, fmt.Errorf("ECC curve is 0x%04x, want NIST P-256", uint16(d.CurveID))
		}
		pt, err := p.Unique.ECC()
		if err != nil {
			return nil, err
		}
		return ecdsaKey(pt)
	case tpm2.TPMAlgRSA:
		d, err := p.Parameters.RSADetail()
		if err != nil {
			return nil, err
		}
		n, err := p.Unique.RSA()
		if err != nil {
			return nil, err
		}
		if d.KeyBits < 2048 || len(n.Buffer)*8 != int(d.KeyBits) || n.Buffer[0]&0x80 == 0 {
			return nil, fmt.Errorf("RSA modulus is %d bytes with keyBits %d, want at least 2048 bits", len(n.Buffer), d.KeyBits)
		}
		return tpm2.RSAPub(d, n)
	}
	return nil, fmt.Errorf("key type is %s, want ECC or RSA", algName(p.Type))
}

// ecdsaKey checks that the point is on P-256: tpm2.ECDSAPub does not.
func ecdsaKey(pt *tpm2.TPMSECCPoint) (*ecdsa.PublicKey, error) {
	if len(pt.X.Buffer) > 32 || len(pt.Y.Buffer) > 32 {
		return nil, fmt.Errorf("ECC point coordinates are %d and %d bytes, want at most 32", len(pt.X.Buffer), len(pt.Y.Buffer))
	}
	b := make([]byte, 65)
	b[0] = 4
	copy(b[33-len(pt.X.Buffer):33], pt.X.Buffer)
	copy(b[65-len(pt.Y.Buffer):], pt.Y.Buffer)
	k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), b)
	if err != nil {
		return nil, fmt.Errorf("ECC point is not on P-256: %w", err)
	}
	return k, nil
}

// sigScheme returns the AK's signing scheme, which must use SHA-256.
func sigScheme(p *tpm2.TPMTPublic) (tpm2.TPMAlgID, error) {
	var scheme tpm2.TPMAlgID
	var hash tpm2.TPMAlgID
	switch p.Type {
	case tpm2.TPMAlgECC:
		d, _ := p.Parameters.ECCDetail()
		scheme = d.Scheme.Scheme
		if s, err := d.Scheme.Details.ECDSA(); err == nil {
			hash = s.HashAlg
		}
		if scheme != tpm2.TPMAlgECDSA {
			return 0, fmt.Errorf("ECC signing scheme is %s, want ECDSA", algName(scheme))
		}
	case tpm2.TPMAlgRSA:
		d, _ := p.Parameters.RSADetail()
		scheme = d.Scheme.Scheme
		switch scheme {
		case tpm2.TPMAlgRSASSA:
			if s, err := d.Scheme.Details.RSASSA(); err == nil {
				hash = s.HashAlg
			}
		case tpm2.TPMAlgRSAPSS:
			if s, err := d.Scheme.Details.RSAPSS(); err == nil {
				hash = s.HashAlg
			}
		default:
			return 0, fmt.Errorf("RSA signing scheme is %s, want RSASSA or RSAPSS", algName(scheme))
		}
	}
	if hash != tpm2.TPMAlgSHA256 {
		return 0, fmt.Errorf("signing scheme %s hashes with %s, want SHA256", algName(scheme), algName(hash))
	}
	return scheme, nil
}

// Fingerprint is "sha256:" + hex of SHA-256 of the key's PKIX DER
// (SubjectPublicKeyInfo), what an operator computes from an EK
// certificate with
//
//	openssl x509 -in ek.crt -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum
func Fingerprint(k crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// MakeCredential encrypts secret to ek for the key named akName, for
// TPM2_ActivateCredential: only the TPM holding ek, and only if it also
// holds the key named akName, recovers secret. It returns the contents
// (without the 2-byte size) of a TPM2B_ID_OBJECT (integrityHMAC as a
// TPM2B_DIGEST followed by encIdentity) and of a TPM2B_ENCRYPTED_SECRET
// (the RSA-OAEP ciphertext, or a marshaled TPMS_ECC_POINT for ECC); the
// node passes them as tpm2.TPM2BIDObject{Buffer: blob} and
// tpm2.TPM2BEncryptedSecret{Buffer: encSecret}.
func MakeCredential(rand io.Reader, ek *EK, akName []byte, secret []byte) (blob, encSecret []byte, err error) {
	if ek == nil {
		return nil, nil, errors.New("make credential: no EK")
	}
	if err := checkEK(&ek.Public); err != nil {
		return nil, nil, fmt.Errorf("make credential: key is not an EK: %w", err)
	}
	if len(akName) != 2+sha256.Size || !bytes.Equal(akName[:2], []byte{0, byte(tpm2.TPMAlgSHA256)}) {
		return nil, nil, fmt.Errorf("make credential: AK name is %d bytes, want SHA-256 nameAlg and digest (34 bytes)", len(akName))
	}
	// TPM2_MakeCredential refuses a credential longer than the EK's
	// nameAlg digest; an empty one activates nothing.
	if len(secret) == 0 || len(secret) > sha256.Size {
		return nil, nil, fmt.Errorf("make credential: secret is %d bytes, want 1 to %d", len(secret), sha256.Size)
	}
	key, err := tpm2.ImportEncapsulationKey(&ek.Public)
	if err != nil {
		return nil, nil, fmt.Errorf("make credential: EK: %w", err)
	}
	blob, encSecret, err = tpm2.CreateCredential(rand, key, akName, secret)
	if err != nil {
		return nil, nil, fmt.Errorf("make credential: %w", err)
	}
	return blob, encSecret, nil
}

func algName(a tpm2.TPMAlgID) string {
	switch a {
	case tpm2.TPMAlgSHA1:
		return "SHA1"
	case tpm2.TPMAlgSHA256:
		return "SHA256"
	case tpm2.TPMAlgSHA384:
		return "SHA384"
	case tpm2.TPMAlgSHA512:
		return "SHA512"
	case tpm2.TPMAlgNull:
		return "NULL"
	case tpm2.TPMAlgRSA:
		return "RSA"
	case tpm2.TPMAlgECC:
		return "ECC"
	case tpm2.TPMAlgECDSA:
		return "ECDSA"
	case tpm2.TPMAlgRSASSA:
		return "RSASSA"
	case tpm2.TPMAlgRSAPSS:
		return "RSAPSS"
	case tpm2.TPMAlgKeyedHash:
		return "KEYEDHASH"
	}
	return fmt.Sprintf("0x%04x", uint16(a))
}
