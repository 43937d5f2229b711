package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/pkg/watchdog"
)

// watchdogPath is the device PID 1 arms; tests point it elsewhere.
var watchdogPath = watchdog.DefaultPath

// watchdog arms the hardware watchdog, where the drivers just loaded gave
// the machine one, and keeps it quiet for as long as PID 1 is alive
// (zeroboot.watchdog, docs/boot.md "Watchdog"). Nothing here fails the
// boot: a node without a usable watchdog boots without one.
func (n *node) watchdog(context.Context) error {
	n.checkDebugHang()
	n.armWatchdog(n.cfg.Watchdog)
	n.hangAt("watchdog")
	return nil
}

// armWatchdog opens the device with timeout d and starts PID 1's
// heartbeat and the pet loop, both for the life of the node. The device
// is never closed: during a reboot or power-off PID 1 goes on petting
// until the kernel takes over, and a hung PID 1 leaves it armed.
func (n *node) armWatchdog(d time.Duration) *watchdog.Watchdog {
	if d == 0 {
		n.log.Info("watchdog: off (zeroboot.watchdog=0); " + watchdogPath + " left alone")
		return nil
	}
	w := &watchdog.Watchdog{Path: watchdogPath, Timeout: d, Log: n.log}
	if err := w.Open(); errors.Is(err, watchdog.ErrNoDevice) {
		n.log.Info("watchdog: none (no " + watchdogPath + "); a hung PID 1 is not reset")
		return nil
	} else if err != nil {
		n.log.Warn("watchdog: not used; a hung PID 1 is not reset", "err", err)
		return nil
	}
	n.log.Info(fmt.Sprintf("watchdog: %s%s armed, timeout %s (asked %s), petted every %s while PID 1's heartbeat is fresh",
		watchdogPath, watchdogIdentity(watchdogPath), w.EffectiveTimeout(), d, w.Interval().Round(time.Millisecond)))
	go n.heartbeat(w)
	go w.Run(context.Background())
	return w
}

// heartbeat tells w that PID 1 is alive, every pet interval, once PID 1's
// vital parts have answered. A deadlock in them blocks it here, the pet
// loop sees the heartbeat age and stops petting, and the hardware resets
// the node.
func (n *node) heartbeat(w *watchdog.Watchdog) {
	t := time.NewTicker(w.Interval())
	defer t.Stop()
	for range t.C {
		n.vitals()
		w.Alive()
	}
}

// vitals returns once what PID 1 needs to be of use answers: the node's
// state lock (every step, the failure banner and the failed state take
// it) and, once Core-0 is supervised, the supervisor's status lock (which
// its loop takes on every start, exit and change of state). It blocks for
// as long as either is held.
func (n *node) vitals() {
	// Empty critical section: only whether it can be entered matters.
	n.mu.Lock()
	n.mu.Unlock()
	if sup := n.sup.Load(); sup != nil {
		sup.Status()
	}
}

// watchdogIdentity is the driver's name for the device, " (i6300ESB
// timer)", from sysfs, or "" when it has none. /dev/watchdog is the first
// device, watchdog0.
func watchdogIdentity(dev string) string {
	name := filepath.Base(dev)
	if name == "watchdog" {
		name = "watchdog0"
	}
	b, err := os.ReadFile(filepath.Join("/sys/class/watchdog", name, "identity"))
	if err != nil {
		return ""
	}
	if id := strings.TrimSpace(string(b)); id != "" {
		return " (" + id + ")"
	}
	return ""
}
