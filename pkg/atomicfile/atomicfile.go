// Package atomicfile replaces a file so that readers, and the file system
// after a crash, see either the old contents or the new ones, never a
// truncated or half-written file.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// TempPrefix starts the name of every temporary file Write makes, so that a
// directory walker (the content store's) can tell a write in flight from a
// stray file.
const TempPrefix = ".tmp-"

// Write makes path hold data with mode perm (exactly perm: the umask does
// not apply). It writes a temporary file in path's directory, fsyncs it,
// renames it over path and fsyncs the directory so the rename itself
// survives a crash. On any failure the temporary file is removed and path is
// left as it was, except when only the final directory fsync fails: then
// path already holds data but may not keep it across a crash.
//
// The directory must exist. A symlink at path is replaced, not followed.
func Write(path string, data []byte, perm os.FileMode) error {
	return put(path, data, perm, os.Rename)
}

// WriteNew is Write for a file that must not be replaced: it fails with an
// error wrapping fs.ErrExist when path exists, even if another process
// creates it at the same moment (the temporary file is hard-linked into
// place, which never overwrites). The temporary file is gone either way.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	return put(path, data, perm, func(tmp, path string) error {
		err := os.Link(tmp, path)
		os.Remove(tmp)
		return err
	})
}

func put(path string, data []byte, perm os.FileMode, place func(tmp, path string) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := place(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, so that entries created or renamed in it
// survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
