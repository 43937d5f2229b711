package server

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/repo"
	"github.com/zeroboot/zeroboot/pkg/trust"
)

// TUF is the registry's part of the root of trust: the root chain it hands
// to nodes, the channels nodes accept, and the online key that signs each
// channel's freshness (snapshot and timestamp). It holds no release key.
type TUF struct {
	Roots    [][]byte        // root.json versions 1..N, in order
	Channels *trust.Channels // the channels nodes are built to accept
	Fresh    repo.Freshness

	mu      sync.Mutex
	cache   map[string]fresh          // "channel/targets version" -> last freshness signed
	decoded map[string]*storedRelease // "channel/version" -> its upload, decoded
}

// storedRelease is a stored release's upload, decoded once: in a boot
// storm every node asks for the same release, and decoding its envelope
// and targets again for each was a third of the boot handler's CPU.
type storedRelease struct {
	envelope       []byte // as stored, to tell a changed record from the cached one
	up             *records.ReleaseUpload
	targetsVersion int64
}

// maxDecoded bounds the decoded releases kept: a grid serves a few at a
// time (a channel's newest, a pinned one, a fallback).
const maxDecoded = 64

type fresh struct {
	snapshot, timestamp []byte
	expires             time.Time
}

// newerRoots are the roots after version have, for a node that holds have.
func (t *TUF) newerRoots(have int64) [][]byte {
	if have < 1 || have > int64(len(t.Roots)) {
		// A node whose root we do not know gets the whole chain; its
		// own root decides what it accepts.
		return t.Roots
	}
	return t.Roots[have:]
}

// stored is rel's upload decoded, from the cache while the stored
// envelope is the one decoded.
func (t *TUF) stored(rel records.ReleaseInfo) (*storedRelease, error) {
	key := fmt.Sprintf("%s/%d", rel.Channel, rel.Version)
	t.mu.Lock()
	d, ok := t.decoded[key]
	t.mu.Unlock()
	if ok && bytes.Equal(d.envelope, rel.Envelope) {
		return d, nil
	}
	up, err := records.DecodeUpload(rel.Envelope)
	if err != nil {
		return nil, fmt.Errorf("stored release %s/%d: %w", rel.Channel, rel.Version, err)
	}
	m, err := metadata.Targets().FromBytes(up.Targets)
	if err != nil {
		return nil, fmt.Errorf("stored targets of %s: %w", rel.Channel, err)
	}
	d = &storedRelease{envelope: rel.Envelope, up: up, targetsVersion: m.Signed.Version}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.decoded == nil || len(t.decoded) >= maxDecoded {
		t.decoded = map[string]*storedRelease{}
	}
	t.decoded[key] = d
	return d, nil
}

// freshness signs (or reuses, while more than half its window is left) the
// snapshot and timestamp of rel's targets.
func (t *TUF) freshness(channel string, rel *storedRelease, now time.Time) (snapshot, timestamp []byte, err error) {
	targets := rel.up.Targets
	t.mu.Lock()
	defer t.mu.Unlock()
	// Per version: a farm rolling a release out serves two of a channel.
	key := fmt.Sprintf("%s/%d", channel, rel.targetsVersion)
	if f, ok := t.cache[key]; ok && f.expires.Sub(now) > t.Fresh.Window/2 {
		return f.snapshot, f.timestamp, nil
	}
	// Versions only go up while the registry's clock does; a node keeps
	// no state, so a clock step back harms nothing but this cache.
	version := now.UnixNano() / int64(time.Millisecond)
	s, ts, err := t.Fresh.Sign(targets, version, now)
	if err != nil {
		return nil, nil, err
	}
	if t.cache == nil {
		t.cache = map[string]fresh{}
	}
	t.cache[key] = fresh{s, ts, now.Add(t.Fresh.Window)}
	return s, ts, nil
}

