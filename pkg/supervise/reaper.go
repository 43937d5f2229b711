// Package supervise is PID 1's process management: a reaper that collects
// every child and orphan, a supervisor that restarts Core-0 with backoff
// (in its own process group, ended whole on stop and restart; crash loops
// detected; exit status ExitNoRestart honoured; its state in Status), and
// the orderly reboot and power-off on signals.
package supervise

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// ExitStatus is how a started process ended. Err is set when it could not
// be started at all; Status is meaningful only when Err is nil.
type ExitStatus struct {
	Pid    int
	Status unix.WaitStatus
	Err    error
}

func (e ExitStatus) String() string {
	switch {
	case e.Err != nil:
		return "failed to start: " + e.Err.Error()
	case e.Status.Exited():
		return fmt.Sprintf("exited %d", e.Status.ExitStatus())
	case e.Status.Signaled():
		s := fmt.Sprintf("killed by signal %d", int(e.Status.Signal()))
		if e.Status.CoreDump() {
			s += " (core dumped)"
		}
		return s
	}
	return fmt.Sprintf("wait status %#x", uint32(e.Status))
}

// Success reports a clean exit 0.
func (e ExitStatus) Success() bool {
	return e.Err == nil && e.Status.Exited() && e.Status.ExitStatus() == 0
}

// Reaper waits for every child of the process: the ones it started, whose
// status it hands back, and the orphans the kernel reparents to PID 1 (or
// to a child subreaper), which it only logs. While a Reaper runs it owns
// waiting: nothing else in the process may call exec.Cmd.Wait, Run, Output
// or CombinedOutput, or os.Process.Wait, or they race the reaper for the
// status. Start every child through Reaper.Start.
type Reaper struct {
	log *slog.Logger

	mu      sync.Mutex
	waiting map[int]chan ExitStatus

	sig  chan os.Signal
	stop chan struct{}
	done chan struct{}
}

// NewReaper starts reaping on SIGCHLD. log may be nil.
func NewReaper(log *slog.Logger) *Reaper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reaper{
		log:     log,
		waiting: map[int]chan ExitStatus{},
		sig:     make(chan os.Signal, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	signal.Notify(r.sig, unix.SIGCHLD)
	go r.loop()
	return r
}

func (r *Reaper) loop() {
	defer close(r.done)
	r.reap() // children that ended before the handler was installed
	for {
		select {
		case <-r.stop:
			return
		case <-r.sig:
			r.reap()
		}
	}
}

// reap collects every child that has ended. SIGCHLDs coalesce, so one
// signal may stand for many exits: loop until none is left. Holding mu
// keeps a child started by Start from being reaped before it is registered.
func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		var ru unix.Rusage
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, &ru)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD: no children; 0: none ended
			return
		}
		st := ExitStatus{Pid: pid, Status: ws}
		if ch, ok := r.waiting[pid]; ok {
			delete(r.waiting, pid)
			ch <- st // buffered: never blocks
			continue
		}
		r.log.Debug("reaped orphan", "pid", pid, "status", st.String(),
			"user_cpu", ru.Utime.Nano(), "sys_cpu", ru.Stime.Nano())
	}
}

// Start starts cmd and returns a channel that receives its exit status
// once. Never call cmd.Wait: the reaper collects the process. cmd.Stdout
// and cmd.Stderr should be nil or *os.File: other writers need the copying
// goroutines that only cmd.Wait finishes and closes. After the status
// arrives, cmd.Process.Release frees the process handle.
func (r *Reaper) Start(cmd *exec.Cmd) (<-chan ExitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan ExitStatus, 1)
	r.waiting[cmd.Process.Pid] = ch
	// A child that exits right now sends SIGCHLD while we hold mu; the
	// reap that follows it runs after the registration above.
	return ch, nil
}

// Stop stops reaping (tests; PID 1 never stops). Pending channels get no
// further status.
func (r *Reaper) Stop() {
	signal.Stop(r.sig)
	close(r.stop)
	<-r.done
}
