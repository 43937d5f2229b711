package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
)

// Supervisor keeps one process running: it restarts it whenever it exits,
// waiting longer after each quick failure (exponential backoff with jitter,
// capped), and starts over from the shortest wait after a run that lasted
// ResetAfter. The process leads its own process group, and whatever of the
// group is left when it exits is ended before the restart (see Stop).
// CrashLoopExits exits within CrashLoopWindow make the state
// StateCrashLooping; an exit with ExitNoRestart ends the supervision.
type Supervisor struct {
	Name string
	// Command returns a fresh Cmd for every start (a Cmd runs once). It
	// is called with the Supervisor's lock held: it must not call Stop.
	Command func() *exec.Cmd
	Reaper  *Reaper
	// Backoff is the restart schedule; zero means Base 1 s, Cap 60 s.
	Backoff backoff.Policy
	// ResetAfter is how long a run must last to reset the backoff and
	// end a crash loop (default 60 s).
	ResetAfter time.Duration
	// CrashLoopExits exits within CrashLoopWindow make a crash loop
	// (defaults 5 and 5 minutes: with the default backoff, five quick
	// crashes take about half a minute, and a process that crashes every
	// 50 s still counts).
	CrashLoopExits  int
	CrashLoopWindow time.Duration
	// StopTimeout is how long Run's final Stop, and the end of what an
	// exited process left in its group, wait after SIGTERM before
	// SIGKILL (default 10 s).
	StopTimeout time.Duration
	Log         *slog.Logger
	OnStart     func(pid int)
	// OnExit is told of every run that ended on its own and is followed
	// by a restart, its length and the wait before the next start.
	OnExit func(st ExitStatus, run time.Duration, next time.Duration)
	// OnStop is told instead of OnExit when the run ended because Stop was
	// called or Run's context ended: no restart follows, and the exit is
	// no failure of the process.
	OnStop func(st ExitStatus, run time.Duration)
	// OnState is told of every change of Status().State, in order, on
	// Run's goroutine.
	OnState func(Status)
	// Cgroup, when set, holds every run and whatever it starts, also the
	// processes that leave its process group (Core-0's services lead
	// their own): what is left in it when a run ends is killed before the
	// next start and before Stop returns (pkg/cgroup).
	Cgroup Cgroup
	// Sleep waits d or until ctx ends (tests record the delays); it
	// returns ctx.Err() when cut short. Nil waits on Clock.
	Sleep func(ctx context.Context, d time.Duration) error
	// Clock measures runs and the crash-loop window; nil is the system
	// clock.
	Clock Clock

	mu      sync.Mutex
	cur     *run
	stopped bool
	wake    context.CancelFunc // ends Run's backoff wait

	smu    sync.Mutex // guards status, apart from mu: Command runs under mu
	status Status
}

// run is one started process. done closes once status is set, so that Run
// and Stop can both wait for the same exit; reported closes once Run has
// told OnStop of a stopped run, so that Stop returns after the report.
type run struct {
	cmd      *exec.Cmd
	pgid     int // the process leads its own group
	status   ExitStatus
	done     chan struct{}
	reported chan struct{}
}

var (
	// ErrStopped is returned by Run when Stop ended the supervision.
	ErrStopped = errors.New("supervisor stopped")
	// ErrNoRestart is returned (wrapped) by Run when the process exited
	// with ExitNoRestart.
	ErrNoRestart = fmt.Errorf("process exited %d: asked not to be restarted", ExitNoRestart)
)

const (
	defaultResetAfter      = 60 * time.Second
	defaultStopTimeout     = 10 * time.Second
	defaultCrashLoopExits  = 5
	defaultCrashLoopWindow = 5 * time.Minute
)

var defaultBackoff = backoff.Policy{Base: time.Second, Cap: 60 * time.Second}

// config is a Supervisor's settings with the defaults filled in.
type config struct {
	pol        backoff.Policy
	resetAfter time.Duration
	log        *slog.Logger
	sleep      func(context.Context, time.Duration) error
	clock      Clock
	loop       crashLoop
}

