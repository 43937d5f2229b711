//go:build zeroboot_debug

package main

import "fmt"

// debugBuild: this PID 1 was built with -tags zeroboot_debug and honours
// zeroboot.debug.hang. No image make builds is one.
const debugBuild = true

// checkDebugHang says, once, where this debug build will hang or panic.
func (n *node) checkDebugHang() {
	if n.cfg.DebugHang != "" {
		n.log.Warn(fmt.Sprintf("debug build: PID 1 will hang at %s (zeroboot.debug.hang)", n.cfg.DebugHang))
	}
	if n.cfg.DebugPanic != "" {
		n.log.Warn(fmt.Sprintf("debug build: PID 1 will panic in step %s, first attempt (zeroboot.debug.panic)", n.cfg.DebugPanic))
	}
}

// panicAt panics in step's first attempt when zeroboot.debug.panic names
// it, as a bug in the step would.
func (n *node) panicAt(step string) {
	if n.cfg.DebugPanic != step || n.panicked {
		return
	}
	n.panicked = true
	panic(fmt.Sprintf("debug: PID 1 panics in step %s (zeroboot.debug.panic=%s)", step, step))
}

// hangAt blocks PID 1 forever at point when zeroboot.debug.hang names
// it, as a deadlock would: holding the node's state lock, which PID 1's
// heartbeat needs (vitals), so the heartbeat stops and the watchdog
// resets the node. Signals are still handled: Ctrl-Alt-Del reboots.
func (n *node) hangAt(point string) {
	if n.cfg.DebugHang != point {
		return
	}
	n.log.Error(fmt.Sprintf("debug: PID 1 hangs at %s (zeroboot.debug.hang=%s); its heartbeat stops", point, point))
	n.mu.Lock()
	select {}
}
