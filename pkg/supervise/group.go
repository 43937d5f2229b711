package supervise

import (
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// leadGroup makes cmd's process the leader of a new process group, so
// that the processes it starts can be signalled with it: their group id
// is its pid. A command that asks for a new session (handoff sets Setsid
// for Core-0) leads a new group already; asking for Setpgid as well would
// make the start fail, since a session leader cannot change its group.
func leadGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if !cmd.SysProcAttr.Setsid {
		cmd.SysProcAttr.Setpgid = true
		cmd.SysProcAttr.Pgid = 0
	}
}

// signalGroup sends sig to every process in group pgid. A group with no
// process left is no error.
func signalGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 0 { // kill(0) and kill(-1) mean other things
		return fmt.Errorf("signal process group %d: not a group id", pgid)
	}
	if err := unix.Kill(-pgid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal process group %d with %v: %w", pgid, sig, err)
	}
	return nil
}

// groupAlive reports whether group pgid still has a process, a zombie
// not yet reaped included.
func groupAlive(pgid int) bool {
	return !errors.Is(unix.Kill(-pgid, 0), unix.ESRCH)
}

// waitGroupGone waits until the group's leader has been reaped (done
// closed) and no process of the group is left, or until timeout. Members
// are orphans PID 1's Reaper collects; nothing signals the group's end,
// so it polls, from 1 ms doubling to 50 ms.
func waitGroupGone(pgid int, done <-chan struct{}, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	if !waitDone(done, timeout) {
		return false
	}
	for poll := time.Millisecond; groupAlive(pgid); poll = min(2*poll, 50*time.Millisecond) {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(poll, left))
	}
	return true
}
