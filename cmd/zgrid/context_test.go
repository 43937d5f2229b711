package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestContexts(t *testing.T) {
	dir := t.TempDir()
	c := cli{t: t, bin: zgrid(t), config: filepath.Join(dir, "cfg", "config.json")}
	data := filepath.Join(dir, "grid")
	c.run(0, "init", "--data", data)
	if _, errs := c.run(1, "farm", "list"); !strings.Contains(errs, "zgrid context add") {
		t.Errorf("no registry: %s", errs)
	}
	out, _ := c.run(0, "context", "add", "local", "--data", data)
	if !strings.Contains(out, "current: local") {
		t.Errorf("context add: %s", out)
	}
	if fi, err := os.Stat(c.config); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("config file: %v %v", fi, err)
	}
	if out, _ := c.run(0, "farm", "list"); !strings.Contains(out, "NAME") { // through the current context
		t.Errorf("farm list through the context: %s", out)
	}
	gone := filepath.Join(dir, "gone")
	c.run(0, "context", "add", "gone", "--data", gone)
	if _, errs := c.run(1, "farm", "list", "--context", "gone"); !strings.Contains(errs, gone) {
		t.Errorf("--context gone did not go to %s: %s", gone, errs)
	}
	c.run(0, "context", "add", "lab", "--server", "https://192.0.2.2:8443", "--token-file", "t", "--ca", "ca.pem")
	out, _ = c.run(0, "context", "list")
	if !regexp.MustCompile(`(?m)^\*\s+local\s+--data `).MatchString(out) || !strings.Contains(out, "https://192.0.2.2:8443") {
		t.Errorf("context list: %s", out)
	}
	if _, errs := c.run(1, "farm", "list", "--context", "nowhere"); !strings.Contains(errs, `context "nowhere" is not in`) {
		t.Errorf("unknown context: %s", errs)
	}
	if _, errs := c.run(1, "farm", "list", "--context", "local", "--data", data); !strings.Contains(errs, "give one") {
		t.Errorf("--context with --data: %s", errs)
	}
	// Explicit flags win over the current context.
	c.run(0, "context", "use", "gone")
	if _, errs := c.run(0, "farm", "list", "--data", data); errs != "" {
		t.Errorf("--data did not win over the context: %s", errs)
	}
	c.run(0, "context", "use", "lab")
	c.run(0, "context", "remove", "lab")
	if _, errs := c.run(1, "farm", "list"); !strings.Contains(errs, "no registry") {
		t.Errorf("after removing the current context: %s", errs)
	}
	if _, errs := c.run(2, "context", "add", "x", "--server", "https://a"); !strings.Contains(errs, "--token-file and --ca") {
		t.Errorf("server without token: %s", errs)
	}
}
