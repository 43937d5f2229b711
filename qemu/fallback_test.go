package qemu

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// stuckServices is a release whose node never gets ready: db comes up,
// stuck waits for a port nobody opens, for longer than the deadline.
const stuckServices = `[
 {"name": "db", "component": "core0", "exec": {"path": "/bin/demosvc", "args": ["--listen", "127.0.0.1:7001"]},
  "ready": {"tcp": "127.0.0.1:7001", "timeout": "20s", "interval": "100ms"}},
 {"name": "stuck", "component": "core0", "exec": {"path": "/bin/demosvc"}, "after": ["db"],
  "ready": {"tcp": "127.0.0.1:7009", "timeout": "10m", "interval": "500ms"}}
]`

var (
	reFallingBack = regexp.MustCompile(`release stable v2 not ready within 20s of Core-0's start; falling back to v1`)
	reFellBack    = regexp.MustCompile(`boot timeline \(ms since PID 1 started\), fallen back from v2 to v1`)
	reReadyV1     = regexp.MustCompile(`core0: ready \(node \S+, release 1\)`)
)

// TestLastKnownGood: a farm with a 20 s ready deadline serves release 2,
// whose services never get ready, with release 1 as the fallback. PID 1
// stops release 2's Core-0 and its services at the deadline, boots
// release 1 from the same signed metadata, and the registry records the
// fallback. The next boot of the node is served release 1 directly.
func TestLastKnownGood(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	bad, svc := servicesTree(t, g, stuckServices)
	g.run("release", "publish", "--data", g.data, "--key", g.key, "--channel", "stable", "--version", "2",
		"--component", "name=core0,flist="+g.flistOf(bad)+",mount=/", "--entry", "/bin/core0", "--services", svc)
	g.serve()
	g.run("farm", "set", "demo", "--channel", "stable", "--ready-deadline", "20s", "--data", g.data, "--server", g.url(""))

	const uuid = "5a1c0b0e-0000-4000-8000-0000000000f1"
	vm, id := boot(t, ctx, g, uuid, g.registry())
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`release: falls back to stable v1 unless ready within 20s of Core-0's start`),
		regexp.MustCompile(`core0: service db: ready`),
	} {
		if _, err := vm.WaitFor(ctx, re); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := vm.WaitFor(ctx, reFallingBack); err != nil {
		t.Fatal(err)
	}
	late := time.Now()
	if _, err := vm.WaitFor(ctx, reFellBack); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.WaitFor(ctx, reReadyV1); err != nil {
		t.Fatal(err)
	}
	t.Logf("figure: deadline passed to release 1 ready: %s", time.Since(late).Round(100*time.Millisecond))
	if n := vm.Count(regexp.MustCompile(`core0 not in a cgroup`)); n != 0 {
		t.Errorf("Core-0 ran outside its cgroup:\n%s", vm.Tail(40))
	}
	// Release 2's services are gone with its Core-0: nothing of it speaks
	// once release 1's Core-0 runs.
	after := firstIndex(vm, reReadyV1)
	for i, l := range vm.Lines() {
		if i > after && (strings.HasPrefix(l, "db:") || strings.HasPrefix(l, "stuck:")) {
			t.Errorf("release 2's service still running after the fallback: %q", l)
		}
	}

	n, err := g.waitNode(ctx, id, "ready")
	if err != nil {
		t.Fatal(err)
	}
	fb, _ := n["fallback"].(map[string]any)
	if fmt.Sprint(n["release_reported"]) != "1" || fb == nil || fmt.Sprint(fb["from"]) != "2" || fmt.Sprint(fb["to"]) != "1" {
		t.Errorf("registry: release %v, fallback %v; want ready on 1, fallen back from 2", n["release_reported"], n["fallback"])
	}
	out := g.run("node", "show", id, "--data", g.data, "--server", g.url(""))
	if !strings.Contains(out, "fallback    from release 2 to 1") {
		t.Errorf("node show lacks the fallback:\n%s", out)
	}

	// The next boot: release 1 at once, no deadline, no fallback.
	vm.Stop()
	again := &VM{Kernel: kernel, Initrd: g.initramfs(kver), UUID: uuid,
		Append: fmt.Sprintf("zeroboot.registry=%s zeroboot.farm=demo", g.registry())}
	runVM(t, g, again, "second.log")
	if _, err := again.WaitFor(ctx, reReadyV1); err != nil {
		t.Fatal(err)
	}
	if n := again.Count(regexp.MustCompile(`falls back to|release: stable v2`)); n != 0 {
		t.Errorf("second boot was given release 2 or a fallback:\n%s", again.Tail(60))
	}
	if !strings.Contains(g.log.String(), "serving the node's last known good release") {
		t.Errorf("registry did not say why it served release 1:\n%s", g.log.String())
	}
}
