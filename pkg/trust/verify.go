// Package trust is the node's side of the root of trust: it walks the TUF
// root built into the initramfs forward through newer roots, checks the
// registry's freshness metadata (timestamp, snapshot) and the release
// keys' targets metadata for one channel, and hands back the release
// document those name, with its version and expiry. Nothing else makes a
// release trustworthy. The metadata is TUF 1.0, read with go-tuf, under a
// stricter profile of our own (one reading per document, ed25519 keys that
// cannot be forged, no unknown fields, no delegations). See
// docs/release.md.
package trust

import (
	"errors"
	"fmt"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/strictjson"
)

// Bounds on what a registry can make a node read.
const (
	maxMetadataSize = 512 << 10
	maxSignatures   = 32
	// MaxRoots is how many newer roots one boot walks through; an image
	// more rotations behind than this must be rebuilt.
	MaxRoots = 64
)

// ErrWithdrawn is a channel's targets naming no release: signed by the
// release keys, so that the registry cannot fake a withdrawal.
var ErrWithdrawn = errors.New("the release keys withdrew the channel's release")

// The top-level roles; a root naming any other is refused.
var roles = []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

// tufNames are the field names of the TUF metadata schema: a key that
// differs from one of them only in case is refused (see pkg/strictjson).
var tufNames = []string{
	"signed", "signatures", "keyid", "sig", "_type", "spec_version",
	"consistent_snapshot", "version", "expires", "keys", "roles", "keytype",
	"scheme", "keyval", "public", "keyids", "threshold", "meta", "length",
	"hashes", "targets", "delegations", "custom",
}

// Bundle is the metadata a registry hands a node for one channel: the
// roots newer than the node's (in order), the channel's timestamp,
// snapshot and targets metadata, and the release document the targets
// name.
type Bundle struct {
	Roots     [][]byte `json:"roots,omitempty"`
	Timestamp []byte   `json:"timestamp"`
	Snapshot  []byte   `json:"snapshot"`
	Targets   []byte   `json:"targets"`
	Release   []byte   `json:"release"`
}

// Node is what a node trusts: its root and channels, and the time.
type Node struct {
	Root     []byte    // root.json from the initramfs
	Channels *Channels // channels.json from the initramfs
	Now      time.Time // the trusted clock (pkg/clock); required
}

// Verified is a release a node may boot, with how it was reached.
type Verified struct {
	Release     *release.Release // Version and Expires from the targets
	RootVersion int64            // the root the chain ended on
	RootsWalked int              // newer roots accepted on the way
	Freshness   time.Time        // when the timestamp expires
}

// Verify checks b for channel against n and returns the release it
// names. Order (TUF's client workflow): every document is strict and
// well-formed before go-tuf reads it; each newer root is signed by a
// threshold of the previous root's keys and of its own, version N+1; the
// final root has not expired; timestamp, snapshot and targets are signed by
// their roles' thresholds under that root, unexpired, and agree on
// versions and hashes; the release document matches the targets' length
// and hash, decodes strictly, is of channel, and its version is not below
// the channel's floor.
func (n *Node) Verify(channel string, b *Bundle) (*Verified, error) {
	if n.Now.IsZero() {
		return nil, errors.New("trust: no current time given")
	}
	if b == nil {
		return nil, errors.New("trust: no metadata")
	}
	floor, ok := n.Channels.Channels[channel]
	if !ok {
		return nil, fmt.Errorf("trust: channel %q is not one this node accepts", clip(channel))
	}
	tm, walked, err := walkRoots(n.Root, b.Roots)
	if err != nil {
		return nil, err
	}
	tm.RefTime = n.Now
	targets, err := freshTargets(tm, b)
	if err != nil {
		return nil, err
	}
	r, err := releaseOf(targets, b.Release)
	if err != nil {
		return nil, err
	}
	if r.Channel != channel {
		return nil, fmt.Errorf("trust: release is for channel %q, this node follows %q", r.Channel, channel)
	}
	if r.Version < floor.MinVersion {
		return nil, fmt.Errorf("trust: %s version %d is below this node's floor %d (rollback refused)", channel, r.Version, floor.MinVersion)
	}
	return &Verified{
		Release:     r,
		RootVersion: tm.Root.Signed.Version,
		RootsWalked: walked,
		Freshness:   tm.Timestamp.Signed.Expires,
	}, nil
}

