package supervise

import (
	"context"
	"time"
)

// State is where the supervision of one process stands.
type State string

const (
	// StateStarting: a start is due, the first one or a restart after the
	// backoff wait; no process runs.
	StateStarting State = "starting"
	// StateRunning: the process runs.
	StateRunning State = "running"
	// StateCrashLooping: CrashLoopExits exits came within
	// CrashLoopWindow. Restarts go on, each after the capped backoff
	// delay, until a run lasts ResetAfter; the process may be running or
	// waiting for its restart.
	StateCrashLooping State = "crash-looping"
	// StateStopped: no restart follows (Stop, Run's context ended, or the
	// process exited with ExitNoRestart).
	StateStopped State = "stopped"
)

// ExitNoRestart is the exit status with which a process asks not to be
// restarted: the supervisor logs it, stops restarting and reports
// StateStopped. 125 is what gokrazy's init uses for the same request; it
// lies below the shell's 126 (not executable) and 127 (not found) and the
// 128+n of a death by signal, so no crash is mistaken for it. Wrappers such
// as env, timeout and chroot exit 125 when they fail themselves, which a
// restart would not fix either.
const ExitNoRestart = 125

// NoRestart reports an exit with ExitNoRestart.
func (e ExitStatus) NoRestart() bool {
	return e.Err == nil && e.Status.Exited() && e.Status.ExitStatus() == ExitNoRestart
}

// Status is a snapshot of the supervision, for the node's reports.
type Status struct {
	State State
	Pid   int // the running process, 0 when none runs
	// Restarts counts the starts after the first, failed starts included.
	Restarts int
	// LastExit is how the last run ended (ExitStatus.String), "" before
	// any ended.
	LastExit string
	Since    time.Time // when State was entered, by Clock
}

// Clock is the time the supervisor measures runs and the crash-loop
// window with, and arms the timer that ends a crash loop. Tests inject a
// fake one; nil means the system clock.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// sleepOn waits d on c or until ctx ends, like backoff.Sleep.
func sleepOn(c Clock) func(ctx context.Context, d time.Duration) error {
	return func(ctx context.Context, d time.Duration) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.After(d):
			return nil
		}
	}
}

// Status returns the current state of the supervision.
func (s *Supervisor) Status() Status {
	s.smu.Lock()
	defer s.smu.Unlock()
	return s.status
}

// update changes the status under smu and tells OnState when the state
// changed. It runs on Run's goroutine only, so OnState calls come in
// order.
func (s *Supervisor) update(now time.Time, f func(st *Status)) {
	s.smu.Lock()
	before := s.status.State
	f(&s.status)
	changed := s.status.State != before
	if changed {
		s.status.Since = now
	}
	st := s.status
	s.smu.Unlock()
	if changed && s.OnState != nil {
		s.OnState(st)
	}
}

// crashLoop counts exits within a window.
type crashLoop struct {
	exits  int           // this many exits
	window time.Duration // within this long make a crash loop
	times  []time.Time   // exits within the window, oldest first
	on     bool
}

// exit records an exit at now and reports whether it started a crash
// loop.
func (c *crashLoop) exit(now time.Time) bool {
	c.times = append(c.times, now)
	i := 0
	for i < len(c.times) && now.Sub(c.times[i]) > c.window {
		i++
	}
	c.times = c.times[i:]
	if c.on || len(c.times) < c.exits {
		return false
	}
	c.on = true
	return true
}

// healthy ends the crash loop after a run that lasted ResetAfter; it
// reports whether there was one.
func (c *crashLoop) healthy() bool {
	was := c.on
	c.on = false
	c.times = c.times[:0]
	return was
}
