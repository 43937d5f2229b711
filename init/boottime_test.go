package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/boottime"
)

// PID 1 puts the shares first on its timeline and says them, with their
// source, on the console; a firmware that tells nothing leaves the
// kernel's share alone.
func TestBootShares(t *testing.T) {
	kmsg := []byte("<6>[    0.000000] tsc: Detected 2000.000 MHz processor\n")
	dir := t.TempDir()
	fpdt := filepath.Join(dir, "fpdt")
	if err := os.Mkdir(fpdt, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		clocks boottime.Clocks
		steps  []string
		log    string
	}{
		// 6e9 ticks at 2 GHz: 3 s since reset, 1.25 s of it the kernel's.
		{"TSC", boottime.Clocks{Uptime: 1250 * time.Millisecond, TSC: 6e9},
			[]string{"firmware (TSC)", "kernel", "mount"}, "firmware 1.750 s (TSC), kernel 1.250 s (CLOCK_BOOTTIME)"},
		{"no TSC", boottime.Clocks{Uptime: 1250 * time.Millisecond},
			[]string{"kernel", "mount"}, "firmware unknown (EFI: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, _, _ := testNode(t)
			var out bytes.Buffer
			n.log = slog.New(slog.NewTextHandler(&out, nil))
			n.run(step{"mount", func(context.Context) error { return nil }})
			n.bootSharesFrom(boottime.Sources{EFIVars: filepath.Join(dir, "efivars"), FPDT: fpdt,
				KernelLog: func() ([]byte, error) { return kmsg, nil }}, c.clocks)
			var names []string
			for _, s := range n.tl.Steps() {
				names = append(names, s.Name)
			}
			if strings.Join(names, ",") != strings.Join(c.steps, ",") {
				t.Errorf("timeline %v, want %v", names, c.steps)
			}
			if !strings.Contains(out.String(), "boot time before PID 1: "+c.log) {
				t.Errorf("log %q lacks %q", out.String(), c.log)
			}
		})
	}
}