// Run supervises until ctx ends, then stops the process (SIGTERM, then
// SIGKILL after StopTimeout) and returns ctx.Err(). It returns ErrStopped
// if Stop was called, and an error wrapping ErrNoRestart if the process
// asked not to be restarted; the state is StateStopped in every case.
func (s *Supervisor) Run(ctx context.Context) error {
	if s.Command == nil || s.Reaper == nil {
		return fmt.Errorf("supervise %s: Command and Reaper are required", s.Name)
	}
	c := s.settings()
	// Stop cuts a backoff wait short through wake.
	wait, wake := context.WithCancel(ctx)
	defer wake()
	s.mu.Lock()
	s.wake = wake
	s.mu.Unlock()
	s.update(c.clock.Now(), func(st *Status) { st.State = StateStarting })
	err := s.loop(ctx, wait, &c)
	s.update(c.clock.Now(), func(st *Status) { st.State, st.Pid = StateStopped, 0 })
	return err
}

// loop starts, waits and restarts until the supervision ends.
func (s *Supervisor) loop(ctx, backoffCtx context.Context, c *config) error {
	failures := 0
	for n := 0; ; n++ {
		started := c.clock.Now()
		r, err := s.start()
		if errors.Is(err, ErrStopped) {
			return err
		}
		s.started(c, started, n, r)
		var st ExitStatus
		if err != nil {
			st = ExitStatus{Err: err}
		} else {
			if err := s.wait(ctx, c, r, started); err != nil {
				close(r.reported) // stopOnCancel reported it
				return err
			}
			st = r.status
			s.endGroup(r, c.log)
		}
		now := c.clock.Now()
		took := now.Sub(started)
		s.update(now, func(status *Status) { status.Pid, status.LastExit = 0, st.String() })
		if s.finish(r) {
			// Stop's SIGTERM usually ends the process before Stop
			// returns, so its exit arrives here, not in stopOnCancel.
			s.reportStop(st, took, c.log)
			if r != nil {
				close(r.reported)
			}
			return ErrStopped
		}
		// Stop sweeps the cgroup itself; a restart must not find what
		// this run left in it. Swept after the stop check, so a stop is
		// reported as soon as before.
		s.sweep(c.log)
		if st.NoRestart() {
			c.log.Warn("process asked not to be restarted; supervision ends", "name", s.Name, "pid", st.Pid, "status", st.String(), "ran", took)
			return fmt.Errorf("supervise %s: pid %d ran %v: %w", s.Name, st.Pid, took, ErrNoRestart)
		}
		if took >= c.resetAfter {
			failures = 0
			s.healthy(c, took) // the exits before it no longer count
		}
		next := s.exited(c, now, failures)
		failures++
		c.log.Warn("process ended", "name", s.Name, "pid", st.Pid, "status", st.String(), "ran", took, "restart_in", next)
		if s.OnExit != nil {
			s.OnExit(st, took, next)
		}
		if err := c.sleep(backoffCtx, next); err != nil {
			if ctx.Err() == nil { // woken by Stop
				return ErrStopped
			}
			return err
		}
	}
}

// started records start number n (0 the first), then tells OnStart, so
// that Status already shows the process when OnStart runs.
func (s *Supervisor) started(c *config, now time.Time, n int, r *run) {
	s.update(now, func(st *Status) {
		st.Restarts = n
		if r != nil {
			st.Pid = r.cmd.Process.Pid
			if st.State != StateCrashLooping {
				st.State = StateRunning
			}
		}
	})
	if r == nil {
		return
	}
	c.log.Info("process started", "name", s.Name, "pid", r.pgid, "path", r.cmd.Path, "restarts", n)
	if s.OnStart != nil {
		s.OnStart(r.pgid)
	}
}

// wait waits for r to exit. A run that lasts ResetAfter ends a crash loop
// while it still runs, so the state says so at once. It returns ctx.Err()
// once it stopped the process because ctx ended.
func (s *Supervisor) wait(ctx context.Context, c *config, r *run, started time.Time) error {
	var healthy <-chan time.Time
	if c.loop.on {
		healthy = c.clock.After(c.resetAfter)
	}
	for {
		select {
		case <-r.done:
			return nil
		case <-ctx.Done():
			s.stopOnCancel(r, c, started)
			return ctx.Err()
		case now := <-healthy:
			healthy = nil
			s.healthy(c, now.Sub(started))
		}
	}
}

