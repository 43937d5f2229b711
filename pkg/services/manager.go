package services

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"github.com/zeroboot/zeroboot/pkg/supervise"
	"golang.org/x/sys/unix"
)

// State is where one service stands.
type State string

const (
	// StateWaiting: not started yet, some service it is After is not
	// ready (Reason names them).
	StateWaiting State = "waiting"
	// StateStarting: started (or about to be), its probe not passed yet.
	StateStarting State = "starting"
	// StateReady: running and its probe passed.
	StateReady State = "ready"
	// StateFailed: the last run failed (Reason says how: exit status,
	// probe timeout, start refused by Verify). A restart follows unless
	// the restart policy or a refusal says no.
	StateFailed State = "failed"
	// StateCrashLooping: CrashLoopExits exits within CrashLoopWindow;
	// restarts go on at the backoff's cap until a run lasts 60 s.
	StateCrashLooping State = "crash-looping"
	// StateStopped: stopped by the Manager, or exited 0 with no restart
	// due (RestartOnFailure, RestartNever).
	StateStopped State = "stopped"
)

// Status is a snapshot of one service, for Core-0's reports.
type Status struct {
	Name     string
	State    State
	Reason   string // why it is in State; "" when there is nothing to say
	Restarts int    // starts after the first, refused and failed ones included
	Optional bool
	Since    time.Time // when State was entered, by the Manager's Clock
	// Output is the service's last lines of output, oldest first, so a
	// report of a failure shows why without a console.
	Output []string
}

// Manager runs a set of services. Fill the fields, then call Run once.
type Manager struct {
	Specs []Spec
	Log   *slog.Logger // nil: discard
	// Console receives every line of every service's output, as
	// "name: line", sanitised; nil: kept only in Status.Output.
	Console io.Writer
	// OutputLines is how many lines of output Status.Output keeps per
	// service (default 40).
	OutputLines int
	// RunDir holds the ProbeNotify files, under RunDir/notify; required
	// when a service uses ProbeNotify.
	RunDir string
	// Reaper collects the services' and probes' processes. Nil: Run
	// starts one and stops it on return; either way nothing else in the
	// process may wait for children while Run runs (see supervise.Reaper).
	Reaper *supervise.Reaper
	// Subreaper makes the process a child subreaper (PR_SET_CHILD_SUBREAPER)
	// before the first start, so that what a service leaves behind when
	// it daemonises comes back to the Reaper here rather than to PID 1.
	// It changes the whole process, so the caller decides.
	Subreaper bool
	// Backoff is the restart schedule; zero: supervise's (1 s doubling
	// to 60 s, with jitter).
	Backoff backoff.Policy
	// Clock and Sleep are passed to each service's supervise.Supervisor
	// (tests); Clock also dates Status.Since. Probes run on real time.
	Clock supervise.Clock
	Sleep func(ctx context.Context, d time.Duration) error
	// OnChange is told of every change of a service's State, Reason or
	// Restarts, in order. It is called synchronously and holds up every
	// service's transitions while it runs: hand slow work (a registry
	// report) to another goroutine.
	OnChange func(Status)

	mu       sync.Mutex
	svcs     []*service
	changed  chan struct{} // closed and replaced on every change
	started  bool
	finished bool

	cbmu  sync.Mutex // orders OnChange calls
	conmu sync.Mutex // one console line at a time
	http  *http.Client
}

// Run validates the specs, starts every service as soon as everything it
// is After is ready, supervises them until ctx ends, then stops them,
// dependents first, and returns once all are stopped. It returns nil
// after an orderly stop; an error when the specs are invalid, the setup
// failed, or a process group outlived its SIGKILL.
func (m *Manager) Run(ctx context.Context) error {
	if err := Validate(m.Specs); err != nil {
		return err
	}
	stopReaper, err := m.setup()
	if err != nil {
		return err
	}
	defer stopReaper()
	for _, s := range m.svcs {
		go s.run()
	}
	<-ctx.Done()
	err = m.stopAll()
	m.mu.Lock()
	m.finished = true
	m.mu.Unlock()
	m.broadcast()
	return err
}

