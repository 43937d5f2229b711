package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/zeroboot/zeroboot/internal/testchunk"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
)

// The builder's sink and the extractor's source, spelled out locally so these
// tests do not depend on the rest of pkg/flist being finished.
var (
	_ flist.Sink = (*Dir)(nil)
	_ interface {
		Chunk(context.Context, flist.ChunkRef, []byte) (flist.Verified, error)
	} = (*Dir)(nil)
	_ flist.Sink = (*Uploader)(nil)
)

func TestDirRoundTrip(t *testing.T) {
	d := &Dir{Root: t.TempDir()}
	ref, c, raw := chunk(t, "hello ")
	if d.HasChunk(ref.ID) {
		t.Fatal("empty store has the chunk")
	}
	if got, err := d.PutChunk(ref, c); err != nil || got != ref {
		t.Fatalf("PutChunk = %s/%d, %v; want %s/%d", got, got.CSize, err, ref, ref.CSize)
	}
	hx := ref.ID.Hex()
	if want := filepath.Join(d.Root, "chunks", hx[:2], hx); d.ChunkPath(ref.ID) != want {
		t.Fatalf("ChunkPath = %s, want %s", d.ChunkPath(ref.ID), want)
	}
	if !d.HasChunk(ref.ID) {
		t.Fatal("HasChunk false after PutChunk")
	}
	stored, err := os.ReadFile(d.ChunkPath(ref.ID))
	if err != nil || !bytes.Equal(stored, c) {
		t.Fatalf("stored file is not the compressed chunk: %v", err)
	}
	got, err := contentOf(d.Chunk(context.Background(), ref, nil))
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("Chunk = %d bytes, %v", len(got), err)
	}
	// Idempotent.
	if _, err := d.PutChunk(ref, c); err != nil {
		t.Fatal(err)
	}

	enc := encodedFlist(t, "etc")
	id, err := d.PutFlist(enc)
	if err != nil {
		t.Fatal(err)
	}
	if id != digest.Of(enc) || d.FlistPath(id) != filepath.Join(d.Root, "flists", id.Hex()) {
		t.Fatalf("PutFlist id %s path %s", id, d.FlistPath(id))
	}
	b, err := d.FlistBytes(context.Background(), id)
	if err != nil || !bytes.Equal(b, enc) {
		t.Fatalf("FlistBytes: %v", err)
	}
	f, err := d.Flist(context.Background(), id)
	if err != nil || len(f.Entries) != 1 || f.Entries[0].Path != "etc" {
		t.Fatalf("Flist = %+v, %v", f, err)
	}
}

func TestDirRefusesUnverified(t *testing.T) {
	d := &Dir{Root: t.TempDir()}
	ref, c, _ := chunk(t, "abc")
	flipped := bytes.Clone(c)
	flipped[len(flipped)-1] ^= 1
	other, oc, _ := chunk(t, "xyz")
	for _, tc := range []struct {
		name string
		ref  flist.ChunkRef
		c    []byte
		want string
	}{
		{"flipped byte", ref, flipped, "refusing unverified bytes"},
		{"truncated", ref, c[:len(c)-1], "declared"},
		{"other content under this id", flist.ChunkRef{ID: ref.ID, Size: other.Size, CSize: other.CSize}, oc, "content hash mismatch"},
		{"garbage", flist.ChunkRef{ID: ref.ID, Size: ref.Size, CSize: 5}, []byte("hello"), "zstd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.PutChunk(tc.ref, tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("PutChunk error %v, want %q", err, tc.want)
			}
			if d.HasChunk(tc.ref.ID) {
				t.Fatal("unverified chunk was stored")
			}
		})
	}
	if _, err := d.PutFlist([]byte("not an flist")); err == nil || !strings.Contains(err.Error(), "flist") {
		t.Fatalf("PutFlist of garbage: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.Root, "flists")); len(entries) != 0 {
		t.Fatalf("garbage flist stored: %v", entries)
	}
}

