package db

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
)

// populated is a created database holding n farms and a release, closed,
// and large enough (several hundred pages) that a truncated copy has
// pages bbolt would read past the end of the file.
func populated(t *testing.T, n int) string {
	t.Helper()
	p := created(t)
	d, err := Open(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pad := strings.Repeat("x", 2000)
	for i := range n {
		if err := d.CreateFarm(records.Farm{Name: fmt.Sprintf("farm%04d", i), Channel: "stable" + pad}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.AddRelease(records.ReleaseInfo{Channel: "stable", Version: 7}); err != nil {
		t.Fatal(err)
	}
	return p
}

// flip XORs one byte of the file.
func flip(t *testing.T, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRefuses: a data directory never initialised, a lost (missing or
// empty) database, a truncated one and one with damaged meta pages are
// each refused with an error naming the file and what to do, by Open and
// OpenReadOnly alike; nothing crashes (a SIGBUS would kill the test
// binary) and the file is left exactly as it was: no fresh database.
func TestOpenRefuses(t *testing.T) {
	ps := int64(os.Getpagesize())
	meta := func(page int64, field int64) int64 { return page*ps + pageHeaderSize + field }
	cases := []struct {
		name   string
		setup  func(t *testing.T, p string)
		want   error
		phrase []string
	}{
		{"never initialised", func(t *testing.T, p string) { rm(t, p); rm(t, MarkerPath(p)) },
			ErrNotInitialised, []string{"run zgrid init --data"}},
		{"missing", func(t *testing.T, p string) { rm(t, p) },
			ErrMissing, []string{"the file is gone", "zgrid restore --data"}},
		{"empty", func(t *testing.T, p string) { truncate(t, p, 0) },
			ErrMissing, []string{"empty (0 bytes)", "zgrid restore --data"}},
		{"empty, no marker", func(t *testing.T, p string) { truncate(t, p, 0); rm(t, MarkerPath(p)) },
			ErrMissing, []string{"empty (0 bytes)", "zgrid restore --data"}},
		{"shorter than a meta page", func(t *testing.T, p string) { truncate(t, p, 40) },
			ErrCorrupt, []string{"meta page 0", "truncated"}},
		{"one page", func(t *testing.T, p string) { truncate(t, p, ps) },
			ErrCorrupt, []string{"meta page 1", "truncated"}},
		{"half", func(t *testing.T, p string) { truncate(t, p, size(t, p)/2) },
			ErrCorrupt, []string{"truncated", "says its pages reach"}},
		{"last page cut", func(t *testing.T, p string) { truncate(t, p, hwmBytes(t, p)-ps) },
			ErrCorrupt, []string{"truncated", "the file is"}},
		{"meta 0 magic", func(t *testing.T, p string) { flip(t, p, meta(0, 0)) },
			ErrCorrupt, []string{"meta page 0", "magic", "(meta page 1 checks out: transaction"}},
		{"meta 1 version", func(t *testing.T, p string) { flip(t, p, meta(1, 4)) },
			ErrCorrupt, []string{"meta page 1", "format version"}},
		{"meta 0 high water mark", func(t *testing.T, p string) { flip(t, p, meta(0, 40)) },
			ErrCorrupt, []string{"meta page 0", "checksum mismatch"}},
		{"meta 1 checksum", func(t *testing.T, p string) { flip(t, p, meta(1, metaChecksumAt)) },
			ErrCorrupt, []string{"meta page 1", "checksum mismatch", "(meta page 0 checks out: transaction"}},
		{"meta 1 page id", func(t *testing.T, p string) { flip(t, p, ps) },
			ErrCorrupt, []string{"meta page 1", "not meta page 1"}},
		{"both meta pages", func(t *testing.T, p string) { flip(t, p, meta(0, 20)); flip(t, p, meta(1, 20)) },
			ErrCorrupt, []string{"meta page 0", "checksum"}},
		{"not a database", func(t *testing.T, p string) { os.WriteFile(p, bytes.Repeat([]byte("zgrid"), 5000), 0o600) },
			ErrCorrupt, []string{"not a bbolt database"}},
	}
	opens := map[string]func(string, time.Duration) (*DB, error){"Open": Open, "OpenReadOnly": OpenReadOnly}
	for _, tc := range cases {
		for how, open := range opens {
			t.Run(tc.name+"/"+how, func(t *testing.T) {
				p := populated(t, 200)
				tc.setup(t, p)
				before, _ := os.ReadFile(p)
				_, statErr := os.Stat(p)
				d, err := open(p, 100*time.Millisecond)
				if err == nil {
					d.Close()
					t.Fatal("opened")
				}
				if !errors.Is(err, tc.want) {
					t.Errorf("err = %v, want %v", err, tc.want)
				}
				for _, ph := range append(tc.phrase, p) {
					if !strings.Contains(err.Error(), ph) {
						t.Errorf("error %q does not say %q", err, ph)
					}
				}
				after, _ := os.ReadFile(p)
				if _, err := os.Stat(p); !bytes.Equal(before, after) || (statErr == nil) != (err == nil) {
					t.Errorf("the file changed: %d bytes before, %d after (exists %v, %v)", len(before), len(after), statErr == nil, err == nil)
				}
			})
		}
	}
}

// TestOpenAdoptsOldDatabase: a database made before the marker existed
// opens, keeps its data, and read-write opening writes the marker.
func TestOpenAdoptsOldDatabase(t *testing.T) {
	p := populated(t, 3)
	rm(t, MarkerPath(p))
	d, err := OpenReadOnly(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := d.Farms()
	d.Close()
	if err != nil || len(fs) != 3 {
		t.Fatalf("read-only: %d farms, %v", len(fs), err)
	}
	if _, err := os.Stat(MarkerPath(p)); err == nil {
		t.Fatal("a read-only open wrote the marker")
	}
	if d, err = Open(p, time.Second); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := os.Stat(MarkerPath(p)); err != nil {
		t.Fatalf("marker after a read-write open: %v", err)
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	p := populated(t, 1)
	if err := Create(p); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Create over a database: %v", err)
	}
	rm(t, p)
	if err := Create(p); !errors.Is(err, os.ErrExist) || !strings.Contains(err.Error(), MarkerName) {
		t.Fatalf("Create where the marker says a database was: %v", err)
	}
}

// TestOpenReadOnlyShares: readers share the file; a reader keeps a writer
// out and a writer keeps readers out, with ErrLocked (callers then go
// through the server).
func TestOpenReadOnlyShares(t *testing.T) {
	p := populated(t, 1)
	r1, err := OpenReadOnly(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := OpenReadOnly(p, time.Second)
	if err != nil {
		t.Fatalf("second reader: %v", err)
	}
	if _, err := Open(p, 100*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Fatalf("writer while reading: %v, want ErrLocked", err)
	}
	r1.Close()
	r2.Close()
	w, err := Open(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := OpenReadOnly(p, 100*time.Millisecond); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "zgrid serve") {
		t.Fatalf("reader while writing: %v, want ErrLocked", err)
	}
}

// TestBackupWhileWriting: a backup taken while farms are being added holds
// a prefix of them, whole, checks out, and restoring it gives exactly
// those farms back.
func TestBackupWhileWriting(t *testing.T) {
	p := created(t)
	d, err := Open(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { d.Close() }()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := d.CreateFarm(records.Farm{Name: fmt.Sprintf("f%06d", i), Channel: "stable"}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for waitFarms(t, d) < 20 {
		time.Sleep(10 * time.Millisecond)
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(backup)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	n, err := d.Backup(func(s int64) (io.Writer, error) { size = s; return f, nil })
	f.Close()
	if err != nil || n != size {
		t.Fatalf("Backup: %d of %d bytes, %v", n, size, err)
	}
	time.Sleep(50 * time.Millisecond) // more farms after the backup
	close(stop)
	wg.Wait()
	if err := Verify(backup); err != nil {
		t.Fatalf("Verify(backup): %v", err)
	}
	if _, err := Restore(backup, p); !errors.Is(err, ErrLocked) {
		t.Fatalf("Restore while the database is open: %v, want ErrLocked", err)
	}
	total := waitFarms(t, d)
	d.Close()

	replaced, err := Restore(backup, p)
	if err != nil {
		t.Fatal(err)
	}
	if d, err = OpenReadOnly(p, time.Second); err != nil {
		t.Fatal(err)
	}
	fs, err := d.Farms()
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) < 20 || len(fs) >= total {
		t.Fatalf("restored %d farms; the backup was taken after 20 and before %d", len(fs), total)
	}
	for i, f := range fs {
		if f.Name != fmt.Sprintf("f%06d", i) || f.Channel != "stable" {
			t.Fatalf("restored farm %d = %+v: not a whole prefix", i, f)
		}
	}
	old, err := OpenReadOnly(replaced, time.Second)
	if err != nil {
		t.Fatalf("the replaced database %s: %v", replaced, err)
	}
	defer old.Close()
	if ofs, _ := old.Farms(); len(ofs) != total {
		t.Fatalf("replaced database kept %d farms, had %d", len(ofs), total)
	}
}

// TestRestoreKeepsEachReplaced: restores in one second keep every
// database they replaced, under names of their own.
func TestRestoreKeepsEachReplaced(t *testing.T) {
	p := populated(t, 2)
	backup := populated(t, 5)
	kept := map[string]bool{}
	for range 3 {
		r, err := Restore(backup, p)
		if err != nil {
			t.Fatal(err)
		}
		if kept[r] || !strings.HasPrefix(r, p+".replaced-") {
			t.Fatalf("replaced database kept as %q (already: %v)", r, kept)
		}
		kept[r] = true
	}
	d, err := OpenReadOnly(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if n := waitFarms(t, d); n != 5 {
		t.Fatalf("restored database has %d farms, want the backup's 5", n)
	}
}

// TestRestoreRefusesBadBackup: a backup that does not check out leaves the
// database as it was.
func TestRestoreRefusesBadBackup(t *testing.T) {
	p := populated(t, 5)
	before, _ := os.ReadFile(p)
	good := populated(t, 20)
	for _, tc := range []struct {
		name  string
		make  func(string)
		found string
	}{
		{"missing", func(string) {}, "no such file"},
		{"empty", func(b string) { os.WriteFile(b, nil, 0o600) }, "empty"},
		{"truncated", func(b string) { copyFile(t, good, b); truncate(t, b, hwmBytes(t, b)-1) }, "truncated"},
		{"flipped meta", func(b string) { copyFile(t, good, b); flip(t, b, pageHeaderSize+44) }, "checksum"},
		{"another bbolt file", func(b string) {
			copyFile(t, good, b)
			x, err := bolt.Open(b, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			x.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bFarms) })
			x.Close()
		}, "no bucket farms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := filepath.Join(t.TempDir(), "backup.db")
			tc.make(b)
			_, err := Restore(b, p)
			if err == nil || !strings.Contains(err.Error(), tc.found) || !strings.Contains(err.Error(), b) {
				t.Fatalf("Restore: %v, want an error naming %s and saying %q", err, b, tc.found)
			}
			if after, _ := os.ReadFile(p); !bytes.Equal(before, after) {
				t.Fatal("the database changed")
			}
			if ents, _ := filepath.Glob(p + "*"); len(ents) != 1 {
				t.Fatalf("files left beside the database: %v", ents)
			}
		})
	}
}

func waitFarms(t *testing.T, d *DB) int {
	t.Helper()
	fs, err := d.Farms()
	if err != nil {
		t.Fatal(err)
	}
	return len(fs)
}

func rm(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, p string, n int64) {
	t.Helper()
	if err := os.Truncate(p, n); err != nil {
		t.Fatal(err)
	}
}

func size(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// hwmBytes is how far the newest meta page says the pages reach.
func hwmBytes(t *testing.T, p string) int64 {
	t.Helper()
	info, err := CheckFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Pages < 10 {
		t.Fatalf("%s: only %d pages", p, info.Pages)
	}
	return int64(info.Pages) * int64(info.PageSize)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
