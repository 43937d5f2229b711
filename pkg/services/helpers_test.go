package services

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"github.com/zeroboot/zeroboot/pkg/supervise"
	"golang.org/x/sys/unix"
)

// One reaper for the test binary, as in pkg/supervise: two would race
// for statuses. The test process is a child subreaper, as Core-0 would
// be with Manager.Subreaper, so orphaned grandchildren come back to it.
var reaper *supervise.Reaper

func TestMain(m *testing.M) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "PR_SET_CHILD_SUBREAPER:", err)
		os.Exit(1)
	}
	reaper = supervise.NewReaper(nil)
	code := m.Run()
	reaper.Stop()
	os.Exit(code)
}

// fast is a restart schedule short enough for tests.
var fast = backoff.Policy{Base: 10 * time.Millisecond, Cap: 40 * time.Millisecond}

// sh declares a service running script under /bin/sh, with PATH and D
// (a directory for the files the scripts leave) in its environment.
func sh(name, dir, script string) Spec {
	return Spec{
		Name: name, Path: "/bin/sh", Args: []string{"-c", script},
		Env: []string{"PATH=/usr/bin:/bin", "D=" + dir},
	}
}

func newManager(t *testing.T, specs ...Spec) *Manager {
	t.Helper()
	w := &testWriter{t: t}
	// Registered before start's, so it runs after Run has returned.
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return &Manager{
		Specs: specs, Reaper: reaper, Backoff: fast, RunDir: t.TempDir(),
		Log: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// testWriter sends log lines to t.Log while the test runs.
type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// start runs m and returns the function that stops it and returns Run's
// error. Cleanup stops it if the test did not.
func start(t *testing.T, m *Manager) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				err = errors.New("Run did not return 20 s after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return stop
}

// waitFor polls until cond holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func status(m *Manager, name string) Status {
	for _, st := range m.Statuses() {
		if st.Name == name {
			return st
		}
	}
	return Status{}
}

// waitState waits until service name is in state and returns its status.
func waitState(t *testing.T, m *Manager, name string, state State) Status {
	t.Helper()
	var st Status
	waitFor(t, fmt.Sprintf("%s to be %s (last %+v)", name, state, &st), func() bool {
		st = status(m, name)
		return st.State == state
	})
	return st
}

// supervisionEnded waits until the service's Supervisor has stopped, so
// no further start can come.
func supervisionEnded(t *testing.T, m *Manager, name string) {
	t.Helper()
	waitFor(t, name+"'s supervision to end", func() bool {
		for _, s := range m.services() {
			if s.spec.Name == name {
				return s.sup.Status().State == supervise.StateStopped
			}
		}
		return false
	})
}

// stamp reads a time the scripts wrote with date +%s%N.
func stamp(t *testing.T, path string) time.Time {
	t.Helper()
	// The shell creates the file before date writes to it: wait for the
	// whole line.
	var b []byte
	waitFor(t, path, func() bool {
		var err error
		b, err = os.ReadFile(path)
		return err == nil && strings.HasSuffix(string(b), "\n")
	})
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return time.Unix(0, ns)
}

// lines counts the lines of a file the scripts append to.
func lines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

func gone(pid int) bool {
	return errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// syncBuffer is a Console the test can read while services write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func file(dir, name string) string { return filepath.Join(dir, name) }
