package flist

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

func TestDiff(t *testing.T) {
	c1 := ChunkRef{ID: digest.Of([]byte("one")), Size: 3, CSize: 12}
	c2 := ChunkRef{ID: digest.Of([]byte("two")), Size: 3, CSize: 12}
	file := func(p string, c ChunkRef) Entry {
		return Entry{Path: p, Type: TypeFile, Mode: 0o644, Size: 3, Chunks: []ChunkRef{c}}
	}
	base := []Entry{{Path: "a", Type: TypeDir, Mode: 0o755}, file("a/f", c1), file("b", c1)}
	recompressed := c1
	recompressed.CSize = 9
	for _, tc := range []struct {
		name string
		b    []Entry
		want []string
	}{
		{"same", base, nil},
		{"same content stored smaller", []Entry{base[0], file("a/f", recompressed), base[2]}, nil},
		{"content", []Entry{base[0], file("a/f", c2), base[2]}, []string{"~ a/f (content)"}},
		{"mode and owner", []Entry{base[0], {Path: "a/f", Type: TypeFile, Mode: 0o4755, UID: 1, Size: 3, Chunks: []ChunkRef{c1}}, base[2]}, []string{"~ a/f (mode owner)"}},
		{"type", []Entry{base[0], base[1], {Path: "b", Type: TypeSymlink, Mode: 0o777, Target: "a/f"}}, []string{"~ b (type mode content target)"}},
		{"added and removed", []Entry{base[0], file("a/g", c1), base[2], file("c", c2)}, []string{"- a/f", "+ a/g", "+ c"}},
		{"all gone", nil, []string{"- a", "- a/f", "- b"}},
	} {
		var got []string
		for _, c := range Diff(&Flist{Entries: base}, &Flist{Entries: tc.b}) {
			got = append(got, c.String())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: Diff = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	c1 := ChunkRef{ID: digest.Of([]byte("one")), Size: 3, CSize: 12}
	c2 := ChunkRef{ID: digest.Of([]byte("two")), Size: 5, CSize: 7}
	f := &Flist{Entries: []Entry{
		{Path: "a", Type: TypeDir, Mode: 0o755},
		{Path: "a/f", Type: TypeFile, Mode: 0o4755, Size: 8, Chunks: []ChunkRef{c1, c2}},
		{Path: "b", Type: TypeFile, Mode: 0o644, Size: 3, Chunks: []ChunkRef{c1}},
		{Path: "c", Type: TypeSymlink, Mode: 0o777, Target: "b"},
	}}
	s := Summarize(f)
	if s.Entries != 4 || s.ByType[TypeFile] != 2 || s.ByType[TypeDir] != 1 || s.ByType[TypeSymlink] != 1 ||
		s.Bytes != 11 || s.Chunks != 3 || s.Unique != 2 || s.Wire != 19 || s.Setuid != 1 || s.MaxChunk != 5 {
		t.Errorf("Summarize = %+v", s)
	}
}

func TestComparePacked(t *testing.T) {
	st := newMemStore()
	put := func(s string) ChunkRef {
		c, blob, err := CompressChunk(SHA256, []byte(s))
		must(t, err)
		_, err = st.PutChunk(c, blob)
		must(t, err)
		return c
	}
	p1, p2, own := put("aaabbbccc"), put("xxaaabbbCCC"), put("ccc")
	pk := func(p string, c ChunkRef, off uint32) Entry {
		return Entry{Path: p, Type: TypeFile, Mode: 0o644, Size: 3, Pack: &PackRef{Chunk: c, Off: off}}
	}
	a := &Flist{Entries: []Entry{pk("a", p1, 0), pk("b", p1, 3), pk("c", p1, 6), pk("d", p1, 0)}}
	b := &Flist{Entries: []Entry{pk("a", p2, 2), pk("b", p2, 5), pk("c", p2, 8),
		{Path: "d", Type: TypeFile, Mode: 0o600, Size: 3, Chunks: []ChunkRef{own}}}}
	raw := Diff(a, b)
	if len(raw) != 4 {
		t.Fatalf("Diff = %v, want all four moved", raw)
	}
	got, err := ComparePacked(context.Background(), raw, a, b, st)
	must(t, err)
	want := []string{"~ c (content)", "~ d (mode content)"}
	var s []string
	for _, c := range got {
		s = append(s, c.String())
	}
	if !slices.Equal(s, want) {
		t.Fatalf("ComparePacked = %q, want %q", s, want)
	}
	delete(st.blobs, p2.ID)
	if _, err := ComparePacked(context.Background(), raw, a, b, st); err == nil || !strings.Contains(err.Error(), "compare a: ") {
		t.Errorf("missing pack: %v", err)
	}
}

func TestFetches(t *testing.T) {
	f := packedSample(t)
	// etc/motd and usr/bin/su share one pack; no file has chunks of its own.
	if got := f.Fetches(); len(got) != 1 || got[0] != f.Entries[5].Pack.Chunk {
		t.Fatalf("Fetches = %v, want the one pack", got)
	}
	if s := Summarize(f); s.Fetches != 1 || s.Packed != 2 || s.Chunks != 2 || s.Unique != 1 {
		t.Fatalf("Summarize = %+v", s)
	}
	if got := sample(t).Fetches(); len(got) != 3 {
		t.Fatalf("unpacked sample: %d fetches, want 3 (two chunks of etc/motd, one of usr/bin/su)", len(got))
	}
}
