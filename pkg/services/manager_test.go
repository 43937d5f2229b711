package services

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A service script that records its start and stop times in $D and
// stops promptly on SIGTERM (the trap runs once wait is interrupted).
const recorded = `trap 'date +%s%N > $D/$N.stop; exit 0' TERM
date +%s%N > $D/$N.start
`

func recordedSpec(name, dir, body string, after ...string) Spec {
	s := sh(name, dir, recorded+body)
	s.Env = append(s.Env, "N="+name)
	s.After = after
	return s
}

// TestOrder: a and b are independent and start together; c needs both,
// d needs c. On stop, dependents go first: d, then c, then a and b.
func TestOrder(t *testing.T) {
	dir := t.TempDir()
	// a and b take 300 ms to become ready, so that a serial start would
	// show: each must have started before the other was ready.
	// The background sleep's pid goes to $N.child: a SIGTERM that comes
	// while sh has forked it but not yet exec'd it is taken by sh's trap
	// in the child and lost, so the test stops only once each has exec'd.
	idle := `sleep 30 & echo $! > $D/$N.child; wait`
	slow := `sleep 0.3; date +%s%N > $D/$N.ready; touch "$ZEROBOOT_NOTIFY"; ` + idle
	notify := Probe{Kind: ProbeNotify, Interval: 10 * time.Millisecond}
	a := recordedSpec("a", dir, slow)
	a.Ready = notify
	b := recordedSpec("b", dir, slow)
	b.Ready = notify
	c := recordedSpec("c", dir, idle, "a", "b")
	d := recordedSpec("d", dir, idle, "c")
	// Declared out of order: the order comes from After alone.
	m := newManager(t, d, c, b, a)
	var mu sync.Mutex
	var readyAt = map[string]time.Time{}
	m.OnChange = func(st Status) {
		mu.Lock()
		defer mu.Unlock()
		if st.State == StateReady {
			readyAt[st.Name] = time.Now()
		}
	}
	stop := start(t, m)
	if err := m.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := status(m, "c"); st.State != StateReady || st.Restarts != 0 {
		t.Fatalf("c: %+v", st)
	}
	// Ready without a probe means started, not yet through the script.
	for _, name := range []string{"a", "b", "c", "d"} {
		waitFor(t, name+".start", func() bool { _, err := os.Stat(file(dir, name+".start")); return err == nil })
	}
	at := func(name, what string) time.Time { return stamp(t, file(dir, name+"."+what)) }
	if !at("a", "start").Before(at("b", "ready")) || !at("b", "start").Before(at("a", "ready")) {
		t.Errorf("a and b did not start in parallel: a %v..%v, b %v..%v",
			at("a", "start"), at("a", "ready"), at("b", "start"), at("b", "ready"))
	}
	for _, dep := range []string{"a", "b"} {
		if !at("c", "start").After(at(dep, "ready")) {
			t.Errorf("c started at %v, before %s was ready at %v", at("c", "start"), dep, at(dep, "ready"))
		}
	}
	mu.Lock()
	if !at("d", "start").After(readyAt["c"]) {
		t.Errorf("d started at %v, before c was ready at %v", at("d", "start"), readyAt["c"])
	}
	mu.Unlock()

	for _, name := range []string{"a", "b", "c", "d"} {
		waitFor(t, name+"'s sleep", func() bool {
			pid, err := os.ReadFile(file(dir, name+".child"))
			if err != nil {
				return false
			}
			comm, _ := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/comm")
			return strings.TrimSpace(string(comm)) == "sleep"
		})
	}
	began := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("stopping services that obey SIGTERM took %v", took)
	}
	if !at("d", "stop").Before(at("c", "stop")) {
		t.Errorf("d stopped at %v, not before c at %v", at("d", "stop"), at("c", "stop"))
	}
	for _, dep := range []string{"a", "b"} {
		if !at("c", "stop").Before(at(dep, "stop")) {
			t.Errorf("c stopped at %v, not before %s at %v", at("c", "stop"), dep, at(dep, "stop"))
		}
	}
	for _, st := range m.Statuses() {
		if st.State != StateStopped || st.Reason != "exited 0" {
			t.Errorf("after stop %s: %s %q, want stopped, exited 0", st.Name, st.State, st.Reason)
		}
	}
}

