package trust_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/repo"
	"github.com/zeroboot/zeroboot/pkg/trust"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// key returns deterministic test keys so failures reproduce.
func key(i byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{i + 1}, 32)) }

func pub(i byte) ed25519.PublicKey { return key(i).Public().(ed25519.PublicKey) }

// Key numbers: 0-2 root, 3-4 release, 5 online, 6-7 rotated root, 8
// rotated release, 9 a stranger.
const (
	r0, r1, r2, k0, k1, online, r3, r4, k2, stranger = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
)

func pubs(ids ...byte) []ed25519.PublicKey {
	var out []ed25519.PublicKey
	for _, i := range ids {
		out = append(out, pub(i))
	}
	return out
}

func keys(ids ...byte) []ed25519.PrivateKey {
	var out []ed25519.PrivateKey
	for _, i := range ids {
		out = append(out, key(i))
	}
	return out
}

// signed signs m by signers and encodes it.
func signed[T metadata.Roles](t testing.TB, m *metadata.Metadata[T], err error, signers ...byte) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Sign(m, keys(signers...)...); err != nil {
		t.Fatal(err)
	}
	b, err := repo.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func root(t testing.TB, r repo.Roles, version int64, expires time.Time, signers ...byte) []byte {
	t.Helper()
	m, err := repo.NewRoot(r, version, expires)
	return signed(t, m, err, signers...)
}

var roles1 = repo.Roles{Root: pubs(r0, r1, r2), RootThreshold: 2, Targets: pubs(k0, k1), TargetThreshold: 1, Online: pub(online)}

