package supervise

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"golang.org/x/sys/unix"
)

// fakeClock moves only when told: Advance fires the timers it passes.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := fakeTimer{at: f.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- f.now
		return t.ch
	}
	f.timers = append(f.timers, t)
	return t.ch
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	left := f.timers[:0]
	for _, t := range f.timers {
		if t.at.After(f.now) {
			left = append(left, t)
			continue
		}
		t.ch <- f.now
	}
	f.timers = left
}

func (f *fakeClock) pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// clockSleep is a Supervisor.Sleep that records each backoff wait and
// passes it on the fake clock at once; it ends Run after max waits.
type clockSleep struct {
	clock  *fakeClock
	max    int
	cancel context.CancelFunc

	mu     sync.Mutex
	delays []time.Duration
}

func (c *clockSleep) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.delays = append(c.delays, d)
	n := len(c.delays)
	c.mu.Unlock()
	if n >= c.max {
		c.cancel()
		return ctx.Err()
	}
	c.clock.Advance(d)
	return nil
}

func (c *clockSleep) got() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.delays...)
}

// messages is a slog handler that keeps every message.
type messages struct {
	mu   sync.Mutex
	msgs []string
}

func (m *messages) Enabled(context.Context, slog.Level) bool { return true }
func (m *messages) WithAttrs([]slog.Attr) slog.Handler       { return m }
func (m *messages) WithGroup(string) slog.Handler            { return m }
func (m *messages) Handle(_ context.Context, r slog.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, r.Message)
	return nil
}

func (m *messages) count(substr string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, s := range m.msgs {
		if strings.Contains(s, substr) {
			n++
		}
	}
	return n
}

// states records the states OnState is told of.
type states struct {
	mu sync.Mutex
	s  []State
}

func (s *states) add(st Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.s = append(s.s, st.State)
}

func (s *states) got() []State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]State(nil), s.s...)
}

func exitWith(script string) func() *exec.Cmd {
	return func() *exec.Cmd { return exec.Command("/bin/sh", "-c", script) }
}

func TestSupervisorCrashLoop(t *testing.T) {
	// Base 1 s doubling to 8 s, jitter pinned near the top: delays of
	// about 1, 2, 4, 8, 8 s, so exits come at about 0, 1, 3, 7, 15 s.
	pol := backoff.Policy{Base: time.Second, Cap: 8 * time.Second, Rand: func() float64 { return 0.999 }}
	tests := []struct {
		name   string
		exits  int
		window time.Duration
		// loopAt is the exit (0-based) that starts the crash loop, -1 none.
		loopAt int
	}{
		{"3 exits in a minute", 3, time.Minute, 2},
		{"5 exits in a minute", 5, time.Minute, 4},
		{"first exit with 1", 1, time.Minute, 0},
		// Exits 2 s or more apart never make 3 within 2 s.
		{"window too short", 3, 2 * time.Second, -1},
		{"defaults: 5 in 5 minutes", 0, 0, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fc := newFakeClock()
			cs := &clockSleep{clock: fc, max: 8, cancel: cancel}
			msgs := &messages{}
			var seen states
			s := &Supervisor{
				Name: "core0", Reaper: reaper, Command: exitWith("exit 1"),
				Backoff: pol, CrashLoopExits: tc.exits, CrashLoopWindow: tc.window,
				Clock: fc, Sleep: cs.sleep, Log: slog.New(msgs), OnState: seen.add,
			}
			if err := s.Run(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v, want context.Canceled", err)
			}
			delays := cs.got()
			if len(delays) != 8 {
				t.Fatalf("%d delays, want 8", len(delays))
			}
			for i, d := range delays {
				n := i
				if tc.loopAt >= 0 && i >= tc.loopAt {
					n = capAttempt(pol) // crash-looping: the capped delay
				}
				if lo, hi := bounds(pol, n); d < lo || d > hi {
					t.Errorf("delay %d = %v, want attempt %d's [%v, %v]", i, d, n, lo, hi)
				}
			}
			wantLogs := 1
			if tc.loopAt < 0 {
				wantLogs = 0
			}
			if got := msgs.count("is crash-looping"); got != wantLogs {
				t.Errorf("crash loop logged %d times, want %d", got, wantLogs)
			}
			if got := msgs.count("no longer crash-looping"); got != 0 {
				t.Errorf("end of the crash loop logged %d times without a long run", got)
			}
			looping := 0
			for _, st := range seen.got() {
				if st == StateCrashLooping {
					looping++
				}
			}
			if looping != wantLogs {
				t.Errorf("states %v: crash-looping entered %d times, want %d", seen.got(), looping, wantLogs)
			}
			if st := s.Status(); st.State != StateStopped || st.Restarts != 7 || st.LastExit != "exited 1" {
				t.Errorf("Status after Run = %+v, want stopped, 7 restarts, last exit exited 1", st)
			}
		})
	}
}

