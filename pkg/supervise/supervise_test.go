package supervise

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"golang.org/x/sys/unix"
)

// One reaper for the whole test binary: two would race for statuses, as
// anything else calling wait would. The test process is made a child
// subreaper so orphaned grandchildren come to it as they would to PID 1.
var (
	reaper  *Reaper
	orphans = &recorder{}
)

func TestMain(m *testing.M) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "PR_SET_CHILD_SUBREAPER:", err)
		os.Exit(1)
	}
	reaper = NewReaper(slog.New(orphans))
	code := m.Run()
	reaper.Stop()
	os.Exit(code)
}

// recorder is a slog handler remembering the pid of each orphan reaped.
type recorder struct {
	mu   sync.Mutex
	pids map[int]string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "reaped orphan" {
		return nil
	}
	var pid int
	var status string
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "pid":
			pid = int(a.Value.Int64())
		case "status":
			status = a.Value.String()
		}
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pids == nil {
		r.pids = map[int]string{}
	}
	r.pids[pid] = status
	return nil
}

func (r *recorder) status(pid int) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.pids[pid]
	return s, ok
}

func waitStatus(t *testing.T, ch <-chan ExitStatus) ExitStatus {
	t.Helper()
	select {
	case st := <-ch:
		return st
	case <-time.After(10 * time.Second):
		t.Fatal("no exit status within 10 s")
	}
	return ExitStatus{}
}

func TestReaperDeliversStatus(t *testing.T) {
	tests := []struct {
		script string
		want   string
		ok     bool
	}{
		{"exit 0", "exited 0", true},
		{"exit 3", "exited 3", false},
		{"kill -9 $$", "killed by signal 9", false},
		{"kill -TERM $$", "killed by signal 15", false},
	}
	for _, tc := range tests {
		cmd := exec.Command("/bin/sh", "-c", tc.script)
		ch, err := reaper.Start(cmd)
		if err != nil {
			t.Fatalf("start %q: %v", tc.script, err)
		}
		st := waitStatus(t, ch)
		if st.String() != tc.want || st.Success() != tc.ok || st.Pid != cmd.Process.Pid {
			t.Errorf("%q: status %q success %v pid %d, want %q %v pid %d",
				tc.script, st, st.Success(), st.Pid, tc.want, tc.ok, cmd.Process.Pid)
		}
		cmd.Process.Release()
	}
}

