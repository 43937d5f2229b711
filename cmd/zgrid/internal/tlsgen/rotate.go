package tlsgen

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// CA rotation with an overlap period. Nodes trust only the ca.pem built
// into their image, so a new CA must be in every node's image before the
// server shows a certificate from it:
//
//   - BeginRotation makes the next CA (next-ca.pem, next-ca.key) and
//     makes ca.pem the bundle of the current CA and the next one; the
//     server keeps its certificate from the current CA. Images built now
//     trust both.
//   - FinishRotation, once every node boots such an image, issues the
//     server a certificate from the next CA for the same names, and makes
//     the next CA the CA: ca.pem holds it alone, ca.key is its key.
//
// A cross-signed next CA, which would let the server switch at once, is
// not possible here: the CAs zgrid made have MaxPathLen 0, so a node's
// verifier refuses any chain with a CA below its root.

// File names of the next CA while a rotation is under way.
const (
	NextCACert = "next-ca.pem"
	NextCAKey  = "next-ca.key"
)

// ErrNoRotation is returned by FinishRotation and AbortRotation when no
// rotation is under way.
var ErrNoRotation = errors.New("no CA rotation under way")

// Rotation is the state of dir's CA.
type Rotation struct {
	Bundle []*x509.Certificate // ca.pem, in order: what images get
	Next   *x509.Certificate   // the next CA; nil when no rotation is under way
}

// RotationState reads ca.pem and, if present, next-ca.pem.
func RotationState(dir string) (Rotation, error) {
	var r Rotation
	var err error
	if r.Bundle, err = LoadCerts(filepath.Join(dir, CACert)); err != nil {
		return r, err
	}
	r.Next, err = LoadCert(filepath.Join(dir, NextCACert))
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	return r, err
}

// BeginRotation makes the next CA and publishes ca.pem as the bundle of
// the current CA and the next one (the old ca.pem is kept as ca.pem.old).
// The server certificate does not change. It refuses while a rotation is
// under way.
func BeginRotation(dir string, now time.Time) (*x509.Certificate, error) {
	st, err := RotationState(dir)
	if err != nil {
		return nil, err
	}
	if st.Next != nil {
		return nil, fmt.Errorf("begin CA rotation: one is already under way: %s holds %q, made %s; build and roll out images with %s, then zgrid tls rotate finish (or abort it with zgrid tls rotate abort)",
			filepath.Join(dir, NextCACert), st.Next.Subject.CommonName, made(st.Next), filepath.Join(dir, CACert))
	}
	cur, _, err := loadCA(dir)
	if err != nil {
		return nil, err
	}
	if len(st.Bundle) != 1 {
		return nil, fmt.Errorf("begin CA rotation: %s holds %d certificates but no rotation is under way; it should hold the CA alone", filepath.Join(dir, CACert), len(st.Bundle))
	}
	next, key, err := newCA("zgrid registry CA "+now.UTC().Format("2006-01-02T15:04Z"), now)
	if err != nil {
		return nil, err
	}
	kb, err := keyPEM(key)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", NextCAKey, err)
	}
	// The key first, the certificate second: next-ca.pem says a rotation
	// is under way, and is only there with its key.
	if err := writeNew(filepath.Join(dir, NextCAKey), kb, 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(dir, NextCACert), certPEM(next.Raw), 0o644); err != nil {
		return nil, err
	}
	bundle := append(certPEM(cur.Raw), certPEM(next.Raw)...)
	if err := replace(filepath.Join(dir, CACert), bundle, 0o644); err != nil {
		return nil, err
	}
	return next, nil
}

// FinishRotation issues a server certificate from the next CA for the
// current certificate's names, then makes the next CA the CA: ca.pem
// holds it alone and ca.key is its key. The replaced files are kept as
// server.pem.old, server.key.old, ca.pem.old (the bundle) and ca.key.old
// (the old CA's key). Run again after a crash, it completes.
func FinishRotation(dir string, now time.Time) (*x509.Certificate, error) {
	next, nextKey, err := loadCAFiles(filepath.Join(dir, NextCACert), filepath.Join(dir, NextCAKey))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("finish CA rotation: %w (no %s): start one with zgrid tls rotate begin", ErrNoRotation, filepath.Join(dir, NextCACert))
	}
	if err != nil {
		return nil, err
	}
	bundle, err := LoadCerts(filepath.Join(dir, CACert))
	if err != nil {
		return nil, err
	}
	if !holds(bundle, next) {
		return nil, fmt.Errorf("finish CA rotation: %s does not hold the next CA %q of %s: images built from it would not trust the server after the switch; refusing", filepath.Join(dir, CACert), next.Subject.CommonName, filepath.Join(dir, NextCACert))
	}
	cur, err := LoadCert(filepath.Join(dir, ServerCert))
	if err != nil {
		return nil, err
	}
	der, key, err := issueServer(next, nextKey, Options{SANs: SANs(cur), Now: now})
	if err != nil {
		return nil, err
	}
	kb, err := keyPEM(key)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", ServerKey, err)
	}
	nkb, err := keyPEM(nextKey)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", CAKey, err)
	}
	for _, f := range []struct {
		name string
		b    []byte
		mode os.FileMode
	}{
		{ServerKey, kb, 0o600}, {ServerCert, certPEM(der), 0o644},
		{CAKey, nkb, 0o600}, {CACert, certPEM(next.Raw), 0o644},
	} {
		if err := replace(filepath.Join(dir, f.name), f.b, f.mode); err != nil {
			return nil, err
		}
	}
	if err := removeNext(dir); err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// AbortRotation forgets the next CA: ca.pem holds the current CA alone
// again, and next-ca.pem and next-ca.key are removed. Images built during
// the overlap trust the current CA, and a next CA whose key is gone.
func AbortRotation(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, NextCACert)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("abort CA rotation: %w (no %s): nothing to abort", ErrNoRotation, filepath.Join(dir, NextCACert))
	}
	cur, _, err := loadCA(dir)
	if err != nil {
		return err
	}
	if err := replace(filepath.Join(dir, CACert), certPEM(cur.Raw), 0o644); err != nil {
		return err
	}
	return removeNext(dir)
}

// removeNext removes next-ca.pem, then its key.
func removeNext(dir string) error {
	for _, f := range []string{NextCACert, NextCAKey} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", filepath.Join(dir, f), err)
		}
	}
	return nil
}

func holds(bundle []*x509.Certificate, c *x509.Certificate) bool {
	for _, b := range bundle {
		if bytes.Equal(b.Raw, c.Raw) {
			return true
		}
	}
	return false
}

// made is when a CA was made (its NotBefore is back-dated).
func made(c *x509.Certificate) string {
	return c.NotBefore.Add(backdate).UTC().Format(time.RFC3339)
}

// LoadCerts reads every certificate of a PEM file; any other block, or
// none, is an error.
func LoadCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %d is %q, not a CERTIFICATE", path, len(out)+1, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	return out, nil
}
