package handoff

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

// EntrypointDigest hashes the program Core-0 will run: entry resolved inside
// rootDir as the chroot will resolve it (symlinks cannot leave the root), and
// only if it is an executable regular file. Opening without blocking means a
// FIFO or device planted as the entrypoint is refused instead of hanging
// PID 1.
func EntrypointDigest(rootDir, entry string) (digest.Digest, error) {
	var d digest.Digest
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return d, fmt.Errorf("entrypoint %s: %w", entry, err)
	}
	defer root.Close()
	f, err := root.OpenFile(strings.TrimPrefix(entry, "/"), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return d, fmt.Errorf("entrypoint %s: %w", entry, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return d, fmt.Errorf("entrypoint %s: %w", entry, err)
	}
	if !fi.Mode().IsRegular() {
		return d, fmt.Errorf("entrypoint %s: not a regular file (%v)", entry, fi.Mode().Type())
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return d, fmt.Errorf("entrypoint %s: not executable (mode %v)", entry, fi.Mode().Perm())
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return d, fmt.Errorf("entrypoint %s: %w", entry, err)
	}
	copy(d[:], h.Sum(nil))
	return d, nil
}
