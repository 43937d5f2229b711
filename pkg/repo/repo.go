// Package repo is the signing side of zeroboot's TUF metadata: the root
// (root keys, release keys, the registry's online key), each channel's
// targets (a release, signed offline by the release keys), and the
// freshness metadata (snapshot and timestamp) the registry signs online.
// Nodes never import it: they verify with pkg/trust, and everything made
// here is checked with pkg/trust before it is handed out.
package repo

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/zeroboot/zeroboot/pkg/trust"
)

// KeyID is the TUF key ID of an ed25519 public key (hex SHA-256 of the
// key's canonical JSON form), as it appears in root.json.
func KeyID(pub ed25519.PublicKey) string {
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return ""
	}
	id, _ := k.ID()
	return id
}

// Fingerprint is a short KeyID for humans: "ed25519:" + 16 hex digits.
func Fingerprint(pub ed25519.PublicKey) string { return "ed25519:" + KeyID(pub)[:16] }

// Roles says who holds which role in a root.
type Roles struct {
	Root, Targets   []ed25519.PublicKey // offline: root keys, release keys
	RootThreshold   int
	TargetThreshold int
	// Online signs snapshot and timestamp; the registry holds it.
	Online ed25519.PublicKey
}

// NewRoot makes an unsigned root of the given version and expiry.
func NewRoot(r Roles, version int64, expires time.Time) (*metadata.Metadata[metadata.RootType], error) {
	m := metadata.Root(expires.UTC().Truncate(time.Second))
	m.Signed.Version = version
	m.Signed.ConsistentSnapshot = false
	set := func(role string, keys []ed25519.PublicKey, threshold int) error {
		for _, pub := range keys {
			if err := trust.CheckPublicKey(pub); err != nil {
				return fmt.Errorf("root: %s key: %w", role, err)
			}
			k, err := metadata.KeyFromPublicKey(pub)
			if err != nil {
				return fmt.Errorf("root: %s key: %w", role, err)
			}
			if err := m.Signed.AddKey(k, role); err != nil {
				return fmt.Errorf("root: %s key: %w", role, err)
			}
		}
		m.Signed.Roles[role].Threshold = threshold
		return nil
	}
	for _, s := range []struct {
		role string
		keys []ed25519.PublicKey
		t    int
	}{
		{metadata.ROOT, r.Root, r.RootThreshold},
		{metadata.TARGETS, r.Targets, r.TargetThreshold},
		{metadata.SNAPSHOT, []ed25519.PublicKey{r.Online}, 1},
		{metadata.TIMESTAMP, []ed25519.PublicKey{r.Online}, 1},
	} {
		if err := set(s.role, s.keys, s.t); err != nil {
			return nil, err
		}
	}
	if err := trust.CheckRoot(&m.Signed); err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	return m, nil
}

// RolesOf reads back who holds which role in a root, for a rotation that
// changes only some of it.
func RolesOf(m *metadata.Metadata[metadata.RootType]) (Roles, error) {
	keys := func(role string) ([]ed25519.PublicKey, int, error) {
		var out []ed25519.PublicKey
		for _, id := range m.Signed.Roles[role].KeyIDs {
			pk, err := m.Signed.Keys[id].ToPublicKey()
			if err != nil {
				return nil, 0, fmt.Errorf("root: %s key %s: %w", role, id, err)
			}
			out = append(out, pk.(ed25519.PublicKey))
		}
		return out, m.Signed.Roles[role].Threshold, nil
	}
	var r Roles
	var err error
	if r.Root, r.RootThreshold, err = keys(metadata.ROOT); err != nil {
		return r, err
	}
	if r.Targets, r.TargetThreshold, err = keys(metadata.TARGETS); err != nil {
		return r, err
	}
	online, _, err := keys(metadata.TIMESTAMP)
	if err != nil {
		return r, err
	}
	if len(online) != 1 {
		return r, fmt.Errorf("root: timestamp role has %d keys, want the one online key", len(online))
	}
	r.Online = online[0]
	return r, nil
}

// Sign adds a signature by each key to m. A key that already signed is
// refused: co-signing twice is a mistake worth hearing about.
func Sign[T metadata.Roles](m *metadata.Metadata[T], keys ...ed25519.PrivateKey) error {
	for _, k := range keys {
		id := KeyID(k.Public().(ed25519.PublicKey))
		if slices.ContainsFunc(m.Signatures, func(s metadata.Signature) bool { return s.KeyID == id }) {
			return fmt.Errorf("sign: key %s already signed", id[:16])
		}
		s, err := signature.LoadED25519Signer(k)
		if err != nil {
			return fmt.Errorf("sign: %w", err)
		}
		if _, err := m.Sign(s); err != nil {
			return fmt.Errorf("sign: %w", err)
		}
	}
	return nil
}

// Encode writes metadata the way every zeroboot tool does.
func Encode[T metadata.Roles](m *metadata.Metadata[T]) ([]byte, error) {
	b, err := m.ToBytes(true)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	return append(b, '\n'), nil
}
