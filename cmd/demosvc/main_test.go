package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuf is an io.Writer the test can read while the service writes.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// A service comes up after the port it waits for, then listens, answers
// /healthz and notifies, and stops cleanly on cancel.
func TestUpAndStop(t *testing.T) {
	dep, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dep.Close()
	notify := filepath.Join(t.TempDir(), "ready")
	var out syncBuf
	s := &svc{Listen: freeAddr(t), HTTP: freeAddr(t), WaitFor: dep.Addr().String(), Notify: notify, Out: &out}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- s.run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(notify); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never notified; output:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get("http://" + s.HTTP + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
	if c, err := net.Dial("tcp", s.Listen); err != nil {
		t.Fatalf("listen address refuses: %v", err)
	} else {
		c.Close()
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d after cancel", code)
	}
	for _, want := range []string{"accepts\n", "listening on", "serving /healthz", "notified", "up\n", "stopping\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestExitOnPurpose(t *testing.T) {
	var out syncBuf
	s := &svc{ExitAfter: 10 * time.Millisecond, Exit: 3, Out: &out}
	if code := s.run(context.Background()); code != 3 || !strings.Contains(out.String(), "exiting 3 on purpose") {
		t.Fatalf("exit %d, output %q", code, out.String())
	}
}

func TestListenFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out syncBuf
	s := &svc{Listen: l.Addr().String(), Out: &out}
	if code := s.run(context.Background()); code != 1 || !strings.Contains(out.String(), "listen "+l.Addr().String()) {
		t.Fatalf("exit %d, output %q", code, out.String())
	}
}

func TestParseFlags(t *testing.T) {
	env := func(k string) string {
		if k == "ZEROBOOT_NOTIFY" {
			return "/run/n"
		}
		return ""
	}
	s, err := parseFlags([]string{"--listen", ":1", "--exit-after", "2s", "--exit", "4"}, env)
	if err != nil || s.Listen != ":1" || s.ExitAfter != 2*time.Second || s.Exit != 4 || s.Notify != "/run/n" {
		t.Fatalf("parseFlags = %+v, %v", s, err)
	}
	for _, args := range [][]string{{"--delay", "-1s"}, {"extra"}, {"--nope"}} {
		if _, err := parseFlags(args, env); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}
