package chunkcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
)

// chunk is verified content for tests: i picks the bytes, n the size.
func chunk(t testing.TB, i, n int) flist.Verified {
	t.Helper()
	b := bytes.Repeat([]byte(fmt.Sprintf("chunk %d ", i)), n/8+1)[:n]
	v, err := flist.CheckContent(flist.ChunkRef{ID: digest.Of(b), Size: uint32(n), CSize: uint32(n)}, b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func image(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cache.img")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

func open(t *testing.T, p string, o Options) *Cache {
	t.Helper()
	c, err := Open(p, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustGet(t *testing.T, c *Cache, v flist.Verified) {
	t.Helper()
	got, ok := c.Get(v.Ref(), nil)
	if !ok || !bytes.Equal(got.Bytes(), v.Bytes()) || got.Ref() != v.Ref() {
		t.Fatalf("Get %s: ok=%v, %d bytes", v.Ref(), ok, len(got.Bytes()))
	}
}

func TestPutGetReopen(t *testing.T) {
	p := image(t, MinSize)
	c := open(t, p, Options{})
	vs := []flist.Verified{chunk(t, 1, 1<<20), chunk(t, 2, 10), chunk(t, 3, flist.MaxChunkSize)}
	for _, v := range vs {
		if _, ok := c.Get(v.Ref(), nil); ok {
			t.Fatalf("%s: hit before Put", v.Ref())
		}
		c.Put(v)
	}
	for _, v := range vs {
		mustGet(t, c, v)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = open(t, p, Options{})
	defer c.Close()
	for _, v := range vs {
		mustGet(t, c, v)
	}
	if s := c.Stats(); s.Entries != 3 || s.Hits != 3 || s.Puts != 0 || s.Disabled != "" {
		t.Errorf("stats after reopen: %+v", s)
	}
	// Content read into a large enough buffer lands there.
	buf := make([]byte, 0, 1<<20)
	if got, ok := c.Get(vs[0].Ref(), buf); !ok || &got.Bytes()[0] != &buf[:1][0] {
		t.Errorf("Get did not use the buffer given")
	}
}

// TestCorruptEntryReplaced changes one byte of a cached chunk on disk.
func TestCorruptEntryReplaced(t *testing.T) {
	p := image(t, MinSize)
	c := open(t, p, Options{})
	v := chunk(t, 7, 5000)
	c.Put(v)
	c.Close()
	f, _ := os.OpenFile(p, os.O_RDWR, 0)
	f.WriteAt([]byte{'X'}, BlockSize+recordLen+1234)
	f.Close()

	var logged []string
	c = open(t, p, Options{Log: func(msg string, args ...any) { logged = append(logged, msg) }})
	if _, ok := c.Get(v.Ref(), nil); ok {
		t.Fatal("corrupt entry returned")
	}
	if s := c.Stats(); s.Corrupt != 1 || len(logged) != 1 || !strings.Contains(logged[0], "corrupt") {
		t.Fatalf("stats %+v, log %q", s, logged)
	}
	c.Put(v) // what the caller does after fetching it
	mustGet(t, c, v)
	c.Close()
	c = open(t, p, Options{})
	defer c.Close()
	mustGet(t, c, v)
}

func TestTornHeaderStopsScan(t *testing.T) {
	p := image(t, MinSize)
	c := open(t, p, Options{})
	a, b := chunk(t, 1, 100), chunk(t, 2, 100)
	c.Put(a)
	c.Put(b)
	c.Close()
	f, _ := os.OpenFile(p, os.O_RDWR, 0)
	f.WriteAt([]byte("garbage"), 2*BlockSize+8) // b's header
	f.Close()
	c = open(t, p, Options{})
	defer c.Close()
	mustGet(t, c, a)
	if _, ok := c.Get(b.Ref(), nil); ok {
		t.Error("record with a torn header found")
	}
	c.Put(b) // goes where the torn record was
	mustGet(t, c, b)
}

// TestRingWraps fills a cache with twice its size.
func TestRingWraps(t *testing.T) {
	p := image(t, MinSize)
	c := open(t, p, Options{})
	const n, size = 40, 800_000 // about 32 MB through 16 MiB
	var vs []flist.Verified
	for i := range n {
		vs = append(vs, chunk(t, i, size))
		c.Put(vs[i])
	}
	check := func(c *Cache) (hits int) {
		for i, v := range vs {
			got, ok := c.Get(v.Ref(), nil)
			if ok && !bytes.Equal(got.Bytes(), v.Bytes()) {
				t.Fatalf("chunk %d: wrong bytes", i)
			}
			if ok {
				hits++
			} else if i >= n-10 {
				t.Errorf("chunk %d of the newest ten missing", i)
			}
		}
		return hits
	}
	hits := check(c)
	if hits >= n/2+2 || hits < 10 {
		t.Errorf("%d of %d hit after wrapping", hits, n)
	}
	if s := c.Stats(); s.Corrupt != 0 {
		t.Errorf("an overwritten entry was still indexed: %+v", s)
	}
	c.Close()
	c = open(t, p, Options{})
	if again := check(c); again != hits {
		t.Errorf("after reopen %d hits, before %d", again, hits)
	}
	// The head was found: new records do not overwrite the newest ones.
	extra := chunk(t, 1000, size)
	c.Put(extra)
	mustGet(t, c, extra)
	mustGet(t, c, vs[n-1])
	c.Close()
}

func TestOpenRefuses(t *testing.T) {
	random := func(p string) {
		b := bytes.Repeat([]byte{0x5a}, 4096)
		f, _ := os.OpenFile(p, os.O_RDWR, 0)
		f.WriteAt(b, 8192)
		f.Close()
	}
	future := func(p string) {
		c, _ := Open(p, Options{})
		c.Close()
		f, _ := os.OpenFile(p, os.O_RDWR, 0)
		f.WriteAt([]byte{9}, 8) // version, so the checksum no longer holds either
		f.Close()
	}
	for _, tc := range []struct {
		name  string
		size  int64
		spoil func(string)
		wipe  bool
		want  string
	}{
		{"too small", MinSize - BlockSize, nil, false, "need at least"},
		{"not ours", MinSize, random, false, "not a zeroboot cache (non-zero byte at 8192)"},
		{"not ours, wipe", MinSize, random, true, ""},
		{"damaged header", MinSize, future, false, "header checksum mismatch"},
		{"zeros", MinSize, nil, false, ""},
	} {
		p := image(t, tc.size)
		if tc.spoil != nil {
			tc.spoil(p)
		}
		c, err := Open(p, Options{Wipe: tc.wipe})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			c.Close()
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: Open = %v, want %q and the path", tc.name, err, tc.want)
		}
	}
}

// failing is a device whose writes or reads fail after a point.
type failing struct {
	Device
	mu              sync.Mutex
	failRead, failW bool
}

func (f *failing) ReadAt(b []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failRead {
		return 0, errors.New("input/output error")
	}
	return f.Device.ReadAt(b, off)
}

func (f *failing) WriteAt(b []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failW {
		return 0, errors.New("no space left on device")
	}
	return f.Device.WriteAt(b, off)
}

func TestIOErrorDisables(t *testing.T) {
	for _, read := range []bool{false, true} {
		file, err := os.OpenFile(image(t, MinSize), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		dev := &failing{Device: file}
		var warnings int
		c, err := OpenDevice("test", dev, MinSize, Options{Log: func(string, ...any) { warnings++ }})
		if err != nil {
			t.Fatal(err)
		}
		a, b := chunk(t, 1, 100), chunk(t, 2, 100)
		c.Put(a)
		dev.failRead, dev.failW = read, !read
		if read {
			c.Get(a.Ref(), nil)
		} else {
			c.Put(b)
		}
		dev.failRead, dev.failW = false, false
		c.Put(b)
		if _, ok := c.Get(a.Ref(), nil); ok {
			t.Errorf("read=%v: hit after the cache turned off", read)
		}
		if s := c.Stats(); s.Disabled == "" || warnings != 1 || s.Puts != 1 {
			t.Errorf("read=%v: stats %+v, %d warnings", read, s, warnings)
		}
		c.Close()
	}
}

func TestConcurrent(t *testing.T) {
	c := open(t, image(t, MinSize), Options{})
	defer c.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				v := chunk(t, (g*40+i)%50, 30_000)
				if got, ok := c.Get(v.Ref(), nil); ok && !bytes.Equal(got.Bytes(), v.Bytes()) {
					t.Errorf("wrong bytes for %s", v.Ref())
				}
				c.Put(v)
			}
		})
	}
	wg.Wait()
}

type countingSource struct{ n int }

func (s *countingSource) Chunk(_ context.Context, ref flist.ChunkRef, _ []byte) (flist.Verified, error) {
	s.n++
	for i := range 10 {
		if v := chunk(&testing.T{}, i, int(ref.Size)); v.Ref().ID == ref.ID {
			return v, nil
		}
	}
	return flist.Verified{}, errors.New("not found")
}

func TestSource(t *testing.T) {
	c := open(t, image(t, MinSize), Options{})
	defer c.Close()
	next := &countingSource{}
	src := Source{Cache: c, Next: next}
	v := chunk(t, 3, 4096)
	for range 3 {
		got, err := src.Chunk(context.Background(), v.Ref(), nil)
		if err != nil || !bytes.Equal(got.Bytes(), v.Bytes()) {
			t.Fatal(err)
		}
	}
	if next.n != 1 {
		t.Errorf("fetched %d times, want 1", next.n)
	}
}

// FuzzOpen: any device image opens or is refused without panicking, and
// nothing read from it is returned unless it hashes to the chunk.
func FuzzOpen(f *testing.F) {
	f.Add([]byte(Magic), int64(0))
	f.Add([]byte(recordMagic), int64(BlockSize))
	f.Fuzz(func(t *testing.T, junk []byte, at int64) {
		p := image(t, MinSize)
		c := open(t, p, Options{})
		v := chunk(t, 1, 5000)
		c.Put(v)
		c.Close()
		fh, _ := os.OpenFile(p, os.O_RDWR, 0)
		fh.WriteAt(junk, max(0, at)%(3*BlockSize))
		fh.Close()
		c, err := Open(p, Options{Wipe: true})
		if err != nil {
			return
		}
		defer c.Close()
		if got, ok := c.Get(v.Ref(), nil); ok && !bytes.Equal(got.Bytes(), v.Bytes()) {
			t.Fatal("wrong bytes returned")
		}
	})
}

// TestReopenKeepsPreviousLap stops writing part way through a lap: after a
// reopen, the records of the lap before that the newest did not overwrite
// are still hits, and new records overwrite them first.
func TestReopenKeepsPreviousLap(t *testing.T) {
	p := image(t, MinSize)
	c := open(t, p, Options{})
	const size = 800_000 // 20 records a lap in 16 MiB
	var vs []flist.Verified
	for i := range 25 {
		vs = append(vs, chunk(t, i, size))
		c.Put(vs[i])
	}
	before := c.Stats().Entries
	c.Close()
	c = open(t, p, Options{})
	defer c.Close()
	if got := c.Stats().Entries; got != before || got < 19 {
		t.Fatalf("reopened with %d entries, had %d", got, before)
	}
	for i := 25 - before; i < 25; i++ {
		mustGet(t, c, vs[i])
	}
	// The oldest surviving record goes first.
	c.Put(chunk(t, 100, size))
	if _, ok := c.Get(vs[25-before].Ref(), nil); ok {
		t.Error("a new record did not overwrite the oldest")
	}
	mustGet(t, c, vs[25-before+1])
	mustGet(t, c, vs[24])
	if s := c.Stats(); s.Corrupt != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestHashes: a chunk of a version-3 flist (BLAKE3) is cached and read
// back as one of version 2 is, and the cache re-verifies with the hash of
// the reference asked for: the same ID asked for under the other hash is
// a corrupt entry, not a hit.
func TestHashes(t *testing.T) {
	c := open(t, image(t, MinSize), Options{})
	defer c.Close()
	for i, h := range flist.Hashes {
		b := bytes.Repeat([]byte(fmt.Sprintf("%s chunk ", h)), 5000)
		v, err := flist.CheckContent(flist.ChunkRef{ID: h.Sum(b), Size: uint32(len(b)), CSize: uint32(len(b)), Hash: h}, b)
		if err != nil {
			t.Fatal(err)
		}
		c.Put(v)
		mustGet(t, c, v)
		other := v.Ref()
		other.Hash = flist.Hashes[1-i]
		if _, ok := c.Get(other, nil); ok {
			t.Errorf("%s chunk read back as %s", h, other.Hash)
		}
	}
	if s := c.Stats(); s.Hits != 2 || s.Corrupt != 2 {
		t.Errorf("stats: %+v, want 2 hits and 2 corrupt", s)
	}
}
