// Package tlsgen creates the registry's private certificate authority and
// its server certificate. Nodes carry only the CA certificate in their
// initramfs, so the registry's TLS identity depends on no public CA.
package tlsgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Validity of the generated certificates. A node's clock may be wrong by
// years before it is corrected, and nothing rotates these automatically, so
// they are long-lived; NotBefore is back-dated to absorb clock skew.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 10*365*24*time.Hour - 24*time.Hour
	backdate       = 24 * time.Hour
)

// File names inside the TLS directory.
const (
	CACert     = "ca.pem"
	CAKey      = "ca.key"
	ServerCert = "server.pem"
	ServerKey  = "server.key"
)

// Options for Generate.
type Options struct {
	SANs []string // DNS names and IP addresses for the server certificate
	Now  time.Time
}

// Generate writes ca.pem, ca.key, server.pem and server.key into dir (which
// must exist) and returns their paths. Private keys are written 0600. It
// refuses to overwrite any of them.
func Generate(dir string, o Options) (map[string]string, error) {
	if len(o.SANs) == 0 {
		return nil, errors.New("tls: no subject alternative names for the server certificate")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "zgrid registry CA", Organization: []string{"zeroboot"}},
		NotBefore:             o.Now.Add(-backdate),
		NotAfter:              o.Now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate server key: %w", err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: o.SANs[0], Organization: []string{"zeroboot"}},
		NotBefore:    o.Now.Add(-backdate),
		NotAfter:     o.Now.Add(ServerValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, s := range o.SANs {
		if ip := net.ParseIP(s); ip != nil {
			srvTmpl.IPAddresses = append(srvTmpl.IPAddresses, ip)
		} else {
			srvTmpl.DNSNames = append(srvTmpl.DNSNames, s)
		}
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create server certificate: %w", err)
	}
	files := map[string]string{}
	for _, f := range []struct {
		name string
		pem  func() ([]byte, error)
		mode os.FileMode
	}{
		{CACert, func() ([]byte, error) { return certPEM(caDER), nil }, 0o644},
		{CAKey, func() ([]byte, error) { return keyPEM(caKey) }, 0o600},
		{ServerCert, func() ([]byte, error) { return certPEM(srvDER), nil }, 0o644},
		{ServerKey, func() ([]byte, error) { return keyPEM(srvKey) }, 0o600},
	} {
		b, err := f.pem()
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", f.name, err)
		}
		p := filepath.Join(dir, f.name)
		if err := writeNew(p, b, f.mode); err != nil {
			return nil, err
		}
		files[f.name] = p
	}
	return files, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n.Add(n, big.NewInt(1))
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeNew creates path exclusively, writes b and syncs it.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// DefaultSANs are the names a registry answers to unless told otherwise:
// loopback, the QEMU user-net host address of the test network, and the
// host name.
func DefaultSANs() []string {
	s := []string{"localhost", "127.0.0.1", "::1", "192.0.2.2"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		s = append(s, h)
	}
	return s
}

// LoadServer reads the server key pair from dir.
func LoadServer(dir string) (certFile, keyFile string) {
	return filepath.Join(dir, ServerCert), filepath.Join(dir, ServerKey)
}
