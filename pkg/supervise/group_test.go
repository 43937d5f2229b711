package supervise

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zeroboot/zeroboot/internal/testenv"
	"github.com/zeroboot/zeroboot/pkg/cgroup"
)

func TestLeadGroup(t *testing.T) {
	tests := []struct {
		name        string
		attr        *syscall.SysProcAttr
		wantSetpgid bool
		wantSetsid  bool
	}{
		{"no attributes", nil, true, false},
		{"chroot kept", &syscall.SysProcAttr{Chroot: "/new"}, true, false},
		// A session leader leads its own group; Setpgid would fail the start.
		{"new session", &syscall.SysProcAttr{Setsid: true, Chroot: "/new"}, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("/bin/true")
			cmd.SysProcAttr = tc.attr
			leadGroup(cmd)
			a := cmd.SysProcAttr
			if a.Setpgid != tc.wantSetpgid || a.Setsid != tc.wantSetsid || a.Pgid != 0 {
				t.Errorf("SysProcAttr %+v, want Setpgid %v Setsid %v Pgid 0", a, tc.wantSetpgid, tc.wantSetsid)
			}
			if tc.attr != nil && a.Chroot != tc.attr.Chroot {
				t.Errorf("Chroot %q, want %q", a.Chroot, tc.attr.Chroot)
			}
		})
	}
}

// groupScript starts a grandchild sleep in the background, prints its pid
// and then runs tail (the child's own behaviour).
func groupScript(grandchild, tail string) string {
	return grandchild + " >/dev/null 2>&1 & echo $!; " + tail
}

// pidReader reads the pids the scripts print, one a line.
type pidReader struct {
	w   *os.File
	r   *bufio.Reader
	out *os.File
}

func newPidReader(t *testing.T) *pidReader {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return &pidReader{w: w, r: bufio.NewReader(r), out: r}
}

func (p *pidReader) next(t *testing.T) int {
	t.Helper()
	p.out.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := p.r.ReadString('\n')
	if err != nil {
		t.Fatalf("read a pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("pid %q: %v", line, err)
	}
	return pid
}

func alive(pid int) bool { return !errors.Is(unix.Kill(pid, 0), unix.ESRCH) }

// TestSupervisorStopEndsGroup: Stop ends the grandchildren too, including
// one that ignores SIGTERM, and returns only once they are reaped.
func TestSupervisorStopEndsGroup(t *testing.T) {
	for _, tc := range []struct {
		name, grandchild, tail string
		minWait                time.Duration
	}{
		{"grandchild obeys SIGTERM", "sleep 30", "wait", 0},
		{"grandchild ignores SIGTERM", `sh -c 'trap "" TERM; exec sleep 30'`, "wait", 300 * time.Millisecond},
		{"child and grandchild ignore SIGTERM", `sh -c 'trap "" TERM; exec sleep 30'`, `trap "" TERM; wait; wait`, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr := newPidReader(t)
			pids := make(chan int, 1)
			stops := make(chan ExitStatus, 1)
			s := &Supervisor{
				Name: "group", Reaper: reaper,
				Command: func() *exec.Cmd {
					cmd := exec.Command("/bin/sh", "-c", groupScript(tc.grandchild, tc.tail))
					cmd.Stdout = pr.w
					return cmd
				},
				OnStart: func(pid int) { pids <- pid },
				OnExit:  func(st ExitStatus, _, _ time.Duration) { t.Errorf("OnExit(%s) after Stop", st) },
				OnStop:  func(st ExitStatus, _ time.Duration) { stops <- st },
			}
			done := make(chan error, 1)
			go func() { done <- s.Run(context.Background()) }()
			child := <-pids
			grandchild := pr.next(t)
			waitComm(t, grandchild, "sleep")
			if pgid, err := unix.Getpgid(grandchild); err != nil || pgid != child {
				t.Fatalf("grandchild %d in group %d (%v), want the child's %d", grandchild, pgid, err, child)
			}
			start := time.Now()
			if err := s.Stop(300 * time.Millisecond); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if waited := time.Since(start); waited < tc.minWait {
				t.Errorf("Stop returned after %v, before the SIGTERM grace period", waited)
			}
			if alive(grandchild) {
				state, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", grandchild))
				t.Errorf("grandchild %d still there after Stop: %q", grandchild, state)
			}
			if groupAlive(child) {
				t.Errorf("process group %d still has processes after Stop", child)
			}
			waitStatus(t, stops)
			if err := <-done; !errors.Is(err, ErrStopped) {
				t.Errorf("Run after Stop = %v, want ErrStopped", err)
			}
		})
	}
}

