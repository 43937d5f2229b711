// Package timeline records when each boot step starts and ends, on the
// monotonic clock, so that a wall-clock jump (PID 1 sets the time during
// boot) never distorts the figures.
package timeline

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/zeroboot/zeroboot/pkg/console"
)

// Bounds: a node that retries for days keeps a timeline of fixed size. The
// first KeepFirst steps (the boot up to the first failures) always stay;
// past MaxSteps the oldest of the rest go. An error is kept to MaxErrorLen.
const (
	MaxSteps    = 128
	KeepFirst   = 16
	MaxErrorLen = 512
)

// Step is one finished or running step. Times are milliseconds since the
// timeline started (PID 1's start). EndMS is 0 while the step runs. The
// boot's shares before PID 1 (firmware, kernel: pkg/boottime) are steps
// with negative times, the last of them ending at 0.
type Step struct {
	Name    string  `json:"name"`
	StartMS float64 `json:"start_ms"`
	EndMS   float64 `json:"end_ms"`
	Error   string  `json:"error,omitempty"`
}

// Running is whether the step has not ended. A step that began before
// PID 1 has ended, at 0 at the latest.
func (s Step) Running() bool { return s.EndMS == 0 && s.StartMS >= 0 }

// Duration of a finished step.
func (s Step) Duration() time.Duration {
	return time.Duration((s.EndMS - s.StartMS) * float64(time.Millisecond))
}

// Timeline is safe for concurrent use.
type Timeline struct {
	start time.Time
	// Now is the clock; tests swap it. It must carry a monotonic reading.
	Now     func() time.Time
	mu      sync.Mutex
	steps   []*Step
	prior   int // steps[:prior] are from before PID 1 (Before)
	dropped int
}

// New starts a timeline at start (time.Now() at PID 1's entry).
func New(start time.Time) *Timeline { return &Timeline{start: start, Now: time.Now} }

// Start is the instant the timeline counts from.
func (t *Timeline) Start() time.Time { return t.start }

func (t *Timeline) since() float64 {
	return float64(t.Now().Sub(t.start).Microseconds()) / 1000
}

// Begin records the start of a step and returns the function that ends it.
// Ending with a non-nil error records the error; ending twice keeps the
// first end.
func (t *Timeline) Begin(name string) (end func(err error)) {
	t.mu.Lock()
	s := &Step{Name: name, StartMS: t.since()}
	t.steps = append(t.steps, s)
	if len(t.steps) > MaxSteps {
		keep := t.prior + KeepFirst
		t.steps = append(t.steps[:keep], t.steps[keep+1:]...)
		t.dropped++
	}
	t.mu.Unlock()
	return func(err error) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if s.EndMS != 0 {
			return
		}
		s.EndMS = t.since()
		if err != nil {
			// Clipped and made safe for a terminal once, here: the
			// timeline is printed and sent as it is stored.
			s.Error = console.Sanitize(err.Error(), MaxErrorLen)
		}
	}
}

// Before records steps that ended before PID 1 started (negative times,
// pkg/boottime): they go first, in the order given, count towards
// MaxSteps and are never dropped to keep the timeline bounded. Steps that start at or after 0 are
// refused, so that PID 1's own steps stay PID 1's.
func (t *Timeline) Before(steps ...Step) error {
	for _, s := range steps {
		if s.StartMS >= 0 || s.EndMS > 0 || s.EndMS < s.StartMS {
			return fmt.Errorf("timeline: step %q (%.1f to %.1f ms) is not before PID 1's start", s.Name, s.StartMS, s.EndMS)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	prior := make([]*Step, len(steps))
	for i := range steps {
		s := steps[i]
		prior[i] = &s
	}
	t.steps = append(prior, t.steps...)
	t.prior += len(prior)
	return nil
}

// Steps returns a copy of the steps kept, in start order.
func (t *Timeline) Steps() []Step {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Step, len(t.steps))
	for i, s := range t.steps {
		out[i] = *s
	}
	return out
}

// Dropped is how many steps were let go to keep the timeline bounded.
func (t *Timeline) Dropped() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dropped
}

// Table renders steps as a fixed-width console table.
func Table(steps []Step) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-14s %10s %10s %10s  %s\n", "STEP", "START ms", "END ms", "TOOK ms", "RESULT")
	for _, s := range steps {
		result := "ok"
		end, took := fmt.Sprintf("%10.1f", s.EndMS), fmt.Sprintf("%10.1f", s.EndMS-s.StartMS)
		switch {
		case s.Running():
			result, end, took = "running", fmt.Sprintf("%10s", "-"), fmt.Sprintf("%10s", "-")
		case s.Error != "":
			result = "failed: " + s.Error
		}
		fmt.Fprintf(&b, "%-14s %10.1f %s %s  %s\n", s.Name, s.StartMS, end, took, result)
	}
	return b.String()
}
