package db

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/zeroboot/zeroboot/pkg/atomicfile"
)

// MarkerName is the file Create writes beside the database once the
// database exists. It is how Open tells a data directory whose database
// was lost (marker, no database: restore a backup) from one never
// initialised (run zgrid init): bbolt alone would create an empty
// database in both cases, and an empty database silently forgets every
// farm, release and channel version floor.
const MarkerName = "zgrid.init"

// Errors of opening a database; each comes wrapped with the file's path
// and what to do.
var (
	ErrNotInitialised = errors.New("not an initialised zgrid data directory")
	ErrMissing        = errors.New("database missing")
	ErrCorrupt        = errors.New("database damaged")
	ErrLocked         = errors.New("database locked by another process")
)

// buckets are the top-level buckets of a zgrid database.
var buckets = [][]byte{bFarms, bReleases, bHigh, bNodes, bTokens, bMeta, bAllowed}

const markerText = `This directory is a zgrid data directory: zgrid init created zgrid.db here.
If zgrid.db is missing or empty, it was lost: restore it from a backup with
zgrid restore --data DIR BACKUP. zgrid never creates a database outside zgrid init.
`

// MarkerPath is the marker of the data directory holding dbPath.
func MarkerPath(dbPath string) string { return filepath.Join(filepath.Dir(dbPath), MarkerName) }

// Create makes a new database at path, with its buckets, and then the
// directory's marker. It is zgrid init's step: it refuses an existing
// database or marker.
func Create(path string) error {
	for _, p := range []string{path, MarkerPath(path)} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("create database %s: %s: %w", path, p, fs.ErrExist)
		}
	}
	b, err := boltOpen(path, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("create database %s: %w", path, err)
	}
	err = prepare(b)
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", path, err)
	}
	// The marker comes last: a crash before it leaves a database without
	// one, which Open adopts, never a marker without a database.
	return writeMarker(path)
}

func writeMarker(dbPath string) error {
	if _, err := os.Stat(MarkerPath(dbPath)); err == nil {
		return nil
	}
	if err := atomicfile.WriteNew(MarkerPath(dbPath), []byte(markerText), 0o600); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("data directory marker: %w", err)
	}
	return nil
}

// Open opens the database at path for reading and writing. It never
// creates one (Create does): a missing or empty file is ErrMissing (the
// directory was initialised: restore a backup) or ErrNotInitialised, a
// file whose meta pages do not check out is ErrCorrupt, all before bbolt
// maps it. It waits at most timeout for another process holding the file
// (a running server), then fails with ErrLocked.
func Open(path string, timeout time.Duration) (*DB, error) {
	return openDB(path, timeout, false)
}

// OpenReadOnly is Open for commands that only read: the file is opened
// read-only, shares its lock with other readers, and is never written,
// not even the buckets a newer zgrid adds.
func OpenReadOnly(path string, timeout time.Duration) (*DB, error) {
	return openDB(path, timeout, true)
}

func openDB(path string, timeout time.Duration, readOnly bool) (*DB, error) {
	if err := checkPresent(path); err != nil {
		return nil, err
	}
	if err := checkLocked(path, !readOnly, timeout); err != nil {
		return nil, err
	}
	b, err := boltOpen(path, &bolt.Options{Timeout: timeout, ReadOnly: readOnly})
	if err != nil {
		return nil, openError(path, err)
	}
	if readOnly {
		err = b.View(hasBuckets)
	} else {
		err = prepare(b)
	}
	if err != nil {
		b.Close()
		err = fmt.Errorf("database %s: %w", path, err)
		if errors.Is(err, ErrCorrupt) {
			err = restoreAdvice(path, err)
		}
		return nil, err
	}
	if !readOnly {
		// A database made before the marker existed: it is the
		// directory's database from now on.
		if err := writeMarker(path); err != nil {
			b.Close()
			return nil, err
		}
	}
	return &DB{b: b}, nil
}

// checkPresent tells a lost database from a directory never initialised.
func checkPresent(path string) error {
	dir := filepath.Dir(path)
	_, merr := os.Stat(MarkerPath(path))
	marked := merr == nil
	st, err := os.Stat(path)
	switch {
	case err == nil && st.Size() > 0:
		return nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("open database %s: %w", path, err)
	case marked && err != nil:
		return restoreAdvice(path, fmt.Errorf("database %s: %w: %s was initialised (%s) but the file is gone", path, ErrMissing, dir, MarkerName))
	case marked:
		return restoreAdvice(path, fmt.Errorf("database %s: %w: the file is empty (0 bytes), though %s was initialised (%s)", path, ErrMissing, dir, MarkerName))
	case err != nil:
		return fmt.Errorf("database %s: %w (it has no %s and no database): run zgrid init --data %s; if it held a registry, restore its backup with zgrid restore --data %s BACKUP", path, ErrNotInitialised, MarkerName, dir, dir)
	}
	return restoreAdvice(path, fmt.Errorf("database %s: %w: the file is empty (0 bytes)", path, ErrMissing))
}

// restoreAdvice says what to do about a lost or damaged database.
func restoreAdvice(path string, err error) error {
	return fmt.Errorf("%w; restore the last backup with zgrid restore --data %s BACKUP (zgrid does not make a new, empty database here)", err, filepath.Dir(path))
}

// checkLocked takes the file's lock as bbolt will (shared to read,
// exclusive to write) and, holding it, checks the meta pages: no writer
// can be changing them meanwhile. The lock is let go before bbolt takes
// its own, on its own descriptor.
func checkLocked(path string, exclusive bool, timeout time.Duration) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open database %s: %w", path, err)
	}
	defer f.Close() // drops the lock
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock database %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			return lockedError(path)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := CheckFile(path); err != nil {
		return restoreAdvice(path, err)
	}
	return nil
}

func lockedError(path string) error {
	return fmt.Errorf("open database %s: %w (is zgrid serve running? use --server)", path, ErrLocked)
}

// openError names what bbolt refused.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return lockedError(path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, ErrCorrupt):
		return restoreAdvice(path, fmt.Errorf("database %s: %w: %v", path, ErrCorrupt, err))
	}
	return fmt.Errorf("open database %s: %w", path, err)
}

// boltOpen opens with bbolt, turning its panics (bbolt panics on some
// damaged pages) and memory faults into ErrCorrupt. CheckFile has made
// faults unlikely; this is the second line.
func boltOpen(path string, o *bolt.Options) (b *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			b, err = nil, fmt.Errorf("%w: bbolt: %v", ErrCorrupt, v)
		}
	}()
	return bolt.Open(path, 0o600, o)
}

// prepare makes the buckets and counters a newer zgrid added.
func prepare(b *bolt.DB) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: bbolt: %v", ErrCorrupt, v)
		}
	}()
	return b.Update(func(tx *bolt.Tx) error {
		for _, name := range buckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		if err := countNodes(tx); err != nil {
			return err
		}
		return countStates(tx)
	})
}

// hasBuckets checks, in a read-only database, for the buckets every read
// expects (a read-only open cannot add them).
func hasBuckets(tx *bolt.Tx) error {
	for _, name := range buckets {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: no bucket %s: not a zgrid database, or one from an older zgrid (open it once with zgrid serve)", ErrCorrupt, name)
		}
	}
	return nil
}