// TestProbes passes and times out each kind of probe.
func TestProbes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closed.Addr().String()
	closed.Close()
	var hits atomic.Int32
	okSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) < 3 { // not ready for the first two attempts
			http.Error(w, "warming up", http.StatusServiceUnavailable)
		}
	}))
	defer okSrv.Close()
	badSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer badSrv.Close()

	const timeout = 300 * time.Millisecond
	tests := []struct {
		name   string
		script string
		probe  Probe
		want   string // "" ready; else the failure reason's end
	}{
		{"exec passes", `exec sleep 30`, Probe{Kind: ProbeExec, Command: []string{"/bin/sh", "-c", "test -e $D/up"}}, ""},
		{"exec times out", `exec sleep 30`, Probe{Kind: ProbeExec, Command: []string{"/bin/false"}}, "probe /bin/false: exited 1"},
		{"exec hangs", `exec sleep 30`, Probe{Kind: ProbeExec, Command: []string{"/bin/sleep", "30"}}, "probe /bin/sleep: context deadline exceeded"},
		{"tcp passes", `exec sleep 30`, Probe{Kind: ProbeTCP, Address: ln.Addr().String()}, ""},
		{"tcp refused", `exec sleep 30`, Probe{Kind: ProbeTCP, Address: refused}, "connection refused"},
		{"http passes after 503s", `exec sleep 30`, Probe{Kind: ProbeHTTP, URL: okSrv.URL}, ""},
		{"http 503", `exec sleep 30`, Probe{Kind: ProbeHTTP, URL: badSrv.URL + "/health"}, "GET " + badSrv.URL + "/health: 503 Service Unavailable"},
		{"notify passes", `sleep 0.05; touch "$ZEROBOOT_NOTIFY"; exec sleep 30`, Probe{Kind: ProbeNotify}, ""},
		{"notify never", `exec sleep 30`, Probe{Kind: ProbeNotify}, "not created yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(file(dir, "up"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			tc.probe.Timeout, tc.probe.Interval = timeout, 20*time.Millisecond
			s := sh("svc", dir, `echo $$ > $D/pid; `+tc.script)
			s.Ready, s.Restart = tc.probe, RestartNever
			m := newManager(t, s)
			start(t, m)
			if tc.want == "" {
				waitState(t, m, "svc", StateReady)
				return
			}
			st := waitState(t, m, "svc", StateFailed)
			prefix := "not ready after 300ms: "
			if !strings.HasPrefix(st.Reason, prefix) || !strings.HasSuffix(st.Reason, tc.want) {
				t.Errorf("reason %q, want %q...%q", st.Reason, prefix, tc.want)
			}
			pid := readPid(t, file(dir, "pid"))
			waitFor(t, "the unready service's group to be killed", func() bool { return gone(pid) })
			if m.Ready() {
				t.Error("Ready with a failed service")
			}
		})
	}
}

// fakeSleep records the backoff delays without waiting; after max of
// them it waits for the end of supervision, so a crashing service does
// not spin.
type fakeSleep struct {
	mu     sync.Mutex
	delays []time.Duration
	max    int
}

func (f *fakeSleep) sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.delays = append(f.delays, d)
	n := len(f.delays)
	f.mu.Unlock()
	if n > f.max {
		<-ctx.Done()
	}
	return ctx.Err()
}

func (f *fakeSleep) got() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.delays)
}

