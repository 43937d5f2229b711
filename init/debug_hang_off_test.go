//go:build !zeroboot_debug

package main

import (
	"strings"
	"testing"
	"time"
)

// TestProductionRefusesDebugHang: a production build names the parameter
// on the console, never hangs, and the step goes on.
func TestProductionRefusesDebugHang(t *testing.T) {
	for _, point := range []string{"watchdog", "supervise"} {
		t.Run(point, func(t *testing.T) {
			n, log := logNode(t)
			n.cfg.DebugHang = point
			n.cfg.Watchdog = 0
			done := make(chan error)
			go func() {
				err := n.watchdog(t.Context())
				n.hangAt("supervise")
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("a production build hung")
			}
			want := "zeroboot.debug.hang=" + point + " refused: this PID 1 is a production build (no -tags zeroboot_debug); ignored, booting normally"
			if got := log.String(); !strings.Contains(got, "level=ERROR") || !strings.Contains(got, want) {
				t.Errorf("log %q lacks the error %q", got, want)
			}
			if !n.mu.TryLock() {
				t.Fatal("state lock held after a refused hang")
			}
		})
	}
}

func TestProductionQuietWithoutDebugHang(t *testing.T) {
	n, log := logNode(t)
	n.checkDebugHang()
	if debugBuild || log.String() != "" {
		t.Errorf("debug build %v, log %q", debugBuild, log.String())
	}
}

func TestProductionRefusesDebugPanic(t *testing.T) {
	n, log := logNode(t)
	n.cfg.DebugPanic = "components"
	n.checkDebugHang()
	n.panicAt("components") // must not panic
	if want := "zeroboot.debug.panic=components refused: this PID 1 is a production build"; !strings.Contains(log.String(), want) {
		t.Errorf("log %q lacks %q", log.String(), want)
	}
}
