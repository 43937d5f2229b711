package console

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
)

// Devices maps the kernel's console= values ("ttyS0,115200n8", "tty0") to
// device paths, leaving out the last one: /dev/console already is the last
// console= the kernel was given, and writing there twice would double every
// line. Values that are not plain device names (netconsole's "@...", "hvc"
// options with slashes) are skipped.
func Devices(consoles []string) []string {
	var out []string
	seen := map[string]bool{}
	for i, c := range consoles {
		name, _, _ := strings.Cut(c, ",")
		if name == "" || strings.ContainsAny(name, "/@.") || i == len(consoles)-1 || seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, "/dev/"+name)
	}
	return out
}

// Fanout writes every line to each of its writers, each through its own
// queue and goroutine: a console that blocks (a serial line under flow
// control, a VT on Scroll Lock) loses lines, counted and reported once it
// moves again, but never holds back PID 1 or the other consoles.
type Fanout struct {
	mu    sync.Mutex
	sinks []*sink
}

// NewFanout writes to primary and each of others.
func NewFanout(primary io.Writer, others ...io.Writer) *Fanout {
	f := &Fanout{}
	f.Add(append([]io.Writer{primary}, others...)...)
	return f
}

// Add makes f write to w too, from the next line on: PID 1 logs before it
// has read console= from the command line.
func (f *Fanout) Add(w ...io.Writer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range w {
		f.sinks = append(f.sinks, newSink(x, func(n uint64) string {
			return fmt.Sprintf("[ %d lines dropped on this console ]\n", n)
		}))
	}
}

// Write implements io.Writer; it queues p for every console and never
// blocks.
func (f *Fanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sinks {
		s.put(string(p))
	}
	return len(p), nil
}

// Flush waits until every console wrote (or dropped) what was queued, or
// ctx ends: before a reboot.
func (f *Fanout) Flush(ctx context.Context) error {
	f.mu.Lock()
	sinks := append([]*sink(nil), f.sinks...)
	f.mu.Unlock()
	for _, s := range sinks {
		if err := s.flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

// OpenDevices opens each path for writing; the ones that cannot be opened
// are returned as errors for the caller to log.
func OpenDevices(paths []string) ([]io.Writer, []error) {
	var ws []io.Writer
	var errs []error
	for _, p := range paths {
		f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NOCTTY, 0)
		if err != nil {
			errs = append(errs, fmt.Errorf("console %s: %w", p, err))
			continue
		}
		ws = append(ws, f)
	}
	return ws, errs
}