// TestCrashLoop restarts a crashing service with a growing delay, then
// reports a crash loop after CrashLoopExits exits and restarts at the
// cap.
func TestCrashLoop(t *testing.T) {
	dir := t.TempDir()
	s := sh("crash", dir, `echo run >> $D/runs; echo "boom $$"; exit 3`)
	s.CrashLoopExits, s.CrashLoopWindow = 4, time.Minute
	m := newManager(t, s)
	m.Backoff.Base, m.Backoff.Cap = 100*time.Millisecond, 800*time.Millisecond
	m.Backoff.Rand = func() float64 { return 0.999 }
	fs := &fakeSleep{max: 6}
	m.Sleep = fs.sleep
	var mu sync.Mutex
	var states []State
	m.OnChange = func(st Status) {
		mu.Lock()
		defer mu.Unlock()
		if len(states) == 0 || states[len(states)-1] != st.State {
			states = append(states, st.State)
		}
	}
	start(t, m)
	waitFor(t, "7 runs", func() bool { return lines(t, file(dir, "runs")) == 7 })
	st := waitState(t, m, "crash", StateCrashLooping)
	waitFor(t, "the 7th exit", func() bool { return len(fs.got()) == 7 })
	st = status(m, "crash")
	if st.Reason != "exited 3" || st.Restarts != 6 {
		t.Errorf("status %+v, want reason exited 3 after 6 restarts", st)
	}
	if len(st.Output) == 0 || !strings.HasPrefix(st.Output[len(st.Output)-1], "boom ") {
		t.Errorf("output %q, want the crash's last words", st.Output)
	}
	// Attempts 0, 1, 2 grow from Base; the fourth exit makes the loop and
	// every delay from then on is the cap's.
	want := []time.Duration{100, 200, 400, 800, 800, 800, 800}
	for i, d := range fs.got() {
		if hi := want[i] * time.Millisecond; d < hi*99/100 || d > hi {
			t.Errorf("delay %d = %v, want about %v", i, d, hi)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if i := slices.Index(states, StateCrashLooping); i < 0 || slices.Contains(states[i:], StateReady) {
		t.Errorf("states %v, want crash-looping to stay", states)
	}
	if !slices.Contains(states, StateFailed) || !slices.Contains(states, StateReady) {
		t.Errorf("states %v, want ready and failed before the loop", states)
	}
}

func TestRestartPolicy(t *testing.T) {
	tests := []struct {
		name     string
		restart  Restart
		code     string
		state    State
		reason   string
		restarts bool
	}{
		{"never, exit 0", RestartNever, "0", StateStopped, "exited 0", false},
		{"never, exit 1", RestartNever, "1", StateFailed, "exited 1", false},
		{"on failure, exit 0", RestartOnFailure, "0", StateStopped, "exited 0", false},
		{"on failure, exit 1", RestartOnFailure, "1", "", "", true},
		{"always, exit 0", RestartAlways, "0", "", "", true},
		{"always, exit 125", RestartAlways, "125", StateFailed, "exited 125: asked not to be restarted", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := sh("svc", dir, `echo run >> $D/runs; sleep 0.05; exit `+tc.code)
			s.Restart = tc.restart
			m := newManager(t, s)
			start(t, m)
			if tc.restarts {
				waitFor(t, "3 runs", func() bool { return lines(t, file(dir, "runs")) >= 3 })
				return
			}
			supervisionEnded(t, m, "svc")
			st := status(m, "svc")
			if st.State != tc.state || st.Reason != tc.reason {
				t.Errorf("status %s %q, want %s %q", st.State, st.Reason, tc.state, tc.reason)
			}
			if n := lines(t, file(dir, "runs")); n != 1 {
				t.Errorf("%d runs, want 1", n)
			}
			// A one-shot done counts as ready; a failure does not.
			if ready := m.Ready(); ready != (tc.state == StateStopped) {
				t.Errorf("Ready = %v with the service %s", ready, tc.state)
			}
		})
	}
}

// TestVerify refuses a start: at once, or at the restart after a crash,
// and never again after that.
func TestVerify(t *testing.T) {
	for _, okStarts := range []int{0, 1} {
		t.Run(map[int]string{0: "first start", 1: "restart"}[okStarts], func(t *testing.T) {
			dir := t.TempDir()
			var calls atomic.Int32
			s := sh("checked", dir, `echo run >> $D/runs; exit 1`)
			// Never ready, so the node cannot look ready between the
			// crash and the refused restart.
			s.Ready = Probe{Kind: ProbeExec, Command: []string{"/bin/false"}, Timeout: 5 * time.Second, Interval: 10 * time.Millisecond}
			s.Verify = func() error {
				if int(calls.Add(1)) > okStarts {
					return errors.New("digest sha256:ab12 does not match the release")
				}
				return nil
			}
			dependent := sh("dependent", dir, `exec sleep 30`)
			dependent.After = []string{"checked"}
			m := newManager(t, s, dependent)
			start(t, m)
			err := m.WaitReady(t.Context())
			if err == nil || !strings.Contains(err.Error(), "services: checked failed: refused: digest sha256:ab12") {
				t.Errorf("WaitReady = %v, want the refusal", err)
			}
			supervisionEnded(t, m, "checked")
			st := status(m, "checked")
			if st.State != StateFailed || st.Reason != "refused: digest sha256:ab12 does not match the release" {
				t.Errorf("status %s %q", st.State, st.Reason)
			}
			if n := calls.Load(); int(n) != okStarts+1 {
				t.Errorf("Verify called %d times, want %d", n, okStarts+1)
			}
			if n := lines(t, file(dir, "runs")); n != okStarts {
				t.Errorf("%d runs, want %d", n, okStarts)
			}
			if okStarts == 0 {
				if st := status(m, "dependent"); st.State != StateWaiting || st.Reason != "waiting for checked" {
					t.Errorf("dependent %s %q, want waiting for checked", st.State, st.Reason)
				}
			}
		})
	}
}

// TestDependencyFailsLater: a dependent keeps running when what it is
// After fails once it was ready; an optional failure leaves the node
// ready.
func TestDependencyFailsLater(t *testing.T) {
	dir := t.TempDir()
	db := sh("db", dir, `sleep 0.2; exit 1`)
	db.Optional, db.Restart = true, RestartNever
	app := sh("app", dir, `exec sleep 30`)
	app.After = []string{"db"}
	m := newManager(t, db, app)
	start(t, m)
	waitState(t, m, "db", StateFailed)
	if st := status(m, "app"); st.State != StateReady {
		t.Errorf("app %s %q after db failed, want it still ready", st.State, st.Reason)
	}
	if !m.Ready() {
		t.Error("not Ready with only an optional service failed")
	}
	if err := m.WaitReady(t.Context()); err != nil {
		t.Errorf("WaitReady = %v", err)
	}
}

// TestOutput keeps the last lines, sanitised and cut, and writes every
// line to the console with the service's name.
func TestOutput(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", MaxLineBytes+100)
	s := sh("talker", dir, `printf 'one\ntwo\n\033[31mred\033[0m\n'; printf '%s\n' "$LONG" >&2; printf 'bell\a\r\nno newline'`)
	s.Env = append(s.Env, "LONG="+long)
	s.Restart = RestartNever
	m := newManager(t, s)
	m.OutputLines = 3
	con := &syncBuffer{}
	m.Console = con
	start(t, m)
	want := []string{strings.Repeat("x", MaxLineBytes) + "...", "bell?", "no newline"}
	waitFor(t, "the last line", func() bool {
		out := status(m, "talker").Output
		return len(out) > 0 && out[len(out)-1] == "no newline"
	})
	if got := status(m, "talker").Output; !slices.Equal(got, want) {
		t.Errorf("Output %q, want %q", got, want)
	}
	for _, line := range []string{"talker: one\n", "talker: ?[31mred?[0m\n", "talker: bell?\n", "talker: no newline\n"} {
		if !strings.Contains(con.String(), line) {
			t.Errorf("console %q lacks %q", con.String(), line)
		}
	}
	if strings.ContainsAny(con.String(), "\x1b\a\r") {
		t.Errorf("console has control bytes: %q", con.String())
	}
}

func TestRing(t *testing.T) {
	for _, tc := range []struct {
		size, add int
		want      []string
	}{
		{3, 0, []string{}},
		{3, 2, []string{"0", "1"}},
		{3, 3, []string{"0", "1", "2"}},
		{3, 10, []string{"7", "8", "9"}},
		{1, 5, []string{"4"}},
	} {
		r := newRing(tc.size)
		for i := range tc.add {
			r.add(string(rune('0' + i)))
		}
		if got := r.last(); !slices.Equal(got, tc.want) {
			t.Errorf("ring %d after %d lines: %q, want %q", tc.size, tc.add, got, tc.want)
		}
	}
}

// TestStopKills stops a service that ignores SIGTERM: SIGKILL after its
// StopTimeout, and its background child in the group is gone as well.
func TestStopKills(t *testing.T) {
	dir := t.TempDir()
	s := sh("stubborn", dir, `trap "" TERM; sleep 30 & echo $! > $D/child; echo $$ > $D/pid; wait`)
	s.StopTimeout = 200 * time.Millisecond
	m := newManager(t, s)
	stop := start(t, m)
	waitState(t, m, "stubborn", StateReady)
	child, pid := readPid(t, file(dir, "child")), readPid(t, file(dir, "pid"))
	began := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(began); took < s.StopTimeout || took > s.StopTimeout+2*time.Second {
		t.Errorf("stop took %v, want just over the %v StopTimeout", took, s.StopTimeout)
	}
	if st := status(m, "stubborn"); st.State != StateStopped || st.Reason != "killed by signal 9" {
		t.Errorf("status %s %q, want stopped, killed by signal 9", st.State, st.Reason)
	}
	waitFor(t, "the child to be reaped", func() bool { return gone(child) && gone(pid) })
	if err := m.WaitReady(t.Context()); err == nil {
		t.Error("WaitReady after Run returned = nil")
	}
}

// TestStatusesBeforeRun: nothing to report, and not ready.
func TestStatusesBeforeRun(t *testing.T) {
	m := &Manager{Specs: []Spec{{Name: "a", Path: "/bin/true"}}}
	if m.Statuses() != nil || m.Ready() {
		t.Errorf("before Run: %v, ready %v", m.Statuses(), m.Ready())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if err := m.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady before Run = %v, want the context's end", err)
	}
}
