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
	ca, caKey, err := newCA("zgrid registry CA", o.Now)
	if err != nil {
		return nil, err
	}
	caDER := ca.Raw
	srvDER, srvKey, err := issueServer(ca, caKey, o)
	if err != nil {
		return nil, err
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

// newCA makes a self-signed CA certificate and its key. MaxPathLen 0: it
// signs server certificates only, never another CA.
func newCA(name string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"zeroboot"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return ca, key, nil
}

// issueServer makes a server key and a certificate for o.SANs, signed by
// the CA.
func issueServer(ca *x509.Certificate, caKey *ecdsa.PrivateKey, o Options) ([]byte, *ecdsa.PrivateKey, error) {
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: o.SANs[0], Organization: []string{"zeroboot"}},
		NotBefore:    o.Now.Add(-backdate),
		NotAfter:     notAfter(o.Now.Add(ServerValidity), ca.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, s := range o.SANs {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create server certificate: %w", err)
	}
	return der, srvKey, nil
}

// notAfter is the earlier of a and b: a server certificate outliving its
// CA would only fail later.
func notAfter(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// SANs lists the names and addresses a certificate is for.
func SANs(c *x509.Certificate) []string {
	out := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// Reissue replaces the server certificate and key in dir with new ones for
// o.SANs, signed by the same CA (ca.pem, ca.key), so nodes, which trust
// only the CA, keep trusting the server. The old pair is kept as
// server.pem.old and server.key.old. A running server uses the new pair
// once restarted.
func Reissue(dir string, o Options) (*x509.Certificate, error) {
	if len(o.SANs) == 0 {
		return nil, errors.New("tls: no subject alternative names for the server certificate")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	ca, caKey, err := loadCA(dir)
	if err != nil {
		return nil, err
	}
	if !o.Now.Before(ca.NotAfter) {
		return nil, fmt.Errorf("tls: the CA in %s expired at %s; reissuing under it is pointless", dir, ca.NotAfter.UTC().Format(time.RFC3339))
	}
	der, key, err := issueServer(ca, caKey, o)
	if err != nil {
		return nil, err
	}
	kb, err := keyPEM(key)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", ServerKey, err)
	}
	for _, f := range []struct {
		name string
		b    []byte
		mode os.FileMode
	}{{ServerKey, kb, 0o600}, {ServerCert, certPEM(der), 0o644}} {
		if err := replace(filepath.Join(dir, f.name), f.b, f.mode); err != nil {
			return nil, err
		}
	}
	return x509.ParseCertificate(der)
}

// replace writes b to path through a new file renamed over it, keeping the
// old file as path.old.
func replace(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".new"
	os.Remove(tmp)
	if err := writeNew(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Link(path, path+".old"); err != nil && !errors.Is(err, os.ErrNotExist) {
		if !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("keep %s: %w", path, err)
		}
		if err := os.Rename(path, path+".old"); err != nil {
			return fmt.Errorf("keep %s: %w", path, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// loadCA reads the CA certificate and key from dir: the first
// certificate of ca.pem (during a rotation, ca.pem holds the new CA too,
// after it) and ca.key.
func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	return loadCAFiles(filepath.Join(dir, CACert), filepath.Join(dir, CAKey))
}

// loadCAFiles reads a CA certificate (the first of certPath) and checks
// that keyPath holds its key.
func loadCAFiles(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	ca, err := LoadCert(certPath)
	if err != nil {
		return nil, nil, err
	}
	der, err := readPEM(keyPath, "PRIVATE KEY")
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", keyPath, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("%s is not the key of %s", keyPath, certPath)
	}
	return ca, key, nil
}

// LoadCert reads a PEM certificate.
func LoadCert(path string) (*x509.Certificate, error) {
	der, err := readPEM(path, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return c, nil
}

func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("%s: no PEM %s block", path, typ)
	}
	return blk.Bytes, nil
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
