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

	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
)

// The builder's sink and the extractor's source, spelled out locally so these
// tests do not depend on the rest of pkg/flist being finished.
var (
	_ interface {
		PutChunk(flist.ChunkRef, []byte) error
	} = (*Dir)(nil)
	_ interface {
		Chunk(context.Context, flist.ChunkRef) ([]byte, error)
	} = (*Dir)(nil)
	_ interface {
		Chunk(context.Context, flist.ChunkRef) ([]byte, error)
	} = (*HTTP)(nil)
	_ interface {
		PutChunk(flist.ChunkRef, []byte) error
	} = (*Uploader)(nil)
)

func chunk(t testing.TB, content string) (flist.ChunkRef, []byte, []byte) {
	t.Helper()
	raw := bytes.Repeat([]byte(content), 1000)
	ref, c, err := flist.CompressChunk(raw)
	if err != nil {
		t.Fatal(err)
	}
	return ref, c, raw
}

func encodedFlist(t testing.TB, name string) []byte {
	t.Helper()
	f := &flist.Flist{Entries: []flist.Entry{{Path: name, Type: flist.TypeDir, Mode: 0o755}}}
	b, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDirRoundTrip(t *testing.T) {
	d := &Dir{Root: t.TempDir()}
	ref, c, raw := chunk(t, "hello ")
	if d.HasChunk(ref.ID) {
		t.Fatal("empty store has the chunk")
	}
	if err := d.PutChunk(ref, c); err != nil {
		t.Fatal(err)
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
	got, err := d.Chunk(context.Background(), ref)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("Chunk = %d bytes, %v", len(got), err)
	}
	// Idempotent.
	if err := d.PutChunk(ref, c); err != nil {
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
			err := d.PutChunk(tc.ref, tc.c)
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
	if err := d.PutChunk(ref, c); err != nil {
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
	if _, err := d.Chunk(context.Background(), ref); err == nil {
		t.Fatal("Chunk returned damaged bytes")
	}
	if err := os.WriteFile(d.ChunkPath(ref.ID), append(bytes.Clone(c), 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Chunk(context.Background(), ref); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("Chunk of an overlong file: %v", err)
	}
	// Re-putting repairs the damaged file.
	if err := d.PutChunk(ref, c); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Chunk(context.Background(), ref); err != nil {
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
	if _, err := d.Chunk(context.Background(), flist.ChunkRef{ID: digest.Of([]byte("x")), Size: 1, CSize: 10}); err == nil || !os.IsNotExist(unwrapAll(err)) {
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
				errs <- d.PutChunk(refs[i], blobs[i])
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
		if _, err := d.Chunk(context.Background(), r); err != nil {
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
	if err := d.PutChunk(ref, c); err == nil {
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
	if err := d.PutChunk(ref, c); err != nil {
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

// Two builders (say two zstd versions) compress the same content to
// different sizes: the store keeps the smaller copy, and flists made by
// either builder can still read the chunk.
func TestDirKeepsSmallestEncoding(t *testing.T) {
	d := &Dir{Root: t.TempDir()}
	ref, small, raw := chunk(t, "same content, two encodings ")
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	big := enc.EncodeAll(raw, nil)
	if len(big) <= len(small) {
		t.Fatalf("test needs a larger encoding: %d vs %d", len(big), len(small))
	}
	bigRef := ref
	bigRef.CSize = uint32(len(big))

	for _, order := range [][]struct {
		ref  flist.ChunkRef
		blob []byte
	}{{{bigRef, big}, {ref, small}}, {{ref, small}, {bigRef, big}}} {
		os.RemoveAll(d.Root)
		for _, put := range order {
			if err := d.PutChunk(put.ref, put.blob); err != nil {
				t.Fatal(err)
			}
		}
		stored, err := os.ReadFile(d.ChunkPath(ref.ID))
		if err != nil || !bytes.Equal(stored, small) {
			t.Fatalf("stored %d bytes (%v), want the smaller %d", len(stored), err, len(small))
		}
		for _, r := range []flist.ChunkRef{ref, bigRef} {
			got, err := d.Chunk(context.Background(), r)
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("read with CSize %d: %v", r.CSize, err)
			}
		}
	}
	// A copy larger than an flist's CSize is still refused.
	tooSmall := ref
	tooSmall.CSize = uint32(len(small) - 1)
	if _, err := d.Chunk(context.Background(), tooSmall); err == nil {
		t.Fatal("chunk longer than its declared size accepted")
	}
}
