package handoff

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/zeroboot/zeroboot/pkg/release"
)

// MountFunc has the signature of unix.Mount.
type MountFunc func(source, target, fstype string, flags uintptr, data string) error

// Root is the new root Core-0 runs in: a tmpfs that PID 1 fills with the
// release's components.
type Root struct {
	Dir string // e.g. /root-new
	// Mount and Unmount default to unix.Mount and unix.Unmount; tests swap
	// them.
	Mount   MountFunc
	Unmount func(target string, flags int) error
}

// freshTmpfs is the runtime path that gets an empty tmpfs of its own
// instead of PID 1's directory: Core-0's scratch space is not PID 1's.
const freshTmpfs = "/tmp"

func (r *Root) mount(source, target, fstype string, flags uintptr, data string) error {
	m := r.Mount
	if m == nil {
		m = unix.Mount
	}
	if err := m(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", source, target, err)
	}
	return nil
}

func (r *Root) check() error {
	if r.Dir == "" || !filepath.IsAbs(r.Dir) || filepath.Clean(r.Dir) != r.Dir || r.Dir == "/" {
		return fmt.Errorf("new root %q: must be an absolute clean path other than /", r.Dir)
	}
	return nil
}

// Prepare mounts an empty tmpfs at Dir: the root lives in RAM, so nothing
// from an earlier attempt or from the machine's disks can leak into it.
func (r *Root) Prepare() error {
	if err := r.check(); err != nil {
		return err
	}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return fmt.Errorf("prepare root: %w", err)
	}
	return r.mount("tmpfs", r.Dir, "tmpfs", 0, "mode=0755")
}

// Bind mounts the runtime paths (release.RuntimePaths, the one list the
// release validation refuses components and entrypoints in) over the new
// root: /dev, /proc, /sys and /run bound (recursively, with their
// submounts such as /dev/pts and cgroup2) from PID 1's, and a fresh /tmp.
// Binding rather than moving keeps them mounted for PID 1. BindEntrypoint
// binds and then hashes the entrypoint, in that order.
func (r *Root) Bind() error {
	if err := r.check(); err != nil {
		return err
	}
	for _, p := range release.RuntimePaths {
		if err := r.bindOne(p); err != nil {
			return err
		}
	}
	return nil
}

func (r *Root) bindOne(p string) error {
	target := filepath.Join(r.Dir, p)
	if p == freshTmpfs {
		if err := mkdirNoFollow(target, 0o1777); err != nil {
			return err
		}
		return r.mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777")
	}
	if err := mkdirNoFollow(target, 0o755); err != nil {
		return err
	}
	return r.mount(p, target, "", unix.MS_BIND|unix.MS_REC, "")
}

// mkdirNoFollow creates dir, or accepts an existing real directory: a
// component that ships /dev as a symlink must not redirect a bind mount
// onto PID 1's own tree.
func mkdirNoFollow(dir string, perm os.FileMode) error {
	err := os.Mkdir(dir, perm)
	if err == nil {
		return nil
	}
	if !errors.Is(err, os.ErrExist) {
		return err // a *PathError naming mkdir and dir
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("mkdir %s: exists and is not a directory (%v)", dir, fi.Mode().Type())
	}
	return nil
}

// Release detaches the root and everything mounted below it, so a failed
// boot attempt can start again from Prepare.
func (r *Root) Release() error {
	if err := r.check(); err != nil {
		return err
	}
	u := r.Unmount
	if u == nil {
		u = unix.Unmount
	}
	if err := u(r.Dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", r.Dir, err)
	}
	return nil
}

// ComponentDir creates the directory a component is mounted at and returns
// its path on PID 1's side. mount must be absolute and clean; no element
// of the path may be a symlink, because a component extracted earlier could
// otherwise point a later one outside the root.
func (r *Root) ComponentDir(mount string) (string, error) {
	if err := r.check(); err != nil {
		return "", err
	}
	if !path.IsAbs(mount) || path.Clean(mount) != mount || strings.ContainsRune(mount, 0) {
		return "", fmt.Errorf("component mount %q: must be an absolute clean path", mount)
	}
	dir := r.Dir
	for _, el := range strings.Split(strings.TrimPrefix(mount, "/"), "/") {
		if el == "" {
			continue
		}
		dir = filepath.Join(dir, el)
		if err := mkdirNoFollow(dir, 0o755); err != nil {
			return "", fmt.Errorf("component mount %q: %w", mount, err)
		}
	}
	return dir, nil
}

// DefaultPath is Core-0's PATH unless the release sets one.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// command is Core-0's command: entry (an absolute path inside root,
// outside the runtime mounts) chrooted into root, in its own session,
// writing to PID 1's console. env comes from the release and may override
// PATH; the boot info location is set last so a release cannot redirect
// it.
func command(root, entry string, args, env []string) *exec.Cmd {
	cmd := &exec.Cmd{
		Path:   entry,
		Args:   append([]string{entry}, args...),
		Dir:    "/",
		Env:    append(append([]string{DefaultPath}, env...), EnvBootInfo+"="+BootInfoPath),
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Chroot: root,
			Setsid: true,
		},
	}
	if err := checkEntry(entry); err != nil {
		cmd.Err = err
	}
	if !filepath.IsAbs(root) {
		cmd.Err = fmt.Errorf("core-0 root %q: must be an absolute path", root)
	}
	return cmd
}