// TestSupervisorCrashLoopEnds: a run that lasts ResetAfter ends the crash
// loop while it runs, logged once, and the next exit starts the backoff
// over.
func TestSupervisorCrashLoopEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fc := newFakeClock()
	cs := &clockSleep{clock: fc, max: 5, cancel: cancel}
	msgs := &messages{}
	var seen states
	pol := backoff.Policy{Base: time.Second, Cap: 8 * time.Second, Rand: func() float64 { return 0.999 }}
	pids := make(chan int, 4)
	runs := 0
	s := &Supervisor{
		Name: "core0", Reaper: reaper, Backoff: pol, ResetAfter: time.Hour,
		CrashLoopExits: 3, CrashLoopWindow: time.Minute,
		Clock: fc, Sleep: cs.sleep, Log: slog.New(msgs), OnState: seen.add,
		OnStart: func(pid int) { pids <- pid },
		Command: func() *exec.Cmd {
			runs++
			if runs == 4 {
				return exec.Command("/bin/sleep", "30")
			}
			return exec.Command("/bin/sh", "-c", "exit 1")
		},
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-pids
	<-pids
	<-pids
	long := <-pids
	waitComm(t, long, "sleep")
	if st := s.Status(); st.State != StateCrashLooping || st.Pid != long || st.Restarts != 3 {
		t.Fatalf("Status during the fourth run = %+v, want crash-looping, pid %d, 3 restarts", st, long)
	}
	for fc.pending() == 0 { // the ResetAfter timer of the run
		time.Sleep(time.Millisecond)
	}
	fc.Advance(time.Hour)
	deadline := time.Now().Add(10 * time.Second)
	for s.Status().State != StateRunning {
		if time.Now().After(deadline) {
			t.Fatalf("state %v an hour into the run, want running", s.Status().State)
		}
		time.Sleep(time.Millisecond)
	}
	if err := unix.Kill(long, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	d := cs.got()
	wantN := []int{0, 1, capAttempt(pol), 0, 1} // the long run starts over
	for i, n := range wantN {
		if lo, hi := bounds(pol, n); d[i] < lo || d[i] > hi {
			t.Errorf("delay %d = %v, want attempt %d's [%v, %v]", i, d[i], n, lo, hi)
		}
	}
	if a, b := msgs.count("is crash-looping"), msgs.count("no longer crash-looping"); a != 1 || b != 1 {
		t.Errorf("crash loop logged %d times, its end %d times, want once each", a, b)
	}
	want := []State{
		StateStarting, StateRunning, StateStarting, StateRunning, StateStarting, StateRunning,
		StateCrashLooping, // third exit; the fourth run starts in it
		StateRunning,      // an hour into the fourth run
		StateStarting, StateRunning, StateStarting, StateStopped,
	}
	if got := seen.got(); !equalStates(got, want) {
		t.Errorf("states %v, want %v", got, want)
	}
}

func equalStates(a, b []State) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSupervisorNoRestart(t *testing.T) {
	tests := []struct {
		name     string
		scripts  []string // one per run; the last repeats
		restarts int
		waits    int
	}{
		{"first run", []string{"exit 125"}, 0, 0},
		{"after two crashes", []string{"exit 1", "kill -9 $$", "exit 125"}, 2, 2},
		{"after a clean exit", []string{"exit 0", "exit 125"}, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fc := newFakeClock()
			cs := &clockSleep{clock: fc, max: 20, cancel: cancel} // a restarted 125 ends in context.Canceled
			runs := 0
			s := &Supervisor{
				Name: "core0", Reaper: reaper, Clock: fc, Sleep: cs.sleep,
				Command: func() *exec.Cmd {
					sc := tc.scripts[min(runs, len(tc.scripts)-1)]
					runs++
					return exec.Command("/bin/sh", "-c", sc)
				},
				OnStop: func(st ExitStatus, _ time.Duration) {
					t.Errorf("OnStop(%s) for a process that asked not to be restarted", st)
				},
			}
			err := s.Run(ctx)
			if !errors.Is(err, ErrNoRestart) || !strings.Contains(err.Error(), "core0") {
				t.Fatalf("Run = %v, want ErrNoRestart naming core0", err)
			}
			if got := len(cs.got()); got != tc.waits || runs != tc.restarts+1 {
				t.Errorf("%d runs, %d waits, want %d and %d", runs, got, tc.restarts+1, tc.waits)
			}
			if st := s.Status(); st.State != StateStopped || st.Restarts != tc.restarts || st.LastExit != "exited 125" || st.Pid != 0 {
				t.Errorf("Status = %+v, want stopped after %d restarts, last exit exited 125", st, tc.restarts)
			}
		})
	}
}

