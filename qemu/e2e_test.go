package qemu

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The end-to-end tests boot Debian's kernel with our initramfs under QEMU
// (TCG unless ZEROBOOT_QEMU_ACCEL says otherwise) against a zgrid server on
// the host's loopback. They need root only for nothing; they need QEMU and a
// kernel, which `make deps` installs.

var kernel, kver string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("qemu: -short given; end-to-end boots skipped")
		return m.Run()
	}
	var err error
	// make test sets ZEROBOOT_E2E=required: there, a missing QEMU or
	// kernel fails the run instead of passing it without a boot.
	required := os.Getenv("ZEROBOOT_E2E") == "required"
	missing := func(why string) int {
		if required {
			fmt.Println("qemu: END-TO-END BOOTS REQUIRED BUT IMPOSSIBLE:", why)
			return 1
		}
		fmt.Println("qemu: SKIPPING END-TO-END BOOTS:", why)
		return m.Run()
	}
	if _, lerr := exec.LookPath("qemu-system-x86_64"); lerr != nil {
		return missing("qemu-system-x86_64 not installed (run make deps)")
	}
	if kernel, kver, err = Kernel(); err != nil {
		return missing(err.Error())
	}
	dir, err := os.MkdirTemp("", "zeroboot-e2e-")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildBins(dir); err != nil {
		fmt.Println(err)
		return 1
	}
	return m.Run()
}

func needVM(t testing.TB) {
	t.Helper()
	if bins.init == "" {
		t.Skip("SKIPPED: QEMU, a kernel or -short missing; see TestMain's message")
	}
}

var (
	reReady    = regexp.MustCompile(`core0: ready`)
	reIdentity = regexp.MustCompile(`identity: node (n[0-9a-f]{32})`)
)

// boot starts a VM for g, asking the given registries (comma-separated,
// as on the kernel command line), and returns it with the node ID it
// announced.
func boot(t *testing.T, ctx context.Context, g *grid, uuid, registries string) (*VM, string) {
	t.Helper()
	return bootVM(t, ctx, g, &VM{UUID: uuid, Append: fmt.Sprintf("zeroboot.registry=%s zeroboot.farm=demo", registries)})
}

// bootVM starts vm (its command line, UUID and NICs set by the caller)
// with g's initramfs, and returns it with the node ID it announced. A
// guest kernel that livelocks before that (TCG on a starved host: a
// vCPU stuck in interrupts, never in our code) is booted once more, and
// the test says so; a second livelock fails the test.
func bootVM(t testing.TB, ctx context.Context, g *grid, vm *VM) (*VM, string) {
	t.Helper()
	var id string
	vm = onceMore(t, vm, func(vm *VM, _ int) { startVM(t, g, vm) }, func(vm *VM) (string, error) {
		line, err := vm.WaitFor(ctx, reIdentity)
		if errors.Is(err, ErrLivelock) {
			return "the guest kernel livelocked before PID 1's identity step", nil
		}
		if err != nil {
			return "", err
		}
		id = reIdentity.FindStringSubmatch(line)[1]
		return "", nil
	})
	return vm, id
}

// retired holds the VMs onceMore replaced: their cleanup shows no console,
// server log or figures, which belong to the attempt that counts.
var retired sync.Map // *VM -> true

// onceMore starts vm with start and waits with wait. When wait gives a
// reason to start again (the host's fault, before our code could matter:
// a TCG livelock, a firmware timeout), a fresh copy of the VM is started
// once more and the test log says RETRY and why; a second time, or an
// error from wait, fails the test. It returns the VM that got through.
func onceMore(t testing.TB, vm *VM, start func(vm *VM, attempt int), wait func(vm *VM) (retry string, err error)) *VM {
	t.Helper()
	for attempt := 1; ; attempt++ {
		start(vm, attempt)
		retry, err := wait(vm)
		switch {
		case err != nil:
			t.Fatal(err)
		case retry == "":
			return vm
		case attempt == 2:
			t.Fatalf("%s, twice:\n%s", retry, vm.Tail(15))
		}
		t.Logf("RETRY: %s; starting the VM once more:\n%s", retry, vm.Tail(15))
		vm.Stop()
		retired.Store(vm, true)
		vm = vm.Fresh()
	}
}

