//go:build zeroboot_debug

package main

import "fmt"

// debugBuild: this PID 1 was built with -tags zeroboot_debug and honours
// zeroboot.debug.hang. No image make builds is one.
const debugBuild = true

// checkDebugHang says, once, where this debug build will hang.
func (n *node) checkDebugHang() {
	if n.cfg.DebugHang != "" {
		n.log.Warn(fmt.Sprintf("debug build: PID 1 will hang at %s (zeroboot.debug.hang)", n.cfg.DebugHang))
	}
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
