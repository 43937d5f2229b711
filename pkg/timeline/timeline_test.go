package timeline

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestBeginEnd(t *testing.T) {
	t0 := time.Now()
	now := t0
	tl := New(t0)
	tl.Now = func() time.Time { return now }

	now = t0.Add(10 * time.Millisecond)
	endA := tl.Begin("mount")
	now = t0.Add(25 * time.Millisecond)
	endA(nil)
	endB := tl.Begin("network")
	now = t0.Add(100 * time.Millisecond)
	endB(errors.New("no carrier"))
	endB(nil) // second end is ignored
	tl.Begin("registry")

	got := tl.Steps()
	want := []Step{
		{Name: "mount", StartMS: 10, EndMS: 25},
		{Name: "network", StartMS: 25, EndMS: 100, Error: "no carrier"},
		{Name: "registry", StartMS: 100},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d steps, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if d := got[1].Duration(); d != 75*time.Millisecond {
		t.Errorf("Duration = %v", d)
	}
	table := Table(got)
	for _, s := range []string{"mount", "failed: no carrier", "running", "75.0"} {
		if !strings.Contains(table, s) {
			t.Errorf("table lacks %q:\n%s", s, table)
		}
	}
}