// untilReady waits for vm's node to say its ID and Core-0 ready on the
// console, and for the registry to record it ready; it returns the ID,
// when the console said ready (the host's clock) and the record.
func untilReady(t testing.TB, ctx context.Context, g *grid, vm *VM) (id string, at time.Time, rec map[string]any) {
	t.Helper()
	line, err := vm.WaitFor(ctx, reIdentity)
	if err != nil {
		t.Fatal(err)
	}
	id = reIdentity.FindStringSubmatch(line)[1]
	if _, err := vm.WaitFor(ctx, reReady); err != nil {
		t.Fatal(err)
	}
	at = time.Now()
	if rec, err = g.waitNode(ctx, id, "ready"); err != nil {
		t.Fatal(err)
	}
	return id, at, rec
}

// startVM starts vm with the kernel and g's initramfs; it is stopped when
// the test ends.
func startVM(t testing.TB, g *grid, vm *VM) {
	t.Helper()
	vm.Kernel, vm.Initrd = kernel, g.initramfs(kver)
	vm.Monitor = filepath.Join(g.dir, "monitor.sock")
	runVM(t, g, vm, "console.log")
}

// runVM starts vm as it is (a firmware boot when vm.Kernel is empty) with
// its console copied to the file name in g's directory; it is stopped when
// the test ends, and on failure its console and the server log are shown.
func runVM(t testing.TB, g *grid, vm *VM, name string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(g.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	vm.Console = logf
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vm.Stop()
		logf.Close()
		if _, ok := retired.Load(vm); ok {
			return
		}
		if t.Failed() {
			t.Logf("console:\n%s\nserver log:\n%s", vm.Tail(200), g.log.String())
		}
		logShares(t, vm, name)
	})
}

var (
	reShareLine = regexp.MustCompile(`boot time before PID 1: (.*)`)
	reCore0Exec = regexp.MustCompile(`core0 started \(pid \d+\) (\d+) ms after PID 1 started`)
)

// logShares gives, with -v, the boot's firmware, kernel and PID 1 shares
// as the node saw them: the figures of each medium's test.
func logShares(t testing.TB, vm *VM, name string) {
	var shares, pid1 string
	for _, l := range vm.Lines() {
		if m := reShareLine.FindStringSubmatch(l); m != nil && shares == "" {
			shares = m[1]
		}
		if m := reCore0Exec.FindStringSubmatch(l); m != nil && pid1 == "" {
			pid1 = m[1]
		}
	}
	if shares != "" {
		t.Logf("figure: %s: %s; PID 1 to Core-0 %s ms", name, shares, pid1)
	}
}

func TestBootToReady(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	g := newGrid(t)
	g.publish(core0Tree(t), 1, "--heartbeat", "2s")
	g.serve()
	// The first registry is down: the node fails over to the second, and
	// Core-0 reports to the one that answered.
	dead := fmt.Sprintf("https://%s:%d", HostAddr, freePort(t))
	vm, id := boot(t, ctx, g, "5a1c0b0e-0000-4000-8000-000000000001", dead+","+g.registry())

	if _, err := vm.WaitFor(ctx, reReady); err != nil {
		t.Fatal(err)
	}
	n, err := g.waitNode(ctx, id, "ready")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`core0: heartbeat`)); err != nil {
		t.Fatal(err)
	}
	tl, _ := n["timeline"].([]any)
	steps := map[string]bool{}
	for _, s := range tl {
		if m, ok := s.(map[string]any); ok {
			steps[fmt.Sprint(m["name"])] = true
		}
	}
	for _, want := range []string{"mount", "modules", "network", "identity", "registry", "components", "handoff"} {
		if !steps[want] {
			t.Errorf("registry timeline lacks step %q: %v", want, tl)
		}
	}
	for _, want := range []string{`virtio_net`, `network: 192\.0\.2\.`, `release: stable v1`, `registry ` + regexp.QuoteMeta(dead) + ` unreachable`} {
		if vm.Count(regexp.MustCompile(want)) == 0 {
			t.Errorf("console never showed %q", want)
		}
	}
	reportFigures(t, vm)
}

