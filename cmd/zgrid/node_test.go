package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/registry"
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