// bundle is what a node of channel gets: the newer roots, fresh snapshot
// and timestamp, and the channel's current targets and release document.
func (s *Server) bundle(req *registry.BootRequest, rel records.ReleaseInfo) (*trust.Bundle, error) {
	d, err := s.TUF.stored(rel)
	if err != nil {
		return nil, err
	}
	up := d.up
	snap, ts, err := s.TUF.freshness(rel.Channel, d, s.now())
	if err != nil {
		return nil, err
	}
	return &trust.Bundle{
		Roots:     s.TUF.newerRoots(req.RootVersion),
		Timestamp: ts,
		Snapshot:  snap,
		Targets:   up.Targets,
		Release:   up.Release,
	}, nil
}

// releaseFor is the release a node of farm gets on channel: the newest,
// unless the farm pins a version, or rolls the newest out to a share of its
// nodes (the others get the newest release before it that nodes still
// accept). A node that asked for another channel gets that channel's
// newest.
func (s *Server) releaseFor(farm records.Farm, channel, nodeID string) (records.ReleaseInfo, error) {
	if channel != farm.Channel {
		return s.latest(channel)
	}
	in, rest, err := s.farmReleases(farm)
	if err != nil || records.InRollout(farm.Name, nodeID, farm.Rollout) {
		return in, err
	}
	return rest, nil
}

func (s *Server) latest(channel string) (records.ReleaseInfo, error) {
	rel, err := s.DB.LatestRelease(channel)
	if errors.Is(err, db.ErrNotFound) {
		return rel, fail(http.StatusNotFound, "no release on channel %s", channel)
	}
	return rel, err
}

// farmReleases is what farm's nodes get from its own channel: in to
// those in its rollout, rest to the others. Without a rollout both are
// the same release.
func (s *Server) farmReleases(farm records.Farm) (in, rest records.ReleaseInfo, err error) {
	if farm.Pin == 0 && farm.Rollout == 0 {
		in, err = s.latest(farm.Channel)
		return in, in, err
	}
	rs, err := s.DB.Releases(farm.Channel)
	if err != nil {
		return in, rest, err
	}
	if len(rs) == 0 {
		return in, rest, fail(http.StatusNotFound, "no release on channel %s", farm.Channel)
	}
	if farm.Pin != 0 {
		in, err = pinned(farm, rs)
		return in, in, err
	}
	newest := rs[len(rs)-1]
	if newest.Withdrawn {
		return newest, newest, nil
	}
	now := s.now()
	for i := len(rs) - 2; i >= 0; i-- {
		if r := rs[i]; !r.Withdrawn && now.Before(r.Expires) {
			return newest, r, nil
		}
	}
	return newest, newest, nil // nothing older is still good: everyone gets the newest
}

// lastKnownGood applies the farm's ready deadline to rel, the release
// chosen for a node: it returns the release to serve and the fallback to
// send with it. A node that fell back from rel before gets its fallback
// instead, with none of its own, so a release that fails on a node does
// not cost it a deadline on every boot. The fallback is the release the
// node last reached ready on, else the newest good one before rel that
// did not fail on it. Only
// protocol 6 nodes of a farm with a deadline take part.
func (s *Server) lastKnownGood(farm records.Farm, channel string, rel records.ReleaseInfo, known *records.Node, proto int) (records.ReleaseInfo, *records.ReleaseInfo, error) {
	if farm.ReadyDeadline == 0 || proto < registry.ProtocolFallback {
		return rel, nil, nil
	}
	rs, err := s.DB.Releases(channel)
	if err != nil {
		return rel, nil, err
	}
	now := s.now()
	good := func(v uint64) (records.ReleaseInfo, bool) {
		for _, r := range rs {
			if r.Version == v {
				return r, !r.Withdrawn && now.Before(r.Expires)
			}
		}
		return records.ReleaseInfo{}, false
	}
	if known != nil && known.Fallback != nil && known.Fallback.From == rel.Version {
		if to, ok := good(known.Fallback.To); ok {
			s.log().Info("serving the node's last known good release: it fell back from the farm's", "node", known.ID, "channel", channel, "version", to.Version, "fell_back_from", rel.Version)
			return to, nil, nil
		}
	}
	if known != nil && known.State == registry.StateReady && known.ReleaseReported < rel.Version {
		if r, ok := good(known.ReleaseReported); ok {
			return rel, &r, nil
		}
	}
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		failed := known != nil && known.Fallback != nil && known.Fallback.From == r.Version
		if r.Version < rel.Version && !failed && !r.Withdrawn && now.Before(r.Expires) {
			return rel, &r, nil
		}
	}
	return rel, nil, nil
}

