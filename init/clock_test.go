package main

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/clock"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/repo"
	"github.com/zeroboot/zeroboot/pkg/trust"
)

// signedChannel is a root and a stable release whose freshness was signed
// at signedAt for an hour.
func signedChannel(t *testing.T, signedAt time.Time) ([]byte, *trust.Bundle) {
	t.Helper()
	var k [3]ed25519.PrivateKey
	for i := range k {
		_, k[i], _ = repo.GenerateKey()
	}
	pub := func(i int) []ed25519.PublicKey { return []ed25519.PublicKey{k[i].Public().(ed25519.PublicKey)} }
	rm, err := repo.NewRoot(repo.Roles{Root: pub(0), RootThreshold: 1, Targets: pub(1), TargetThreshold: 1, Online: pub(2)[0]}, 1, signedAt.AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := (&release.Release{Format: release.Format, Channel: "stable",
		Components: []release.Component{{Name: "c", Flist: digest.Of([]byte("c")), Mount: "/"}},
		Entrypoint: release.Entrypoint{Path: "/bin/core0"}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := repo.NewTargets(1, signedAt.AddDate(0, 0, 30), doc)
	if err != nil {
		t.Fatal(err)
	}
	if repo.Sign(rm, k[0]) != nil || repo.Sign(tm, k[1]) != nil {
		t.Fatal("sign")
	}
	root, _ := repo.Encode(rm)
	targets, _ := repo.Encode(tm)
	f := repo.Freshness{Key: k[2], Window: time.Hour}
	snap, ts, err := f.Sign(targets, 1, signedAt)
	if err != nil {
		t.Fatal(err)
	}
	return root, &trust.Bundle{Timestamp: ts, Snapshot: snap, Targets: targets, Release: doc}
}

// TestRegistryDateNeedsItsOwnFreshness: a registry's Date moves the clock
// only when the answer's signed freshness holds at that Date. A replica
// replaying an hour-old answer while claiming a time a month ahead moves
// nothing; an honest registry ten minutes ahead of the clock moves it.
func TestRegistryDateNeedsItsOwnFreshness(t *testing.T) {
	build := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		signedAt  time.Time
		date      time.Time
		wantClock time.Time
		wantErr   string
	}{
		{"honest, ten minutes ahead", build, build.Add(10 * time.Minute), build.Add(10 * time.Minute), ""},
		{"liar, a month ahead with an old answer", build, build.AddDate(0, 1, 0), build, "expired"},
		{"not ahead", build, build, build, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, _, _ := testNode(t)
			now := build
			n.clock = &clock.Clock{Now: func() time.Time { return now }, Set: func(t time.Time) error { now = t; return nil }, BuildTime: build.Add(-time.Hour)}
			root, b := signedChannel(t, tc.signedAt)
			chans := &trust.Channels{Format: trust.ChannelsFormat, Channels: map[string]trust.Channel{"stable": {}}}
			resp := &registry.BootResponse{TUF: b, Date: tc.date, ChainEnd: build.AddDate(5, 0, 0), Registry: "https://192.0.2.2:8443"}
			_, err := n.verifyAt(&trust.Node{Root: root, Channels: chans}, "stable", resp)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("verifyAt = %v, want error %q", err, tc.wantErr)
			}
			if !now.Equal(tc.wantClock) {
				t.Fatalf("clock %s, want %s", now, tc.wantClock)
			}
		})
	}
}
