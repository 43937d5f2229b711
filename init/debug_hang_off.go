//go:build !zeroboot_debug

package main

import "fmt"

// debugBuild: a production PID 1, which refuses zeroboot.debug.hang.
const debugBuild = false

// checkDebugHang refuses zeroboot.debug.hang, naming it: a production
// node must never hang on request, and the boot goes on as without it.
func (n *node) checkDebugHang() {
	if n.cfg.DebugHang != "" {
		n.log.Error(fmt.Sprintf("zeroboot.debug.hang=%s refused: this PID 1 is a production build (no -tags zeroboot_debug); ignored, booting normally",
			n.cfg.DebugHang))
	}
}

// hangAt never hangs in a production build.
func (n *node) hangAt(string) {}