// exited records an exit at now and returns the wait before the restart
// after failures quick failures in a row: the backoff's, or its cap while
// the process crash-loops.
func (s *Supervisor) exited(c *config, now time.Time, failures int) time.Duration {
	if c.loop.exit(now) {
		c.log.Error(fmt.Sprintf("%s is crash-looping: %d exits within %v; restarting every %v at most until a run lasts %v",
			s.Name, c.loop.exits, c.loop.window, c.pol.Cap, c.resetAfter),
			"name", s.Name, "exits", c.loop.exits, "window", c.loop.window)
	}
	if c.loop.on {
		s.update(now, func(st *Status) { st.State = StateCrashLooping })
		return c.pol.Delay(max(failures, capAttempt(c.pol)))
	}
	s.update(now, func(st *Status) { st.State = StateStarting })
	return c.pol.Delay(failures)
}

// healthy ends a crash loop once the current run has lasted ResetAfter.
func (s *Supervisor) healthy(c *config, ran time.Duration) {
	if !c.loop.healthy() {
		return
	}
	c.log.Info(fmt.Sprintf("%s is no longer crash-looping: running for %v", s.Name, ran), "name", s.Name)
	s.update(c.clock.Now(), func(st *Status) { st.State = StateRunning })
}

// capAttempt is the first backoff attempt whose delay reaches the cap.
func capAttempt(p backoff.Policy) int {
	n := 0
	for d := p.Base; d < p.Cap; d *= 2 {
		n++
	}
	return n
}

// endGroup ends what the process left running in its group once it has
// exited itself, so that a restart never finds the last run's children.
func (s *Supervisor) endGroup(r *run, log *slog.Logger) {
	if !groupAlive(r.pgid) {
		return
	}
	log.Warn("process left processes running in its group; stopping them", "name", s.Name, "pgid", r.pgid)
	if err := s.terminate(r, s.stopTimeout()); err != nil {
		log.Error("stop leftover processes", "name", s.Name, "err", err)
	}
}

// stopOnCancel stops the current process when Run's context ends and
// reports its end like any other. It runs on Run's goroutine, so it halts
// rather than Stops: Stop would wait for the report it is to make.
func (s *Supervisor) stopOnCancel(r *run, c *config, started time.Time) {
	if _, err := s.halt(s.stopTimeout()); err != nil {
		c.log.Error("stop", "name", s.Name, "err", err)
	}
	s.finish(r)
	select {
	case <-r.done:
	default:
		return // Stop's error said why
	}
	now := c.clock.Now()
	s.update(now, func(st *Status) { st.Pid, st.LastExit = 0, r.status.String() })
	s.reportStop(r.status, now.Sub(started), c.log)
}

func (s *Supervisor) reportStop(st ExitStatus, took time.Duration, log *slog.Logger) {
	log.Info("process stopped", "name", s.Name, "pid", st.Pid, "status", st.String(), "ran", took)
	if s.OnStop != nil {
		s.OnStop(st, took)
	}
}

// finish forgets the current run and frees its process handle, under mu so
// that Stop never signals a released process. It reports whether Stop was
// called.
func (s *Supervisor) finish(r *run) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r != nil && s.cur == r {
		s.cur = nil
		r.cmd.Process.Release()
	}
	return s.stopped
}

func (s *Supervisor) settings() config {
	c := config{pol: s.Backoff, resetAfter: s.ResetAfter, log: s.Log, sleep: s.Sleep, clock: s.Clock}
	if c.pol.Base <= 0 || c.pol.Cap <= 0 {
		c.pol = defaultBackoff
	}
	if c.resetAfter <= 0 {
		c.resetAfter = defaultResetAfter
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		c.clock = systemClock{}
	}
	if c.sleep == nil {
		c.sleep = backoff.Sleep
		if s.Clock != nil {
			c.sleep = sleepOn(c.clock)
		}
	}
	c.loop = crashLoop{exits: s.CrashLoopExits, window: s.CrashLoopWindow}
	if c.loop.exits <= 0 {
		c.loop.exits = defaultCrashLoopExits
	}
	if c.loop.window <= 0 {
		c.loop.window = defaultCrashLoopWindow
	}
	return c
}

func (s *Supervisor) stopTimeout() time.Duration {
	if s.StopTimeout > 0 {
		return s.StopTimeout
	}
	return defaultStopTimeout
}

// start launches a fresh process unless Stop was called.
func (s *Supervisor) start() (*run, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, ErrStopped
	}
	cmd := s.Command()
	if cmd == nil {
		return nil, fmt.Errorf("start %s: Command returned no command", s.Name)
	}
	leadGroup(cmd)
	if s.Cgroup != nil {
		release, err := s.Cgroup.Attach(cmd)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", s.Name, err)
		}
		defer release()
	}
	ch, err := s.Reaper.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	r := &run{cmd: cmd, pgid: cmd.Process.Pid, done: make(chan struct{}), reported: make(chan struct{})}
	go func() {
		r.status = <-ch
		close(r.done)
	}()
	s.cur = r
	return r, nil
}

