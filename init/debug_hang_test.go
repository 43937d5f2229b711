//go:build zeroboot_debug

package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestDebugHang: a debug build hangs only at the point named, holding the
// state lock, so that the heartbeat (vitals) stops too.
func TestDebugHang(t *testing.T) {
	n, log := logNode(t)
	n.cfg.DebugHang = "supervise"
	n.checkDebugHang()
	n.hangAt("watchdog") // not the point named: returns
	go n.hangAt("supervise")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), "debug: PID 1 hangs at supervise") {
		if time.Now().After(deadline) {
			t.Fatalf("no hang announced: %q", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for n.mu.TryLock() { // announced just before it takes the lock
		n.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	beat := make(chan struct{})
	go func() { n.vitals(); close(beat) }()
	select {
	case <-beat:
		t.Fatal("the heartbeat went on through the hang")
	case <-time.After(300 * time.Millisecond):
	}
	if !debugBuild || !strings.Contains(log.String(), "debug build: PID 1 will hang at supervise") {
		t.Errorf("debug build %v, log %q", debugBuild, log.String())
	}
}

// TestDebugPanic: a debug build panics in the step named, once; the step
// catches it as a failure, and the next attempt runs.
func TestDebugPanic(t *testing.T) {
	n, _ := logNode(t)
	n.cfg.DebugPanic = "components"
	var ran int
	s := []step{{"registry", func(context.Context) error { return nil }}, {"components", func(context.Context) error { ran++; return nil }}}
	name, err := n.attempt(context.Background(), s)
	if name != "components" || err == nil || !strings.Contains(err.Error(), "panic: debug: PID 1 panics in step components") || ran != 0 {
		t.Fatalf("first attempt: step %q, err %v, ran %d", name, err, ran)
	}
	if _, err := n.attempt(context.Background(), s); err != nil || ran != 1 {
		t.Fatalf("second attempt: %v, ran %d", err, ran)
	}
}
