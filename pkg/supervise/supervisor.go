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
// ResetAfter.
type Supervisor struct {
	Name string
	// Command returns a fresh Cmd for every start (a Cmd runs once).
	Command func() *exec.Cmd
	Reaper  *Reaper
	// Backoff is the restart schedule; zero means Base 1 s, Cap 60 s.
	Backoff backoff.Policy
	// ResetAfter is how long a run must last to reset the backoff
	// (default 60 s).
	ResetAfter time.Duration
	// StopTimeout is how long Run's final Stop waits after SIGTERM before
	// SIGKILL (default 10 s).
	StopTimeout time.Duration
	Log         *slog.Logger
	OnStart     func(pid int)
	// OnExit is told of every run that ended on its own, its length and
	// the wait before the next start.
	OnExit func(st ExitStatus, run time.Duration, next time.Duration)
	// OnStop is told instead of OnExit when the run ended because Stop was
	// called or Run's context ended: no restart follows, and the exit is
	// no failure of the process.
	OnStop func(st ExitStatus, run time.Duration)
	// Sleep waits d or until ctx ends (tests record the delays); it
	// returns ctx.Err() when cut short.
	Sleep func(ctx context.Context, d time.Duration) error

	mu      sync.Mutex
	cur     *run
	stopped bool
}

// run is one started process. done closes once status is set, so that Run
// and Stop can both wait for the same exit.
type run struct {
	cmd    *exec.Cmd
	pgid   int // the process leads its own group
	status ExitStatus
	done   chan struct{}
}

// ErrStopped is returned by Run when Stop ended the supervision.
var ErrStopped = errors.New("supervisor stopped")

const (
	defaultResetAfter  = 60 * time.Second
	defaultStopTimeout = 10 * time.Second
)

var defaultBackoff = backoff.Policy{Base: time.Second, Cap: 60 * time.Second}

// Run supervises until ctx ends, then stops the process (SIGTERM, then
// SIGKILL after StopTimeout) and returns ctx.Err(). It returns ErrStopped
// if Stop was called.
func (s *Supervisor) Run(ctx context.Context) error {
	if s.Command == nil || s.Reaper == nil {
		return fmt.Errorf("supervise %s: Command and Reaper are required", s.Name)
	}
	pol, resetAfter, log, sleep := s.settings()
	failures := 0
	for {
		started := time.Now()
		r, err := s.start()
		if errors.Is(err, ErrStopped) {
			return err
		}
		var st ExitStatus
		if err != nil {
			st = ExitStatus{Err: err}
		} else {
			select {
			case <-r.done:
			case <-ctx.Done():
				s.stopOnCancel(r, started, log)
				return ctx.Err()
			}
			st = r.status
			s.endGroup(r, log)
		}
		took := time.Since(started)
		if s.finish(r) {
			// Stop's SIGTERM usually ends the process before Stop
			// returns, so its exit arrives here, not in stopOnCancel.
			s.reportStop(st, took, log)
			return ErrStopped
		}
		if took >= resetAfter {
			failures = 0
		}
		next := pol.Delay(failures)
		failures++
		log.Warn("process ended", "name", s.Name, "pid", st.Pid, "status", st.String(), "ran", took, "restart_in", next)
		if s.OnExit != nil {
			s.OnExit(st, took, next)
		}
		if err := sleep(ctx, next); err != nil {
			return err
		}
	}
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
// reports its end like any other.
func (s *Supervisor) stopOnCancel(r *run, started time.Time, log *slog.Logger) {
	if err := s.Stop(s.stopTimeout()); err != nil {
		log.Error("stop", "name", s.Name, "err", err)
	}
	s.finish(r)
	select {
	case <-r.done:
	default:
		return // Stop's error said why
	}
	s.reportStop(r.status, time.Since(started), log)
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

func (s *Supervisor) settings() (backoff.Policy, time.Duration, *slog.Logger, func(context.Context, time.Duration) error) {
	pol := s.Backoff
	if pol.Base <= 0 || pol.Cap <= 0 {
		pol = defaultBackoff
	}
	reset := s.ResetAfter
	if reset <= 0 {
		reset = defaultResetAfter
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sleep := s.Sleep
	if sleep == nil {
		sleep = backoff.Sleep
	}
	return pol, reset, log, sleep
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
	ch, err := s.Reaper.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	r := &run{cmd: cmd, pgid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		r.status = <-ch
		close(r.done)
	}()
	s.cur = r
	if s.Log != nil {
		s.Log.Info("process started", "name", s.Name, "pid", cmd.Process.Pid, "path", cmd.Path)
	}
	if s.OnStart != nil {
		s.OnStart(cmd.Process.Pid)
	}
	return r, nil
}

// Stop ends supervision: no further restarts, and the current process and
// every process in its group get SIGTERM, then SIGKILL if any is left
// after timeout. It returns once the group is gone, or an error if even
// SIGKILL did not end it within another timeout.
func (s *Supervisor) Stop(timeout time.Duration) error {
	s.mu.Lock()
	s.stopped = true
	r := s.cur
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	return s.terminate(r, timeout)
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