// Processes that exit at once must not lose their status to a reap that
// runs before they are registered.
func TestReaperInstantExits(t *testing.T) {
	const n = 40
	chans := make([]<-chan ExitStatus, n)
	for i := range chans {
		ch, err := reaper.Start(exec.Command("/bin/sh", "-c", "exit "+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		chans[i] = ch
	}
	for i, ch := range chans {
		if st := waitStatus(t, ch); st.String() != "exited "+strconv.Itoa(i) {
			t.Errorf("process %d: %s", i, st)
		}
	}
}

func TestReaperReapsOrphans(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The shell leaves a background grandchild and exits: the grandchild is
	// reparented to us (the subreaper) and must be reaped when it ends.
	cmd := exec.Command("/bin/sh", "-c", "sleep 0.3 >/dev/null & echo $!")
	cmd.Stdout = w
	ch, err := reaper.Start(cmd)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("read grandchild pid: %v", err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", line, err)
	}
	if st := waitStatus(t, ch); !st.Success() {
		t.Fatalf("shell: %s", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, gone := os.Stat(fmt.Sprintf("/proc/%d", orphan))
		status, logged := orphans.status(orphan)
		if errors.Is(gone, os.ErrNotExist) && logged {
			if status != "exited 0" {
				t.Errorf("orphan %d status %q, want exited 0", orphan, status)
			}
			return
		}
		if time.Now().After(deadline) {
			state, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", orphan))
			t.Fatalf("orphan %d not reaped after 10 s (logged %v, stat %q)", orphan, logged, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReaperStartError(t *testing.T) {
	if _, err := reaper.Start(exec.Command("/nonexistent/zeroboot-test")); err == nil {
		t.Fatal("starting a missing binary succeeded")
	}
	// The failed start must not leave a registration or break reaping.
	ch, err := reaper.Start(exec.Command("/bin/true"))
	if err != nil {
		t.Fatal(err)
	}
	if st := waitStatus(t, ch); !st.Success() {
		t.Errorf("true after a failed start: %s", st)
	}
}

// fakeSleep records the delays and ends supervision after max of them.
type fakeSleep struct {
	mu     sync.Mutex
	delays []time.Duration
	max    int
	cancel context.CancelFunc
}

func (f *fakeSleep) sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.delays = append(f.delays, d)
	n := len(f.delays)
	f.mu.Unlock()
	if n >= f.max {
		f.cancel()
		return ctx.Err()
	}
	return nil
}

func (f *fakeSleep) got() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.delays...)
}

// bounds is the jitter range of backoff attempt n: [d/2, d].
func bounds(p backoff.Policy, n int) (time.Duration, time.Duration) {
	d := p.Base
	for i := 0; i < n && d < p.Cap; i++ {
		d *= 2
	}
	d = min(d, p.Cap)
	return d / 2, d
}

func TestSupervisorBacksOff(t *testing.T) {
	tests := []struct {
		name    string
		command func() *exec.Cmd
		want    string
		rand    func() float64
	}{
		{"exits 1", func() *exec.Cmd { return exec.Command("/bin/sh", "-c", "exit 1") }, "exited 1", func() float64 { return 0.999 }},
		{"exits 1, random jitter", func() *exec.Cmd { return exec.Command("/bin/sh", "-c", "exit 1") }, "exited 1", nil},
		{"missing binary", func() *exec.Cmd { return exec.Command("/nonexistent/zeroboot-core0") }, "failed to start:", func() float64 { return 0.999 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fs := &fakeSleep{max: 8, cancel: cancel}
			pol := backoff.Policy{Base: 100 * time.Millisecond, Cap: 1600 * time.Millisecond, Rand: tc.rand}
			var mu sync.Mutex
			var statuses []string
			s := &Supervisor{
				Name: "core0", Command: tc.command, Reaper: reaper, Backoff: pol, Sleep: fs.sleep,
				CrashLoopExits: 100, // the plain schedule, never the crash loop's cap
				OnExit: func(st ExitStatus, _, _ time.Duration) {
					mu.Lock()
					statuses = append(statuses, st.String())
					mu.Unlock()
				},
			}
			if err := s.Run(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v, want context.Canceled", err)
			}
			delays := fs.got()
			if len(delays) != 8 || len(statuses) != 8 {
				t.Fatalf("%d delays, %d exits, want 8 each", len(delays), len(statuses))
			}
			for i, d := range delays {
				lo, hi := bounds(pol, i)
				if d < lo || d > hi {
					t.Errorf("delay %d = %v, want in [%v, %v]", i, d, lo, hi)
				}
				if i > 0 && hi < pol.Cap && d < delays[i-1] {
					t.Errorf("delay %d = %v shrank from %v before the cap", i, d, delays[i-1])
				}
				if tc.rand != nil && i > 0 && hi < pol.Cap && d <= delays[i-1] {
					t.Errorf("delay %d = %v, not above %v", i, d, delays[i-1])
				}
				if !strings.HasPrefix(statuses[i], tc.want) {
					t.Errorf("exit %d: %q, want %q", i, statuses[i], tc.want)
				}
			}
		})
	}
}

func TestSupervisorRestartsKilledProcess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pids := make(chan int, 4)
	exits := make(chan ExitStatus, 4)
	stops := make(chan ExitStatus, 1)
	var slept []time.Duration
	s := &Supervisor{
		Name:    "core0",
		Command: func() *exec.Cmd { return exec.Command("/bin/sleep", "30") },
		Reaper:  reaper, StopTimeout: 5 * time.Second,
		OnStart: func(pid int) { pids <- pid },
		OnExit:  func(st ExitStatus, _, _ time.Duration) { exits <- st },
		OnStop:  func(st ExitStatus, _ time.Duration) { stops <- st },
		Sleep: func(ctx context.Context, d time.Duration) error {
			slept = append(slept, d)
			return nil
		},
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	first := <-pids
	if err := unix.Kill(first, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := waitStatus(t, exits); st.String() != "killed by signal 9" || st.Pid != first {
		t.Errorf("exit of pid %d: %s (pid %d), want killed by signal 9", first, st, st.Pid)
	}
	var second int
	select {
	case second = <-pids:
	case <-time.After(10 * time.Second):
		t.Fatal("not restarted")
	}
	if second == first {
		t.Errorf("restart reused pid %d", first)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if st := waitStatus(t, stops); st.String() != "killed by signal 15" {
		t.Errorf("on cancel the process ended with %s, want SIGTERM", st)
	}
	if len(exits) != 0 {
		t.Errorf("the stop on cancel was also reported as an exit: %v", <-exits)
	}
	if len(slept) != 1 || slept[0] < 500*time.Millisecond || slept[0] > time.Second {
		t.Errorf("delays %v, want one within the default first backoff [0.5s, 1s]", slept)
	}
}

func TestSupervisorResetAfterLongRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fs := &fakeSleep{max: 5, cancel: cancel}
	pol := backoff.Policy{Base: 100 * time.Millisecond, Cap: 10 * time.Second, Rand: func() float64 { return 0.999 }}
	runs := 0
	var took []time.Duration
	s := &Supervisor{
		Name: "core0", Reaper: reaper, Backoff: pol, Sleep: fs.sleep,
		ResetAfter: 200 * time.Millisecond,
		Command: func() *exec.Cmd {
			runs++
			if runs == 4 { // the fourth run lasts past ResetAfter
				return exec.Command("/bin/sh", "-c", "sleep 0.3; exit 1")
			}
			return exec.Command("/bin/sh", "-c", "exit 1")
		},
		OnExit: func(_ ExitStatus, run, _ time.Duration) { took = append(took, run) },
	}
	if err := s.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	d := fs.got()
	if len(d) != 5 || took[3] < 300*time.Millisecond {
		t.Fatalf("delays %v, run times %v", d, took)
	}
	// Attempts 0,1,2 grow; the long run resets to attempt 0; then 1 again.
	wantN := []int{0, 1, 2, 0, 1}
	for i, n := range wantN {
		if lo, hi := bounds(pol, n); d[i] < lo || d[i] > hi {
			t.Errorf("delay %d = %v, want attempt %d's [%v, %v]", i, d[i], n, lo, hi)
		}
	}
}

// TestSupervisorStop stops a process that obeys SIGTERM and one that
// ignores it: either way the end is reported through OnStop, never as an
// exit to restart from.
func TestSupervisorStop(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		minWait      time.Duration
		want         string
	}{
		{"obeys SIGTERM", `exec sleep 30`, 0, "killed by signal 15"},
		// SIG_IGN survives exec, so sleep itself ignores SIGTERM.
		{"ignores SIGTERM", `trap "" TERM; exec sleep 30`, 300 * time.Millisecond, "killed by signal 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pids := make(chan int, 1)
			stops := make(chan ExitStatus, 1)
			s := &Supervisor{
				Name: "stopped", Reaper: reaper,
				Command: func() *exec.Cmd { return exec.Command("/bin/sh", "-c", tc.script) },
				OnStart: func(pid int) { pids <- pid },
				OnExit: func(st ExitStatus, _, next time.Duration) {
					t.Errorf("OnExit(%s, restart in %v) after Stop", st, next)
				},
				OnStop: func(st ExitStatus, _ time.Duration) { stops <- st },
			}
			done := make(chan error, 1)
			go func() { done <- s.Run(context.Background()) }()
			pid := <-pids
			waitComm(t, pid, "sleep") // any trap is in place once sleep runs
			start := time.Now()
			if err := s.Stop(300 * time.Millisecond); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if waited := time.Since(start); waited < tc.minWait {
				t.Errorf("Stop returned after %v, before the SIGTERM grace period", waited)
			}
			if st := waitStatus(t, stops); st.String() != tc.want {
				t.Errorf("status %s, want %s", st, tc.want)
			}
			if err := <-done; !errors.Is(err, ErrStopped) {
				t.Errorf("Run after Stop = %v, want ErrStopped", err)
			}
			if err := s.Stop(time.Second); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		})
	}
}

// slowClock is the system clock, slowed once slow is set: Run reads it
// between a run's exit and its report, so a slow one widens the window in
// which Stop could return before the report.
type slowClock struct{ slow atomic.Bool }

func (c *slowClock) Now() time.Time {
	if c.slow.Load() {
		time.Sleep(300 * time.Millisecond)
	}
	return time.Now()
}
func (c *slowClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// A caller that reboots once Stop returns must find the stop reported:
// PID 1 logs "process stopped" through OnStop, and a reboot right after
// Stop lost that line while Stop returned as soon as the group was gone.
func TestSupervisorStopWaitsForReport(t *testing.T) {
	pids := make(chan int, 1)
	var reported atomic.Bool
	clock := &slowClock{}
	s := &Supervisor{
		Name: "reported", Reaper: reaper, Clock: clock,
		Command: func() *exec.Cmd { return exec.Command("/bin/sh", "-c", "exec sleep 30") },
		OnStart: func(pid int) { pids <- pid },
		OnStop:  func(ExitStatus, time.Duration) { reported.Store(true) },
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	waitComm(t, <-pids, "sleep")
	clock.slow.Store(true)
	if err := s.Stop(2 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !reported.Load() {
		t.Error("Stop returned before OnStop was told of the stopped run")
	}
	if err := <-done; !errors.Is(err, ErrStopped) {
		t.Errorf("Run after Stop = %v, want ErrStopped", err)
	}
}

func waitComm(t *testing.T, pid int, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(b)) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d is %q, never %q", pid, b, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSupervisorNeedsCommandAndReaper(t *testing.T) {
	err := (&Supervisor{Name: "core0"}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "core0") {
		t.Errorf("Run without Command/Reaper = %v, want an error naming core0", err)
	}
}

func TestExitStatusString(t *testing.T) {
	tests := []struct {
		st   ExitStatus
		want string
	}{
		{ExitStatus{Status: unix.WaitStatus(1 << 8)}, "exited 1"},
		{ExitStatus{Status: unix.WaitStatus(0)}, "exited 0"},
		{ExitStatus{Status: unix.WaitStatus(9)}, "killed by signal 9"},
		{ExitStatus{Status: unix.WaitStatus(11 | 0x80)}, "killed by signal 11 (core dumped)"},
		{ExitStatus{Err: syscall.ENOEXEC}, "failed to start: exec format error"},
	}
	for _, tc := range tests {
		if got := tc.st.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestShutdownOrder(t *testing.T) {
	tests := []struct {
		sig     os.Signal
		stopErr error
		bootErr error
		want    string
		wantErr string
	}{
		{unix.SIGTERM, nil, nil, fmt.Sprintf("stop(7s) sync reboot(%#x)", unix.LINUX_REBOOT_CMD_RESTART), ""},
		{unix.SIGINT, nil, nil, fmt.Sprintf("stop(7s) sync reboot(%#x)", unix.LINUX_REBOOT_CMD_RESTART), ""},
		{unix.SIGUSR2, nil, nil, fmt.Sprintf("stop(7s) sync reboot(%#x)", unix.LINUX_REBOOT_CMD_POWER_OFF), ""},
		// A stuck workload must not block the reboot.
		{unix.SIGTERM, errors.New("still running"), nil, fmt.Sprintf("stop(7s) sync reboot(%#x)", unix.LINUX_REBOOT_CMD_RESTART), ""},
		{unix.SIGUSR2, nil, unix.EPERM, fmt.Sprintf("stop(7s) sync reboot(%#x)", unix.LINUX_REBOOT_CMD_POWER_OFF), "power-off: operation not permitted"},
		{unix.SIGHUP, nil, nil, "", "no action for signal hangup"},
	}
	for _, tc := range tests {
		var calls []string
		s := &Shutdown{
			Timeout: 7 * time.Second,
			Stop: func(d time.Duration) error {
				calls = append(calls, fmt.Sprintf("stop(%v)", d))
				return tc.stopErr
			},
			Sync: func() { calls = append(calls, "sync") },
			Reboot: func(cmd int) error {
				calls = append(calls, fmt.Sprintf("reboot(%#x)", cmd))
				return tc.bootErr
			},
		}
		err := s.Handle(tc.sig)
		if got := strings.Join(calls, " "); got != tc.want {
			t.Errorf("%v: calls %q, want %q", tc.sig, got, tc.want)
		}
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%v: err %v, want %q", tc.sig, err, tc.wantErr)
		}
	}
}

func TestSignalsAllHaveActions(t *testing.T) {
	seen := map[string]bool{}
	for _, sig := range Signals() {
		_, name, ok := Action(sig)
		if !ok {
			t.Errorf("Signals() lists %v, which has no action", sig)
		}
		seen[name] = true
	}
	if !seen["reboot"] || !seen["power-off"] {
		t.Errorf("Signals() actions %v, want reboot and power-off", seen)
	}
}

// TestSupervisorKill ends one run and expects a restart, and a Kill
// naming a run that is no longer current to do nothing.
func TestSupervisorKill(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pids := make(chan int, 4)
	exits := make(chan ExitStatus, 4)
	s := &Supervisor{
		Name: "killed", Reaper: reaper, StopTimeout: 5 * time.Second,
		Command: func() *exec.Cmd { return exec.Command("/bin/sh", "-c", "sleep 30 & wait") },
		OnStart: func(pid int) { pids <- pid },
		OnExit:  func(st ExitStatus, _, _ time.Duration) { exits <- st },
		Sleep:   func(ctx context.Context, d time.Duration) error { return ctx.Err() },
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	first := <-pids
	if err := s.Kill(first + 1); err != nil { // not the current run
		t.Fatal(err)
	}
	if err := s.Kill(first); err != nil {
		t.Fatal(err)
	}
	if st := waitStatus(t, exits); st.String() != "killed by signal 9" {
		t.Errorf("after Kill: %s, want killed by signal 9", st)
	}
	select {
	case second := <-pids:
		if groupAlive(first) {
			t.Errorf("group %d of the killed run still alive after the restart", first)
		}
		if err := s.Kill(first); err != nil || !groupAlive(second) {
			t.Errorf("a stale Kill(%d): err %v, current run %d alive %v", first, err, second, groupAlive(second))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not restarted after Kill")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}