func TestExitStatusNoRestart(t *testing.T) {
	tests := []struct {
		st   ExitStatus
		want bool
	}{
		{ExitStatus{Status: unix.WaitStatus(125 << 8)}, true},
		{ExitStatus{Status: unix.WaitStatus(124 << 8)}, false},
		{ExitStatus{Status: unix.WaitStatus(126 << 8)}, false},
		{ExitStatus{Status: unix.WaitStatus(0)}, false},
		{ExitStatus{Status: unix.WaitStatus(9)}, false},
		{ExitStatus{Status: unix.WaitStatus(125 << 8), Err: errors.New("no start")}, false},
	}
	for _, tc := range tests {
		if got := tc.st.NoRestart(); got != tc.want {
			t.Errorf("%s (err %v): NoRestart() = %v, want %v", tc.st, tc.st.Err, got, tc.want)
		}
	}
}

func TestSupervisorStatus(t *testing.T) {
	pids := make(chan int, 1)
	s := &Supervisor{
		Name: "core0", Reaper: reaper, Command: func() *exec.Cmd { return exec.Command("/bin/sleep", "30") },
		OnStart: func(pid int) { pids <- pid },
	}
	if st := s.Status(); st.State != "" || st.Pid != 0 {
		t.Errorf("Status before Run = %+v, want zero", st)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	pid := <-pids
	if st := s.Status(); st.State != StateRunning || st.Pid != pid || st.Restarts != 0 || st.LastExit != "" || st.Since.IsZero() {
		t.Errorf("Status while running = %+v, want running pid %d", st, pid)
	}
	if err := s.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrStopped) {
		t.Fatalf("Run = %v", err)
	}
	if st := s.Status(); st.State != StateStopped || st.Pid != 0 || st.LastExit != "killed by signal 15" {
		t.Errorf("Status after Stop = %+v, want stopped, killed by signal 15", st)
	}
}

// TestSupervisorStopDuringBackoff: Stop ends a backoff wait at once
// instead of letting Run sleep until the restart was due.
func TestSupervisorStopDuringBackoff(t *testing.T) {
	fc := newFakeClock() // never advanced: the wait would last forever
	exits := make(chan ExitStatus, 1)
	s := &Supervisor{
		Name: "core0", Reaper: reaper, Clock: fc, Command: exitWith("exit 1"),
		OnExit: func(st ExitStatus, _, _ time.Duration) { exits <- st },
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	waitStatus(t, exits)
	if err := s.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrStopped) {
			t.Errorf("Run = %v, want ErrStopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still waiting for its restart after Stop")
	}
	if st := s.Status(); st.State != StateStopped {
		t.Errorf("state %v after Stop, want stopped", st.State)
	}
}

func TestCrashLoopWindow(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		exits []time.Duration // since t0
		want  int             // the exit (0-based) that starts the loop, -1 none
	}{
		{"three at once", []time.Duration{0, 0, 0}, 2},
		{"spread within the window", []time.Duration{0, 30 * time.Second, time.Minute}, 2},
		{"oldest falls out", []time.Duration{0, 30 * time.Second, 61 * time.Second, 62 * time.Second}, 3},
		{"never three in a minute", []time.Duration{0, 40 * time.Second, 101 * time.Second, 142 * time.Second}, -1},
	}
	for _, tc := range tests {
		c := crashLoop{exits: 3, window: time.Minute}
		got := -1
		for i, d := range tc.exits {
			if c.exit(t0.Add(d)) {
				if got >= 0 {
					t.Errorf("%s: crash loop started again at exit %d", tc.name, i)
				}
				got = i
			}
		}
		if got != tc.want {
			t.Errorf("%s: crash loop at exit %d, want %d", tc.name, got, tc.want)
		}
	}
}
