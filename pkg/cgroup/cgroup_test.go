package cgroup

import (
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
)

// mountCgroup2 mounts a cgroup2 hierarchy of its own for the test, so no
// test touches the machine's groups.
func mountCgroup2(t *testing.T) string {
	testenv.NeedRoot(t, "mounting cgroup2")
	dir := t.TempDir()
	err := unix.Mount("none", dir, "cgroup2", 0, "")
	testenv.Need(t, err == nil, "mount cgroup2 on %s: %v", dir, err)
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestKillEndsEscapedProcesses starts a shell that starts a sleep in a
// new session of its own (out of reach of a process-group signal) and
// exits: killing the group ends the sleep too.
func TestKillEndsEscapedProcesses(t *testing.T) {
	root := mountCgroup2(t)
	g, err := Create(root, "core0-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Kill(time.Second); os.Remove(g.Dir) })
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command("sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >"+pidFile)
	release, err := g.Attach(cmd)
	if err != nil {
		t.Fatal(err)
	}
	err = cmd.Run()
	release()
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var sleeper int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &sleeper); err != nil {
		t.Fatal(err)
	}
	procs, err := g.Procs()
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 1 || procs[0] != sleeper {
		t.Fatalf("group holds %v, want the escaped sleep %d alone", procs, sleeper)
	}
	if busy, _ := g.Populated(); !busy {
		t.Fatal("group with a sleep in it not populated")
	}

	n, err := g.Kill(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("Kill found %d processes, want 1", n)
	}
	// The sleep was our grandchild: reparented to init or a subreaper,
	// it may be a zombie a moment, but it is no longer in the group.
	if busy, err := g.Populated(); err != nil || busy {
		t.Errorf("after Kill: populated %v, %v", busy, err)
	}
	if err := syscall.Kill(sleeper, 0); err == nil && !isZombie(sleeper) {
		t.Errorf("sleep %d still alive after Kill", sleeper)
	}
	if n, err := g.Kill(time.Second); n != 0 || err != nil {
		t.Errorf("Kill of an empty group: %d, %v", n, err)
	}
	// The next process cloned into the group lives (see renew).
	next := exec.Command("true")
	release, err = g.Attach(next)
	if err != nil {
		t.Fatal(err)
	}
	err = next.Run()
	release()
	if err != nil {
		t.Errorf("a process started in the group after Kill: %v", err)
	}
}

func TestCreate(t *testing.T) {
	root := mountCgroup2(t)
	for _, bad := range []string{"", ".", "..", "a/b"} {
		if _, err := Create(root, bad); err == nil {
			t.Errorf("Create(%q): no error", bad)
		}
	}
	if _, err := Create(t.TempDir(), "x"); err == nil || !strings.Contains(err.Error(), "cgroup.kill") {
		t.Errorf("Create in a plain directory: %v, want a cgroup.kill error", err)
	}
	g, err := Create(root, "again")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(g.Dir)
	if _, err := Create(root, "again"); err != nil {
		t.Errorf("Create of an existing group: %v", err)
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true // gone
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}
