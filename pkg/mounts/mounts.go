// Package mounts makes the early mounts PID 1 needs before anything else:
// /dev, /proc, /sys, /run, /tmp and friends.
//
// A mount the kernel cannot provide (no EFI, no securityfs) is optional and
// skipped with a reason; a required one that fails is reported but the rest
// are still attempted, so the console shows everything that is wrong at once.
package mounts

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one filesystem to mount. Mode is the permission of the target
// directory when it has to be created.
type Mount struct {
	Source   string
	Target   string
	FSType   string
	Flags    uintptr
	Data     string
	Optional bool
	Mode     os.FileMode
}

const (
	base   = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	dirMod = 0o755
)

// Early is the list PID 1 mounts first, in order (/dev/pts needs /dev).
func Early() []Mount {
	return []Mount{
		{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: unix.MS_NOSUID, Data: "mode=0755", Mode: dirMod},
		{Source: "proc", Target: "/proc", FSType: "proc", Flags: base, Mode: dirMod},
		{Source: "sysfs", Target: "/sys", FSType: "sysfs", Flags: base, Mode: dirMod},
		{Source: "tmpfs", Target: "/run", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=0755", Mode: dirMod},
		{Source: "tmpfs", Target: "/tmp", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=1777", Mode: os.ModeSticky | 0o777},
		{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "newinstance,ptmxmode=0666,mode=0620", Mode: dirMod},
		{Source: "securityfs", Target: "/sys/kernel/security", FSType: "securityfs", Flags: base, Optional: true, Mode: dirMod},
		{Source: "efivarfs", Target: "/sys/firmware/efi/efivars", FSType: "efivarfs", Flags: base, Optional: true, Mode: dirMod},
		{Source: "cgroup2", Target: "/sys/fs/cgroup", FSType: "cgroup2", Flags: base, Data: "nsdelegate", Mode: dirMod},
	}
}

// Mounter holds the system calls, so tests can replace them.
type Mounter struct {
	Mount    func(source, target, fstype string, flags uintptr, data string) error
	MkdirAll func(path string, perm os.FileMode) error
	Stat     func(path string) (os.FileInfo, error)
	// Filesystems returns the filesystem types the kernel knows (from
	// /proc/filesystems). It is called only when an optional mount needs
	// it, which in Early's order is after /proc is mounted.
	Filesystems func() (map[string]bool, error)
}

// DefaultMounter uses the real system calls and /proc/filesystems.
func DefaultMounter() Mounter {
	return Mounter{
		Mount:    unix.Mount,
		MkdirAll: os.MkdirAll,
		Stat:     os.Stat,
		Filesystems: func() (map[string]bool, error) {
			f, err := os.Open("/proc/filesystems")
			if err != nil {
				return nil, err
			}
			defer f.Close()
			return ParseFilesystems(f)
		},
	}
}

// ParseFilesystems reads the /proc/filesystems format: one type per line,
// optionally preceded by "nodev".
func ParseFilesystems(r io.Reader) (map[string]bool, error) {
	fs := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			fs[f[len(f)-1]] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read filesystems: %w", err)
	}
	return fs, nil
}

// All mounts ms in order. A target that is already mounted (EBUSY, e.g. the
// /dev the kernel automounted) counts as done. Optional mounts the kernel
// cannot make are skipped and described in skipped. Failed required mounts
// are joined into err; the others are still attempted.
func (m Mounter) All(ms []Mount) (skipped []string, err error) {
	var errs []error
	var known map[string]bool
	var knownErr error
	for _, mt := range ms {
		if mt.Optional {
			if known == nil && knownErr == nil {
				known, knownErr = m.Filesystems()
			}
			if reason := m.unavailable(mt, known); reason != "" {
				skipped = append(skipped, fmt.Sprintf("%s (%s): %s", mt.Target, mt.FSType, reason))
				continue
			}
		}
		if e := m.one(mt); e != nil {
			if mt.Optional {
				skipped = append(skipped, fmt.Sprintf("%s (%s): %v", mt.Target, mt.FSType, e))
				continue
			}
			errs = append(errs, e)
		}
	}
	return skipped, errors.Join(errs...)
}

// unavailable says why an optional mount cannot be made, or "". When the
// filesystem list could not be read (known is nil) the mount is attempted.
func (m Mounter) unavailable(mt Mount, known map[string]bool) string {
	if known != nil && !known[mt.FSType] {
		return "filesystem not in the kernel"
	}
	if parent := filepath.Dir(mt.Target); !exists(m.Stat, parent) {
		return fmt.Sprintf("%s missing", parent)
	}
	return ""
}

func exists(stat func(string) (os.FileInfo, error), p string) bool {
	_, err := stat(p)
	return err == nil
}

func (m Mounter) one(mt Mount) error {
	if !exists(m.Stat, mt.Target) {
		if err := m.MkdirAll(mt.Target, mt.Mode); err != nil {
			return fmt.Errorf("mount %s: %w", mt.Target, err)
		}
	}
	err := m.Mount(mt.Source, mt.Target, mt.FSType, mt.Flags, mt.Data)
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount %s on %s: %w", mt.FSType, mt.Target, err)
	}
	return nil
}
