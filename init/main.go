// Command init is zeroboot's PID 1. It reads like the boot sequence: mount,
// modules, watchdog, network, time, identity, registry, components, hand-off,
// supervise. It never exits: a failing step is retried with backoff and
// shown on the console with its reason, and the node stays visibly failed
// until the step succeeds.
package main

import (
	"context"
	"os"
	"time"

	"github.com/zeroboot/zeroboot/pkg/boottime"
)

// buildTime is the image's build time (unix seconds), set with -ldflags. The
// clock is never allowed earlier than this.
var buildTime = "0"

func main() {
	clocks := boottime.Now() // the kernel's uptime at PID 1's entry
	n := newNode(time.Now())
	defer n.lastResort()

	n.run(step{"mount", n.mount})
	n.bootShares(clocks)
	n.run(step{"cmdline", n.cmdline})
	n.run(step{"modules", n.modules})
	n.run(step{"watchdog", n.watchdog})
	n.run(step{"entropy", n.entropy})
	n.run(step{"network", n.network})
	n.run(step{"time", n.time})
	n.run(step{"identity", n.identity})
	n.rescueIfAsked()
	// One sequence: when a component or the hand-off fails, the next
	// attempt asks the registry again, so a release fixed (or replaced)
	// there is picked up without a reboot.
	n.run(step{"registry", n.registry}, step{"components", n.components}, step{"handoff", n.handoff})
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
