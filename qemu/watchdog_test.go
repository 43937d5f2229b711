package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// wdTimeout is the watchdog timeout the boots below ask for, in seconds.
const wdTimeout = 10

// watchdogQEMU gives the guest QEMU's i6300esb watchdog and lets its
// reset reboot the guest: the VM's -no-reboot would turn the reset into
// QEMU's exit, and the later -action wins over it.
var watchdogQEMU = []string{"-device", "i6300esb", "-action", "reboot=reset,watchdog=reset"}

var (
	reBanner  = regexp.MustCompile(`Linux version \d`)
	reArmed   = regexp.MustCompile(`watchdog: /dev/watchdog \(i6300ESB timer\) armed, timeout ` + fmt.Sprint(wdTimeout) + `s \(asked ` + fmt.Sprint(wdTimeout) + `s\)`)
	reStale   = regexp.MustCompile(`watchdog: PID 1's heartbeat is .* old .*no longer petting`)
	reHang    = regexp.MustCompile(`debug: PID 1 hangs at supervise \(zeroboot.debug.hang=supervise\)`)
	reRefused = regexp.MustCompile(`zeroboot.debug.hang=supervise refused: this PID 1 is a production build`)
)

// TestWatchdog boots with QEMU's i6300esb. A production PID 1 refuses
// the debug hang, arms the watchdog with the timeout asked for and keeps
// the node up well past it; a debug PID 1 (-tags zeroboot_debug) that
// hangs in the supervision once Core-0 runs stops petting, and the
// watchdog resets the node: the kernel boots a second time.
func TestWatchdog(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	g.serve()
	args := fmt.Sprintf("zeroboot.registry=%s zeroboot.farm=demo zeroboot.watchdog=%d zeroboot.debug.hang=supervise", g.registry(), wdTimeout)

	t.Run("production build refuses the hang and keeps the node up", func(t *testing.T) {
		vm := &VM{UUID: "5a1c0b0e-0000-4000-8000-000000000061", Append: args, Extra: watchdogQEMU}
		vm.Kernel, vm.Initrd = kernel, g.initramfs(kver)
		runVM(t, g, vm, "console-watchdog.log")
		for _, re := range []*regexp.Regexp{reArmed, reRefused, reReady} {
			line, err := vm.WaitFor(ctx, re)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("console: %s", line)
		}
		// Two timeouts and a margin: a node whose pets did not reach
		// the device would have been reset by now.
		time.Sleep(2*wdTimeout*time.Second + 5*time.Second)
		if n := vm.Count(reBanner); n != 1 {
			t.Fatalf("kernel booted %d times, want once", n)
		}
		if vm.Count(reStale) != 0 || vm.Count(reHang) != 0 {
			t.Fatalf("a production build stopped petting or hung:\n%s", vm.Tail(30))
		}
	})

	t.Run("a hung PID 1 is reset by the watchdog", func(t *testing.T) {
		vm := &VM{UUID: "5a1c0b0e-0000-4000-8000-000000000062", Append: args, Extra: watchdogQEMU}
		vm.Kernel, vm.Initrd = kernel, debugInitramfs(t, g)
		runVM(t, g, vm, "console-watchdog-hang.log")
		for _, re := range []*regexp.Regexp{reArmed, regexp.MustCompile(`debug build: PID 1 will hang at supervise`), reReady} {
			line, err := vm.WaitFor(ctx, re)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("console: %s", line)
		}
		line, err := vm.WaitFor(ctx, reHang)
		if err != nil {
			t.Fatal(err)
		}
		hung := time.Now()
		t.Logf("console: %s", line)
		// The heartbeat stops at once; the pet loop stops after two and
		// a half intervals (5/6 of the timeout); the hardware fires a
		// timeout after the last pet; then firmware and kernel load.
		limit := 3 * wdTimeout * time.Second
		wctx, wcancel := context.WithTimeout(ctx, limit)
		defer wcancel()
		if line, err = vm.WaitFor(wctx, reStale); err != nil {
			t.Fatal(err)
		}
		stale := time.Now()
		t.Logf("console: %s", line)
		if err := waitCount(wctx, vm, reBanner, 2); err != nil {
			t.Fatalf("no second boot within %v of the hang: %v", limit, err)
		}
		reset := time.Now()
		t.Logf("figure: second kernel banner %.1f s after the hang line (%.1f s after petting stopped; timeout %d s; firmware and kernel load included)",
			reset.Sub(hung).Seconds(), reset.Sub(stale).Seconds(), wdTimeout)
		// The second boot is PID 1's again, and it arms the watchdog.
		if err := waitCount(ctx, vm, reArmed, 2); err != nil {
			t.Fatal(err)
		}
		armed, hang, again := firstIndex(vm, reArmed), firstIndex(vm, reHang), lastIndex(vm, reBanner)
		if !(armed >= 0 && armed < hang && hang < again) {
			t.Fatalf("console lines out of order: armed %d, hang %d, second kernel banner %d", armed, hang, again)
		}
	})
}

// debugInitramfs is g's initramfs around a PID 1 built with -tags
// zeroboot_debug, which honours zeroboot.debug.hang; the production
// images (make, the other tests) never are.
func debugInitramfs(t *testing.T, g *grid) string {
	t.Helper()
	init := filepath.Join(t.TempDir(), "init")
	cmd := exec.Command("go", "build", "-tags", "zeroboot_debug", "-trimpath", "-ldflags",
		"-s -w -X main.buildTime="+fmt.Sprint(time.Now().Add(-time.Hour).Unix()), "-o", init, "./init")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags zeroboot_debug ./init: %v\n%s", err, out)
	}
	out := filepath.Join(t.TempDir(), "initramfs-debug.cpio.zst")
	cmd = exec.Command(bins.mkinitramfs, "-init", init, "-kernel-version", kver,
		"-file", filepath.Join(g.data, "tuf", "root", "1.root.json")+":/etc/zeroboot/root.json",
		"-file", filepath.Join(g.data, "tuf", "channels.json")+":/etc/zeroboot/channels.json",
		"-file", filepath.Join(g.data, "tls", "ca.pem")+":/etc/zeroboot/ca.pem",
		"-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkinitramfs: %v\n%s", err, b)
	}
	return out
}

// waitCount waits until n console lines match re.
func waitCount(ctx context.Context, vm *VM, re *regexp.Regexp, n int) error {
	for vm.Count(re) < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d lines match %q, want %d: %w; console tail:\n%s", vm.Count(re), re, n, ctx.Err(), vm.Tail(40))
		case <-vm.done:
			if vm.Count(re) >= n {
				return nil
			}
			return fmt.Errorf("qemu exited (%v) with %d lines matching %q, want %d; console tail:\n%s", vm.err, vm.Count(re), re, n, vm.Tail(40))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func lastIndex(vm *VM, re *regexp.Regexp) int {
	ls := vm.Lines()
	for i := len(ls) - 1; i >= 0; i-- {
		if re.MatchString(ls[i]) {
			return i
		}
	}
	return -1
}
