package qemu

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFaultRegistryLate boots a node while its registry is down for the
// first minute: PID 1 keeps retrying, with backoff (the network step
// fails: no link reaches the registry), and boots to ready once the
// registry is up, without a reboot. The figure is the time from the
// registry's start to Core-0 ready.
func TestFaultRegistryLate(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	g.serve()
	g.server.Process.Kill()
	g.server.Wait()
	// No link passes the registry probe while it is down: the network step
	// fails and is retried, with backoff.
	vm := &VM{UUID: "5a1c0b0e-0000-4000-8000-0000000000f1", Append: "zeroboot.registry=" + g.registry() + " zeroboot.farm=demo"}
	poweredOn := time.Now()
	startVM(t, g, vm)
	reDown := regexp.MustCompile(`network failed \(attempt \d+\); retrying in`)
	for vm.Count(reDown) < 2 || time.Since(poweredOn) < time.Minute { // kept failing and going
		if ctx.Err() != nil {
			t.Fatalf("the network step did not fail and retry:\n%s", vm.Tail(40))
		}
		time.Sleep(500 * time.Millisecond)
	}
	up := time.Now()
	g.start()
	if _, err := vm.WaitFor(ctx, reReady); err != nil {
		t.Fatal(err)
	}
	t.Logf("figure: registry down at boot, %d failed attempts; Core-0 ready %.1f s after the registry came up", vm.Count(reDown), time.Since(up).Seconds())
	if n := vm.Count(regexp.MustCompile(`Linux version`)); n != 1 {
		t.Errorf("the kernel started %d times: the node rebooted instead of waiting", n)
	}
}

// faultyMirror serves the grid's store over plain HTTP with a fault: every
// chunk with one byte flipped (corrupt), or one byte and then nothing for
// a minute (trickle). It counts the chunk requests it got.
type faultyMirror struct {
	dir   string // the grid's store directory
	fault string // "corrupt" or "trickle"
	mu    sync.Mutex
	hits  int
}

func (m *faultyMirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rel, ok := strings.CutPrefix(r.URL.Path, "/store/")
	if !ok || strings.Contains(rel, "..") {
		http.NotFound(w, r)
		return
	}
	b, err := os.ReadFile(filepath.Join(m.dir, rel))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if !strings.HasPrefix(rel, "chunks/") {
		w.Write(b) // flists are served intact: the fault is in the chunks
		return
	}
	m.mu.Lock()
	m.hits++
	m.mu.Unlock()
	switch m.fault {
	case "corrupt":
		b[len(b)/2] ^= 0x40
		w.Write(b)
	case "trickle":
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Write(b[:1])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	}
}

func (m *faultyMirror) chunkHits() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hits
}

// TestFaultMirrors: the registry hands out a faulty mirror before its own
// store (--mirrors-first). A mirror serving corrupt chunks and one that
// trickles a byte a minute each cost the node a failed request per fetch
// in flight (the mirror is then tried last), and it boots to ready from
// the good store; nothing the bad mirror sent is used.
func TestFaultMirrors(t *testing.T) {
	needVM(t)
	for i, fault := range []string{"corrupt", "trickle"} {
		t.Run(fault, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			g := newGrid(t)
			g.publish(core0Tree(t), 1)
			m := &faultyMirror{dir: filepath.Join(g.data, "store"), fault: fault}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: m}
			go srv.Serve(l)
			t.Cleanup(func() { srv.Close() })
			mirror := fmt.Sprintf("http://%s:%d/store", HostAddr, l.Addr().(*net.TCPAddr).Port)
			g.serveArgs = []string{"--mirror", mirror, "--mirrors-first"}
			g.serve()
			start := time.Now()
			vm, _ := boot(t, ctx, g, fmt.Sprintf("5a1c0b0e-0000-4000-8000-0000000000e%d", i), g.registry())
			if _, err := vm.WaitFor(ctx, reReady); err != nil {
				t.Fatal(err)
			}
			failed := vm.Count(regexp.MustCompile(`store: mirror failed, trying the next.*` + regexp.QuoteMeta(mirror)))
			if failed == 0 {
				t.Fatalf("the node never reported the %s mirror failing:\n%s", fault, vm.Tail(60))
			}
			if h := m.chunkHits(); h > 16 {
				t.Errorf("the %s mirror was asked for %d chunks: a failed mirror should be tried last", fault, h)
			}
			t.Logf("figure: %s mirror first: %d chunk requests to it, %d failures shown, Core-0 ready %.1f s after power-on",
				fault, m.chunkHits(), failed, time.Since(start).Seconds())
		})
	}
}

// TestFaultPID1Panic: a debug PID 1 panics inside the components step on
// its first attempt. The step fails with the panic on the console, is
// retried with backoff, and the node boots to ready without a reboot.
func TestFaultPID1Panic(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	g.serve()
	vm := &VM{UUID: "5a1c0b0e-0000-4000-8000-0000000000f2", Append: "zeroboot.registry=" + g.registry() + " zeroboot.farm=demo zeroboot.debug.panic=components"}
	vm.Kernel, vm.Initrd = kernel, debugInitramfs(t, g)
	runVM(t, g, vm, "console-panic.log")
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`components failed \(attempt 1\); retrying in .*panic: debug: PID 1 panics in step components`)); err != nil {
		t.Fatal(err)
	}
	failed := time.Now()
	if _, err := vm.WaitFor(ctx, reReady); err != nil {
		t.Fatal(err)
	}
	if n := vm.Count(reBanner); n != 1 {
		t.Fatalf("kernel booted %d times, want once", n)
	}
	t.Logf("figure: PID 1 panic in the components step: Core-0 ready %.1f s after the failed attempt, no reboot", time.Since(failed).Seconds())
}

// TestFaultLinkFlap takes the node's link down for 20 s in the middle of
// its component download (longer than the store client's 15 s idle
// timeout) and up again: the node ends ready without a reboot, having
// verified everything it wrote.
func TestFaultLinkFlap(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	g := newGrid(t)
	tree := core0Tree(t)
	blob := make([]byte, 96<<20)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "blob"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	g.publish(tree, 1)
	g.serve()
	vm := &VM{UUID: "5a1c0b0e-0000-4000-8000-0000000000f3", Memory: "1536M", Append: "zeroboot.registry=" + g.registry() + " zeroboot.farm=demo"}
	startVM(t, g, vm)
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`component core0: \d+/\d+ bytes`)); err != nil {
		t.Fatal(err)
	}
	if err := vm.HMP("set_link n0 off"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Second)
	if err := vm.HMP("set_link n0 on"); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	if _, err := vm.WaitFor(ctx, reReady); err != nil {
		t.Fatal(err)
	}
	if n := vm.Count(reBanner); n != 1 {
		t.Fatalf("kernel booted %d times, want once", n)
	}
	shown := "carried on"
	if vm.Count(regexp.MustCompile(`components failed \(attempt \d+\)`)) > 0 {
		shown = "components step failed and was retried"
	}
	t.Logf("figure: link down 20 s during the download: %s; Core-0 ready %.1f s after the link came back", shown, time.Since(up).Seconds())
}
