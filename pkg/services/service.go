package services

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/zeroboot/zeroboot/pkg/supervise"
)

// service is one Spec at run time: its supervisor, its output, and the
// state the Manager reports.
type service struct {
	m          *Manager
	spec       Spec
	sup        *supervise.Supervisor
	ring       *ring
	notifyPath string // "" unless ProbeNotify
	deps       []*service
	dependents []*service

	ctx    context.Context // ends when the service is stopped
	cancel context.CancelFunc

	readyOnce sync.Once
	readyCh   chan struct{} // closed the first time it is ready or done
	stopped   chan struct{} // closed once stopped, for the stop order
	done      chan struct{} // closed when run returns

	mu          sync.Mutex
	base        State // the state apart from a crash loop
	reason      string
	since       time.Time
	crashLoop   bool
	final       bool  // no further start will come
	doneOK      bool  // exited 0 with no restart due
	refused     error // Verify's refusal of the last start
	startErr    error // a failure preparing the last start
	runs        int   // number of the current run, counted from 1
	pid         int   // of the current run, 0 between runs
	killReason  string
	probeCancel context.CancelFunc
	out         *output   // the current run's, on Run's goroutine only
	lingering   []*output // held open by processes that left their group
}

func newService(m *Manager, spec Spec, reaper *supervise.Reaper, notifyDir string, lines int) *service {
	s := &service{
		m: m, spec: spec, ring: newRing(lines),
		readyCh: make(chan struct{}), stopped: make(chan struct{}), done: make(chan struct{}),
		base: StateWaiting, since: m.now(),
	}
	if spec.Ready.Kind == ProbeNotify {
		s.notifyPath = filepath.Join(notifyDir, spec.Name)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.sup = &supervise.Supervisor{
		Name: spec.Name, Command: s.command, Reaper: reaper, Backoff: m.Backoff,
		CrashLoopExits: spec.CrashLoopExits, CrashLoopWindow: spec.CrashLoopWindow,
		StopTimeout: spec.stopTimeout(), Log: m.Log, Sleep: m.Sleep, Clock: m.Clock,
		OnStart: s.started, OnExit: s.exited, OnStop: s.stoppedRun, OnState: s.supervisorState,
	}
	return s
}

// run waits for the dependencies, then supervises until stopped.
func (s *service) run() {
	defer close(s.done)
	if !s.waitDeps() {
		s.ended(supervise.ErrStopped)
		return
	}
	s.change(func() { s.base, s.reason = StateStarting, "" })
	err := s.sup.Run(context.Background()) // ended by stop, in order
	s.endProbe()
	s.endOutput()
	s.ended(err)
}

// waitDeps waits until every service this one is After has been ready
// once. A dependency that fails later does not stop this one: its
// clients are expected to retry, as they would across a restart.
func (s *service) waitDeps() bool {
	for i, d := range s.deps {
		s.change(func() { s.base, s.reason = StateWaiting, "waiting for "+names(s.deps[i:]) })
		select {
		case <-d.readyCh:
		case <-s.ctx.Done():
			return false
		}
	}
	return true
}

func names(svcs []*service) string {
	var n []string
	for _, s := range svcs {
		select {
		case <-s.readyCh:
		default:
			n = append(n, s.spec.Name)
		}
	}
	return strings.Join(n, ", ")
}

// command is the Supervisor's Command: Verify, then a fresh Cmd writing
// to the service's output pipe. Nil refuses the start; exited then learns
// why from refused or startErr.
func (s *service) command() *exec.Cmd {
	if s.spec.Verify != nil {
		if err := s.spec.Verify(); err != nil {
			s.mu.Lock()
			s.refused = err
			s.mu.Unlock()
			return nil
		}
	}
	if s.notifyPath != "" {
		// A file left by the last run would pass the probe at once.
		if err := os.Remove(s.notifyPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.mu.Lock()
			s.startErr = fmt.Errorf("remove stale notify file: %w", err)
			s.mu.Unlock()
			return nil
		}
	}
	out, err := startOutput(func(line string) {
		s.ring.add(line)
		s.m.show(s.spec.Name, line)
	})
	if err != nil {
		s.mu.Lock()
		s.startErr = fmt.Errorf("output pipe: %w", err)
		s.mu.Unlock()
		return nil
	}
	s.out = out
	cmd := exec.Command(s.spec.Path, s.spec.Args...)
	cmd.Env = append([]string{}, s.spec.Env...) // not nil: nil inherits Core-0's
	if s.notifyPath != "" {
		cmd.Env = append(cmd.Env, EnvNotify+"="+s.notifyPath)
	}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out.w, out.w
	return cmd
}

// started is the Supervisor's OnStart: a new run, whose probe starts now.
func (s *service) started(pid int) {
	s.out.closeWriter()
	ctx, cancel := context.WithCancel(s.ctx)
	var id int
	s.change(func() {
		s.runs++
		id, s.pid = s.runs, pid
		s.killReason, s.refused, s.startErr = "", nil, nil
		s.base, s.reason = StateStarting, ""
		s.probeCancel = cancel
	})
	if s.spec.Ready.Kind == ProbeNone {
		s.markReady(id)
		return
	}
	go s.probe(ctx, id, pid)
}

// markReady records that run id passed its probe, unless it has ended.
func (s *service) markReady(id int) {
	ok := false
	s.change(func() {
		if s.runs == id && s.pid != 0 {
			s.base, s.reason, ok = StateReady, "", true
		}
	})
	if ok {
		s.readyOnce.Do(func() { close(s.readyCh) })
	}
}

// notReady kills run id, whose probe ran out of time; exited reports
// reason instead of the SIGKILL.
func (s *service) notReady(id, pid int, reason string) {
	s.mu.Lock()
	current := s.runs == id && s.pid == pid
	if current {
		s.killReason = reason
	}
	s.mu.Unlock()
	if !current {
		return
	}
	s.m.Log.Warn("service not ready in time; killing it", "name", s.spec.Name, "pid", pid, "reason", reason)
	if err := s.sup.Kill(pid); err != nil {
		s.m.Log.Error("kill service not ready", "name", s.spec.Name, "err", err)
	}
}

// exited is the Supervisor's OnExit: a run (or a start) failed, or ended
// on its own. The restart policy decides whether supervision goes on.
func (s *service) exited(st supervise.ExitStatus, _, next time.Duration) {
	s.endProbe()
	s.endOutput()
	stop, done := false, false
	var reason string
	s.change(func() {
		s.reason = s.exitReason(st)
		reason = s.reason
		s.pid = 0
		switch {
		case s.refused != nil:
			s.base, stop = StateFailed, true
		case st.Success() && s.spec.Restart != RestartAlways:
			s.base, stop, s.doneOK = StateStopped, true, true
		case s.spec.Restart == RestartNever:
			s.base, stop = StateFailed, true
		default:
			s.base = StateFailed
		}
		s.final, done = stop, s.doneOK
	})
	if done {
		s.readyOnce.Do(func() { close(s.readyCh) })
	}
	if stop {
		// No process runs now: Stop only ends the backoff wait.
		s.sup.Stop(0)
		return
	}
	s.m.Log.Warn("service ended; restarting", "name", s.spec.Name, "reason", reason, "restart_in", next)
}

func (s *service) exitReason(st supervise.ExitStatus) string {
	switch {
	case s.refused != nil:
		return "refused: " + s.refused.Error()
	case s.startErr != nil:
		return "failed to start: " + s.startErr.Error()
	case s.killReason != "":
		return s.killReason
	}
	return st.String()
}

// stoppedRun is the Supervisor's OnStop: the Manager stopped the run.
func (s *service) stoppedRun(st supervise.ExitStatus, _ time.Duration) {
	s.endProbe()
	s.endOutput()
	s.change(func() { s.base, s.reason, s.pid = StateStopped, st.String(), 0 })
}

// supervisorState follows the Supervisor's crash-loop verdict.
func (s *service) supervisorState(st supervise.Status) {
	switch st.State {
	case supervise.StateCrashLooping:
		s.change(func() { s.crashLoop = true })
	case supervise.StateRunning, supervise.StateStarting:
		s.change(func() { s.crashLoop = false })
	}
}

// ended records the end of supervision.
func (s *service) ended(err error) {
	s.change(func() {
		switch {
		case errors.Is(err, supervise.ErrNoRestart):
			s.base, s.final = StateFailed, true
			s.reason = fmt.Sprintf("exited %d: asked not to be restarted", supervise.ExitNoRestart)
		case err != nil && !errors.Is(err, supervise.ErrStopped):
			s.base, s.final, s.reason = StateFailed, true, err.Error()
		case !s.final:
			s.base = StateStopped
		}
		s.pid = 0
	})
}

// stop ends the service: no further start, the process group ended
// (SIGTERM, SIGKILL after StopTimeout), then its output closed.
func (s *service) stop() error {
	s.cancel()
	timeout := s.spec.stopTimeout()
	err := s.sup.Stop(timeout)
	if err != nil {
		err = fmt.Errorf("stop %s: %w", s.spec.Name, err)
		t := time.NewTimer(timeout)
		defer t.Stop()
		select { // a process in D state must not hold up the others forever
		case <-s.done:
		case <-t.C:
		}
	} else {
		<-s.done
	}
	s.mu.Lock()
	lingering := s.lingering
	s.lingering = nil
	s.mu.Unlock()
	for _, o := range lingering {
		o.close()
	}
	return err
}

// outputGrace is how long the end of a run waits for its last output.
const outputGrace = 200 * time.Millisecond

// endOutput collects the last output of the run that ended, so that the
// exit reported next comes with it.
func (s *service) endOutput() {
	o := s.out
	s.out = nil
	if o == nil || o.drain(outputGrace) {
		return
	}
	s.m.Log.Warn("a process that left the service's group still holds its output", "name", s.spec.Name)
	s.mu.Lock()
	s.lingering = append(s.lingering, o)
	s.mu.Unlock()
}

func (s *service) endProbe() {
	s.mu.Lock()
	cancel := s.probeCancel
	s.probeCancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// change applies f to the state and, if what a Status shows changed,
// tells OnChange and wakes WaitReady. cbmu keeps the calls in the order
// of the changes.
func (s *service) change(f func()) {
	m := s.m
	m.cbmu.Lock()
	defer m.cbmu.Unlock()
	s.mu.Lock()
	before := s.statusLocked(false)
	f()
	after := s.statusLocked(false)
	if after.State != before.State {
		s.since = m.now()
		after.Since = s.since
	}
	s.mu.Unlock()
	if after.State == before.State && after.Reason == before.Reason && after.Restarts == before.Restarts {
		return
	}
	m.Log.Info("service "+string(after.State), "name", after.Name, "reason", after.Reason, "restarts", after.Restarts)
	if m.OnChange != nil {
		after.Output = s.ring.last()
		m.OnChange(after)
	}
	m.broadcast()
}

func (s *service) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked(true)
}

func (s *service) statusLocked(output bool) Status {
	st := Status{
		Name: s.spec.Name, State: s.base, Reason: s.reason, Optional: s.spec.Optional,
		Since: s.since, Restarts: s.sup.Status().Restarts,
	}
	if s.crashLoop && !s.final && s.base != StateStopped {
		st.State = StateCrashLooping
	}
	if output {
		st.Output = s.ring.last()
	}
	return st
}

// satisfied reports whether the service counts as ready for Ready.
func (s *service) satisfied() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.statusLocked(false)
	return st.State == StateReady || s.doneOK
}

// deadEnd returns the service that keeps this one from ever becoming
// ready: itself if it failed for good, or a dependency that did before
// it was ever ready while this one still waits for it; nil if none.
func (s *service) deadEnd() *service {
	s.mu.Lock()
	final, ok, waiting := s.final, s.doneOK, s.base == StateWaiting
	s.mu.Unlock()
	if final && !ok {
		return s
	}
	if !waiting {
		return nil
	}
	for _, d := range s.deps {
		select {
		case <-d.readyCh:
			continue
		default:
		}
		if dead := d.deadEnd(); dead != nil {
			return dead
		}
	}
	return nil
}
