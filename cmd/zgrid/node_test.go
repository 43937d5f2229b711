package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

func TestFilterNodes(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	nodes := []records.Node{
		{ID: "a", Farm: "lab", State: registry.StateReady, LastSeen: now.Add(-time.Minute)},
		{ID: "b", Farm: "lab", State: registry.StateFailed, LastSeen: now.Add(-time.Hour)},
		{ID: "c", Farm: "edge", State: registry.StateFailed, LastSeen: now.Add(-2 * time.Minute)},
		{ID: "d", Farm: "edge", State: registry.StateBooting, LastSeen: now},
	}
	for _, tc := range []struct {
		farm, state string
		within      time.Duration
		want        []string
	}{
		{"", "", 0, []string{"b", "c", "a", "d"}}, // failed first
		{"lab", "", 0, []string{"b", "a"}},
		{"", registry.StateFailed, 0, []string{"b", "c"}},
		{"", "", 5 * time.Minute, []string{"c", "a", "d"}},
		{"edge", registry.StateReady, 0, nil},
	} {
		var got []string
		for _, n := range filterNodes(nodes, tc.farm, tc.state, tc.within, now) {
			got = append(got, n.ID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("farm %q state %q within %s: %v, want %v", tc.farm, tc.state, tc.within, got, tc.want)
		}
	}
}

func TestPrintServices(t *testing.T) {
	var b strings.Builder
	printServices(&b, []registry.ServiceState{
		{Name: "db", State: "ready", Since: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), Output: []string{"listening"}},
		{Name: "api", State: "crash-looping", Restarts: 5, Reason: "exit status 1", Output: []string{"bind :8080: \x1b[31maddress in use"}},
		{Name: "log", State: "waiting", Optional: true},
	})
	got := b.String()
	for _, want := range []string{
		"db               ready                 0  2026-12-02T10:00:00Z  -\n",
		"api              crash-looping         5  -                     exit status 1\n",
		"log (opt)        waiting               0  -                     -\n",
		"last output of api:\n  bind :8080: ?[31maddress in use\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "listening") || strings.Contains(got, "\x1b") {
		t.Errorf("shows a ready service's output or a raw escape:\n%s", got)
	}
}

// TestPrintBoots: one line per earlier boot, then the timelines asked
// for, the node's text made safe for a terminal.
func TestPrintBoots(t *testing.T) {
	at := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	boots := []records.Boot{
		{At: at, Release: 7, Reported: 6, State: "failed", Reason: "mount: \x1b[2Jgone", Timeline: []timeline.Step{{Name: "fetch\x1b]0;x\a", StartMS: 5, EndMS: 1500, Error: "hash \x1b[31mmismatch"}}},
		{Release: 6, State: "ready"},
	}
	for _, tc := range []struct {
		timelines int
		want      []string
		wantNot   []string
	}{
		{0, []string{
			"2026-12-04T09:00:00Z  7 (runs 6)  failed        1500  mount: ?[2Jgone\n",
			"-                           6  ready            -  -\n",
		}, []string{"STEP"}},
		{2, []string{"boot of 2026-12-04T09:00:00Z, release 7:\n", "fetch?]0;x?", "failed: hash ?[31mmismatch"}, []string{"release 6:"}},
	} {
		var b strings.Builder
		printBoots(&b, boots, tc.timelines)
		got := b.String()
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("timelines %d: output lacks %q:\n%s", tc.timelines, w, got)
			}
		}
		for _, w := range append(tc.wantNot, "\x1b", "\a") {
			if strings.Contains(got, w) {
				t.Errorf("timelines %d: output has %q:\n%s", tc.timelines, w, got)
			}
		}
	}
}