// reportFigures logs what the closing notes quote: image sizes, time from
// PID 1 to Core-0 and PID 1's memory after the hand-off.
func reportFigures(t *testing.T, vm *VM) {
	t.Helper()
	for _, f := range []struct{ name, path string }{{"initramfs (zstd)", vm.Initrd}, {"/init", bins.init}} {
		if fi, err := os.Stat(f.path); err == nil {
			t.Logf("figure: %s %.2f MiB", f.name, float64(fi.Size())/(1<<20))
		}
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`core0 started \(pid \d+\) (\d+) ms after PID 1 started`),
		regexp.MustCompile(`PID 1 memory after hand-off: (\d+ kB) resident`),
	} {
		lines := matching(vm, re)
		if len(lines) == 0 {
			t.Errorf("console never showed %q", re)
			continue
		}
		t.Logf("figure: %s", re.FindString(lines[0]))
	}
	networkFigures(t, vm)
}

// networkFigures logs where the network step's time went: when PID 1 had
// its first usable address and when the chosen link reached the registry
// (from the boot timeline and the winner's "configured ... took=" line),
// and the lines behind them.
func networkFigures(t *testing.T, vm *VM) {
	t.Helper()
	row := regexp.MustCompile(`^\s*network\s+([0-9.]+)\s+([0-9.]+)\s+[0-9.]+\s+ok`)
	won := regexp.MustCompile(`network: \S+ on (\S+) \((IPv[46]) (\S+)\)`)
	var start, end float64
	var link, family, source string
	for _, l := range vm.Lines() {
		if m := row.FindStringSubmatch(l); m != nil {
			fmt.Sscan(m[1], &start)
			fmt.Sscan(m[2], &end)
		}
		if m := won.FindStringSubmatch(l); m != nil {
			link, family, source = m[1], m[2], m[3]
		}
	}
	took := regexp.MustCompile(`configured link=` + regexp.QuoteMeta(link) + ` family=` + family + ` source=` + regexp.QuoteMeta(source) + ` .* took=([0-9.]+)(ms|s)`)
	for _, l := range vm.Lines() {
		if m := took.FindStringSubmatch(l); m != nil && link != "" {
			var d float64
			fmt.Sscan(m[1], &d)
			if m[2] == "s" {
				d *= 1000
			}
			t.Logf("figure: network %s %s on %s: first usable address %.0f ms, registry reached %.0f ms after PID 1 started (network step %.0f ms)",
				family, source, link, start+d, end, end-start)
			break
		}
	}
	for _, l := range matching(vm, regexp.MustCompile(`network: | (carrier|configured|probe passed|default route promoted) link=`)) {
		t.Logf("figure: %s", strings.TrimSpace(l))
	}
}

// TestCtrlAltDelRebootsInOrder presses Ctrl-Alt-Del on a running node: PID 1
// must stop Core-0 (which says so), sync and reboot; QEMU runs with
// -no-reboot, so the reboot ends it.
func TestCtrlAltDelRebootsInOrder(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	g.serve()
	vm, id := boot(t, ctx, g, "5a1c0b0e-0000-4000-8000-000000000004", g.registry())
	if _, err := vm.WaitFor(ctx, reReady); err != nil {
		t.Fatal(err)
	}
	if err := vm.HMP("sendkey ctrl-alt-delete"); err != nil {
		t.Fatal(err)
	}
	// Core-0 writes to the console directly while PID 1 and the kernel go
	// through printk, so the two streams interleave freely: the order is
	// checked on printk lines only, and Core-0's own line just has to appear.
	order := []*regexp.Regexp{
		regexp.MustCompile(`shutting down.*signal=interrupt.*action=reboot`),
		regexp.MustCompile(`process stopped name=core0 `),
		regexp.MustCompile(`reboot: Restarting system`),
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`^core0: stopping`)); err != nil {
		t.Fatalf("Core-0 never said it was stopping: %v", err)
	}
	last := -1
	for _, re := range order {
		if _, err := vm.WaitFor(ctx, re); err != nil {
			t.Fatal(err)
		}
		i := firstIndex(vm, re)
		if i <= last {
			t.Fatalf("%q came before the previous step of the shutdown:\n%s", re, vm.Tail(30))
		}
		last = i
	}
	if err := vm.Wait(ctx); err != nil {
		t.Fatalf("QEMU did not end with the reboot: %v", err)
	}
	// A stop for shutdown is no crash: the registry keeps the node ready.
	if m, err := g.node(id); err != nil || m["state"] != "ready" {
		t.Errorf("node after the reboot: state %v (err %v), want ready", m["state"], err)
	}
}

