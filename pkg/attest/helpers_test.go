package attest

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func checkErr(t testing.TB, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func akAttrs() tpm2.TPMAObject {
	return tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		Restricted:          true,
		SignEncrypt:         true,
	}
}

// eccAKPublic is the TPMT_PUBLIC a TPM returns for an ECC P-256 AK.
func eccAKPublic(k *ecdsa.PublicKey, attrs tpm2.TPMAObject) tpm2.TPMTPublic {
	b, err := k.Bytes()
	if err != nil {
		panic(err)
	}
	curve := tpm2.TPMECCNistP256
	if k.Curve == elliptic.P384() {
		curve = tpm2.TPMECCNistP384
	}
	half := 1 + (len(b)-1)/2
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgECC,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: attrs,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: curve,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: b[1:half]},
			Y: tpm2.TPM2BECCParameter{Buffer: b[half:]},
		}),
	}
}

func rsaAKPublic(k *rsa.PublicKey, scheme tpm2.TPMAlgID) tpm2.TPMTPublic {
	details := tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256})
	if scheme == tpm2.TPMAlgRSAPSS {
		details = tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSigSchemeRSAPSS{HashAlg: tpm2.TPMAlgSHA256})
	}
	return tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgRSA,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: akAttrs(),
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme:    tpm2.TPMTRSAScheme{Scheme: scheme, Details: details},
			KeyBits:   tpm2.TPMKeyBits(k.N.BitLen()),
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.Bytes()}),
	}
}

// node is a software TPM's AK.
type node struct {
	priv *ecdsa.PrivateKey
	ak   *AK
}

func newNode(t testing.TB) *node {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := eccAKPublic(&priv.PublicKey, akAttrs())
	ak, err := ParseAK(tpm2.Marshal(pub))
	if err != nil {
		t.Fatal(err)
	}
	return &node{priv: priv, ak: ak}
}

// sign returns the TPMT_SIGNATURE of b by the node's AK.
func (n *node) sign(t testing.TB, b []byte) []byte {
	t.Helper()
	d := sha256.Sum256(b)
	r, s, err := ecdsa.Sign(rand.Reader, n.priv, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return tpm2.Marshal(tpm2.TPMTSignature{
		SigAlg: tpm2.TPMAlgECDSA,
		Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{
			Hash:       tpm2.TPMAlgSHA256,
			SignatureR: tpm2.TPM2BECCParameter{Buffer: r.Bytes()},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: s.Bytes()},
		}),
	})
}

// selection returns a TPML_PCR_SELECTION of pcrs in bank alg.
func selection(alg tpm2.TPMAlgID, pcrs ...int) tpm2.TPMSPCRSelection {
	sel := make([]byte, 3)
	for _, p := range pcrs {
		sel[p/8] |= 1 << (p % 8)
	}
	return tpm2.TPMSPCRSelection{Hash: alg, PCRSelect: sel}
}

// pcrDigest is what TPM2_Quote computes over values of pcrs.
func pcrDigest(pcrs []int, values map[int][]byte) []byte {
	h := sha256.New()
	for _, p := range slices.Sorted(slices.Values(pcrs)) {
		h.Write(values[p])
	}
	return h.Sum(nil)
}

// quoteAttest is the TPMS_ATTEST of a quote of values over sel.
func quoteAttest(nonce []byte, sel []tpm2.TPMSPCRSelection, digest []byte) tpm2.TPMSAttest {
	return tpm2.TPMSAttest{
		Magic:           tpm2.TPMGeneratedValue,
		Type:            tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: make([]byte, 34)},
		ExtraData:       tpm2.TPM2BData{Buffer: nonce},
		ClockInfo:       tpm2.TPMSClockInfo{Clock: 123456, ResetCount: 7, RestartCount: 1, Safe: true},
		FirmwareVersion: 0x2000000000001,
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: sel},
			PCRDigest: tpm2.TPM2BDigest{Buffer: digest},
		}),
	}
}

func randomPCRs(pcrs []int) map[int][]byte {
	v := map[int][]byte{}
	for _, p := range pcrs {
		b := make([]byte, 32)
		rand.Read(b)
		v[p] = b
	}
	return v
}

func eccEKPublic(t testing.TB) tpm2.TPMTPublic {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := k.PublicKey().Bytes()
	p := tpm2.ECCEKTemplate
	p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: b[1:33]},
		Y: tpm2.TPM2BECCParameter{Buffer: b[33:]},
	})
	return p
}

func rsaEKPublic(t testing.TB) tpm2.TPMTPublic {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := tpm2.RSAEKTemplate
	p.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.Bytes()})
	return p
}

// fwLog builds a crypto agile firmware event log.
type fwLog struct {
	b      []byte
	bounds []int // offset where each record ends
}

func le32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func le16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }

func newFWLog() *fwLog {
	spec := []byte("Spec ID Event03\x00")
	spec = le32(spec, 0)                // platformClass
	spec = append(spec, 0, 2, 0, 2)     // version 2.0, errata 0, uintnSize 2
	spec = le32(spec, 2)                // algorithms
	spec = le16(le16(spec, 0x0004), 20) // SHA-1
	spec = le16(le16(spec, 0x000b), 32) // SHA-256
	spec = append(spec, 0)              // vendorInfoSize
	b := le32(le32(nil, 0), evNoAction) // PCR 0, EV_NO_ACTION
	b = append(b, make([]byte, 20)...)  // SHA-1 digest
	b = append(le32(b, uint32(len(spec))), spec...)
	return &fwLog{b: b, bounds: []int{len(b)}}
}

func (l *fwLog) add(pcr int, typ uint32, data []byte) (sha256Digest []byte) {
	s1 := make([]byte, 20)
	s2 := make([]byte, 32)
	if typ != evNoAction {
		d1 := sha256.Sum256(append([]byte("sha1"), data...))
		d2 := sha256.Sum256(data)
		copy(s1, d1[:])
		copy(s2, d2[:])
	}
	b := le32(le32(l.b, uint32(pcr)), typ)
	b = le32(b, 2)
	b = append(le16(b, 0x0004), s1...)
	b = append(le16(b, 0x000b), s2...)
	b = append(le32(b, uint32(len(data))), data...)
	l.b = b
	l.bounds = append(l.bounds, len(b))
	return s2
}

func (l *fwLog) locality(loc byte) {
	l.add(0, evNoAction, append([]byte("StartupLocality\x00"), loc))
}

// extend is a TPM's PCR_Extend in software.
func extend(pcr [32]byte, d []byte) [32]byte {
	return sha256.Sum256(append(pcr[:], d...))
}
