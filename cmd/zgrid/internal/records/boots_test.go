package records_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

// TestPushBoot: the current boot goes to the front of the history, which
// keeps KeepBoots, and keeps each step's text within its bounds.
func TestPushBoot(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var n records.Node
	n.PushBoot()
	if len(n.Boots) != 0 {
		t.Fatalf("a node never answered a boot has a history: %+v", n.Boots)
	}
	for i := 1; i <= records.KeepBoots+3; i++ {
		n.ReleaseServed, n.ReleaseReported, n.BootAt, n.State = uint64(i), uint64(i), t0.Add(time.Duration(i)*time.Hour), "ready"
		n.Timeline = []timeline.Step{{Name: fmt.Sprint("step", i), StartMS: 0, EndMS: float64(i)}}
		n.PushBoot()
	}
	if len(n.Boots) != records.KeepBoots {
		t.Fatalf("%d boots kept, want %d", len(n.Boots), records.KeepBoots)
	}
	for i, b := range n.Boots {
		v := uint64(records.KeepBoots + 3 - i) // newest first
		if b.Release != v || b.Reported != v || !b.At.Equal(t0.Add(time.Duration(v)*time.Hour)) || b.Timeline[0].Name != fmt.Sprint("step", v) || b.Reached() != float64(v) {
			t.Errorf("boot %d: %+v, want release %d", i, b, v)
		}
	}

	long := strings.Repeat("é", records.MaxKeptStepName) // 2 bytes each
	n.Timeline = []timeline.Step{{Name: long, Error: strings.Repeat("x", 4*records.MaxKeptStepError)}}
	n.PushBoot()
	s := n.Boots[0].Timeline[0]
	if len(s.Name) > records.MaxKeptStepName || !utf8.ValidString(s.Name) || !strings.HasPrefix(long, s.Name) || len(s.Name) < records.MaxKeptStepName-1 {
		t.Errorf("kept step name %q (%d bytes): want a valid prefix of at most %d bytes", s.Name, len(s.Name), records.MaxKeptStepName)
	}
	if len(s.Error) != records.MaxKeptStepError {
		t.Errorf("kept step error of %d bytes, want %d", len(s.Error), records.MaxKeptStepError)
	}
	if n.Timeline[0].Name != long {
		t.Errorf("PushBoot changed the current timeline")
	}
}

func TestWithoutBoots(t *testing.T) {
	ns := []records.Node{{ID: "a", Boots: []records.Boot{{Release: 1}}}, {ID: "b"}}
	for _, n := range records.WithoutBoots(ns) {
		if n.Boots != nil {
			t.Errorf("node %s listed with its boots", n.ID)
		}
	}
}