// Stop ends supervision: no further restarts, and the current process and
// every process in its group get SIGTERM, then SIGKILL if any is left
// after timeout. It returns once the group is gone and Run has reported
// the stop (OnStop, the log), so a caller that reboots next loses no
// report; or an error if even SIGKILL did not end the group within
// another timeout. It must not be called from OnStart or OnStop, which
// run before the report.
func (s *Supervisor) Stop(timeout time.Duration) error {
	r, err := s.halt(timeout)
	if r == nil || err != nil {
		return err
	}
	// Run reports at once once the group is gone; the bound keeps a
	// wedged OnStop from holding up a reboot.
	if !waitDone(r.reported, max(timeout, time.Second)) {
		return fmt.Errorf("stop %s: process group %d ended but its stop was not reported within %v", s.Name, r.pgid, max(timeout, time.Second))
	}
	return nil
}

// halt is Stop without waiting for the report: it marks the supervision
// stopped, ends the current run's group and sweeps its cgroup, and
// returns the run it ended (nil if none ran).
func (s *Supervisor) halt(timeout time.Duration) (*run, error) {
	s.mu.Lock()
	s.stopped = true
	r := s.cur
	if s.wake != nil {
		s.wake()
	}
	s.mu.Unlock()
	if r == nil {
		return nil, nil
	}
	if err := s.terminate(r, timeout); err != nil {
		return r, err
	}
	s.sweep(s.settings().log)
	return r, nil
}

// Cgroup is a process container that outlives a run's process group.
type Cgroup interface {
	// Attach makes cmd start inside; release is called once it started.
	Attach(cmd *exec.Cmd) (release func(), err error)
	// Kill ends every process inside and says how many there were.
	Kill(timeout time.Duration) (int, error)
}

// sweep kills what a run left in its cgroup once its process group is
// gone: processes that left the group, which a restart must not find
// beside the next run's.
func (s *Supervisor) sweep(log *slog.Logger) {
	if s.Cgroup == nil {
		return
	}
	n, err := s.Cgroup.Kill(s.stopTimeout())
	if n > 0 {
		log.Warn(fmt.Sprintf("%s left %d processes running outside its process group; killed them", s.Name, n), "name", s.Name)
	}
	if err != nil {
		log.Error("end leftover processes", "name", s.Name, "err", err)
	}
}

// Kill ends the run of process pid at once, SIGKILL to its whole group,
// and supervision goes on: the end is an exit like any other, followed by
// a restart after the backoff. It is for a caller that found the process
// broken while it runs (a readiness check that never passed). The pid
// names the run so that a late call cannot hit the next one; a run that
// already ended is no error.
func (s *Supervisor) Kill(pid int) error {
	s.mu.Lock()
	r := s.cur
	s.mu.Unlock()
	if r == nil || r.pgid != pid {
		return nil
	}
	return s.signal(r, syscall.SIGKILL)
}

// terminate ends r's process group: SIGTERM, a grace period, SIGKILL.
func (s *Supervisor) terminate(r *run, timeout time.Duration) error {
	if err := s.signal(r, syscall.SIGTERM); err != nil {
		return err
	}
	if waitGroupGone(r.pgid, r.done, timeout) {
		return nil
	}
	if err := s.signal(r, syscall.SIGKILL); err != nil {
		return err
	}
	if waitGroupGone(r.pgid, r.done, timeout) {
		return nil
	}
	return fmt.Errorf("stop %s: process group %d still running %v after SIGKILL", s.Name, r.pgid, timeout)
}

// signal signals r's whole process group. r stays the current run until
// its group is gone (Run calls endGroup before finish), so the group id
// is still r's: the leader's pid is not reused while it is a zombie or
// while any process of its group lives. mu keeps Run from forgetting r
// meanwhile.
func (s *Supervisor) signal(r *run, sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != r {
		return nil // already ended and released
	}
	if err := signalGroup(r.pgid, sig); err != nil {
		return fmt.Errorf("stop %s: %w", s.Name, err)
	}
	return nil
}

func waitDone(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
