// Package digest names content by its SHA-256 hash. Every content address in
// zeroboot (chunks, flist metadata, executables) is a Digest, written
// "sha256:<64 hex digits>" in text formats.
package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Size is the length of a digest in bytes.
const Size = sha256.Size

const prefix = "sha256:"

// Digest is a SHA-256 hash.
type Digest [Size]byte

// Of hashes b.
func Of(b []byte) Digest { return sha256.Sum256(b) }

// Parse accepts "sha256:<hex>" or bare lower-case hex.
func Parse(s string) (Digest, error) {
	var d Digest
	h := strings.TrimPrefix(s, prefix)
	if len(h) != 2*Size {
		return d, fmt.Errorf("digest %q: want %d hex digits, got %d", s, 2*Size, len(h))
	}
	if strings.ToLower(h) != h {
		return d, fmt.Errorf("digest %q: hex must be lower case", s)
	}
	if _, err := hex.Decode(d[:], []byte(h)); err != nil {
		return d, fmt.Errorf("digest %q: %w", s, err)
	}
	return d, nil
}

// String gives "sha256:<hex>".
func (d Digest) String() string { return prefix + d.Hex() }

// Hex gives the bare hex form used in store paths.
func (d Digest) Hex() string { return hex.EncodeToString(d[:]) }

// Short gives the first 12 hex digits, for console messages.
func (d Digest) Short() string { return d.Hex()[:12] }

// IsZero reports whether d is unset.
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText implements encoding.TextMarshaler.
func (d Digest) MarshalText() ([]byte, error) {
	if d.IsZero() {
		return nil, errors.New("digest: refusing to encode a zero digest")
	}
	return []byte(d.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Digest) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}
