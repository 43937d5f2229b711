package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/handoff"
)

// TestRestartCount: Core-0 says when PID 1 restarted it, and only then.
func TestRestartCount(t *testing.T) {
	tests := []struct {
		restarts int
		want     string // "" : no restart line
	}{
		{0, ""},
		{1, "restarted by PID 1: restart 1 in this boot"},
		{7, "restarted by PID 1: restart 7 in this boot"},
	}
	for _, tc := range tests {
		exe, bj := setup(t, []byte("core0 executable"), "https://192.0.2.1", true)
		bi, err := handoff.ReadBootInfo(bj)
		if err != nil {
			t.Fatal(err)
		}
		bi.Restarts = tc.restarts
		if err := handoff.WriteBootInfo(bj, bi); err != nil {
			t.Fatal(err)
		}
		out := &syncBuffer{}
		// The tampered digest ends the run right after the restart line.
		testCore(exe, bj, "/nonexistent", out).run(context.Background())
		got := out.String()
		if tc.want == "" && strings.Contains(got, "restarted") || !strings.Contains(got, tc.want) {
			t.Errorf("restarts %d: log\n%s\nwant %q", tc.restarts, got, tc.want)
		}
	}
}

// TestMismatchAsksNoRestart: the real main exits with the status PID 1's
// supervisor takes as "do not restart".
func TestMismatchAsksNoRestart(t *testing.T) {
	if exitMismatch != handoff.ExitNoRestart {
		t.Fatalf("exitMismatch = %d, want handoff.ExitNoRestart %d", exitMismatch, handoff.ExitNoRestart)
	}
	rs, ca := newRegistry(t, 0)
	// boot.json names another file's digest than the running binary's.
	_, bj := setup(t, []byte("not the test binary"), rs.URL, false)
	cmd, out := startMainBoot(t, "--ca "+ca, bj)
	err := waitExit(t, cmd, 30*time.Second)
	if code := cmd.ProcessState.ExitCode(); code != handoff.ExitNoRestart {
		t.Fatalf("exit %d (%v), want %d; output:\n%s", code, err, handoff.ExitNoRestart, out)
	}
	if !strings.Contains(out.String(), "so that PID 1 does not restart me") {
		t.Errorf("output does not say why:\n%s", out)
	}
}

// startMainBoot runs the test binary as core0 with the real main and the
// given boot.json.
func startMainBoot(t *testing.T, args, bootJSON string) (*exec.Cmd, *syncBuffer) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "CORE0_TEST_AS_MAIN=1", "CORE0_TEST_ARGS="+args, handoff.EnvBootInfo+"="+bootJSON)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("still running after %v", d)
	}
	return nil
}
