package handoff

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestBootInfoRestarts(t *testing.T) {
	tests := []struct {
		name     string
		restarts int
		want     string
	}{
		// Written for the first start too: Core-0 reads 0, not a gap.
		{"first start", 0, `"restarts": 0`},
		{"third restart", 3, `"restarts": 3`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "boot.json")
			if err := WriteBootInfo(p, BootInfo{NodeID: "n", Restarts: tc.restarts}); err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(p)
			if !bytes.Contains(raw, []byte(tc.want)) {
				t.Errorf("boot.json lacks %s:\n%s", tc.want, raw)
			}
			bi, err := ReadBootInfo(p)
			if err != nil || bi.Restarts != tc.restarts {
				t.Errorf("read back restarts %d (%v), want %d", bi.Restarts, err, tc.restarts)
			}
		})
	}
}

// A boot.json from a PID 1 that predates the field reads as the first
// start.
func TestBootInfoWithoutRestarts(t *testing.T) {
	p := filepath.Join(t.TempDir(), "boot.json")
	if err := os.WriteFile(p, []byte(`{"node_id":"n"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bi, err := ReadBootInfo(p)
	if err != nil || bi.Restarts != 0 || bi.NodeID != "n" {
		t.Errorf("ReadBootInfo = %+v, %v; want node n, 0 restarts", bi, err)
	}
}

func TestExitNoRestartIsTheSupervisors(t *testing.T) {
	// Core-0 and PID 1 must agree on the value; 0-3 are Core-0's own
	// statuses, 126 and up the shell's and the signals'.
	if ExitNoRestart != 125 {
		t.Errorf("ExitNoRestart = %d, want 125 (documented in docs/boot.md)", ExitNoRestart)
	}
}
