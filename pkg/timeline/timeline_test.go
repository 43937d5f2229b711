package timeline

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
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

func TestBoundedForLongOutages(t *testing.T) {
	tl := New(time.Now())
	for i := 0; i < 10*MaxSteps; i++ {
		tl.Begin(fmt.Sprint("step", i))(errors.New(strings.Repeat("é", MaxErrorLen)))
	}
	steps := tl.Steps()
	if len(steps) != MaxSteps || tl.Dropped() != 9*MaxSteps {
		t.Fatalf("%d steps kept, %d dropped; want %d and %d", len(steps), tl.Dropped(), MaxSteps, 9*MaxSteps)
	}
	if steps[0].Name != "step0" || steps[KeepFirst-1].Name != fmt.Sprint("step", KeepFirst-1) {
		t.Errorf("the first %d steps must stay: %s ... %s", KeepFirst, steps[0].Name, steps[KeepFirst-1].Name)
	}
	if last := steps[len(steps)-1].Name; last != fmt.Sprint("step", 10*MaxSteps-1) {
		t.Errorf("last step %s, want the latest", last)
	}
	for _, s := range steps {
		if len(s.Error) > MaxErrorLen+len("...") || !utf8.ValidString(s.Error) {
			t.Fatalf("error of %d bytes (valid UTF-8: %v)", len(s.Error), utf8.ValidString(s.Error))
		}
	}
}
