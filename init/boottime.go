package main

import (
	"github.com/zeroboot/zeroboot/pkg/boottime"
)

// bootShares puts the boot's shares before PID 1 (firmware, kernel:
// pkg/boottime) on the timeline and the console, from the clocks read at
// PID 1's entry. It runs after the mount step: efivarfs and sysfs are
// there, and the console reaches /dev/kmsg. Nothing here can fail the
// boot; a share not known is said so.
func (n *node) bootShares(c boottime.Clocks) {
	n.bootSharesFrom(boottime.System, c)
}

func (n *node) bootSharesFrom(src boottime.Sources, c boottime.Clocks) {
	sh := src.Shares(c)
	if err := n.tl.Before(sh.Steps()...); err != nil {
		n.log.Warn("boot time before PID 1 not recorded", "err", err)
		return
	}
	n.log.Info("boot time before PID 1: " + sh.String())
}
