package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func TestParseAK(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(*tpm2.TPMTPublic)) []byte {
		p := eccAKPublic(&priv.PublicKey, akAttrs())
		f(&p)
		return tpm2.Marshal(p)
	}
	good := with(func(*tpm2.TPMTPublic) {})
	for _, tc := range []struct {
		name string
		pub  []byte
		want string
	}{
		{"good", good, ""},
		{"not fixedTPM", with(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedTPM = false }), "parse AK: attribute fixedTPM is clear, must be set"},
		{"not fixedParent", with(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.FixedParent = false }), "attribute fixedParent is clear"},
		{"imported", with(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.SensitiveDataOrigin = false }), "attribute sensitiveDataOrigin is clear"},
		{"not restricted", with(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Restricted = false }), "parse AK: attribute restricted is clear, must be set"},
		{"not sign", with(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.SignEncrypt = false }), "attribute sign is clear"},
		{"decrypt", with(func(p *tpm2.TPMTPublic) { p.ObjectAttributes.Decrypt = true }), "attribute decrypt is set, must be clear"},
		{"SHA-1 name", with(func(p *tpm2.TPMTPublic) { p.NameAlg = tpm2.TPMAlgSHA1 }), "parse AK: nameAlg is SHA1, want SHA256"},
		{"P-384", tpm2.Marshal(eccAKPublic(&p384.PublicKey, akAttrs())), "ECC curve is 0x0004, want NIST P-256"},
		{"point off the curve", with(func(p *tpm2.TPMTPublic) {
			p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{X: tpm2.TPM2BECCParameter{Buffer: []byte{1}}, Y: tpm2.TPM2BECCParameter{Buffer: []byte{1}}})
		}), "ECC point is not on P-256"},
		{"no scheme", with(func(p *tpm2.TPMTPublic) {
			d, _ := p.Parameters.ECCDetail()
			d.Scheme = tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull}
		}), "ECC signing scheme is NULL, want ECDSA"},
		{"SHA-1 scheme", with(func(p *tpm2.TPMTPublic) {
			d, _ := p.Parameters.ECCDetail()
			d.Scheme.Details = tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA1})
		}), "signing scheme ECDSA hashes with SHA1, want SHA256"},
		{"keyed hash", tpm2.Marshal(tpm2.TPMTPublic{
			Type: tpm2.TPMAlgKeyedHash, NameAlg: tpm2.TPMAlgSHA256, ObjectAttributes: akAttrs(),
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull}}),
			Unique:     tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{Buffer: make([]byte, 32)}),
		}), "key type is KEYEDHASH, want ECC or RSA"},
		{"truncated", good[:len(good)-1], "parse AK: TPMT_PUBLIC: "},
		{"trailing bytes", append(bytes.Clone(good), 0, 0), "followed by 2 more"},
		{"empty", nil, "parse AK: TPMT_PUBLIC: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ak, err := ParseAK(tc.pub)
			checkErr(t, err, tc.want)
			if err != nil {
				return
			}
			if !priv.PublicKey.Equal(ak.Key) {
				t.Error("AK key differs from the generated key")
			}
			pub, _ := tpm2.Unmarshal[tpm2.TPMTPublic](tc.pub)
			name, _ := tpm2.ObjectName(pub)
			if !bytes.Equal(ak.Name, name.Buffer) || len(ak.Name) != 34 {
				t.Errorf("Name = %x, want %x", ak.Name, name.Buffer)
			}
		})
	}
}

