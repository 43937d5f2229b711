package handoff

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/release"
)

// Entrypoint is the program Core-0 runs, found and hashed in the finished
// root.
type Entrypoint struct {
	// Path is the entrypoint as the release names it; Core-0 gets it as
	// argv[0], as if it had been executed directly.
	Path string
	// File is the file that was hashed and that Command executes: Path
	// with its symlinks resolved inside the root. It has no symlink left,
	// so the chroot reaches the same file however the root's symlinks
	// would resolve for another process.
	File   string
	Digest digest.Digest
}

// BindEntrypoint finishes the root and finds what Core-0 will run, in the
// one order that makes the digest mean something: first the runtime
// filesystems are mounted over the root (Bind), then entry is resolved
// and hashed as the chroot will see it. Hashing before the binds would
// hash files the binds then hide or replace.
func (r *Root) BindEntrypoint(entry string) (Entrypoint, error) {
	if err := checkEntry(entry); err != nil {
		return Entrypoint{}, err
	}
	if err := r.Bind(); err != nil {
		return Entrypoint{}, err
	}
	return findExecutable(r.Dir, "entrypoint", entry)
}

// FindService finds and hashes a service's executable in the finished root,
// as BindEntrypoint does for the entrypoint: call it after BindEntrypoint,
// so the file hashed is the one Core-0 will see through the binds.
func (r *Root) FindService(name, exec string) (Entrypoint, error) {
	what := "service " + name + " exec"
	if !path.IsAbs(exec) || path.Clean(exec) != exec || strings.ContainsRune(exec, 0) {
		return Entrypoint{}, fmt.Errorf("%s %q: must be an absolute clean path in the new root", what, exec)
	}
	return findExecutable(r.Dir, what, exec)
}

// Command returns the command that starts Core-0 from e (what
// BindEntrypoint found): the very file that was hashed, chrooted into r.
// The caller starts it and supervises it.
func (r *Root) Command(e Entrypoint, args, env []string) *exec.Cmd {
	cmd := command(r.Dir, e.File, args, env)
	cmd.Args[0] = e.Path
	if cmd.Err == nil {
		cmd.Err = checkEntry(e.Path)
	}
	return cmd
}

// checkEntry refuses an entrypoint that is not an absolute clean path or
// that lies in a runtime mount (release.RuntimePaths): /run/core0 or
// /proc/self/exe would run whatever PID 1's /run or /proc hold, not the
// release's file. Release.Validate refuses them too; this is the hand-off's
// own guard.
func checkEntry(entry string) error {
	if !path.IsAbs(entry) || path.Clean(entry) != entry || strings.ContainsRune(entry, 0) {
		return fmt.Errorf("core-0 entrypoint %q: must be an absolute clean path in the new root", entry)
	}
	return release.CheckNotRuntime("entrypoint", entry)
}

// findExecutable opens entry inside rootDir as the chroot will resolve it
// (symlinks followed only within the root, through os.Root), requires an
// executable regular file outside the runtime mounts, and hashes it.
// Opening without blocking means a FIFO or device planted as the
// entrypoint is refused instead of hanging PID 1. what names the file in
// errors ("entrypoint", "service db exec").
func findExecutable(rootDir, what, entry string) (Entrypoint, error) {
	e := Entrypoint{Path: entry}
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return e, fmt.Errorf("%s %s: %w", what, entry, err)
	}
	defer root.Close()
	f, err := root.OpenFile(strings.TrimPrefix(entry, "/"), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return e, fmt.Errorf("%s %s: %w", what, entry, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return e, fmt.Errorf("%s %s: %w", what, entry, err)
	}
	if !fi.Mode().IsRegular() {
		return e, fmt.Errorf("%s %s: not a regular file (%v)", what, entry, fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return e, fmt.Errorf("%s %s: not executable (mode %v)", what, entry, fi.Mode().Perm())
	}
	if e.File, err = pathInRoot(root, f); err != nil {
		return e, fmt.Errorf("%s %s: %w", what, entry, err)
	}
	// A symlink into a runtime mount (/bin/core0 -> ../run/x) is as bad
	// as naming it directly.
	if err := release.CheckNotRuntime(fmt.Sprintf("%s %s resolved to", what, entry), e.File); err != nil {
		return e, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return e, fmt.Errorf("%s %s: %w", what, entry, err)
	}
	copy(e.Digest[:], h.Sum(nil))
	return e, nil
}

// pathInRoot is where f is, as a path inside root: the kernel's own record
// of the path each was opened at (/proc/self/fd), so it has no symlinks
// and names the mount f was reached through.
func pathInRoot(root *os.Root, f *os.File) (string, error) {
	dir, err := root.Open(".")
	if err != nil {
		return "", err
	}
	defer dir.Close()
	rp, err := fdPath(dir)
	if err != nil {
		return "", err
	}
	fp, err := fdPath(f)
	if err != nil {
		return "", err
	}
	rel, ok := strings.CutPrefix(fp, strings.TrimSuffix(rp, "/")+"/")
	if !ok {
		return "", fmt.Errorf("opened %s, outside the root %s", fp, rp)
	}
	return "/" + rel, nil
}

func fdPath(f *os.File) (string, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return "", err
	}
	var p string
	var lerr error
	if err := rc.Control(func(fd uintptr) {
		p, lerr = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	}); err != nil {
		return "", err
	}
	if lerr != nil {
		return "", fmt.Errorf("find the opened file's path: %w", lerr)
	}
	return p, nil
}
