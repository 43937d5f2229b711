package flist

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func otherHash(h Hash) Hash {
	if h == SHA256 {
		return BLAKE3
	}
	return SHA256
}

// TestHashSum holds Sum to the published answers: FIPS 180-2's for
// SHA-256 and the BLAKE3 reference's test_vectors.json (input lengths 0
// and 1, the input being bytes i%251).
func TestHashSum(t *testing.T) {
	tests := []struct {
		h    Hash
		in   []byte
		want string
	}{
		{SHA256, []byte("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{BLAKE3, nil, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"},
		{BLAKE3, []byte{0}, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"},
	}
	for _, tt := range tests {
		if got := tt.h.Sum(tt.in); hex.EncodeToString(got[:]) != tt.want {
			t.Errorf("%s(%q) = %x, want %s", tt.h, tt.in, got, tt.want)
		}
	}
}

func TestParseHash(t *testing.T) {
	for _, h := range Hashes {
		if got, err := ParseHash(h.String()); err != nil || got != h {
			t.Errorf("ParseHash(%q) = %v, %v", h, got, err)
		}
	}
	if _, err := ParseHash("md5"); err == nil || !strings.Contains(err.Error(), "want sha256 or blake3") {
		t.Errorf("ParseHash(md5) = %v", err)
	}
}

// withHash is f with every chunk named by h, as a build with h makes it.
func withHash(t testing.TB, f *Flist, h Hash) *Flist {
	t.Helper()
	f.Hash = h
	rename := func(c *ChunkRef, content string) {
		r, _, err := CompressChunk(h, []byte(content))
		if err != nil {
			t.Fatal(err)
		}
		*c = r
	}
	for i := range f.Entries {
		e := &f.Entries[i]
		for j := range e.Chunks {
			rename(&e.Chunks[j], strings.Repeat("x", int(e.Chunks[j].Size)))
		}
		if e.Pack != nil {
			rename(&e.Pack.Chunk, strings.Repeat("y", int(e.Pack.Chunk.Size)))
		}
	}
	return f
}

// TestRoundTripHashes: every version round-trips, says its version in the
// header, and decodes with its chunks named by its hash.
func TestRoundTripHashes(t *testing.T) {
	tests := []struct {
		name    string
		f       *Flist
		version byte
	}{
		{"sha256 plain", sample(t), VersionPlain},
		{"sha256 packed", packedSample(t), VersionPacked},
		{"blake3 plain", withHash(t, sample(t), BLAKE3), VersionBLAKE3},
		{"blake3 packed", withHash(t, packedSample(t), BLAKE3), VersionBLAKE3},
	}
	for _, tt := range tests {
		b, err := tt.f.Encode()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if b[4] != tt.version || b[5] != 0 {
			t.Errorf("%s: header % x, want version %d", tt.name, b[:8], tt.version)
		}
		g, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !reflect.DeepEqual(tt.f, g) {
			t.Errorf("%s: round trip differs:\n%+v\n%+v", tt.name, tt.f, g)
		}
		for _, c := range g.Fetches() {
			if c.Hash != tt.f.Hash {
				t.Errorf("%s: decoded %s named by %s", tt.name, c, c.Hash)
			}
		}
	}
}

// TestValidateOneHash: an flist whose chunks are not all named by its
// hash is refused, since the encoding does not say per chunk.
func TestValidateOneHash(t *testing.T) {
	for _, h := range Hashes {
		f := withHash(t, packedSample(t), h)
		f.Entries[5].Pack.Chunk.Hash = otherHash(h)
		err := f.Validate()
		var ee *EntryError
		if err == nil || !errors.As(err, &ee) || ee.Path != "etc/motd" || !strings.Contains(err.Error(), "named by "+otherHash(h).String()+" in a "+h.String()+" flist") {
			t.Errorf("%s flist with a %s chunk: %v", h, otherHash(h), err)
		}
		if _, err := f.Encode(); err == nil {
			t.Errorf("%s flist with a %s chunk encodes", h, otherHash(h))
		}
	}
	if err := (&Flist{Hash: BLAKE3 + 1}).Validate(); err == nil || !strings.Contains(err.Error(), "unknown chunk hash(2)") {
		t.Errorf("unknown hash: %v", err)
	}
}

// TestOlderReaderRefusesBLAKE3: a reader of versions 1..2 (the decoder as
// released before version 3, which is decode with newest 2) refuses a
// version-3 flist by its version, before reading a chunk ID as SHA-256.
func TestOlderReaderRefusesBLAKE3(t *testing.T) {
	b, err := withHash(t, packedSample(t), BLAKE3).Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := "decode flist: unsupported version 3, this reader knows 1..2"
	if _, err := decode(b, VersionPacked); err == nil || err.Error() != want {
		t.Errorf("version-2 reader: %v, want %q", err, want)
	}
	old, err := packedSample(t).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decode(old, VersionPacked); err != nil {
		t.Errorf("version-2 reader refuses version 2: %v", err)
	}
}

// TestBuildVersions: a tree built at each version reads back the same
// content, its chunks named by the version's hash, and the two hashes
// name no chunk alike.
func TestBuildVersions(t *testing.T) {
	dir := t.TempDir()
	smallTree(t, dir, 40, 1)
	must(t, os.WriteFile(filepath.Join(dir, "big"), bytes.Repeat([]byte("big file "), 3*testChunk), 0o644))
	ids := map[Hash]map[string]bool{}
	for _, v := range versions {
		st := newMemStore()
		f, err := (&Builder{ChunkSize: testChunk, Sink: st, Version: v}).BuildDir(context.Background(), dir)
		must(t, err)
		h := versionHash(uint16(v))
		if f.Hash != h {
			t.Fatalf("version %d: flist named by %s", v, f.Hash)
		}
		if ids[h] == nil {
			ids[h] = map[string]bool{}
		}
		for _, e := range f.Entries {
			if e.Type != TypeFile {
				continue
			}
			want, err := os.ReadFile(filepath.Join(dir, e.Path))
			must(t, err)
			if got := st.content(t, e); !bytes.Equal(got, want) {
				t.Errorf("version %d: %s reads back %d bytes, want %d", v, e.Path, len(got), len(want))
			}
			for _, c := range e.Refs() {
				if c.Hash != h {
					t.Errorf("version %d: %s has %s named by %s", v, e.Path, c, c.Hash)
				}
				ids[h][c.ID.Hex()] = true
			}
		}
	}
	for id := range ids[BLAKE3] {
		if ids[SHA256][id] {
			t.Errorf("chunk ID %s under both hashes", id)
		}
	}
	if len(ids[BLAKE3]) == 0 || len(ids[SHA256]) == 0 {
		t.Errorf("chunk IDs: %d blake3, %d sha256", len(ids[BLAKE3]), len(ids[SHA256]))
	}
}

// TestDiffAcrossHashes: a version-2 and a version-3 flist of one tree
// differ in every chunk ID, not in content: Diff cannot compare IDs of two
// hashes, so it marks the files "pack" and ComparePacked settles them by
// their bytes, leaving only the file that really changed.
func TestDiffAcrossHashes(t *testing.T) {
	dir := t.TempDir()
	smallTree(t, dir, 20, 2)
	big := filepath.Join(dir, "big")
	must(t, os.WriteFile(big, bytes.Repeat([]byte("big file "), 3*testChunk), 0o644))
	st := newMemStore()
	build := func(v int) *Flist {
		f, err := (&Builder{ChunkSize: testChunk, Sink: st, Version: v}).BuildDir(context.Background(), dir)
		must(t, err)
		return f
	}
	a, same := build(VersionPacked), build(VersionBLAKE3)
	content := bytes.Repeat([]byte("big file "), 3*testChunk)
	content[testChunk+1] = '!'
	must(t, os.WriteFile(big, content, 0o644))
	must(t, os.Chtimes(big, time.Unix(0, 0), time.Unix(0, 0)))
	changed := build(VersionBLAKE3)
	for _, tt := range []struct {
		b    *Flist
		want []string
	}{{same, nil}, {changed, []string{"~ big (mtime content)"}}} {
		raw := Diff(a, tt.b)
		for _, c := range raw {
			if !slices.Contains(c.What, "pack") {
				t.Errorf("Diff: %s, want every file \"pack\" (hashes differ)", c)
			}
		}
		got, err := ComparePacked(context.Background(), raw, a, tt.b, st)
		must(t, err)
		var s []string
		for _, c := range got {
			s = append(s, c.String())
		}
		if !slices.Equal(s, tt.want) {
			t.Errorf("ComparePacked = %q, want %q", s, tt.want)
		}
	}
}
