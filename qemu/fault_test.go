package qemu

import (
	"context"
	"regexp"
	"testing"
	"time"
)

// TestFaultRegistryLate boots a node while its registry is down: PID 1
// keeps retrying, with backoff (the network step fails: no link reaches
// the registry), and boots to ready once the registry is up, without a
// reboot. The figure is the time from the registry's start to
// Core-0 ready.
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
	startVM(t, g, vm)
	reDown := regexp.MustCompile(`network failed \(attempt \d+\); retrying in`)
	for vm.Count(reDown) < 2 { // failed twice and kept going
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
