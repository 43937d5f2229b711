package supervise

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Shutdown turns PID 1's signals into an orderly reboot or power-off:
// stop the workload with a timeout, sync, then ask the kernel.
type Shutdown struct {
	// Stop ends the workload (Supervisor.Stop); nil skips it.
	Stop func(timeout time.Duration) error
	// Timeout is passed to Stop (default 10 s).
	Timeout time.Duration
	// Sync flushes filesystems (default unix.Sync).
	Sync func()
	// Reboot asks the kernel (default unix.Reboot); it does not return on
	// success.
	Reboot func(cmd int) error
	Log    *slog.Logger

	mu sync.Mutex // one shutdown at a time; a failed one may be retried
}

// Signals are the signals PID 1 should pass to Handle: SIGINT is what the
// kernel sends PID 1 for Ctrl-Alt-Del once EnableCtrlAltDelSignal ran,
// SIGTERM asks for a reboot, SIGUSR2 for a power-off (as in systemd and
// busybox init).
func Signals() []os.Signal {
	return []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGUSR2}
}

// EnableCtrlAltDelSignal makes the kernel send SIGINT to PID 1 on
// Ctrl-Alt-Del instead of rebooting at once without a sync.
func EnableCtrlAltDelSignal() error {
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		return fmt.Errorf("reboot(CAD_OFF): %w", err)
	}
	return nil
}

// Action is the reboot command a signal asks for.
func Action(sig os.Signal) (cmd int, name string, ok bool) {
	switch sig {
	case unix.SIGINT, unix.SIGTERM:
		return unix.LINUX_REBOOT_CMD_RESTART, "reboot", true
	case unix.SIGUSR2:
		return unix.LINUX_REBOOT_CMD_POWER_OFF, "power-off", true
	}
	return 0, "", false
}

// Handle performs the shutdown sig asks for. A failing Stop is logged and
// the shutdown goes on: a stuck workload must not keep the node from
// rebooting. It returns only if the reboot call failed (or, with fakes,
// returned), so the caller can log and keep running.
func (s *Shutdown) Handle(sig os.Signal) error {
	cmd, name, ok := Action(sig)
	if !ok {
		return fmt.Errorf("shutdown: no action for signal %v", sig)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.Warn("shutting down", "signal", sig.String(), "action", name)
	if s.Stop != nil {
		timeout := s.Timeout
		if timeout <= 0 {
			timeout = defaultStopTimeout
		}
		if err := s.Stop(timeout); err != nil {
			log.Error("stop before "+name, "err", err)
		}
	}
	sync := s.Sync
	if sync == nil {
		sync = unix.Sync
	}
	sync()
	reboot := s.Reboot
	if reboot == nil {
		reboot = unix.Reboot
	}
	if err := reboot(cmd); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