func firstIndex(vm *VM, re *regexp.Regexp) int {
	for i, l := range vm.Lines() {
		if re.MatchString(l) {
			return i
		}
	}
	return -1
}

func TestTamperedChunkRefused(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	chunk := tamperLargestChunk(t, filepath.Join(g.data, "store", "chunks"))
	g.serve()
	vm, id := boot(t, ctx, g, "5a1c0b0e-0000-4000-8000-000000000002", g.registry())

	line, err := vm.WaitFor(ctx, regexp.MustCompile(regexp.QuoteMeta("sha256:"+chunk)))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node refused the chunk: %s", line)
	n, err := g.waitNode(ctx, id, "failed")
	if err != nil {
		t.Fatal(err)
	}
	if reason := fmt.Sprint(n["reason"]); !strings.Contains(reason, chunk) {
		t.Errorf("registry failure reason %q does not name chunk %s", reason, chunk)
	}
	// Give it a retry round: still refused, and Core-0 never started.
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`components failed \(attempt 2\)`)); err != nil {
		t.Fatal(err)
	}
	if c := vm.Count(regexp.MustCompile(`^core0: `)); c != 0 {
		t.Fatalf("Core-0 printed %d lines from a tampered release", c)
	}
}

func TestCore0RestartedWithBackoff(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	g := newGrid(t)
	g.publish(core0Tree(t), 1, "--crash-after", "1s")
	g.serve()
	vm, id := boot(t, ctx, g, "5a1c0b0e-0000-4000-8000-000000000003", g.registry())

	reExit := regexp.MustCompile(`core0 exited: killed by signal 9.*restarting in ([0-9.]+m?s)`)
	var delays []time.Duration
	for len(delays) < 4 {
		if _, err := vm.WaitFor(ctx, regexp.MustCompile(fmt.Sprintf(`core0: ready`))); err != nil {
			t.Fatal(err)
		}
		lines := matching(vm, reExit)
		for len(lines) <= len(delays) {
			if _, err := vm.WaitFor(ctx, reExit); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			lines = matching(vm, reExit)
		}
		d, err := time.ParseDuration(reExit.FindStringSubmatch(lines[len(delays)])[1])
		if err != nil {
			t.Fatal(err)
		}
		delays = append(delays, d)
	}
	t.Logf("restart delays: %v", delays)
	// Backoff with jitter in [d/2, d] and doubling d: the delay after the
	// fourth crash must exceed the one after the first.
	if !(delays[3] > delays[0]) {
		t.Fatalf("restart delays did not grow: %v", delays)
	}
	if n := vm.Count(reReady); n < 4 {
		t.Fatalf("Core-0 reported ready %d times, want 4 restarts", n)
	}
	// The fifth exit within 5 minutes is a crash loop: on the console, and
	// at the registry as the failed node's reason, while the next start
	// waits for the backoff's cap.
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`core0 is crash-looping: 5 exits within 5m0s`)); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := g.node(id)
		if err == nil && n["state"] == "failed" && strings.HasPrefix(fmt.Sprint(n["reason"]), "core0 crash-looping (4 restarts): core0 exited: killed by signal 9") {
			t.Logf("registry: %s", n["reason"])
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("registry never showed Core-0 crash-looping: %v, %v", n, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func matching(vm *VM, re *regexp.Regexp) []string {
	var out []string
	for _, l := range vm.Lines() {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// tamperLargestChunk flips one byte in the middle of the largest stored
// chunk (a piece of the Core-0 binary) and returns its hex ID.
func tamperLargestChunk(t *testing.T, dir string) string {
	t.Helper()
	var best string
	var size int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			best, size = p, fi.Size()
		}
		return nil
	})
	if best == "" {
		t.Fatal("no chunk in the store")
	}
	b, err := os.ReadFile(best)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(best, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Base(best)
}
