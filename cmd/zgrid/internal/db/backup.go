package db

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/zeroboot/zeroboot/pkg/atomicfile"
)

// Backup writes a consistent copy of the whole database, as of one read
// transaction: writers go on meanwhile and none of their changes is in
// the copy, half or whole. start is told the copy's size before the first
// byte and returns where the bytes go.
func (d *DB) Backup(start func(size int64) (io.Writer, error)) (int64, error) {
	var n int64
	err := d.b.View(func(tx *bolt.Tx) error {
		w, err := start(tx.Size())
		if err != nil {
			return err
		}
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("back up database %s: %w", d.b.Path(), err)
	}
	return n, nil
}

// Verify checks that path holds a whole, readable zgrid database: its
// meta pages (CheckFile), bbolt's consistency check of every page, and
// zgrid's buckets. Restore runs it on a backup before using it.
func Verify(path string) error {
	if _, err := CheckFile(path); err != nil {
		return err
	}
	b, err := boltOpen(path, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("database %s: %w", path, err)
	}
	defer b.Close()
	if err := b.View(checkTx); err != nil {
		return fmt.Errorf("database %s: %w", path, err)
	}
	return nil
}

// checkTx runs bbolt's page check and zgrid's bucket check, with faults
// and panics of a damaged file turned into ErrCorrupt.
func checkTx(tx *bolt.Tx) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: bbolt: %v", ErrCorrupt, v)
		}
	}()
	var errs []error
	for e := range tx.Check() {
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %d page errors, first: %v", ErrCorrupt, len(errs), errs[0])
	}
	return hasBuckets(tx)
}

// Restore replaces the database at dbPath with the backup at from, after
// Verify passed on the backup and on its copy beside dbPath. The copy is
// renamed over dbPath, so a crash leaves the old database or the new one.
// The old file, if any, stays as the returned path
// (zgrid.db.replaced-<UTC time>), in case the wrong backup was restored.
// It refuses (ErrLocked) while another process has the database open,
// which is what a running server does.
func Restore(from, dbPath string) (replaced string, err error) {
	if err := Verify(from); err != nil {
		return "", fmt.Errorf("backup %s is not a usable zgrid database: %w", from, err)
	}
	dir := filepath.Dir(dbPath)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("restore into %s: data directory: %v", dir, orNotDir(err))
	}
	unlock, err := lockExisting(dbPath)
	if err != nil {
		return "", err
	}
	defer unlock()
	tmp, err := copyBeside(from, dbPath)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp) // gone after the rename; left only on failure
	if err := Verify(tmp); err != nil {
		return "", fmt.Errorf("restore %s: the copy does not check out: %w", dbPath, err)
	}
	if _, err := os.Lstat(dbPath); err == nil {
		if replaced, err = keepAside(dbPath); err != nil {
			return "", err
		}
	}
	if err := os.Rename(tmp, dbPath); err != nil {
		return replaced, fmt.Errorf("restore %s: %w", dbPath, err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return replaced, err
	}
	return replaced, writeMarker(dbPath)
}

// keepAside hard-links the database about to be replaced to a name of its
// own, zgrid.db.replaced-<UTC time>, with -N added when that is taken (two
// restores in one second): the rename over zgrid.db then leaves it there.
func keepAside(dbPath string) (string, error) {
	base := dbPath + ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
	name := base
	for i := 1; ; i++ {
		err := os.Link(dbPath, name)
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, fs.ErrExist) || i == 100 {
			return "", fmt.Errorf("keep the old database: %w", err)
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

func orNotDir(err error) error {
	if err == nil {
		return errors.New("not a directory")
	}
	return err
}

// lockExisting takes the exclusive lock of the database being replaced
// and holds it until unlock: a server starting meanwhile waits, and one
// running makes this fail. A missing file has no lock to take.
func lockExisting(path string) (unlock func(), err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("restore %s: %w: stop zgrid serve on %s first", path, ErrLocked, filepath.Dir(path))
		}
		return nil, fmt.Errorf("lock database %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// copyBeside copies from into a synced temporary file in dst's directory
// (so that the rename over dst stays in one file system).
func copyBeside(from, dst string) (tmp string, err error) {
	in, err := os.Open(from)
	if err != nil {
		return "", fmt.Errorf("open backup %s: %w", from, err)
	}
	defer in.Close()
	out, err := os.CreateTemp(filepath.Dir(dst), atomicfile.TempPrefix+filepath.Base(dst)+"-restore-*")
	if err != nil {
		return "", fmt.Errorf("restore %s: %w", dst, err)
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(out.Name())
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return "", fmt.Errorf("copy %s to %s: %w", from, out.Name(), err)
	}
	if err := out.Chmod(0o600); err != nil {
		return "", err
	}
	if err := out.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", out.Name(), err)
	}
	return out.Name(), out.Close()
}
