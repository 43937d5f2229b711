package main

import (
	"slices"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/registry"
)

func TestFilterNodes(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	nodes := []registry.Node{
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
