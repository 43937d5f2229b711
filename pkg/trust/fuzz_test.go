package trust_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/repo"
	"github.com/zeroboot/zeroboot/pkg/trust"
)

// FuzzVerify feeds a node holding roles1's root every field of a bundle
// (one optional newer root, timestamp, snapshot, targets, release), the
// channel asked for and the stable floor. Whatever they are, Verify either
// refuses them or returns the release of the channel asked, at or above
// its floor, which is exactly the document the targets name (length and
// sha256), and whose targets verify under the root the chain ends on.
func FuzzVerify(f *testing.F) {
	rt1 := root(f, roles1, 1, t0.AddDate(1, 0, 0), r0, r1)
	roles2 := repo.Roles{Root: pubs(r0, r3, r4), RootThreshold: 2, Targets: pubs(k2), TargetThreshold: 1, Online: pub(online)}
	rt2 := root(f, roles2, 2, t0.AddDate(1, 0, 0), r0, r1, r3)
	month := t0.AddDate(0, 0, 30)
	d := doc(f, "stable", "/bin/core0")
	good := bundle(f, targets(f, 5, month, d, k0), d, t0)
	add := func(channel string, floor uint64, newer []byte, b *trust.Bundle) {
		f.Add(channel, floor, newer, b.Timestamp, b.Snapshot, b.Targets, b.Release)
	}
	add("stable", 5, nil, good)  // accepted
	add("stable", 6, nil, good)  // rollback below the floor
	add("beta", 0, nil, good)    // release of another channel
	add("nightly", 0, nil, good) // channel the node does not accept
	add("stable", 0, rt1, good)  // the node's own root again: skipped
	add("stable", 0, rt2, good)  // rotation revokes k0
	rot := bundle(f, targets(f, 5, month, d, k2), d, t0)
	add("stable", 0, rt2, rot)              // accepted after rotation
	add("stable", 0, nil, rot)              // new key without the new root
	add("stable", 0, rt2[:len(rt2)/2], rot) // truncated root
	bd := doc(f, "beta", "/bin/core0")
	add("beta", 0, nil, bundle(f, targets(f, 9, month, bd, k0), bd, t0))   // accepted, beta
	add("stable", 0, nil, bundle(f, targets(f, 6, month, nil, k0), d, t0)) // withdrawn
	add("stable", 0, nil, bundle(f, targets(f, 5, month, d), d, t0))       // unsigned
	add("stable", 0, nil, bundle(f, targets(f, 5, month, d, online), d, t0))
	swapped := *good
	swapped.Release = doc(f, "stable", "/bin/sh")
	add("stable", 0, nil, &swapped) // release document swapped
	twin := *good
	twin.Targets = bytes.Replace(good.Targets, []byte(`"version": 5`), []byte(`"version": 5, "VERSION": 99999`), 1)
	add("stable", 0, nil, &twin) // one reading: version twice
	cut := *good
	cut.Timestamp = good.Timestamp[:len(good.Timestamp)/2]
	add("stable", 0, nil, &cut) // truncated timestamp
	swap := *good
	swap.Snapshot, swap.Timestamp = good.Timestamp, good.Snapshot
	add("stable", 0, nil, &swap) // roles swapped
	add("stable", 0, nil, &trust.Bundle{})

	f.Fuzz(func(t *testing.T, channel string, floor uint64, newer, timestamp, snapshot, targets, rel []byte) {
		n := &trust.Node{Root: rt1, Now: t0, Channels: &trust.Channels{Format: trust.ChannelsFormat,
			Channels: map[string]trust.Channel{"stable": {MinVersion: floor}, "beta": {}}}}
		b := &trust.Bundle{Timestamp: timestamp, Snapshot: snapshot, Targets: targets, Release: rel}
		chain := [][]byte{rt1}
		if len(newer) > 0 {
			b.Roots = [][]byte{newer}
			chain = append(chain, newer)
		}
		v, err := n.Verify(channel, b)
		if err != nil {
			if v != nil {
				t.Fatalf("Verify returned both %+v and %v", v, err)
			}
			return
		}
		r := v.Release
		if r.Channel != channel {
			t.Fatalf("asked for channel %q, verified a release of %q", channel, r.Channel)
		}
		if min := n.Channels.Channels[channel].MinVersion; r.Version < min {
			t.Fatalf("verified version %d below the floor %d", r.Version, min)
		}
		if !v.Freshness.After(t0) {
			t.Fatalf("verified with freshness ending %s, not after now %s", v.Freshness, t0)
		}
		// The release is the document the signed targets name, byte for byte.
		tm, err := metadata.Targets().FromBytes(targets)
		if err != nil {
			t.Fatalf("Verify accepted targets go-tuf cannot read: %v", err)
		}
		final, err := trust.Chain(chain, t0)
		if err != nil {
			t.Fatalf("Verify accepted a root chain Chain refuses: %v", err)
		}
		if v.RootVersion != final.Signed.Version {
			t.Fatalf("Verify ended on root %d, Chain on %d", v.RootVersion, final.Signed.Version)
		}
		if err := final.VerifyDelegate(metadata.TARGETS, tm); err != nil {
			t.Fatalf("Verify accepted targets the final root's release keys did not sign: %v", err)
		}
		tf := tm.Signed.Targets[release.TargetName]
		sum := sha256.Sum256(rel)
		if len(tm.Signed.Targets) != 1 || tf == nil || tf.Length != int64(len(rel)) || !bytes.Equal(tf.Hashes["sha256"], sum[:]) {
			t.Fatalf("verified release (%d bytes, sha256 %x) is not the one targets names: %+v", len(rel), sum, tm.Signed.Targets)
		}
		if r.Version != uint64(tm.Signed.Version) || !r.Expires.Equal(tm.Signed.Expires) || tm.Signed.IsExpired(t0) {
			t.Fatalf("release version %d expires %s; targets version %d expires %s", r.Version, r.Expires, tm.Signed.Version, tm.Signed.Expires)
		}
		want, err := release.Decode(rel)
		if err != nil {
			t.Fatalf("Verify accepted a release document Decode refuses: %v", err)
		}
		want.Version, want.Expires = r.Version, r.Expires
		if !reflect.DeepEqual(want, r) {
			t.Fatalf("verified release %+v, the document decodes to %+v", r, want)
		}
	})
}

