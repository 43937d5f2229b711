package console

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Devices maps the kernel's console= values ("ttyS0,115200n8", "tty0") to
// device paths, leaving out the last one: /dev/console already is the last
// console= the kernel was given, and writing there twice would double every
// line. Values that are not plain device names (netconsole's "@...", "hvc"
// options with slashes) are skipped; OpenDevices refuses the ones that are
// not terminals.
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

// OpenDevices opens each path for writing if it is a terminal; the ones
// refused or that cannot be opened are returned as errors for the caller
// to log.
func OpenDevices(paths []string) ([]io.Writer, []error) {
	var ws []io.Writer
	var errs []error
	for _, p := range paths {
		f, err := OpenTerminal(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ws = append(ws, f)
	}
	return ws, errs
}

// OpenTerminal opens the console device at path for writing PID 1's log,
// refusing anything that is not a terminal: console= is only the kernel's
// word for where its messages go, and console=sda or console=mem would
// otherwise have PID 1 write its log over a disk or physical memory.
//
// The name is checked before opening, because opening alone has effects on
// some devices (a watchdog is armed by open, a tape rewinds on close);
// whatever the name, the opened file must then be a character device that
// answers TCGETS.
func OpenTerminal(path string) (*os.File, error) {
	if name := filepath.Base(path); !TerminalName(name) {
		return nil, fmt.Errorf("console %q: refused: %q is not a terminal device name (%s)", path, name, terminalNames)
	}
	return openTerminal(path)
}

// terminalNames is the rule of TerminalName, for error messages.
const terminalNames = "tty, ttyN, tty<driver>N such as ttyS0, ttyAMA0, ttyUSB0 or ttyACM0, hvcN"

// TerminalName reports whether name (a console= value without its options)
// names a terminal device: "tty", a virtual console "tty<digits>", a
// serial or other tty driver's line "tty<letters><digits>" (ttyS0, ttyAMA0,
// ttyUSB0, ttyACM0, ttymxc0, ttysclp0, ...), or a hypervisor console
// "hvc<digits>". Linux names only tty drivers so; the check after opening
// catches the rest.
func TerminalName(name string) bool {
	if rest, ok := strings.CutPrefix(name, "hvc"); ok {
		return rest != "" && allDigits(rest)
	}
	rest, ok := strings.CutPrefix(name, "tty")
	if !ok {
		return false
	}
	letters := strings.TrimLeftFunc(rest, isASCIILetter)
	if len(letters) == len(rest) {
		return allDigits(rest) // "tty" or a virtual console
	}
	return letters != "" && allDigits(letters) // a driver needs a line number
}

func isASCIILetter(r rune) bool { return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' }

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// openTerminal opens path and keeps it only if it is a terminal. O_NONBLOCK
// keeps open from waiting for carrier on a serial line without CLOCAL (the
// Go runtime then polls the descriptor, so writes still wait, in the sink's
// goroutine); O_NOFOLLOW keeps a symlink from pointing the log elsewhere.
func openTerminal(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NOCTTY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("console %q: %w", path, err)
	}
	if err := isTerminal(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("console %q: refused: %w", path, err)
	}
	return f, nil
}

// isTerminal checks that f is a character device with terminal attributes.
func isTerminal(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if t := fi.Mode().Type(); t != os.ModeDevice|os.ModeCharDevice {
		return fmt.Errorf("not a character device (%s)", fileType(t))
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	// Control rather than Fd: Fd would switch the file to blocking mode.
	var terr error
	if err := rc.Control(func(fd uintptr) {
		_, terr = unix.IoctlGetTermios(int(fd), unix.TCGETS)
	}); err != nil {
		return err
	}
	if terr != nil {
		return fmt.Errorf("not a terminal (TCGETS: %w)", terr)
	}
	return nil
}

func fileType(t os.FileMode) string {
	switch {
	case t == 0:
		return "regular file"
	case t&os.ModeDir != 0:
		return "directory"
	case t&os.ModeCharDevice != 0:
		return "character device"
	case t&os.ModeDevice != 0:
		return "block device"
	case t&os.ModeNamedPipe != 0:
		return "named pipe"
	case t&os.ModeSocket != 0:
		return "socket"
	case t&os.ModeSymlink != 0:
		return "symlink"
	}
	return t.String()
}
