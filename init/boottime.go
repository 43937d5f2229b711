package main

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/pkg/boottime"
	"github.com/zeroboot/zeroboot/pkg/coldplug"
	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/mounts"
	"github.com/zeroboot/zeroboot/pkg/panics"
)

// bootShares puts the boot's shares before PID 1 (firmware, kernel:
// pkg/boottime) on the timeline and the console, from the clocks read at
// PID 1's entry. It runs after the mount step: sysfs is there, and the
// console reaches /dev/kmsg. Nothing here can fail the boot; a share not
// known is said so. The steps do not wait for it: mounting efivarfs has
// the kernel read every variable through the firmware (under OVMF and
// TCG 70 ms on an idle host, 1.8 s on a loaded one), and the timeline only
// has to hold the shares by the first report, seconds later.
func (n *node) bootShares(c boottime.Clocks) {
	go func() {
		err := panics.Catch(func() error {
			n.efivars("/", coldplug.KmoduleLoader("/"), mounts.DefaultMounter())
			n.bootSharesFrom(boottime.System, c)
			return nil
		})()
		if err != nil {
			n.log.Error("boot time before PID 1 not recorded", "err", err)
		}
	}()
}

func (n *node) bootSharesFrom(src boottime.Sources, c boottime.Clocks) {
	sh := src.Shares(c)
	if err := n.tl.Before(sh.Steps()...); err != nil {
		n.log.Warn("boot time before PID 1 not recorded", "err", err)
		return
	}
	n.log.Info("boot time before PID 1: " + sh.String())
}

// efiDir is there only when the kernel was started by EFI firmware.
const (
	efiDir     = "/sys/firmware/efi"
	efivarsDir = efiDir + "/efivars"
)

// efivars mounts efivarfs where the mount step could not: Debian builds
// it as a module, and no module is loaded before the mount step. The
// boot loader's variables (its times, systemd-stub's StubInfo) are read
// from it; their names are logged, so a boot shows what its loader told.
// root is "/" but in tests.
func (n *node) efivars(root string, load func(string) error, m mounts.Mounter) {
	dir := filepath.Join(root, efivarsDir)
	if _, err := os.Stat(filepath.Join(root, efiDir)); err != nil {
		return // not an EFI boot
	}
	// Mounted at the mount step (built in): nothing to do. An EFI machine
	// always has variables.
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return
	}
	start := time.Now()
	if err := load("efivarfs"); err != nil && !errors.Is(err, coldplug.ErrNotShipped) {
		n.log.Warn("efivarfs not loaded: EFI variables unread", "err", err)
		return
	}
	for _, mt := range mounts.Early() {
		if mt.Target != efivarsDir {
			continue
		}
		if skipped, err := m.All([]mounts.Mount{mt}); err != nil || len(skipped) > 0 {
			n.log.Warn("efivarfs not mounted: EFI variables unread", "err", err, "skipped", skipped)
			return
		}
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), "-"+boottime.LoaderGUID); ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		names = []string{"none"}
	}
	// The names are the firmware's and the loader's to choose. The time
	// is the load and mount: the kernel reads every variable through the
	// firmware then (under OVMF, in SMM).
	n.log.Info("EFI boot loader variables: "+console.Sanitize(strings.Join(names, " "), 512), "took", time.Since(start).Round(time.Millisecond))
	if stub, ok := efiStubInfo(filepath.Join(root, stubInfoVar)); ok {
		n.log.Info("booted from a unified kernel image", "stub", stub)
	}
}
