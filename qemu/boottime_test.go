package qemu

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PID 1's line with the shares before it (init/boottime.go).
var reShares = regexp.MustCompile(`boot time before PID 1: firmware (?:([0-9.]+) s \((\w+)\)|unknown.*), kernel ([0-9.]+) s \(CLOCK_BOOTTIME\)`)

// A kernel log line on the console, with its printk time.
var rePrintk = regexp.MustCompile(`^\[\s*(\d+\.\d+)\]`)

// bootShares is what PID 1 said about the boot before it, beside the
// host's view of the same boot.
type bootShares struct {
	firmware, kernel time.Duration // PID 1's; firmware 0 when unknown
	source           string
	// The host's: from QEMU's start to the kernel's printk clock's zero
	// (the earliest arrival of a kernel line less its printk time: a line
	// printed live arrives at once, a buffered one later).
	hostFirmware time.Duration
	// From QEMU's start to PID 1's first console line (after its mount
	// step), against the firmware and kernel shares together.
	hostPID1 time.Duration
}

// sharesOf reads PID 1's shares from vm's console and works out the
// host's view; it fails t when PID 1 did not say them.
func sharesOf(t *testing.T, vm *VM) bootShares {
	t.Helper()
	lines, at := vm.Timed()
	var b bootShares
	found := false
	b.hostFirmware = time.Duration(1<<63 - 1)
	for i, l := range lines {
		if m := rePrintk.FindStringSubmatch(l); m != nil {
			ts, _ := strconv.ParseFloat(m[1], 64)
			b.hostFirmware = min(b.hostFirmware, at[i]-time.Duration(ts*float64(time.Second)))
		}
		if b.hostPID1 == 0 && strings.Contains(l, "zeroboot: ") {
			b.hostPID1 = at[i]
		}
		if m := reShares.FindStringSubmatch(l); m != nil && !found {
			found = true
			if m[1] != "" {
				b.firmware, b.source = seconds(m[1]), m[2]
			}
			b.kernel = seconds(m[3])
		}
	}
	if !found {
		t.Fatalf("PID 1 never said the boot's shares (%q)", reShares)
	}
	return b
}

func seconds(s string) time.Duration {
	f, _ := strconv.ParseFloat(s, 64)
	return time.Duration(f * float64(time.Second))
}

// check compares PID 1's firmware share with the host's: they must
// agree within tolerance, and the shares must be on the console's
// timeline table and the registry's timeline.
func (b bootShares) check(t *testing.T, g *grid, vm *VM, n map[string]any, source string, tolerance time.Duration) {
	t.Helper()
	if b.source != source {
		t.Errorf("firmware share from %q, want %q", b.source, source)
	}
	if d := b.firmware - b.hostFirmware; d > tolerance || d < -tolerance {
		t.Errorf("firmware share %v, the host saw %v: %v apart, more than %v", b.firmware, b.hostFirmware, d, tolerance)
	}
	for _, row := range []string{`^firmware \(` + source + `\)\s+-[0-9.]+\s+-[0-9.]+\s+[0-9.]+\s+ok`, `^kernel\s+-[0-9.]+\s+0\.0\s+[0-9.]+\s+ok`} {
		if vm.Count(regexp.MustCompile(row)) == 0 {
			t.Errorf("console's timeline table has no row %q", row)
		}
	}
	tl, _ := n["timeline"].([]any)
	want := []string{"firmware (" + source + ")", "kernel", "mount"}
	for i, w := range want {
		if i >= len(tl) {
			t.Fatalf("registry's timeline %v, want it to start with %v", tl, want)
		}
		if s, _ := tl[i].(map[string]any); s["name"] != w {
			t.Errorf("registry's timeline step %d is %v, want %s", i, s["name"], w)
		}
	}
}

func (b bootShares) String() string {
	return fmt.Sprintf("PID 1 says firmware %.2f s (%s), kernel %.2f s; the host saw QEMU start to the kernel's clock %.2f s (PID 1 %+.2f s), "+
		"to PID 1's first line %.2f s (firmware and kernel shares %+.2f s)",
		b.firmware.Seconds(), b.source, b.kernel.Seconds(), b.hostFirmware.Seconds(), (b.firmware - b.hostFirmware).Seconds(),
		b.hostPID1.Seconds(), (b.firmware + b.kernel - b.hostPID1).Seconds())
}

// TestBootTimeShares boots the kernel directly (SeaBIOS, QEMU's -kernel):
// PID 1 must tell the firmware's share from the TSC, close to what the
// host saw, and the kernel's, and the console, the registry and `zgrid
// node show` must carry both.
func TestBootTimeShares(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	g.serve()
	vm, _ := boot(t, ctx, g, "5a1c0b0e-0000-4000-8000-0000000000b7", g.registry())
	id, _, n := untilReady(t, ctx, g, vm)
	b := sharesOf(t, vm)
	// TCG runs the kernel's early setup (between its printk clock's zero
	// and CLOCK_BOOTTIME's) slowly, the more so on a loaded host: 0.02 to
	// 0.22 s here.
	b.check(t, g, vm, n, "TSC", time.Second)
	out := g.run("node", "show", id, "--data", g.data, "--server", g.url(""))
	for _, w := range []string{`(?m)^firmware \(TSC\)\s+-`, `(?m)^kernel\s+-[0-9.]+\s+0\.0\s`} {
		if !regexp.MustCompile(w).MatchString(out) {
			t.Errorf("zgrid node show lacks %q:\n%s", w, out)
		}
	}
	t.Logf("figure: direct kernel boot (SeaBIOS, %s): %s", Accel(), b)
	for _, l := range matching(vm, regexp.MustCompile(`^(STEP |firmware \(|kernel |mount )`)) {
		t.Logf("table: %s", l)
	}
	for _, l := range matching(vm, regexp.MustCompile(`tsc: |clocksource: Switched`)) {
		t.Logf("kernel: %s", l)
	}
}
