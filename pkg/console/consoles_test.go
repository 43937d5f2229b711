package console

import (
	"context"
	"errors"
	"fmt"
	"github.com/zeroboot/zeroboot/internal/testenv"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestDevices(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{"ttyS0,115200"}, nil},
		{[]string{"tty0", "ttyS0,115200n8"}, []string{"/dev/tty0"}},
		{[]string{"ttyS1", "tty0", "ttyS1", "ttyS0"}, []string{"/dev/ttyS1", "/dev/tty0"}},
		{[]string{"../sda", "netcon0@x", "tty0", "ttyS0"}, []string{"/dev/tty0"}},
	}
	for _, tc := range tests {
		if got := Devices(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Devices(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

type broken struct{}

func (broken) Write([]byte) (int, error) { return 0, errors.New("unplugged") }

// stopped blocks every write until released, like a serial line in XOFF.
type stopped struct{ release chan struct{} }

func (s stopped) Write(p []byte) (int, error) { <-s.release; return len(p), nil }

func TestFanout(t *testing.T) {
	var a, b buffer
	hold := stopped{make(chan struct{})}
	f := NewFanout(&a, broken{}, hold)
	f.Add(&b)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 3*QueueLines; i++ {
			f.Write([]byte("line\n"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a stopped console blocked the writer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, w := range []*buffer{&a, &b} {
		// Flush each live sink: the stopped one must not hold them back.
		for w.String() == "" && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
	}
	if !strings.HasPrefix(a.String(), "line\n") || !strings.HasPrefix(b.String(), "line\n") {
		t.Fatalf("a=%q b=%q: a stuck or broken console held back the others", a.String()[:min(20, len(a.String()))], b.String()[:min(20, len(b.String()))])
	}
	close(hold.release)
	if err := f.Flush(ctx); err != nil {
		t.Fatalf("Flush after release: %v", err)
	}
	if !strings.Contains(a.String(), "lines dropped on this console") && strings.Count(a.String(), "line\n") != 3*QueueLines {
		t.Fatalf("lines lost on a without a note")
	}
}

// pty returns the path of a fresh pseudo-terminal's terminal side: a real
// terminal any user can open.
func pty(t *testing.T) string {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	testenv.Need(t, err == nil, "no pseudo-terminals: %v", err)
	t.Cleanup(func() { m.Close() })
	var n uint32
	rc, _ := m.SyscallConn()
	rc.Control(func(fd uintptr) {
		if err = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); err == nil {
			n, err = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
		}
	})
	testenv.Need(t, err == nil, "pty setup: %v", err)
	return fmt.Sprintf("/dev/pts/%d", n)
}

func TestTerminalName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"tty", true}, {"tty0", true}, {"tty12", true},
		{"ttyS0", true}, {"ttyS15", true}, {"ttyAMA0", true}, {"ttyUSB1", true},
		{"ttyACM0", true}, {"ttymxc0", true}, {"ttysclp0", true}, {"hvc0", true}, {"hvc7", true},
		{"sda", false}, {"mem", false}, {"kmem", false}, {"port", false}, {"watchdog", false},
		{"watchdog0", false}, {"nvme0n1", false}, {"null", false}, {"console", false},
		{"ttyS", false}, {"ttyS0a", false}, {"tty0S", false}, {"ttyprintk", false},
		{"hvc", false}, {"hvcS0", false}, {"", false}, {"xtty0", false}, {"tty\x1b0", false},
	} {
		if got := TerminalName(tc.name); got != tc.ok {
			t.Errorf("TerminalName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// TestOpenDevicesRefusesNonTerminalNames: console=sda must not reach the
// disk, even when the file would open.
func TestOpenDevicesRefusesNonTerminalNames(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for _, name := range []string{"sda", "mem", "watchdog"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	ws, errs := OpenDevices(paths)
	if len(ws) != 0 || len(errs) != len(paths) {
		t.Fatalf("opened %d of %v, errors %v", len(ws), paths, errs)
	}
	for i, err := range errs {
		if !strings.Contains(err.Error(), paths[i]) || !strings.Contains(err.Error(), "not a terminal device name") {
			t.Errorf("error %q does not name %s and why", err, paths[i])
		}
	}
}

func TestOpenTerminal(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ttyS0")
	os.WriteFile(file, []byte("data"), 0o600)
	os.Mkdir(filepath.Join(dir, "ttyS1"), 0o755)
	syscall.Mkfifo(filepath.Join(dir, "ttyS2"), 0o600)
	tty := pty(t)
	os.Symlink(tty, filepath.Join(dir, "ttyS3"))
	for _, tc := range []struct {
		path, err string
	}{
		{tty, ""},
		{file, "not a character device (regular file)"},
		{filepath.Join(dir, "ttyS1"), "is a directory"},
		{filepath.Join(dir, "ttyS2"), "no such device or address"}, // a FIFO without reader; never waits
		{filepath.Join(dir, "ttyS3"), "too many levels of symbolic links"},
		{"/dev/null", "not a terminal (TCGETS: inappropriate ioctl for device)"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		f, err := openTerminal(tc.path)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.path, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.path)):
			t.Errorf("%s: error %v, want one naming it and containing %q", tc.path, err, tc.err)
		}
		if f != nil {
			if tc.err != "" {
				t.Errorf("%s: opened", tc.path)
			}
			f.Close()
		}
	}
	if b, _ := os.ReadFile(file); string(b) != "data" {
		t.Errorf("regular file changed to %q", b)
	}
}

// TestOpenDevicesTerminalNodes checks both checks together on device nodes
// named like serial lines: a pseudo-terminal bound to ttyS0 is written to,
// a /dev/null node named ttyS1 is refused. Mounting and mknod need root.
func TestOpenDevicesTerminalNodes(t *testing.T) {
	testenv.NeedRoot(t, "mount and mknod")
	tty := pty(t)
	dir := t.TempDir()
	good, null := filepath.Join(dir, "ttyS0"), filepath.Join(dir, "ttyS1")
	// A bind mount, not mknod: a pty's node works only inside its devpts.
	if err := os.WriteFile(good, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := unix.Mount(tty, good, "", unix.MS_BIND, "")
	testenv.Need(t, err == nil, "bind %s: %v", tty, err)
	t.Cleanup(func() { unix.Unmount(good, unix.MNT_DETACH) })
	if err := unix.Mknod(null, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	ws, errs := OpenDevices([]string{good, null})
	if len(ws) != 1 || len(errs) != 1 || !strings.Contains(errs[0].Error(), null) || !strings.Contains(errs[0].Error(), "not a terminal") {
		t.Fatalf("ws=%d errs=%v; want the pty opened and the null node refused", len(ws), errs)
	}
	if _, err := ws[0].Write([]byte("hello\n")); err != nil {
		t.Errorf("write to the pty: %v", err)
	}
	ws[0].(*os.File).Close()
}