// walkRoots starts from the initramfs root and accepts each newer root in
// turn. Expiry of the final root is judged later, against the clock.
func walkRoots(initial []byte, newer [][]byte) (*trustedmetadata.TrustedMetadata, int, error) {
	if _, err := checkRootDoc(initial); err != nil {
		return nil, 0, fmt.Errorf("trust: root in the initramfs: %w", err)
	}
	tm, err := trustedmetadata.New(initial)
	if err != nil {
		return nil, 0, fmt.Errorf("trust: root in the initramfs: %w", err)
	}
	if len(newer) > MaxRoots {
		return nil, 0, fmt.Errorf("trust: %d newer roots offered, at most %d: rebuild the initramfs with a current root", len(newer), MaxRoots)
	}
	walked := 0
	for _, b := range newer {
		want := tm.Root.Signed.Version + 1
		m, err := checkRootDoc(b)
		if err != nil {
			return nil, walked, fmt.Errorf("trust: root version %d: %w", want, err)
		}
		if m.Signed.Version < want {
			continue // a root the node already holds or went past
		}
		if _, err := tm.UpdateRoot(b); err != nil {
			return nil, walked, fmt.Errorf("trust: root version %d (after version %d): %w", want, want-1, err)
		}
		walked++
	}
	return tm, walked, nil
}

// freshTargets checks timestamp, snapshot and targets in that order.
func freshTargets(tm *trustedmetadata.TrustedMetadata, b *Bundle) (*metadata.Metadata[metadata.TargetsType], error) {
	if tm.Root.Signed.IsExpired(tm.RefTime) {
		return nil, fmt.Errorf("trust: root version %d expired at %s; now is %s: the root keys must sign a new root",
			tm.Root.Signed.Version, stamp(tm.Root.Signed.Expires), stamp(tm.RefTime))
	}
	if err := checkDoc(metadata.TIMESTAMP, b.Timestamp); err != nil {
		return nil, err
	}
	_, err := tm.UpdateTimestamp(b.Timestamp)
	if err != nil {
		return nil, fmt.Errorf("trust: timestamp: %w", expiredNote(err, "the registry's freshness signature is stale (replayed, or the registry cannot sign)"))
	}
	if err := checkDoc(metadata.SNAPSHOT, b.Snapshot); err != nil {
		return nil, err
	}
	if _, err := tm.UpdateSnapshot(b.Snapshot, false); err != nil {
		return nil, fmt.Errorf("trust: snapshot: %w", err)
	}
	if err := checkDoc(metadata.TARGETS, b.Targets); err != nil {
		return nil, err
	}
	t, err := tm.UpdateTargets(b.Targets)
	if err != nil {
		return nil, fmt.Errorf("trust: targets (release): %w", err)
	}
	return t, nil
}

// VerifyRelease checks targets metadata and its release document against
// a root chain (the first root and every newer one, in order), without
// freshness metadata: what the registry does before it stores a release,
// since it signs the freshness itself. What it accepts, every node with a
// root in the chain accepts too, until the release expires.
func VerifyRelease(roots [][]byte, targets, doc []byte, now time.Time) (*release.Release, error) {
	final, err := Chain(roots, now)
	if err != nil {
		return nil, err
	}
	root := final.Signed
	if err := checkDoc(metadata.TARGETS, targets); err != nil {
		return nil, err
	}
	t, err := metadata.Targets().FromBytes(targets)
	if err != nil {
		return nil, fmt.Errorf("trust: targets: %w", err)
	}
	if err := final.VerifyDelegate(metadata.TARGETS, t); err != nil {
		return nil, fmt.Errorf("trust: targets version %d under root version %d: %w", t.Signed.Version, root.Version, err)
	}
	if t.Signed.IsExpired(now) {
		return nil, fmt.Errorf("trust: targets version %d expired at %s", t.Signed.Version, stamp(t.Signed.Expires))
	}
	return releaseOf(t, doc)
}

// Chain walks roots (the first root and every newer one, in order) as a
// node holding the first would, and returns the final root, which must not
// have expired at now.
func Chain(roots [][]byte, now time.Time) (*metadata.Metadata[metadata.RootType], error) {
	if len(roots) == 0 {
		return nil, errors.New("trust: no root")
	}
	tm, _, err := walkRoots(roots[0], roots[1:])
	if err != nil {
		return nil, err
	}
	if r := tm.Root.Signed; r.IsExpired(now) {
		return nil, fmt.Errorf("trust: root version %d expired at %s", r.Version, stamp(r.Expires))
	}
	return tm.Root, nil
}

