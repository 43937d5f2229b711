package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/handoff"
)

// TestMain lets the test binary act as core0 itself, so the signal tests
// exercise the real main (signal handling and exit status).
func TestMain(m *testing.M) {
	if os.Getenv("CORE0_TEST_AS_MAIN") == "1" {
		os.Args = append([]string{"core0"}, strings.Fields(os.Getenv("CORE0_TEST_ARGS"))...)
		main()
		return
	}
	os.Exit(m.Run())
}

// syncBuffer is a log sink read while core0 writes to it.
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

func waitFor(t *testing.T, buf *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(buf.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in output:\n%s", want, buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// registryServer is a TLS registry that fails the first `failures` status
// reports with 503 and records the accepted one.
type registryServer struct {
	*httptest.Server
	mu       sync.Mutex
	failures int
	attempts int
	got      map[string]any
	all      []map[string]any // every accepted report, in order
	tlsVer   uint16
}

func newRegistry(t *testing.T, failures int) (*registryServer, string) {
	rs := &registryServer{failures: failures}
	rs.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		rs.attempts++
		if r.Method != http.MethodPost || r.URL.Path != "/v1/status" {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		if rs.attempts <= rs.failures {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"starting up"}`)
			return
		}
		rs.tlsVer = r.TLS.Version
		rs.got = nil
		json.NewDecoder(r.Body).Decode(&rs.got)
		rs.all = append(rs.all, rs.got)
		w.WriteHeader(http.StatusNoContent)
	}))
	rs.StartTLS()
	t.Cleanup(rs.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rs.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return rs, ca
}

// setup writes an executable and a boot.json naming its digest (or
// another one when tamper is set).
func setup(t *testing.T, exeBody []byte, registryURL string, tamper bool) (exe, bootJSON string) {
	dir := t.TempDir()
	exe = filepath.Join(dir, "core0")
	if err := os.WriteFile(exe, exeBody, 0o755); err != nil {
		t.Fatal(err)
	}
	d := digest.Of(exeBody)
	if tamper {
		d = digest.Of(append(exeBody, 0))
	}
	bootJSON = filepath.Join(dir, "run", "zeroboot", "boot.json")
	err := handoff.WriteBootInfo(bootJSON, handoff.BootInfo{
		NodeID: "node-7", Registry: registryURL, ReleaseChannel: "demo", ReleaseVersion: 42, Token: bootToken,
		Entrypoint: "/bin/core0", EntrypointDigest: d.String(), BootedAt: time.Unix(0, 0).UTC(),
		ReadyFile: readyFile(bootJSON),
	})
	if err != nil {
		t.Fatal(err)
	}
	return exe, bootJSON
}

// readyFile is where setup's boot.json asks Core-0 to say it is ready.
func readyFile(bootJSON string) string { return filepath.Join(filepath.Dir(bootJSON), "ready") }

// bootToken stands for the registry's boot token that PID 1 passes on.
const bootToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func testCore(exe, bootJSON, ca string, out io.Writer) *core0 {
	return &core0{
		BootInfo: bootJSON, Exe: exe, CA: ca,
		Heartbeat: 20 * time.Millisecond, ReportEvery: time.Hour,
		Backoff: backoff.Policy{Base: time.Millisecond, Cap: 5 * time.Millisecond},
		Log:     log.New(out, "core0: ", 0),
		Now:     time.Now,
	}
}

func TestReadyReportedWithRetry(t *testing.T) {
	rs, ca := newRegistry(t, 2)
	exe, bj := setup(t, []byte("core0 executable"), rs.URL, false)
	out := &syncBuffer{}
	c := testCore(exe, bj, ca, out)
	var killed sync.WaitGroup
	killed.Add(1)
	c.CrashAfter, c.Kill = 30*time.Millisecond, killed.Done

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- c.run(ctx) }()
	waitFor(t, out, "heartbeat, up")
	killed.Wait() // --crash-after fired
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("exit %d, want 0", code)
	}

	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.attempts != 3 {
		t.Errorf("%d attempts, want 3 (two 503s then success)", rs.attempts)
	}
	if rs.tlsVer != tls.VersionTLS13 {
		t.Errorf("TLS version %#x, want TLS 1.3", rs.tlsVer)
	}
	want := map[string]any{"node_id": "node-7", "source": "core0", "state": "ready", "release_version": float64(42), "token": bootToken}
	for k, v := range want {
		if rs.got[k] != v {
			t.Errorf("report %s = %v, want %v (report %v)", k, rs.got[k], v, rs.got)
		}
	}
	log := out.String()
	for _, w := range []string{"attempt 1:", "starting up", "ready (node node-7, release 42)", "crashing on purpose", "stopping"} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
	if _, err := os.Stat(readyFile(bj)); err != nil {
		t.Errorf("PID 1 not told the node is ready: %v", err)
	}
}

func TestSelfCheckMismatch(t *testing.T) {
	out := &syncBuffer{}
	exe, bj := setup(t, []byte("core0 executable"), "https://192.0.2.1", true)
	c := testCore(exe, bj, "/nonexistent", out)
	if code := c.run(context.Background()); code != exitMismatch {
		t.Fatalf("exit %d, want %d; log:\n%s", code, exitMismatch, out)
	}
	if !strings.Contains(out.String(), "refusing to run: self check: "+exe+" has digest sha256:") {
		t.Errorf("log does not explain the mismatch:\n%s", out)
	}
	if _, err := os.Stat(readyFile(bj)); err == nil {
		t.Error("a Core-0 that refused to run told PID 1 the node is ready")
	}
}

func TestSetupErrors(t *testing.T) {
	exe, bj := setup(t, []byte("x"), "", false)
	for _, tc := range []struct {
		name   string
		modify func(c *core0)
		code   int
		want   string
	}{
		{"no boot info", func(c *core0) { c.BootInfo = "/nonexistent/boot.json" }, exitSetup, "read boot info"},
		{"no exe", func(c *core0) { c.Exe = "/nonexistent/exe" }, exitMismatch, "self check"},
		{"no registry", func(c *core0) {}, exitSetup, "no registry URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := &syncBuffer{}
			c := testCore(exe, bj, "/nonexistent", out)
			tc.modify(c)
			if code := c.run(context.Background()); code != tc.code || !strings.Contains(out.String(), tc.want) {
				t.Errorf("exit %d log %q; want %d and %q", code, out, tc.code, tc.want)
			}
		})
	}
	bad := filepath.Join(t.TempDir(), "boot.json")
	os.WriteFile(bad, []byte(`{"registry":"https://192.0.2.1","entrypoint_digest":"md5:abc"}`), 0o644)
	out := &syncBuffer{}
	if code := testCore(exe, bad, "", out).run(context.Background()); code != exitMismatch || !strings.Contains(out.String(), "entrypoint_digest") {
		t.Errorf("malformed digest: exit %d log %q", code, out)
	}
	_, bj2 := setup(t, []byte("x"), "https://192.0.2.1", false)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, []byte("not a certificate"), 0o644)
	out = &syncBuffer{}
	if code := testCore(exe, bj2, ca, out).run(context.Background()); code != exitSetup || !strings.Contains(out.String(), "no PEM certificate") {
		t.Errorf("bad CA: exit %d log %q", code, out)
	}
}

func TestParseFlags(t *testing.T) {
	env := func(k string) string {
		if k == handoff.EnvBootInfo {
			return "/tmp/b.json"
		}
		return ""
	}
	c, err := parseFlags([]string{"--heartbeat", "3s", "--crash-after", "1m"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.BootInfo != "/tmp/b.json" || c.Heartbeat != 3*time.Second || c.CrashAfter != time.Minute || c.CA != handoff.CAPath || c.Exe != "/proc/self/exe" {
		t.Errorf("parsed %+v", c)
	}
	c, _ = parseFlags(nil, func(string) string { return "" })
	if c.BootInfo != handoff.BootInfoPath || c.Heartbeat != 10*time.Second || c.CrashAfter != 0 {
		t.Errorf("defaults %+v", c)
	}
	for _, args := range [][]string{{"--heartbeat", "0s"}, {"--crash-after", "-1s"}, {"extra"}, {"--nope"}} {
		if _, err := parseFlags(args, env); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

// startMain runs the test binary as core0 with the real main.
func startMain(t *testing.T, args string, failures int) (*exec.Cmd, *syncBuffer) {
	rs, ca := newRegistry(t, failures)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	_, bj := setup(t, body, rs.URL, false) // digest of this very binary
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "CORE0_TEST_AS_MAIN=1", "CORE0_TEST_ARGS=--ca "+ca+" "+args, handoff.EnvBootInfo+"="+bj)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, out
}

func TestSIGTERMExitsZero(t *testing.T) {
	cmd, out := startMain(t, "--heartbeat 50ms", 0)
	waitFor(t, out, "core0: heartbeat, up")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "core0: stopping") {
		t.Errorf("no stopping line:\n%s", out)
	}
}

func TestCrashAfterDiesBySIGKILL(t *testing.T) {
	cmd, out := startMain(t, "--crash-after 100ms", 0)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("wait: %v\n%s", err, out)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("status %v, want killed by SIGKILL\n%s", ws, out)
	}
	if !strings.Contains(out.String(), "core0: ready") {
		t.Errorf("crashed before reporting ready:\n%s", out)
	}
}
