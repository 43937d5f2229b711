package attest

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
)

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// VerifyEKCert verifies that certDER, an EK certificate, chains to roots
// (through intermediates, which may be nil) and certifies ek's key.
//
// EK certificates have an empty subject and a critical subjectAltName
// holding only a directoryName with the TPM's manufacturer, model and
// version; crypto/x509 cannot interpret it and lists it as an unhandled
// critical extension, which Verify would refuse. The extension carries no
// name Verify could check, so it is dropped from that list, nothing else.
func VerifyEKCert(certDER []byte, ek *EK, roots, intermediates *x509.CertPool) error {
	if ek == nil {
		return errors.New("EK certificate: no EK")
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("EK certificate: %w", err)
	}
	who := fmt.Sprintf("EK certificate %s (issuer %q, serial %s)", subject(cert), cert.Issuer.String(), cert.SerialNumber)
	cert.UnhandledCriticalExtensions = slices.DeleteFunc(cert.UnhandledCriticalExtensions, func(o asn1.ObjectIdentifier) bool {
		return o.Equal(oidSubjectAltName)
	})
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		// EK certificates carry the TCG EK usage
		// (2.23.133.8.1), which x509 does not know, or none.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("%s: %w", who, err)
	}
	k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !k.Equal(ek.Key) {
		got, _ := Fingerprint(cert.PublicKey)
		want, _ := Fingerprint(ek.Key)
		return fmt.Errorf("%s: certifies key %s, not the EK %s", who, got, want)
	}
	return nil
}

func subject(c *x509.Certificate) string {
	if len(c.Subject.Names) == 0 {
		return "(empty subject)"
	}
	return fmt.Sprintf("%q", c.Subject.String())
}