func doc(t testing.TB, channel, entry string) []byte {
	t.Helper()
	r := &release.Release{Format: release.Format, Channel: channel,
		Components: []release.Component{{Name: "core0", Flist: digest.Of([]byte(entry)), Mount: "/"}},
		Entrypoint: release.Entrypoint{Path: entry}}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func targets(t testing.TB, version int64, expires time.Time, d []byte, signers ...byte) []byte {
	t.Helper()
	m, err := repo.NewTargets(version, expires, d)
	return signed(t, m, err, signers...)
}

// bundle is a channel's metadata as an honest registry serves it at now.
func bundle(t testing.TB, tg, d []byte, now time.Time) *trust.Bundle {
	t.Helper()
	f := repo.Freshness{Key: key(online), Window: time.Hour}
	s, ts, err := f.Sign(tg, now.Unix(), now)
	if err != nil {
		t.Fatal(err)
	}
	return &trust.Bundle{Timestamp: ts, Snapshot: s, Targets: tg, Release: d}
}

func node(root []byte, floor uint64, now time.Time) *trust.Node {
	return &trust.Node{Root: root, Now: now, Channels: &trust.Channels{Format: trust.ChannelsFormat,
		Channels: map[string]trust.Channel{"stable": {MinVersion: floor}, "beta": {}}}}
}

func TestVerifyAccepts(t *testing.T) {
	rt := root(t, roles1, 1, t0.AddDate(1, 0, 0), r0, r1)
	d := doc(t, "stable", "/bin/core0")
	v, err := node(rt, 5, t0).Verify("stable", bundle(t, targets(t, 5, t0.AddDate(0, 0, 30), d, k0), d, t0))
	if err != nil {
		t.Fatal(err)
	}
	if v.Release.Version != 5 || v.Release.Entrypoint.Path != "/bin/core0" || v.RootVersion != 1 || !v.Freshness.Equal(t0.Add(time.Hour)) {
		t.Fatalf("verified %+v, release %+v", v, v.Release)
	}
}

// TestAttacks is the threat model's table: each row is one attack and the
// words of its refusal.
func TestAttacks(t *testing.T) {
	rt := root(t, roles1, 1, t0.AddDate(1, 0, 0), r0, r1)
	month := t0.AddDate(0, 0, 30)
	d := doc(t, "stable", "/bin/core0")
	good := func() *trust.Bundle { return bundle(t, targets(t, 5, month, d, k0), d, t0) }
	for _, tc := range []struct {
		name    string
		node    *trust.Node
		channel string
		b       func() *trust.Bundle
		want    string
	}{
		{"arbitrary software: unknown key", node(rt, 0, t0), "stable",
			func() *trust.Bundle { return bundle(t, targets(t, 5, month, d, stranger), d, t0) }, "targets"},
		{"arbitrary software: unsigned", node(rt, 0, t0), "stable",
			func() *trust.Bundle { return bundle(t, targets(t, 5, month, d), d, t0) }, "signatures"},
		{"arbitrary software: registry signs a release with its online key", node(rt, 0, t0), "stable",
			func() *trust.Bundle { return bundle(t, targets(t, 5, month, d, online), d, t0) }, "targets"},
		{"release document swapped (mix-and-match)", node(rt, 0, t0), "stable",
			func() *trust.Bundle { b := good(); b.Release = doc(t, "stable", "/bin/sh"); return b }, "does not match targets"},
		{"release of another channel", node(rt, 0, t0), "stable",
			func() *trust.Bundle {
				bd := doc(t, "beta", "/bin/core0")
				return bundle(t, targets(t, 9, month, bd, k0), bd, t0)
			}, `release is for channel "beta"`},
		{"channel the node does not accept", node(rt, 0, t0), "nightly", good, `channel "nightly" is not one this node accepts`},
		{"rollback below the floor", node(rt, 6, t0), "stable", good, "below this node's floor 6 (rollback refused)"},
		{"freeze: stale timestamp replayed", node(rt, 0, t0.Add(2*time.Hour)), "stable", good, "freshness signature is stale"},
		{"freeze: expired release", node(rt, 0, month.Add(time.Hour)), "stable",
			func() *trust.Bundle { return bundle(t, targets(t, 5, month, d, k0), d, month) }, "expired"},
		{"snapshot names other targets", node(rt, 0, t0), "stable",
			func() *trust.Bundle {
				b := good()
				b.Targets = targets(t, 4, month, d, k0) // an older, validly signed targets
				return b
			}, "version"},
		{"endless data", node(rt, 0, t0), "stable",
			func() *trust.Bundle {
				b := good()
				b.Targets = append(bytes.Repeat([]byte(" "), 600<<10), b.Targets...)
				return b
			}, "at most"},
		{"withdrawn", node(rt, 0, t0), "stable",
			func() *trust.Bundle { return bundle(t, targets(t, 6, month, nil, k0), d, t0) }, "withdrew"},
		{"one reading: version twice", node(rt, 0, t0), "stable",
			func() *trust.Bundle {
				b := good()
				b.Targets = bytes.Replace(b.Targets, []byte(`"version": 5`), []byte(`"version": 5, "VERSION": 99999`), 1)
				return b
			}, "differ only in case"},
		{"one signature counted twice", node(rt, 0, t0), "stable",
			func() *trust.Bundle {
				b := good()
				m, _ := metadata.Targets().FromBytes(b.Targets)
				m.Signatures = append(m.Signatures, m.Signatures[0])
				b.Targets, _ = repo.Encode(m)
				return b
			}, "multiple signatures"},
		{"signature with unreduced S", node(rt, 0, t0), "stable",
			func() *trust.Bundle {
				m, _ := metadata.Targets().FromBytes(targets(t, 5, month, d, k0))
				m.Signatures[0].Signature = append(m.Signatures[0].Signature[:32:32], bytes.Repeat([]byte{0xff}, 32)...)
				tb, _ := repo.Encode(m)
				return bundle(t, tb, d, t0)
			}, "S is not reduced"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := tc.node.Verify(tc.channel, tc.b())
			if err == nil {
				t.Fatalf("Verify accepted %+v", v.Release)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestRootRotation(t *testing.T) {
	year := t0.AddDate(1, 0, 0)
	month := t0.AddDate(0, 0, 30)
	rt1 := root(t, roles1, 1, year, r0, r1)
	// Root 2 replaces root keys r1, r2 by r3, r4 and revokes release key
	// k0 for k2. It must be signed by 2 of root 1's keys and 2 of its own.
	roles2 := repo.Roles{Root: pubs(r0, r3, r4), RootThreshold: 2, Targets: pubs(k2), TargetThreshold: 1, Online: pub(online)}
	rt2 := root(t, roles2, 2, year, r0, r1, r3)
	d := doc(t, "stable", "/bin/core0")
	withRoots := func(b *trust.Bundle, roots ...[]byte) *trust.Bundle { b.Roots = roots; return b }

	v, err := node(rt1, 0, t0).Verify("stable", withRoots(bundle(t, targets(t, 5, month, d, k2), d, t0), rt2))
	if err != nil {
		t.Fatalf("release by the new release key after rotation: %v", err)
	}
	if v.RootVersion != 2 || v.RootsWalked != 1 {
		t.Fatalf("verified under root %d after %d rotations, want 2 after 1", v.RootVersion, v.RootsWalked)
	}
	for _, tc := range []struct {
		name string
		b    *trust.Bundle
		want string
	}{
		{"key revoked by the newer root", withRoots(bundle(t, targets(t, 5, month, d, k0), d, t0), rt2), "targets"},
		{"new key without the newer root", bundle(t, targets(t, 5, month, d, k2), d, t0), "targets"},
		{"newer root signed only by its own keys", withRoots(bundle(t, targets(t, 5, month, d, k2), d, t0), root(t, roles2, 2, year, r3, r4)), "root version 2"},
		{"newer root short of its own threshold", withRoots(bundle(t, targets(t, 5, month, d, k2), d, t0), root(t, roles2, 2, year, r0, r1)), "root version 2"},
		{"root version skipped", withRoots(bundle(t, targets(t, 5, month, d, k2), d, t0), root(t, roles2, 3, year, r0, r1, r3, r4)), "version"},
		{"final root expired", withRoots(bundle(t, targets(t, 5, month, d, k2), d, t0), root(t, roles2, 2, t0.Add(-time.Hour), r0, r1, r3, r4)), "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := node(rt1, 0, t0).Verify("stable", tc.b)
			if err == nil {
				t.Fatalf("Verify accepted %+v", v.Release)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify error %q, want it to contain %q", err, tc.want)
			}
		})
	}
	// An expired intermediate root is fine when the chain goes on to a
	// current one (TUF 5.3.7): nodes built long ago still catch up.
	rt2old := root(t, roles2, 2, t0.Add(-time.Hour), r0, r1, r3, r4)
	rt3 := root(t, roles2, 3, year, r0, r3)
	if _, err := node(rt1, 0, t0).Verify("stable", withRoots(bundle(t, targets(t, 5, month, d, k2), d, t0), rt2old, rt3)); err != nil {
		t.Fatalf("chain through an expired intermediate root: %v", err)
	}
}

// TestSmallOrderKeys is the forgery the review found: two encodings of the
// identity point as root keys with threshold 2, and the signature R =
// identity, S = 0, which crypto/ed25519 accepts for any message.
func TestSmallOrderKeys(t *testing.T) {
	identity := make([]byte, 32)
	identity[0] = 1
	nonCanonical := bytes.Repeat([]byte{0xff}, 32) // y = p + 1 = 1 (mod p), not reduced
	nonCanonical[0], nonCanonical[31] = 0xee, 0x7f
	forged := append(bytes.Clone(identity), make([]byte, 32)...)
	if !ed25519.Verify(identity, []byte("any payload"), forged) {
		t.Fatal("crypto/ed25519 refuses the identity signature; this test no longer shows the attack")
	}
	for _, tc := range []struct {
		name string
		keys [][]byte
		want string
	}{
		{"identity point", [][]byte{identity}, "small order"},
		{"non-canonical identity", [][]byte{nonCanonical}, "non-canonical"},
		{"both, threshold 2", [][]byte{identity, nonCanonical}, "ed25519 public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metadata.Root(t0.AddDate(1, 0, 0))
			for _, kb := range tc.keys {
				k := &metadata.Key{Type: metadata.KeyTypeEd25519, Scheme: metadata.KeySchemeEd25519, Value: metadata.KeyVal{PublicKey: hex.EncodeToString(kb)}}
				for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
					if err := m.Signed.AddKey(k, role); err != nil {
						t.Fatal(err)
					}
				}
				id, _ := k.ID()
				m.Signatures = append(m.Signatures, metadata.Signature{KeyID: id, Signature: forged})
			}
			m.Signed.Roles[metadata.ROOT].Threshold = len(tc.keys)
			b, err := repo.Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			d := doc(t, "stable", "/bin/sh")
			_, err = node(b, 0, t0).Verify("stable", &trust.Bundle{Targets: b, Snapshot: b, Timestamp: b, Release: d})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify with a small-order root = %v, want %q", err, tc.want)
			}
			for _, kb := range tc.keys {
				if err := trust.CheckPublicKey(kb); err == nil {
					t.Fatalf("CheckPublicKey(%x) accepted", kb)
				}
			}
			if trust.CheckSignature(forged) == nil {
				t.Fatal("CheckSignature accepted R = identity")
			}
		})
	}
	if err := trust.CheckPublicKey(pub(r0)); err != nil {
		t.Fatalf("CheckPublicKey refuses a real key: %v", err)
	}
}

func TestCheckRoot(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(r *metadata.RootType)
		want string
	}{
		{"threshold 0", func(r *metadata.RootType) { r.Roles[metadata.TARGETS].Threshold = 0 }, "threshold 0"},
		{"threshold above keys", func(r *metadata.RootType) { r.Roles[metadata.ROOT].Threshold = 4 }, "threshold 4 with 3 keys"},
		{"key listed twice", func(r *metadata.RootType) {
			ids := r.Roles[metadata.ROOT].KeyIDs
			r.Roles[metadata.ROOT].KeyIDs = append(ids, ids[0])
		}, "twice"},
		{"key under a foreign ID", func(r *metadata.RootType) {
			for id, k := range r.Keys {
				r.Keys[strings.Repeat("a", 64)] = k
				delete(r.Keys, id)
				r.Roles[metadata.ROOT].KeyIDs = []string{strings.Repeat("a", 64)}
				r.Roles[metadata.ROOT].Threshold = 1
				break
			}
		}, "has key ID"},
		{"missing role", func(r *metadata.RootType) { delete(r.Roles, metadata.SNAPSHOT) }, "roles"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := repo.NewRoot(roles1, 1, t0.AddDate(1, 0, 0))
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(&m.Signed)
			if err := trust.CheckRoot(&m.Signed); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckRoot = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestChannelsPick(t *testing.T) {
	c := node(nil, 0, t0).Channels
	for _, tc := range []struct{ asked, offered, want, err string }{
		{"stable", "", "stable", ""},
		{"", "beta", "beta", ""},
		{"", "nightly", "", "from the registry"},
		{"nightly", "", "", "from zeroboot.channel"},
		{"stable", "beta", "", `registry answered for channel "beta"`},
		{"", "", "", "no channel chosen"},
	} {
		got, err := c.Pick(tc.asked, tc.offered)
		if got != tc.want || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Pick(%q, %q) = %q, %v; want %q, %q", tc.asked, tc.offered, got, err, tc.want, tc.err)
		}
	}
	one := &trust.Channels{Format: trust.ChannelsFormat, Channels: map[string]trust.Channel{"stable": {}}}
	if got, err := one.Pick("", ""); got != "stable" || err != nil {
		t.Errorf("a node with one channel picks %q, %v", got, err)
	}
}

func TestParseChannels(t *testing.T) {
	if _, err := trust.ParseChannels([]byte(`{"format":"zeroboot-channels/1","channels":{"stable":{"min_version":3}}}`)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"format":"zeroboot-channels/1","channels":{}}`,
		`{"format":"zeroboot-channels/2","channels":{"stable":{}}}`,
		`{"format":"zeroboot-channels/1","channels":{"Stable":{}}}`,
		`{"format":"zeroboot-channels/1","channels":{"stable":{"min_version":3,"MIN_VERSION":0}}}`,
		`{"format":"zeroboot-channels/1","channels":{"stable":{}},"channels":{"evil":{}}}`,
	} {
		if _, err := trust.ParseChannels([]byte(bad)); err == nil {
			t.Errorf("ParseChannels(%s) accepted", bad)
		}
	}
}

// TestFastForwardLocksNothing: a registry holding the online key can sign
// freshness with an absurd version (TUF's fast-forward attack), but a node
// keeps no version between boots, so the honest registry's next answer,
// with an ordinary version, is accepted by the same node.
func TestFastForwardLocksNothing(t *testing.T) {
	rt := root(t, roles1, 1, t0.AddDate(1, 0, 0), r0, r1)
	d := doc(t, "stable", "/bin/core0")
	tg := targets(t, 5, t0.AddDate(0, 0, 30), d, k0)
	f := repo.Freshness{Key: key(online), Window: time.Hour}
	n := node(rt, 0, t0)
	for _, version := range []int64{1 << 62, 1} {
		s, ts, err := f.Sign(tg, version, t0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Verify("stable", &trust.Bundle{Timestamp: ts, Snapshot: s, Targets: tg, Release: d}); err != nil {
			t.Fatalf("freshness version %d: %v", version, err)
		}
	}
}
