// Package testenv lets a test say what it needs from the machine: root, a
// tool, a kernel feature. Where the need is not met the test is skipped,
// except under ZEROBOOT_E2E=required (make test, CI), where it fails: a run
// that was meant to exercise real mounts, namespaces or terminals must not
// pass without them.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Required reports whether missing needs fail the run (ZEROBOOT_E2E=required).
func Required() bool { return os.Getenv("ZEROBOOT_E2E") == "required" }

// Need skips or fails t, with the message, unless ok.
func Need(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("REQUIRED BUT IMPOSSIBLE (ZEROBOOT_E2E=required): %s", msg)
	}
	t.Skipf("SKIP: %s", msg)
}

// NeedRoot needs euid 0, for what.
func NeedRoot(t testing.TB, what string) {
	t.Helper()
	Need(t, os.Geteuid() == 0, "%s needs root (make test runs as root)", what)
}

// NeedTool needs name on PATH and returns its path.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Need(t, err == nil, "%s not installed (make deps): %v", name, err)
	return p
}