func TestParseEK(t *testing.T) {
	eccEK := eccEKPublic(t)
	rsaEK := rsaEKPublic(t)
	n := newNode(t)
	small := rsaEK
	small.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{KeyBits: 1024, Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull}})
	small.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: bytes.Repeat([]byte{0xff}, 128)})
	for _, tc := range []struct {
		name string
		pub  tpm2.TPMTPublic
		want string
	}{
		{"ECC", eccEK, ""},
		{"RSA", rsaEK, ""},
		{"an AK", n.ak.Public, "parse EK: attribute decrypt is clear, must be set"},
		{"RSA 1024", small, "RSA modulus is 128 bytes with keyBits 1024, want at least 2048 bits"},
		{"template's zero point", tpm2.ECCEKTemplate, "ECC point is not on P-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ek, err := ParseEK(tpm2.Marshal(tc.pub))
			checkErr(t, err, tc.want)
			if err == nil && (ek.Key == nil || len(ek.Name) != 34) {
				t.Errorf("EK = %+v", ek)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	n := newNode(t)
	der, err := x509.MarshalPKIXPublicKey(n.ak.Key)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	got, err := Fingerprint(n.ak.Key)
	checkErr(t, err, "")
	if want := "sha256:" + hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("Fingerprint = %s, want %s", got, want)
	}
	// The documented openssl command computes the same, where openssl is.
	if _, err := exec.LookPath("openssl"); err == nil {
		cmd := exec.Command("sh", "-c", "openssl pkey -pubin -inform DER -outform DER | sha256sum")
		cmd.Stdin = bytes.NewReader(der)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if sum := strings.Fields(string(out))[0]; "sha256:"+sum != got {
			t.Errorf("openssl: sha256:%s, Fingerprint: %s", sum, got)
		}
	}
	_, err = Fingerprint("not a key")
	checkErr(t, err, "fingerprint: ")
}

func TestMakeCredential(t *testing.T) {
	n := newNode(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	for _, tc := range []struct {
		name   string
		ek     func() *EK
		akName []byte
		secret []byte
		want   string
	}{
		{"ECC EK", func() *EK { return mustEK(t, eccEKPublic(t)) }, n.ak.Name, secret, ""},
		{"RSA EK", func() *EK { return mustEK(t, rsaEKPublic(t)) }, n.ak.Name, secret, ""},
		{"an AK as EK", func() *EK { return &EK{Public: n.ak.Public, Key: n.ak.Key, Name: n.ak.Name} }, n.ak.Name, secret, "make credential: key is not an EK: attribute decrypt is clear, must be set"},
		{"no EK", func() *EK { return nil }, n.ak.Name, secret, "make credential: no EK"},
		{"short AK name", func() *EK { return mustEK(t, eccEKPublic(t)) }, n.ak.Name[:20], secret, "make credential: AK name is 20 bytes"},
		{"empty secret", func() *EK { return mustEK(t, eccEKPublic(t)) }, n.ak.Name, nil, "make credential: secret is 0 bytes, want 1 to 32"},
		{"long secret", func() *EK { return mustEK(t, eccEKPublic(t)) }, n.ak.Name, make([]byte, 33), "make credential: secret is 33 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ek := tc.ek()
			blob, enc, err := MakeCredential(rand.Reader, ek, tc.akName, tc.secret)
			checkErr(t, err, tc.want)
			if err != nil {
				return
			}
			if len(blob) == 0 || len(enc) == 0 {
				t.Fatalf("empty output: blob %d bytes, secret %d bytes", len(blob), len(enc))
			}
			// integrityHMAC (TPM2B_DIGEST of a SHA-256 HMAC) then encIdentity.
			if len(blob) != 2+32+2+len(tc.secret) || blob[0] != 0 || blob[1] != 32 {
				t.Errorf("blob is %d bytes starting %x", len(blob), blob[:2])
			}
			blob2, enc2, err := MakeCredential(rand.Reader, ek, tc.akName, tc.secret)
			checkErr(t, err, "")
			if bytes.Equal(blob, blob2) || bytes.Equal(enc, enc2) {
				t.Error("two credentials for the same secret are equal")
			}
		})
	}
}

func mustEK(t *testing.T, p tpm2.TPMTPublic) *EK {
	t.Helper()
	ek, err := ParseEK(tpm2.Marshal(p))
	if err != nil {
		t.Fatal(err)
	}
	return ek
}

func FuzzParseAK(f *testing.F) {
	n := newNode(f)
	f.Add(tpm2.Marshal(n.ak.Public))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ak, err := ParseAK(b); err == nil && (!ak.Public.ObjectAttributes.Restricted || ak.Key == nil) {
			t.Fatal("accepted an AK that is not a restricted signing key")
		}
		ParseEK(b)
	})
}
