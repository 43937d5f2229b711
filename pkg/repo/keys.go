package repo

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"os"

	"github.com/zeroboot/zeroboot/pkg/trust"
)

// PEM block types of key files.
const (
	PrivateKeyType = "ZEROBOOT ED25519 PRIVATE KEY"
	PublicKeyType  = "ZEROBOOT ED25519 PUBLIC KEY"
	maxKeyFileSize = 16 << 10
)

// GenerateKey makes a new release signing key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	return pub, priv, nil
}

// WritePrivateKey writes priv's 32-byte seed as PEM to a new file of mode
// 0600. It never overwrites: losing a release key to a typo is worse than an
// error.
func WritePrivateKey(path string, priv ed25519.PrivateKey) error {
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("write private key %s: key is %d bytes, want %d", path, len(priv), ed25519.PrivateKeySize)
	}
	return writeNew(path, 0o600, &pem.Block{Type: PrivateKeyType, Bytes: priv.Seed()})
}

// WritePublicKey writes pub as PEM to a new file of mode 0644.
func WritePublicKey(path string, pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("write public key %s: key is %d bytes, want %d", path, len(pub), ed25519.PublicKeySize)
	}
	return writeNew(path, 0o644, &pem.Block{Type: PublicKeyType, Bytes: pub})
}

func writeNew(path string, mode os.FileMode, b *pem.Block) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write key %s: %w", path, cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := pem.Encode(f, b); err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	return nil
}

// ReadPrivateKey reads a key written by WritePrivateKey. A file that group or
// others can read is refused: the key may already be compromised and the
// operator should know.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	seed, err := readPEM(path, PrivateKeyType, ed25519.SeedSize, true)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// ReadPublicKey reads a key written by WritePublicKey.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := readPEM(path, PublicKeyType, ed25519.PublicKeySize, false)
	if err != nil {
		return nil, err
	}
	if err := trust.CheckPublicKey(b); err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	return ed25519.PublicKey(b), nil
}

func readPEM(path, typ string, size int, private bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the path, so the checked file is the read one.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read key %s: not a regular file", path)
	}
	if private && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("read key %s: mode %04o lets group or others read the private key; chmod 600 it (and consider it exposed)", path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("read key %s: larger than %d bytes", path, maxKeyFileSize)
	}
	b, rest := pem.Decode(data)
	switch {
	case b == nil:
		return nil, fmt.Errorf("read key %s: no PEM block", path)
	case b.Type != typ:
		return nil, fmt.Errorf("read key %s: PEM block %q, want %q", path, b.Type, typ)
	case len(b.Headers) != 0:
		return nil, fmt.Errorf("read key %s: unexpected PEM headers", path)
	case len(b.Bytes) != size:
		return nil, fmt.Errorf("read key %s: %d key bytes, want %d", path, len(b.Bytes), size)
	case len(bytes.TrimSpace(rest)) != 0:
		return nil, fmt.Errorf("read key %s: trailing data after the PEM block", path)
	}
	return b.Bytes, nil
}
