//go:build !zeroboot_debug

package main

import "fmt"

// debugBuild: a production PID 1, which refuses zeroboot.debug.hang.
const debugBuild = false

// checkDebugHang refuses zeroboot.debug.hang and zeroboot.debug.panic,
// naming them: a production node must never hang or panic on request, and
// the boot goes on as without them.
func (n *node) checkDebugHang() {
	for _, p := range []struct{ name, val string }{{"zeroboot.debug.hang", n.cfg.DebugHang}, {"zeroboot.debug.panic", n.cfg.DebugPanic}} {
		if p.val != "" {
			n.log.Error(fmt.Sprintf("%s=%s refused: this PID 1 is a production build (no -tags zeroboot_debug); ignored, booting normally",
				p.name, p.val))
		}
	}
}

// hangAt never hangs in a production build.
func (n *node) hangAt(string) {}

// panicAt never panics in a production build.
func (n *node) panicAt(string) {}
