package console

import (
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

// Fanout writes every line to each of its writers; a writer that fails
// (a console unplugged, a serial line with nobody on it) is skipped, never
// fatal, and never holds back the others.
type Fanout struct {
	mu sync.Mutex
	ws []io.Writer
}

// NewFanout writes to primary and each of others.
func NewFanout(primary io.Writer, others ...io.Writer) *Fanout {
	return &Fanout{ws: append([]io.Writer{primary}, others...)}
}

// Add makes f write to w too, from the next line on: PID 1 logs before it
// has read console= from the command line.
func (f *Fanout) Add(w ...io.Writer) {
	f.mu.Lock()
	f.ws = append(f.ws, w...)
	f.mu.Unlock()
}

// Write implements io.Writer. It reports success if any writer took p.
func (f *Fanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var firstErr error
	ok := false
	for _, w := range f.ws {
		if _, err := w.Write(p); err == nil {
			ok = true
		} else if firstErr == nil {
			firstErr = err
		}
	}
	if !ok && firstErr != nil {
		return 0, firstErr
	}
	return len(p), nil
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