// FuzzChain feeds Chain an initramfs root and one optional newer root. An
// accepted chain ends on a root that passes CheckRoot, has not expired,
// meets its own root threshold, and, when it is the newer one, is version
// first+1 and meets the first root's threshold too.
func FuzzChain(f *testing.F) {
	year := t0.AddDate(1, 0, 0)
	rt1 := root(f, roles1, 1, year, r0, r1)
	roles2 := repo.Roles{Root: pubs(r0, r3, r4), RootThreshold: 2, Targets: pubs(k2), TargetThreshold: 1, Online: pub(online)}
	for _, seed := range [][2][]byte{
		{rt1, nil},
		{rt1, root(f, roles2, 2, year, r0, r1, r3)},
		{rt1, root(f, roles2, 2, year, r3, r4)},                       // only its own keys
		{rt1, root(f, roles2, 2, year, r0, r1)},                       // short of its own threshold
		{rt1, root(f, roles2, 3, year, r0, r1, r3, r4)},               // version skipped
		{rt1, root(f, roles2, 2, t0.Add(-time.Hour), r0, r1, r3, r4)}, // expired
		{root(f, roles1, 1, year, r0), nil},                           // short of threshold
		{root(f, roles1, 1, t0.Add(-time.Hour), r0, r1), nil},         // expired
		{bytes.Replace(rt1, []byte(`"threshold": 2`), []byte(`"threshold": 2, "Threshold": 1`), 1), nil},
		{rt1[:len(rt1)-2], nil},
		{[]byte(`{}`), nil},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		roots := [][]byte{first}
		if len(second) > 0 {
			roots = append(roots, second)
		}
		final, err := trust.Chain(roots, t0)
		if err != nil {
			if final != nil {
				t.Fatalf("Chain returned both a root and %v", err)
			}
			return
		}
		if err := trust.CheckRoot(&final.Signed); err != nil {
			t.Fatalf("Chain ended on a root CheckRoot refuses: %v", err)
		}
		if final.Signed.IsExpired(t0) {
			t.Fatalf("Chain ended on a root that expired at %s", final.Signed.Expires)
		}
		if err := final.VerifyDelegate(metadata.ROOT, final); err != nil {
			t.Fatalf("Chain ended on a root short of its own threshold: %v", err)
		}
		m1, err := metadata.Root().FromBytes(first)
		if err != nil {
			t.Fatalf("Chain accepted a first root go-tuf cannot read: %v", err)
		}
		if err := m1.VerifyDelegate(metadata.ROOT, m1); err != nil {
			t.Fatalf("Chain accepted a first root short of its own threshold: %v", err)
		}
		switch final.Signed.Version {
		case m1.Signed.Version:
		case m1.Signed.Version + 1:
			if err := m1.VerifyDelegate(metadata.ROOT, final); err != nil {
				t.Fatalf("Chain accepted root %d not signed by root %d's threshold: %v", final.Signed.Version, m1.Signed.Version, err)
			}
		default:
			t.Fatalf("Chain went from root %d to %d in one step", m1.Signed.Version, final.Signed.Version)
		}
	})
}

// FuzzParseChannels: ParseChannels either refuses the bytes or returns
// channels that validate, survive a round trip unchanged, and each of
// which Pick accepts.
func FuzzParseChannels(f *testing.F) {
	for _, s := range []string{
		`{"format":"zeroboot-channels/1","channels":{"stable":{"min_version":3}}}`,
		`{"format":"zeroboot-channels/1","channels":{"stable":{"min_version":3},"beta":{}}}`,
		`{"format":"zeroboot-channels/1","channels":{}}`,
		`{"format":"zeroboot-channels/2","channels":{"stable":{}}}`,
		`{"format":"zeroboot-channels/1","channels":{"Stable":{}}}`,
		`{"format":"zeroboot-channels/1","channels":{"stable":{"min_version":3,"MIN_VERSION":0}}}`,
		`{"format":"zeroboot-channels/1","channels":{"stable":{}},"channels":{"evil":{}}}`,
		`{"format":"zeroboot-channels/1","channels":{"stable":{"min_version":-1}}}`,
		`{"format":"zeroboot-channels/1","channels":{"stable":{}}} {}`,
		`{"format":"zeroboot-channels/1","channels":{"stable":{"min_version":18446744073709551615}},"extra":1}`,
		`{"format":"zeroboot-channels/1","channels":{"a/b":{}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := trust.ParseChannels(b)
		if err != nil {
			if c != nil {
				t.Fatalf("ParseChannels returned both %+v and %v", c, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseChannels returned channels that do not validate: %v", err)
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := trust.ParseChannels(again)
		if err != nil {
			t.Fatalf("re-encoded channels %s refused: %v", again, err)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the channels: %+v, then %+v", c, c2)
		}
		for _, name := range c.Names() {
			if got, err := c.Pick(name, ""); got != name || err != nil {
				t.Fatalf("Pick(%q) = %q, %v", name, got, err)
			}
		}
	})
}
