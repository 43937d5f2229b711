// Package cgroup holds a supervised process and everything it starts in
// one cgroup v2 group, so that its end can be made complete. A process
// group is not enough: Core-0's services lead their own groups, and a
// Core-0 killed with SIGKILL would leave them running beside the next
// Core-0's. A cgroup keeps every descendant, whatever it does with its
// session or group, and cgroup.kill (Linux 5.14) ends them all at once.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Group is one cgroup directory on a cgroup2 mount.
type Group struct {
	Dir string
}

// Create makes the group name under parent (a cgroup2 directory, say
// /sys/fs/cgroup). An existing group is reused once it is empty: a group
// left by an earlier run of the same supervisor holds nothing alive that
// this one should keep.
func Create(parent, name string) (*Group, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("cgroup name %q: want one path element", name)
	}
	g := &Group{Dir: filepath.Join(parent, name)}
	if err := os.Mkdir(g.Dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w", g.Dir, err)
	}
	if _, err := os.Stat(filepath.Join(g.Dir, "cgroup.kill")); err != nil {
		return nil, fmt.Errorf("cgroup %s: no cgroup.kill (cgroup v2 on Linux 5.14 or later needed): %w", g.Dir, err)
	}
	return g, nil
}

// Attach makes cmd start inside the group (clone3 with CLONE_INTO_CGROUP,
// so not one instruction of it runs outside). Call release once cmd has
// started, or failed to.
func (g *Group) Attach(cmd *exec.Cmd) (release func(), err error) {
	f, err := os.Open(g.Dir)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", g.Dir, err)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(f.Fd())
	return func() { f.Close() }, nil
}

// Kill kills every process in the group and waits, up to timeout, until
// none is left. It returns how many there were when it began.
func (g *Group) Kill(timeout time.Duration) (int, error) {
	pids, err := g.Procs()
	if err != nil {
		return 0, err
	}
	if busy, err := g.Populated(); err != nil || !busy {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(g.Dir, "cgroup.kill"), []byte("1"), 0); err != nil {
		return len(pids), fmt.Errorf("kill cgroup %s: %w", g.Dir, err)
	}
	deadline := time.Now().Add(timeout)
	// The kernel says nothing when the last one is gone but a change of
	// cgroup.events, which needs inotify; a poll from 1 ms to 50 ms is as
	// good for an end that takes milliseconds.
	for poll := time.Millisecond; ; poll = min(2*poll, 50*time.Millisecond) {
		busy, err := g.Populated()
		if err != nil {
			return len(pids), err
		}
		if !busy {
			return len(pids), g.renew()
		}
		if time.Now().After(deadline) {
			return len(pids), fmt.Errorf("kill cgroup %s: processes left after %v", g.Dir, timeout)
		}
		time.Sleep(poll)
	}
}

// Procs lists the processes in the group (not in its children).
func (g *Group) Procs() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(g.Dir, "cgroup.procs"))
	if err != nil {
		return nil, fmt.Errorf("read cgroup %s: %w", g.Dir, err)
	}
	var pids []int
	for _, f := range bytes.Fields(b) {
		var pid int
		if _, err := fmt.Sscan(string(f), &pid); err != nil {
			return nil, fmt.Errorf("cgroup %s: cgroup.procs: %q is no pid", g.Dir, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// Populated reports whether the group or a child of it has a process.
func (g *Group) Populated() (bool, error) {
	p := filepath.Join(g.Dir, "cgroup.events")
	b, err := os.ReadFile(p)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == "populated" {
			return v != "0", nil
		}
	}
	return false, fmt.Errorf("%s: no populated line", p)
}

// renew replaces the killed group with a fresh one of the same name. Some
// kernels (seen on 6.18) go on killing every process cloned into a group
// after its cgroup.kill (CLONE_INTO_CGROUP against the group's kill
// count); a group that was never killed has no such past.
func (g *Group) renew() error {
	if err := os.Remove(g.Dir); err != nil {
		return fmt.Errorf("renew cgroup %s: %w", g.Dir, err)
	}
	if err := os.Mkdir(g.Dir, 0o755); err != nil {
		return fmt.Errorf("renew cgroup %s: %w", g.Dir, err)
	}
	return nil
}
