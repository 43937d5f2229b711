package flist

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// beneath opens paths inside one directory with a single openat2 call
// that the kernel keeps inside it (RESOLVE_BENEATH: no "..", no absolute
// or escaping symlink on the way; RESOLVE_NO_MAGICLINKS: no /proc links).
// os.Root gives the same guarantee by walking the path, one openat and
// one close per element; on a tree of small files that walk was most of
// an extraction's syscalls. Kernels before 5.6, and sandboxes whose
// seccomp filter hides openat2, get os.Root's walk.
type beneath struct {
	root   *os.Root
	dir    *os.File // root's own directory, the base of openat2
	fd     int
	noOpen atomic.Bool // openat2 said ENOSYS once
}

// openat2 is the system call; tests stand in a kernel without it.
var openat2 = unix.Openat2

func openBeneath(root *os.Root) (*beneath, error) {
	dir, err := root.Open(".")
	if err != nil {
		return nil, err
	}
	return &beneath{root: root, dir: dir, fd: int(dir.Fd())}, nil
}

func (b *beneath) Close() error { return b.dir.Close() }

// errEscapes is what an openat2 refusal to leave the directory reads as;
// os.Root's own says "path escapes from parent".
var errEscapes = errors.New("path escapes from the extraction directory")

// OpenFile is os.Root.OpenFile in one system call where the kernel has it.
func (b *beneath) OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	if b.noOpen.Load() {
		return b.root.OpenFile(name, flag, perm)
	}
	how := unix.OpenHow{
		Flags:   uint64(flag | unix.O_CLOEXEC),
		Mode:    uint64(perm.Perm()),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := openat2(b.fd, name, &how)
		switch {
		case err == nil:
			return os.NewFile(uintptr(fd), name), nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOSYS):
			b.noOpen.Store(true)
			return b.root.OpenFile(name, flag, perm)
		case errors.Is(err, unix.EXDEV):
			err = fmt.Errorf("%w: %w", errEscapes, err)
		}
		return nil, &os.PathError{Op: "openat2", Path: name, Err: err}
	}
}
