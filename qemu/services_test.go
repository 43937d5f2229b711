package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// servicesJSON is the demo release's services: db listens, api waits for
// it and answers /healthz, log notifies, and flaky (optional) exits a
// moment after it starts, every time.
const servicesJSON = `[
 {"name": "db", "component": "core0", "exec": {"path": "/bin/demosvc", "args": ["--listen", "127.0.0.1:7001", "--delay", "300ms"]},
  "ready": {"tcp": "127.0.0.1:7001", "timeout": "20s", "interval": "100ms"}},
 {"name": "api", "component": "core0", "exec": {"path": "/bin/demosvc", "args": ["--wait-for", "127.0.0.1:7001", "--http", "127.0.0.1:7002"]},
  "after": ["db"], "ready": {"http": "http://127.0.0.1:7002/healthz", "interval": "100ms"}},
 {"name": "log", "component": "core0", "exec": {"path": "/bin/demosvc"}, "ready": {"notify": true}},
 {"name": "flaky", "component": "core0", "exec": {"path": "/bin/demosvc", "args": ["--exit-after", "200ms", "--exit", "3"]},
  "optional": true, "crash_loop": {"exits": 3, "window": "1m"}}
]`

var (
	reServicesReady = regexp.MustCompile(`core0: services: all 4 required ready (\S+) after Core-0 started`)
	reFlakyStart    = regexp.MustCompile(`^flaky: up$`)
	reFlakyLoop     = regexp.MustCompile(`core0: service flaky: crash-looping`)
)

// TestServices boots a release with four services: three required, one
// after another, come up in order and make the node ready, with each
// service's state at the registry; the optional one crash-loops (3 exits
// in a minute), then waits for the backoff's cap before each restart,
// without holding the node back.
func TestServices(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	g := newGrid(t)
	tree, svc := servicesTree(t, g, servicesJSON)
	g.run("release", "publish", "--data", g.data, "--key", g.key, "--channel", "stable", "--version", "1",
		"--component", "name=core0,flist="+g.flistOf(tree)+",mount=/", "--entry", "/bin/core0",
		"--arg", "--heartbeat", "--arg", "5s", "--services", svc)
	g.serve()
	vm, id := boot(t, ctx, g, "5a1c0b0e-0000-4000-8000-000000000071", g.registry())

	starts := watchLines(ctx, vm, reFlakyStart, 3)
	line, err := vm.WaitFor(ctx, reServicesReady)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("figure: Core-0 start to services ready: %s", reServicesReady.FindStringSubmatch(line)[1])
	if _, err := vm.WaitFor(ctx, reReady); err != nil {
		t.Fatal(err)
	}
	order := []string{"service db: ready", "api: 127.0.0.1:7001 accepts", "service api: ready"}
	for i := 1; i < len(order); i++ {
		if firstIndex(vm, regexp.MustCompile(order[i-1])) > firstIndex(vm, regexp.MustCompile(order[i])) {
			t.Errorf("%q came before %q", order[i], order[i-1])
		}
	}
	n, err := g.waitNode(ctx, id, "ready")
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, s := range n["services"].([]any) {
		m := s.(map[string]any)
		states[fmt.Sprint(m["name"])] = fmt.Sprint(m["state"])
	}
	for _, name := range []string{"db", "api", "log"} {
		if states[name] != "ready" {
			t.Errorf("registry: service %s is %q, want ready (all: %v)", name, states[name], states)
		}
	}

	if _, err := vm.WaitFor(ctx, reFlakyLoop); err != nil {
		t.Fatal(err)
	}
	at := <-starts
	if len(at) < 3 {
		t.Fatalf("flaky started %d times", len(at))
	}
	t.Logf("figure: crash-looping service, time between starts: %s, %s; then crash-looping",
		at[1].Sub(at[0]).Round(10*time.Millisecond), at[2].Sub(at[1]).Round(10*time.Millisecond))
	// Crash-looping: the next start waits for the backoff's cap (60 s),
	// it does not hammer.
	time.Sleep(10 * time.Second)
	if n := vm.Count(reFlakyStart); n != 3 {
		t.Errorf("flaky started %d times within 10 s of crash-looping, want no restart before the cap", n)
	}
	// The node stays ready: flaky is optional. Wait for the registry to
	// hear of the crash loop.
	deadline := time.Now().Add(time.Minute)
	for {
		n, err = g.node(id)
		if err == nil && n["state"] == "ready" && strings.Contains(fmt.Sprint(n["services"]), "crash-looping") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry never showed flaky crash-looping on a ready node: %v, %v", n, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	out := g.run("node", "show", id, "--data", g.data, "--server", g.url(""))
	for _, want := range []string{"flaky (opt)", "crash-looping", "last output of flaky:", "exiting 3 on purpose"} {
		if !strings.Contains(out, want) {
			t.Errorf("node show lacks %q:\n%s", want, out)
		}
	}
}

// servicesTree is the demo component with the demo service beside Core-0
// (/bin/demosvc), and a services file holding decl for release publish
// --services.
func servicesTree(t *testing.T, g *grid, decl string) (tree, file string) {
	t.Helper()
	tree = core0Tree(t)
	b, err := os.ReadFile(bins.demosvc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "bin", "demosvc"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(t.TempDir(), "services.json")
	if err := os.WriteFile(file, []byte(decl), 0o644); err != nil {
		t.Fatal(err)
	}
	return tree, file
}

// watchLines records when the first n console lines matching re arrive,
// by the host's clock, and sends them once it has n or ctx ends.
func watchLines(ctx context.Context, vm *VM, re *regexp.Regexp, n int) <-chan []time.Time {
	ch := make(chan []time.Time, 1)
	go func() {
		var at []time.Time
		for len(at) < n && ctx.Err() == nil {
			for c := vm.Count(re); len(at) < c && len(at) < n; {
				at = append(at, time.Now())
			}
			time.Sleep(20 * time.Millisecond)
		}
		ch <- at
	}()
	return ch
}
