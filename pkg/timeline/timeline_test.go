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

// The shares before PID 1 come first, have ended (the last at 0), stay
// when a long outage drops PID 1's steps, and nothing starting at or after
// PID 1's start is taken as one of them.
func TestBefore(t *testing.T) {
	tl := New(time.Now())
	tl.Begin("mount")(nil)
	prior := []Step{{Name: "firmware (TSC)", StartMS: -3000, EndMS: -1200}, {Name: "kernel", StartMS: -1200, EndMS: 0}}
	if err := tl.Before(prior...); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2*MaxSteps; i++ {
		tl.Begin(fmt.Sprint("step", i))(nil)
	}
	steps := tl.Steps()
	if len(steps) != MaxSteps {
		t.Fatalf("%d steps kept, want %d", len(steps), MaxSteps)
	}
	if steps[0] != prior[0] || steps[1] != prior[1] || steps[2].Name != "mount" {
		t.Fatalf("first steps %v, want %v then mount", steps[:3], prior)
	}
	if steps[KeepFirst+1].Name != fmt.Sprint("step", KeepFirst-2) {
		t.Errorf("the first %d of PID 1's steps must stay, got %s at %d", KeepFirst, steps[KeepFirst+1].Name, KeepFirst+1)
	}
	table := Table(steps[:3])
	for _, want := range []string{"firmware (TSC)    -3000.0    -1200.0     1800.0  ok", "kernel            -1200.0        0.0     1200.0  ok"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	for _, bad := range []Step{
		{Name: "at PID 1", StartMS: 0, EndMS: 0},
		{Name: "after", StartMS: 5, EndMS: 10},
		{Name: "ends after PID 1", StartMS: -5, EndMS: 1},
		{Name: "backwards", StartMS: -5, EndMS: -10},
	} {
		if err := New(time.Now()).Before(bad); err == nil {
			t.Errorf("%s (%v to %v) accepted", bad.Name, bad.StartMS, bad.EndMS)
		}
	}
}

func TestRunning(t *testing.T) {
	for _, c := range []struct {
		s    Step
		want bool
	}{
		{Step{StartMS: 10}, true},
		{Step{StartMS: 10, EndMS: 20}, false},
		{Step{StartMS: -1200, EndMS: 0}, false},
	} {
		if got := c.s.Running(); got != c.want {
			t.Errorf("%+v: Running %v, want %v", c.s, got, c.want)
		}
	}
}
