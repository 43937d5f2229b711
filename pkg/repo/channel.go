package repo

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/zeroboot/zeroboot/pkg/release"
)

// NewTargets makes the unsigned targets metadata of one release of a
// channel: version, expiry, and doc (the release document, see
// release.Marshal) as its only target. doc nil makes targets naming no
// release: a withdrawal, signed like a release so that the registry cannot
// fake one.
func NewTargets(version int64, expires time.Time, doc []byte) (*metadata.Metadata[metadata.TargetsType], error) {
	if version < 1 {
		return nil, fmt.Errorf("targets: version %d: versions start at 1", version)
	}
	m := metadata.Targets(expires.UTC().Truncate(time.Second))
	m.Signed.Version = version
	if doc != nil {
		tf, err := metadata.TargetFile().FromBytes(release.TargetName, doc, "sha256")
		if err != nil {
			return nil, fmt.Errorf("targets: %w", err)
		}
		m.Signed.Targets[release.TargetName] = tf
	}
	return m, nil
}

// Freshness signs a channel's snapshot and timestamp with the registry's
// online key. Each signature is valid for Window: a hostile network
// replaying an old answer can hold a node on it for at most that long.
type Freshness struct {
	Key    ed25519.PrivateKey
	Window time.Duration
}

// Sign makes the snapshot naming targets and the timestamp naming that
// snapshot, both at version, expiring Window after now. Versions come from
// the caller (the registry uses the signing time in milliseconds, which
// only goes up while the clock does).
func (f *Freshness) Sign(targets []byte, version int64, now time.Time) (snapshot, timestamp []byte, err error) {
	t, err := metadata.Targets().FromBytes(targets)
	if err != nil {
		return nil, nil, fmt.Errorf("freshness: targets: %w", err)
	}
	expires := now.Add(f.Window).UTC().Truncate(time.Second)
	s := metadata.Snapshot(expires)
	s.Signed.Version = version
	s.Signed.Meta["targets.json"] = metadata.MetaFile(t.Signed.Version)
	if err := Sign(s, f.Key); err != nil {
		return nil, nil, err
	}
	if snapshot, err = Encode(s); err != nil {
		return nil, nil, err
	}
	ts := metadata.Timestamp(expires)
	ts.Signed.Version = version
	sum := sha256.Sum256(snapshot)
	mf := metadata.MetaFile(version)
	mf.Length = int64(len(snapshot))
	mf.Hashes = metadata.Hashes{"sha256": sum[:]}
	ts.Signed.Meta["snapshot.json"] = mf
	if err := Sign(ts, f.Key); err != nil {
		return nil, nil, err
	}
	if timestamp, err = Encode(ts); err != nil {
		return nil, nil, err
	}
	return snapshot, timestamp, nil
}