// pinned is the farm's pinned version of rs, which must be a release.
func pinned(farm records.Farm, rs []records.ReleaseInfo) (records.ReleaseInfo, error) {
	for _, r := range rs {
		if r.Version != farm.Pin {
			continue
		}
		if r.Withdrawn {
			return r, fail(http.StatusConflict, "farm %s is pinned to %s version %d, a withdrawal: zgrid farm set %s --pin another version", farm.Name, r.Channel, r.Version, farm.Name)
		}
		return r, nil
	}
	return records.ReleaseInfo{}, fail(http.StatusNotFound, "farm %s is pinned to %s version %d, which is not published", farm.Name, farm.Channel, farm.Pin)
}

// checkProtocol refuses a node of another protocol with words that say
// what to do; a protocol 1 node cannot verify TUF metadata at all.
func checkProtocol(req *registry.BootRequest) error {
	p := req.Protocol
	if p == 0 {
		p = 1
	}
	switch {
	case p < registry.MinNodeProtocol:
		return fail(http.StatusBadRequest, "node speaks boot protocol %d, this registry protocols %d-%d: rebuild the node's initramfs with a zeroboot of protocol %d (root.json and channels.json instead of trust.json)", p, registry.MinNodeProtocol, registry.Protocol, registry.Protocol)
	case p < registry.ProtocolTPM && (req.IdentityKind != "" || req.TPM != nil):
		return fail(http.StatusBadRequest, "node speaks boot protocol %d but sends protocol %d identity fields", p, registry.ProtocolTPM)
	case p > registry.Protocol:
		return fail(http.StatusBadRequest, "node speaks boot protocol %d, this registry only %d: upgrade zgrid", p, registry.Protocol)
	}
	return nil
}

// checkReadable refuses a node of protocol p a release it cannot read, so
// it is told at the registry why, not by its components step.
func checkReadable(rel records.ReleaseInfo, p int) error {
	if rel.NodeProtocol <= p {
		return nil
	}
	return fail(http.StatusConflict, "release %s v%d has components that nodes of boot protocol %d cannot read (flist version 3, BLAKE3 chunk IDs, needs protocol %d): rebuild the node's initramfs with this zgrid's zeroboot, or publish flists built with zgrid flist build --format 2",
		rel.Channel, rel.Version, p, rel.NodeProtocol)
}

// checkChannel applies the one channel grammar (release.CheckChannel).
func checkChannel(ch string) error {
	if err := release.CheckChannel(ch); err != nil {
		return fail(http.StatusBadRequest, "%v", err)
	}
	return nil
}

// channelFor is the channel a boot is answered for: the node's own choice
// when it made one, else its farm's. Either must be a channel nodes are
// built to accept.
func (s *Server) channelFor(req *registry.BootRequest, farmChannel string) (string, error) {
	ch := farmChannel
	if req.Channel != "" {
		ch = req.Channel
	}
	if _, ok := s.TUF.Channels.Channels[ch]; !ok {
		return "", fail(http.StatusNotFound, "channel %s is not in this registry's channels.json", ch)
	}
	return ch, nil
}

var errNoTUF = errors.New("registry has no root: run zgrid root init")