func TestDirReadRefusesDamage(t *testing.T) {
	d := &Dir{Root: t.TempDir()}
	ref, c, _ := chunk(t, "abc")
	if _, err := d.PutChunk(ref, c); err != nil {
		t.Fatal(err)
	}
	enc := encodedFlist(t, "etc")
	id, err := d.PutFlist(enc)
	if err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(c)
	damaged[len(damaged)/2] ^= 0x40
	if err := os.WriteFile(d.ChunkPath(ref.ID), damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := contentOf(d.Chunk(context.Background(), ref, nil)); err == nil {
		t.Fatal("Chunk returned damaged bytes")
	}
	// Re-putting repairs the damaged file.
	if got, err := d.PutChunk(ref, c); err != nil || got != ref {
		t.Fatalf("PutChunk over a damaged file = %s/%d, %v", got, got.CSize, err)
	}
	if _, err := contentOf(d.Chunk(context.Background(), ref, nil)); err != nil {
		t.Fatalf("after repair: %v", err)
	}
	if err := os.WriteFile(d.ChunkPath(ref.ID), append(bytes.Clone(c), 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := contentOf(d.Chunk(context.Background(), ref, nil)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("Chunk of an overlong file: %v", err)
	}
	// A byte after the zstd frame makes the stored copy damaged even
	// though it would inflate to the right content: what is stored must be
	// exactly what is checked. Re-putting repairs it.
	padded := ref
	padded.CSize++
	if _, err := contentOf(d.Chunk(context.Background(), padded, nil)); err == nil || !strings.Contains(err.Error(), "after the zstd frame") {
		t.Fatalf("Chunk of a padded copy: %v", err)
	}
	if got, err := d.PutChunk(ref, c); err != nil || got != ref {
		t.Fatalf("PutChunk over a padded copy = %s/%d, %v; want it replaced (CSize %d)", got, got.CSize, err, ref.CSize)
	}
	if _, err := contentOf(d.Chunk(context.Background(), ref, nil)); err != nil {
		t.Fatalf("after repair: %v", err)
	}
	bad := bytes.Clone(enc)
	bad[len(bad)-1] ^= 1
	if err := os.WriteFile(d.FlistPath(id), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.FlistBytes(context.Background(), id); err == nil || !strings.Contains(err.Error(), "content hash is") {
		t.Fatalf("FlistBytes of damaged metadata: %v", err)
	}
	if _, err := contentOf(d.Chunk(context.Background(), flist.ChunkRef{ID: digest.Of([]byte("x")), Size: 1, CSize: 10}, nil)); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("Chunk of a missing chunk: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

func TestDirConcurrentPuts(t *testing.T) {
	d := &Dir{Root: t.TempDir()}
	refs := make([]flist.ChunkRef, 4)
	blobs := make([][]byte, 4)
	for i := range refs {
		refs[i], blobs[i], _ = chunk(t, fmt.Sprintf("chunk %d ", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16*8)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 8 {
				i := (g + k) % len(refs)
				_, err := d.PutChunk(refs[i], blobs[i])
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var walked []digest.Digest
	if err := d.WalkChunks(func(id digest.Digest) error { walked = append(walked, id); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(walked) != len(refs) {
		t.Fatalf("WalkChunks found %d chunks, want %d", len(walked), len(refs))
	}
	for _, r := range refs {
		if _, err := contentOf(d.Chunk(context.Background(), r, nil)); err != nil {
			t.Fatal(err)
		}
	}
	noTemps(t, d.Root)
}

// noTemps fails if any temporary file is left in the store.
func noTemps(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(e.Name(), tempPrefix) {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

func TestDirWriteFailureLeavesNothing(t *testing.T) {
	// A file where the prefix directory belongs makes the write fail even
	// for root, who ignores directory permissions.
	d := &Dir{Root: t.TempDir()}
	ref, c, _ := chunk(t, "abc")
	prefixDir := filepath.Dir(d.ChunkPath(ref.ID))
	if err := os.MkdirAll(filepath.Dir(prefixDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prefixDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.PutChunk(ref, c); err == nil {
		t.Fatal("PutChunk succeeded with its directory blocked by a file")
	}
	noTemps(t, d.Root)
}

func TestWalkChunksRefusesStrays(t *testing.T) {
	d := &Dir{Root: t.TempDir()}
	if err := d.WalkChunks(func(digest.Digest) error { t.Fatal("empty store walked a chunk"); return nil }); err != nil {
		t.Fatalf("WalkChunks of an empty store: %v", err)
	}
	ref, c, _ := chunk(t, "abc")
	if _, err := d.PutChunk(ref, c); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(d.ChunkPath(ref.ID))
	if err := os.WriteFile(filepath.Join(dir, tempPrefix+"123"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := d.WalkChunks(func(digest.Digest) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("WalkChunks with a temp file: %d chunks, %v", n, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.WalkChunks(func(digest.Digest) error { return nil }); err == nil || !strings.Contains(err.Error(), "README") {
		t.Fatalf("WalkChunks with a stray file: %v", err)
	}
}

// twoEncodings returns a chunk compressed by two builders (say two zstd
// versions) to different sizes: ref/small as flist.CompressChunk makes it,
// bigRef/big by the fastest level.
func twoEncodings(t *testing.T) (ref flist.ChunkRef, small []byte, bigRef flist.ChunkRef, big, raw []byte) {
	t.Helper()
	ref, small, raw = chunk(t, "same content, two encodings ")
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	big = enc.EncodeAll(raw, nil)
	if len(big) <= len(small) {
		t.Fatalf("test needs a larger encoding: %d vs %d", len(big), len(small))
	}
	bigRef = ref
	bigRef.CSize = uint32(len(big))
	return ref, small, bigRef, big, raw
}

type put struct {
	ref  flist.ChunkRef
	blob []byte
}

// The first valid copy stays byte for byte whatever comes later, so the bytes
// at a chunk's URL never change; PutChunk says which size is stored, and an
// flist whose CSize is smaller than the stored copy fails cleanly.
func TestDirKeepsFirstEncoding(t *testing.T) {
	ref, small, bigRef, big, raw := twoEncodings(t)
	for _, order := range [][]put{{{bigRef, big}, {ref, small}}, {{ref, small}, {bigRef, big}}} {
		first := order[0]
		t.Run(fmt.Sprintf("first %d bytes", len(first.blob)), func(t *testing.T) {
			d := &Dir{Root: t.TempDir()}
			for _, p := range order {
				got, err := d.PutChunk(p.ref, p.blob)
				if err != nil {
					t.Fatal(err)
				}
				if got != first.ref {
					t.Fatalf("PutChunk of %d bytes = %s/%d, want the stored %d", len(p.blob), got, got.CSize, first.ref.CSize)
				}
			}
			stored, err := os.ReadFile(d.ChunkPath(ref.ID))
			if err != nil || !bytes.Equal(stored, first.blob) {
				t.Fatalf("stored %d bytes (%v), want the first copy, %d bytes", len(stored), err, len(first.blob))
			}
			for _, r := range []flist.ChunkRef{ref, bigRef} {
				got, err := contentOf(d.Chunk(context.Background(), r, nil))
				if r.CSize >= first.ref.CSize {
					if err != nil || !bytes.Equal(got, raw) {
						t.Fatalf("read with CSize %d: %v", r.CSize, err)
					}
					continue
				}
				if err == nil || !strings.Contains(err.Error(), "at most") {
					t.Fatalf("read with CSize %d of a %d-byte copy: %v, want a size error", r.CSize, len(first.blob), err)
				}
			}
		})
	}
}

// A damaged stored file is not a copy worth keeping: the next put replaces
// it and answers with the new size.
func TestDirReplacesDamagedCopy(t *testing.T) {
	ref, small, bigRef, big, _ := twoEncodings(t)
	d := &Dir{Root: t.TempDir()}
	if _, err := d.PutChunk(bigRef, big); err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(big)
	damaged[len(damaged)/2] ^= 0x40
	if err := os.WriteFile(d.ChunkPath(ref.ID), damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := d.PutChunk(ref, small)
	if err != nil || got != ref {
		t.Fatalf("PutChunk over a damaged copy = %s/%d, %v; want %d", got, got.CSize, err, ref.CSize)
	}
	if stored, err := os.ReadFile(d.ChunkPath(ref.ID)); err != nil || !bytes.Equal(stored, small) {
		t.Fatalf("damaged copy not replaced: %d bytes, %v", len(stored), err)
	}
}

// A build into a store that already holds a larger encoding records the
// stored size, so the flist reads the chunk the store actually serves.
func TestBuildIntoStoreWithLargerCopy(t *testing.T) {
	ref, _, bigRef, big, raw := twoEncodings(t)
	d := &Dir{Root: t.TempDir()}
	if _, err := d.PutChunk(bigRef, big); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	// Unpacked, so the file's one chunk is the chunk stored twice.
	f, err := (&flist.Builder{Sink: d, PackLimit: -1}).BuildDir(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Entries) != 1 || len(f.Entries[0].Chunks) != 1 {
		t.Fatalf("flist %+v: want one file of one chunk", f.Entries)
	}
	if got := f.Entries[0].Chunks[0]; got != bigRef {
		t.Fatalf("flist records %s/%d, want the stored %d (fresh encoding is %d)", got, got.CSize, bigRef.CSize, ref.CSize)
	}
	if stored, err := os.ReadFile(d.ChunkPath(ref.ID)); err != nil || !bytes.Equal(stored, big) {
		t.Fatalf("stored copy changed: %d bytes, %v", len(stored), err)
	}
	out := t.TempDir()
	if err := (&flist.Extractor{Source: d}).Extract(context.Background(), f, out); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(out, "f")); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("extracted %d bytes, %v; want %d", len(got), err, len(raw))
	}
}

// Many puts of two encodings race on one chunk. Within one process the lock
// makes check-and-write atomic, so exactly one copy is ever written and
// every caller is told its size. (Across processes see PutChunk's comment.)
func TestDirConcurrentEncodings(t *testing.T) {
	ref, small, bigRef, big, raw := twoEncodings(t)
	puts := []put{{ref, small}, {bigRef, big}}
	for run := range 5 {
		d := &Dir{Root: t.TempDir()}
		const n = 32
		got := make([]flist.ChunkRef, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for g := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := puts[(g+run)%2]
				got[g], errs[g] = d.PutChunk(p.ref, p.blob)
			}()
		}
		wg.Wait()
		stored, err := os.ReadFile(d.ChunkPath(ref.ID))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(stored, small) && !bytes.Equal(stored, big) {
			t.Fatalf("run %d: stored %d bytes, neither encoding", run, len(stored))
		}
		final := ref
		final.CSize = uint32(len(stored))
		for g := range n {
			if errs[g] != nil || got[g] != final {
				t.Fatalf("run %d, put %d: %s/%d, %v; stored copy is %d bytes", run, g, got[g], got[g].CSize, errs[g], len(stored))
			}
		}
		if b, err := contentOf(d.Chunk(context.Background(), final, nil)); err != nil || !bytes.Equal(b, raw) {
			t.Fatalf("run %d: stored copy does not read back: %v", run, err)
		}
		noTemps(t, d.Root)
	}
}

// contentOf is a Chunk result as plain bytes.

// The shared test helpers, under the names these tests use.
var (
	chunk        = testchunk.Chunk
	encodedFlist = testchunk.Flist
	contentOf    = testchunk.Content
)