// setup prepares what the services share and builds them; it returns
// the function that stops a Reaper it started.
func (m *Manager) setup() (func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return nil, errors.New("services: Run called twice")
	}
	m.started = true
	if m.Log == nil {
		m.Log = slog.New(slog.DiscardHandler)
	}
	if m.changed == nil {
		m.changed = make(chan struct{})
	}
	m.http = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	notifyDir, err := m.notifyDir()
	if err != nil {
		return nil, err
	}
	if m.Subreaper {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("services: become child subreaper: %w", err)
		}
	}
	stop := func() {}
	reaper := m.Reaper
	if reaper == nil {
		reaper = supervise.NewReaper(m.Log)
		stop = reaper.Stop
	}
	m.svcs = m.build(reaper, notifyDir)
	return stop, nil
}

// notifyDir creates RunDir/notify when some service needs it.
func (m *Manager) notifyDir() (string, error) {
	need := false
	for _, s := range m.Specs {
		need = need || s.Ready.Kind == ProbeNotify
	}
	if !need {
		return "", nil
	}
	if m.RunDir == "" {
		return "", errors.New("services: a notify probe needs Manager.RunDir")
	}
	dir := filepath.Join(m.RunDir, "notify")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("services: create notify directory: %w", err)
	}
	return dir, nil
}

// build makes one service per spec, linked both ways along After.
func (m *Manager) build(reaper *supervise.Reaper, notifyDir string) []*service {
	lines := m.OutputLines
	if lines <= 0 {
		lines = defaultOutputLines
	}
	byName := map[string]*service{}
	var svcs []*service
	for _, spec := range m.Specs {
		s := newService(m, spec, reaper, notifyDir, lines)
		byName[spec.Name] = s
		svcs = append(svcs, s)
	}
	for _, s := range svcs {
		for _, dep := range s.spec.After {
			d := byName[dep]
			s.deps = append(s.deps, d)
			d.dependents = append(d.dependents, s)
		}
	}
	return svcs
}

// stopAll stops every service once everything that is After it has
// stopped, so a service never loses a dependency while it still runs;
// services that do not depend on each other stop in parallel.
func (m *Manager) stopAll() error {
	var wg sync.WaitGroup
	errs := make([]error, len(m.svcs))
	for i, s := range m.svcs {
		wg.Go(func() {
			for _, d := range s.dependents {
				<-d.stopped
			}
			errs[i] = s.stop()
			close(s.stopped)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Statuses returns every service's status, in the order of Specs; nil
// before Run.
func (m *Manager) Statuses() []Status {
	out := []Status{}
	for _, s := range m.services() {
		out = append(out, s.status())
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Ready reports whether every service that is not Optional is ready, or
// has exited 0 with no restart due (a one-shot task that is done).
func (m *Manager) Ready() bool {
	svcs := m.services()
	if svcs == nil {
		return false
	}
	for _, s := range svcs {
		if !s.spec.Optional && !s.satisfied() {
			return false
		}
	}
	return true
}

// WaitReady returns nil once Ready is true, or an error as soon as it
// can no longer become true: a service that is not Optional failed for
// good (refused, or not to be restarted) or waits for one that did, or
// Run has stopped the services. It returns ctx.Err() when ctx ends first.
func (m *Manager) WaitReady(ctx context.Context) error {
	for {
		m.mu.Lock()
		if m.changed == nil {
			m.changed = make(chan struct{})
		}
		ch, finished := m.changed, m.finished
		m.mu.Unlock()
		if m.Ready() {
			return nil
		}
		if finished {
			return errors.New("services: stopped before ready")
		}
		if err := m.blocked(); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// blocked names a service that is not Optional and can never be ready.
func (m *Manager) blocked() error {
	for _, s := range m.services() {
		if s.spec.Optional {
			continue
		}
		if dead := s.deadEnd(); dead != nil {
			st := dead.status()
			if dead == s {
				return fmt.Errorf("services: %s %s: %s", s.spec.Name, st.State, st.Reason)
			}
			return fmt.Errorf("services: %s waits for %s, which is %s: %s", s.spec.Name, dead.spec.Name, st.State, st.Reason)
		}
	}
	return nil
}

func (m *Manager) services() []*service {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.svcs
}

// broadcast wakes every WaitReady.
func (m *Manager) broadcast() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.changed != nil {
		close(m.changed)
	}
	m.changed = make(chan struct{})
}

func (m *Manager) now() time.Time {
	if m.Clock != nil {
		return m.Clock.Now()
	}
	return time.Now()
}

// show puts one line of a service's output on the console.
func (m *Manager) show(name, line string) {
	if m.Console == nil {
		return
	}
	m.conmu.Lock()
	defer m.conmu.Unlock()
	fmt.Fprintf(m.Console, "%s: %s\n", name, line)
}
