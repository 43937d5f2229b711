package qemu

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoScript runs qemu/demo.sh, what `make demo` runs, on the binaries
// this test run built: it must end by itself with exit status 0 and its
// success line, and leave no QEMU or zgrid behind.
func TestDemoScript(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "demo.sh")
	cmd.Env = append(cmd.Environ(), "BIN="+bins.dir, "DEMO_TIMEOUT=240")
	// On timeout, SIGTERM the script so its trap stops QEMU and zgrid, and
	// do not wait forever for the pipes they hold.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("demo.sh did not finish: %v\n%s", ctx.Err(), tail(out.String(), 60))
	}
	if err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, tail(out.String(), 60))
	}
	for _, want := range []string{"SUCCESS: node n", "STEP", "handoff", "ready"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, tail(out.String(), 60))
		}
	}
	// The demo stops what it started: its QEMU carries the demo's UUID.
	if b, _ := exec.Command("pgrep", "-f", "5a1c0b0e-de70-4000-8000-000000000001").Output(); len(b) > 0 {
		t.Errorf("QEMU still running after the demo: pids %s", b)
	}
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