// TestSupervisorRestartEndsGroup: a child that exits leaving a grandchild
// behind is not restarted until the grandchild is gone.
func TestSupervisorRestartEndsGroup(t *testing.T) {
	for _, tc := range []struct{ name, grandchild string }{
		{"grandchild obeys SIGTERM", "sleep 30"},
		{"grandchild ignores SIGTERM", `sh -c 'trap "" TERM; exec sleep 30'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr := newPidReader(t)
			starts := make(chan int, 4)
			exits := make(chan ExitStatus, 4)
			s := &Supervisor{
				Name: "group", Reaper: reaper, StopTimeout: 300 * time.Millisecond,
				Command: func() *exec.Cmd {
					// The child waits for its grandchild to run before it exits.
					cmd := exec.Command("/bin/sh", "-c", groupScript(tc.grandchild, `
						while [ "$(cat /proc/$!/comm 2>/dev/null)" != sleep ]; do sleep 0.01; done; exit 1`))
					cmd.Stdout = pr.w
					return cmd
				},
				OnStart: func(pid int) { starts <- pid },
				OnExit:  func(st ExitStatus, _, _ time.Duration) { exits <- st },
				Sleep:   func(context.Context, time.Duration) error { return nil },
			}
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			<-starts
			grandchild := pr.next(t)
			if st := waitStatus(t, exits); st.String() != "exited 1" {
				t.Errorf("child: %s, want exited 1", st)
			}
			// OnExit comes after the group was ended, before the restart.
			if alive(grandchild) {
				t.Errorf("grandchild %d of the exited child still there when the restart is due", grandchild)
			}
			select {
			case <-starts:
			case <-time.After(10 * time.Second):
				t.Fatal("not restarted")
			}
			second := pr.next(t)
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v, want context.Canceled", err)
			}
			if alive(second) {
				t.Errorf("grandchild %d of the second run still there after Run returned", second)
			}
		})
	}
}

// TestSupervisorCgroupEndsEscapedProcesses: a child that starts a process
// in a session of its own (as Core-0 starts its services) and exits leaves
// it out of reach of its group; with a cgroup the restart and Stop still
// find nothing of the last run.
func TestSupervisorCgroupEndsEscapedProcesses(t *testing.T) {
	testenv.NeedRoot(t, "cgroup2")
	root := t.TempDir()
	err := unix.Mount("none", root, "cgroup2", 0, "")
	testenv.Need(t, err == nil, "mount cgroup2: %v", err)
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	cg, err := cgroup.Create(root, "core0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cg.Kill(time.Second); os.Remove(cg.Dir) })

	dir := t.TempDir()
	once, exit := filepath.Join(dir, "once"), filepath.Join(dir, "exit")
	pr := newPidReader(t)
	starts := make(chan int, 4)
	exits := make(chan ExitStatus, 4)
	stops := make(chan ExitStatus, 1)
	s := &Supervisor{
		Name: "core0", Reaper: reaper, StopTimeout: time.Second, Cgroup: cg,
		Command: func() *exec.Cmd {
			// The first run exits when the test has seen its escapee;
			// the second stays.
			cmd := exec.Command("/bin/sh", "-c", `setsid sleep 30 >/dev/null 2>&1 & echo $!
				[ -e `+once+` ] && exec sleep 30; : >`+once+`
				while [ ! -e `+exit+` ]; do sleep 0.01; done; exit 1`)
			cmd.Stdout = pr.w
			return cmd
		},
		OnStart: func(pid int) { starts <- pid },
		OnExit:  func(st ExitStatus, _, _ time.Duration) { exits <- st },
		OnStop:  func(st ExitStatus, _ time.Duration) { stops <- st },
		Sleep:   func(context.Context, time.Duration) error { return nil },
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	first := <-starts
	escapee := pr.next(t)
	waitComm(t, escapee, "sleep")
	if pgid, err := unix.Getpgid(escapee); err != nil || pgid == first {
		t.Fatalf("escapee %d in group %d (%v): the test needs it out of the child's group %d", escapee, pgid, err, first)
	}
	if err := os.WriteFile(exit, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if st := waitStatus(t, exits); st.String() != "exited 1" {
		t.Errorf("first run: %s, want exited 1", st)
	}
	if running(escapee) {
		t.Errorf("escapee %d of the first run still there when the restart is due", escapee)
	}
	<-starts
	// A run cloned into the group after a kill must live.
	select {
	case st := <-exits:
		t.Fatalf("second run: %s", st)
	case <-time.After(300 * time.Millisecond):
	}
	second := pr.next(t)
	waitComm(t, second, "sleep")
	if err := s.Stop(time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if running(second) {
		t.Errorf("escapee %d of the second run still there after Stop", second)
	}
	if busy, err := (&cgroup.Group{Dir: cg.Dir}).Populated(); err != nil || busy {
		t.Errorf("cgroup after Stop: populated %v, %v", busy, err)
	}
	waitStatus(t, stops)
	if err := <-done; !errors.Is(err, ErrStopped) {
		t.Errorf("Run after Stop = %v, want ErrStopped", err)
	}
}

// running reports whether pid is there and not a zombie: a process killed
// with its cgroup leaves it at once, and is reaped a moment later.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}
