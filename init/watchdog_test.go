package main

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a log sink goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func logNode(t *testing.T) (*node, *lockedBuffer) {
	t.Helper()
	n, _, _ := testNode(t)
	var log lockedBuffer
	n.log = slog.New(slog.NewTextHandler(&log, nil))
	return n, &log
}

func TestArmWatchdogWithout(t *testing.T) {
	old := watchdogPath
	t.Cleanup(func() { watchdogPath = old })
	watchdogPath = filepath.Join(t.TempDir(), "watchdog")
	tests := []struct {
		name    string
		timeout time.Duration
		log     string
	}{
		{"no device", time.Minute, "watchdog: none (no " + watchdogPath + "); a hung PID 1 is not reset"},
		{"off", 0, "watchdog: off (zeroboot.watchdog=0); " + watchdogPath + " left alone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, log := logNode(t)
			if w := n.armWatchdog(tt.timeout); w != nil {
				t.Fatal("armed a watchdog")
			}
			if got := log.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, tt.log) {
				t.Errorf("log %q, want the one line %q", got, tt.log)
			}
		})
	}
}

// TestVitalsBlockWhileStateLocked: the heartbeat waits for the node's
// state lock, so a PID 1 deadlocked holding it stops beating.
func TestVitalsBlockWhileStateLocked(t *testing.T) {
	n, _ := logNode(t)
	n.mu.Lock()
	done := make(chan struct{})
	go func() { n.vitals(); close(done) }()
	select {
	case <-done:
		t.Fatal("vitals returned while the state lock was held")
	case <-time.After(100 * time.Millisecond):
	}
	n.mu.Unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("vitals still blocked after the lock was released")
	}
}
