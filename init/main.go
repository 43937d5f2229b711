// Command init is zeroboot's PID 1. It reads like the boot sequence: mount,
// modules, network, time, identity, registry, components, hand-off,
// supervise. It never exits: a failing step is retried with backoff and
// shown on the console with its reason, and the node stays visibly failed
// until the step succeeds.
package main

import (
	"context"
	"os"
	"time"
)

// buildTime is the image's build time (unix seconds), set with -ldflags. The
// clock is never allowed earlier than this.
var buildTime = "0"

func main() {
	n := newNode(time.Now())
	defer n.lastResort()

	n.step("mount", n.mount)
	n.step("cmdline", n.cmdline)
	n.step("modules", n.modules)
	n.step("entropy", n.entropy)
	n.step("network", n.network)
	n.step("time", n.time)
	n.step("identity", n.identity)
	n.step("registry", n.registry)
	n.step("components", n.components)
	n.step("handoff", n.handoff)
	n.announce()
	n.supervise(context.Background())
}

// lastResort keeps PID 1 alive if something above panics outside a step:
// the kernel panics when PID 1 exits, and a panicking node shows nothing.
func (n *node) lastResort() {
	if r := recover(); r != nil {
		n.log.Error("PID 1 panicked outside a step; staying up for rescue", "panic", r)
	}
	n.failedForever()
	os.Exit(1) // unreachable: failedForever never returns
}
