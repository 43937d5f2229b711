package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTLSReissue(t *testing.T) {
	c := cli{t: t, bin: zgrid(t)}
	data := filepath.Join(t.TempDir(), "grid")
	c.run(0, "init", "--data", data, "--san", "registry.example")
	ca, _ := os.ReadFile(filepath.Join(data, "tls", "ca.pem"))
	out, _ := c.run(0, "tls", "reissue", "--data", data, "--san", "new.example", "--san", "198.51.100.7")
	if !strings.Contains(out, "registry.example") || !strings.Contains(out, "new.example") || !strings.Contains(out, "198.51.100.7") {
		t.Errorf("reissue kept or added the wrong names: %s", out)
	}
	out, _ = c.run(0, "tls", "show", "--data", data)
	if !strings.Contains(out, "server.pem") || !strings.Contains(out, "new.example") || !strings.Contains(out, "zgrid registry CA") {
		t.Errorf("tls show: %s", out)
	}
	if after, _ := os.ReadFile(filepath.Join(data, "tls", "ca.pem")); string(after) != string(ca) {
		t.Error("reissue changed the CA")
	}
	out, _ = c.run(0, "tls", "reissue", "--data", data, "--san", "only.example", "--replace")
	if strings.Contains(out, "registry.example") || !strings.Contains(out, "only.example") {
		t.Errorf("--replace: %s", out)
	}
	if _, errs := c.run(2, "tls", "reissue", "--data", data); !strings.Contains(errs, "at least one --san") {
		t.Errorf("no --san: %s", errs)
	}
}
