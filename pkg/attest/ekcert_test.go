package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string, parent *ca) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Test TPM Maker"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{cert: cert, key: key}
}

// tpmSAN is the critical subjectAltName of a TPM EK certificate: one
// directoryName with the TPM manufacturer, model and version attributes.
func tpmSAN(t *testing.T) pkix.Extension {
	t.Helper()
	dn, err := asn1.Marshal(pkix.RDNSequence{
		{{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 1}, Value: "id:54455354"}},
		{{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 2}, Value: "TESTTPM"}},
		{{Type: asn1.ObjectIdentifier{2, 23, 133, 2, 3}, Value: "id:00010002"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: dn}})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Critical: true, Value: san}
}

// ekCert issues an EK certificate for pub the way TPM vendors do: empty
// subject, critical SAN, the TCG EK extended key usage.
func (c *ca) ekCert(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(42),
		NotBefore:          time.Now().Add(-time.Hour),
		NotAfter:           time.Now().Add(time.Hour),
		KeyUsage:           x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}},
		ExtraExtensions:    []pkix.Extension{tpmSAN(t)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pool(cas ...*ca) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cas {
		p.AddCert(c.cert)
	}
	return p
}

func TestVerifyEKCert(t *testing.T) {
	root := newCA(t, "Test EK Root", nil)
	inter := newCA(t, "Test EK Intermediate", root)
	untrusted := newCA(t, "Untrusted EK CA", nil)
	ek, err := ParseEK(tpm2.Marshal(eccEKPublic(t)))
	if err != nil {
		t.Fatal(err)
	}
	other, err := ParseEK(tpm2.Marshal(eccEKPublic(t)))
	if err != nil {
		t.Fatal(err)
	}
	direct := root.ekCert(t, ek.Key)
	parsed, err := x509.ParseCertificate(direct)
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed.UnhandledCriticalExtensions) == 0 {
		t.Fatal("test certificate does not exercise the unhandled critical SAN")
	}
	if _, err := parsed.Verify(x509.VerifyOptions{Roots: pool(root), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Fatal("plain x509 Verify accepts the critical SAN: the case is not exercised")
	}
	for _, tc := range []struct {
		name  string
		cert  []byte
		ek    *EK
		inter *x509.CertPool
		want  string
	}{
		{"root", direct, ek, nil, ""},
		{"intermediate", inter.ekCert(t, ek.Key), ek, pool(inter), ""},
		{"intermediate not passed", inter.ekCert(t, ek.Key), ek, nil, `EK certificate (empty subject) (issuer "CN=Test EK Intermediate,O=Test TPM Maker", serial 42): x509: certificate signed by unknown authority`},
		{"untrusted CA", untrusted.ekCert(t, ek.Key), ek, nil, `(issuer "CN=Untrusted EK CA,O=Test TPM Maker", serial 42): x509: certificate signed by unknown authority`},
		{"another key", direct, other, nil, "certifies key sha256:"},
		{"not DER", []byte("PEM?"), ek, nil, "EK certificate: x509: "},
		{"no EK", direct, nil, nil, "EK certificate: no EK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, VerifyEKCert(tc.cert, tc.ek, pool(root), tc.inter), tc.want)
		})
	}
}