// releaseOf checks data against the release target of t and decodes it.
func releaseOf(t *metadata.Metadata[metadata.TargetsType], data []byte) (*release.Release, error) {
	if t.Signed.Delegations != nil {
		return nil, errors.New("trust: targets delegate to other roles; zeroboot releases have none")
	}
	tf, ok := t.Signed.Targets[release.TargetName]
	if !ok {
		return nil, fmt.Errorf("trust: targets version %d names no %s: %w", t.Signed.Version, release.TargetName, ErrWithdrawn)
	}
	if len(t.Signed.Targets) != 1 {
		return nil, fmt.Errorf("trust: targets version %d names %d targets; want only %s", t.Signed.Version, len(t.Signed.Targets), release.TargetName)
	}
	if len(tf.Hashes) != 1 || tf.Hashes["sha256"] == nil {
		return nil, fmt.Errorf("trust: target %s: want exactly one hash, sha256", release.TargetName)
	}
	if err := tf.VerifyLengthHashes(data); err != nil {
		return nil, fmt.Errorf("trust: release document does not match targets version %d: %w", t.Signed.Version, err)
	}
	r, err := release.Decode(data)
	if err != nil {
		return nil, err
	}
	r.Version = uint64(t.Signed.Version)
	r.Expires = t.Signed.Expires
	return r, nil
}

// checkDoc refuses a document that could be read two ways, is too large,
// or carries a malformed signature or unknown fields.
func checkDoc(role string, b []byte) error {
	if err := checkBytes(b); err != nil {
		return fmt.Errorf("trust: %s: %w", role, err)
	}
	var err error
	switch role {
	case metadata.TIMESTAMP:
		err = checkParsed(metadata.Timestamp().FromBytes(b))
	case metadata.SNAPSHOT:
		err = checkParsed(metadata.Snapshot().FromBytes(b))
	case metadata.TARGETS:
		err = checkParsed(metadata.Targets().FromBytes(b))
	}
	if err != nil {
		return fmt.Errorf("trust: %s: %w", role, err)
	}
	return nil
}

func checkBytes(b []byte) error {
	if len(b) == 0 {
		return errors.New("missing")
	}
	if len(b) > maxMetadataSize {
		return fmt.Errorf("%d bytes, at most %d", len(b), maxMetadataSize)
	}
	return strictjson.Check(b, tufNames)
}

// checkParsed applies the profile every document shares.
func checkParsed[T metadata.Roles](m *metadata.Metadata[T], err error) error {
	if err != nil {
		return err
	}
	if len(m.UnrecognizedFields) > 0 || unrecognized(m.Signed) {
		return errors.New("unknown fields")
	}
	return checkSignatures(m.Signatures)
}

func unrecognized(signed any) bool {
	switch s := signed.(type) {
	case metadata.RootType:
		return len(s.UnrecognizedFields) > 0
	case metadata.TimestampType:
		return len(s.UnrecognizedFields) > 0
	case metadata.SnapshotType:
		return len(s.UnrecognizedFields) > 0
	case metadata.TargetsType:
		return len(s.UnrecognizedFields) > 0
	}
	return true
}

// checkRootDoc parses a root and adds the root's own rules: exactly the
// four roles, each with a threshold it can meet with distinct listed keys,
// and every key strict.
func checkRootDoc(b []byte) (*metadata.Metadata[metadata.RootType], error) {
	if err := checkBytes(b); err != nil {
		return nil, err
	}
	m, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, err
	}
	if err := CheckRoot(&m.Signed); err != nil {
		return nil, err
	}
	return m, checkParsed(m, nil)
}

// CheckRoot checks a root's keys and roles under zeroboot's profile. The
// registry and zgrid call it before they write a root, so nothing a node
// would refuse is ever published.
func CheckRoot(r *metadata.RootType) error {
	for id, k := range r.Keys {
		if err := checkKey(id, k); err != nil {
			return err
		}
	}
	if len(r.Roles) != len(roles) {
		return fmt.Errorf("root names %d roles, want exactly %v", len(r.Roles), roles)
	}
	for _, name := range roles {
		role, ok := r.Roles[name]
		if !ok || role == nil {
			return fmt.Errorf("root has no %s role", name)
		}
		if len(role.UnrecognizedFields) > 0 {
			return fmt.Errorf("role %s: unknown fields", name)
		}
		seen := map[string]bool{}
		for _, id := range role.KeyIDs {
			if seen[id] {
				return fmt.Errorf("role %s lists key %s twice", name, clip(id))
			}
			seen[id] = true
			if r.Keys[id] == nil {
				return fmt.Errorf("role %s: key %s is not in the root's keys", name, clip(id))
			}
		}
		if role.Threshold < 1 || role.Threshold > len(role.KeyIDs) {
			return fmt.Errorf("role %s: threshold %d with %d keys: want 1 to %d", name, role.Threshold, len(role.KeyIDs), len(role.KeyIDs))
		}
	}
	return nil
}

// expiredNote adds what an expired timestamp means to go-tuf's error.
func expiredNote(err error, note string) error {
	var exp *metadata.ErrExpiredMetadata
	if errors.As(err, &exp) {
		return fmt.Errorf("%w: %s", err, note)
	}
	return err
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func clip(s string) string { return console.Sanitize(s, 80) }
