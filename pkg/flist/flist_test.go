package flist

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

func ref(t testing.TB, content string) ChunkRef {
	t.Helper()
	r, _, err := CompressChunk(SHA256, []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sample covers every type and field, including a negative mtime and
// multi-byte varints.
func sample(t testing.TB) *Flist {
	a, b := ref(t, "hello "), ref(t, "world\n")
	return &Flist{Entries: []Entry{
		{Path: "dev", Type: TypeDir, Mode: 0o755},
		{Path: "dev/null", Type: TypeCharDev, Mode: 0o666, Rdev: 0x103},
		{Path: "dev/sda", Type: TypeBlockDev, Mode: 0o660, GID: 6, Rdev: 0x800},
		{Path: "etc", Type: TypeDir, Mode: 0o755, MTime: 1700000000},
		{Path: "etc/empty", Type: TypeFile, Mode: 0o644},
		{Path: "etc/motd", Type: TypeFile, Mode: 0o644, UID: 1000, GID: 100000, MTime: -5, Size: 12, Chunks: []ChunkRef{a, b}},
		{Path: "run", Type: TypeDir, Mode: 0o1777},
		{Path: "run/initctl", Type: TypeFIFO, Mode: 0o600},
		{Path: "sbin", Type: TypeSymlink, Mode: 0o777, Target: "usr/sbin"},
		{Path: "usr", Type: TypeDir, Mode: 0o755},
		{Path: "usr/bin", Type: TypeDir, Mode: 0o2755},
		{Path: "usr/bin/su", Type: TypeFile, Mode: 0o4755, Size: 6, Chunks: []ChunkRef{a}},
	}}
}

func TestRoundTrip(t *testing.T) {
	f := sample(t)
	b, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("ZBFL\x01\x00\x00\x00")) {
		t.Fatalf("header % x", b[:8])
	}
	g, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f, g) {
		t.Fatalf("round trip differs:\n%+v\n%+v", f, g)
	}
	b2, err := g.Encode()
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("re-encode differs: %v", err)
	}
	empty, err := (&Flist{}).Encode()
	if err != nil || len(empty) != 9 {
		t.Fatalf("empty flist: % x, %v", empty, err)
	}
	if g, err := Decode(empty); err != nil || len(g.Entries) != 0 {
		t.Fatalf("decode empty: %v %v", g, err)
	}
}

func TestCheckPath(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen)
	tests := []struct {
		path, want string
	}{
		{"a", ""},
		{"a/b.c/..d/.e", ""},
		{long, ""},
		{"", "empty"},
		{"/etc", "absolute"},
		{"..", `".."`},
		{"a/../b", `".."`},
		{"a/..", `".."`},
		{".", `"."`},
		{"./a", `"."`},
		{"a/./b", `"."`},
		{"a/", "not clean"},
		{"a//b", "not clean"},
		{"a\x00b", "NUL"},
		{long + "x", "component is 256 bytes"},
		{strings.Repeat(long+"/", 17), "limit 4096"},
	}
	for _, tt := range tests {
		err := CheckPath(tt.path)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckPath(%.40q) = %v, want %q", tt.path, err, tt.want)
		}
	}
}

func TestValidateRefuses(t *testing.T) {
	c := ref(t, "abc")
	dir := Entry{Path: "d", Type: TypeDir, Mode: 0o755}
	file := func(p string, size uint64, chunks ...ChunkRef) Entry {
		return Entry{Path: p, Type: TypeFile, Mode: 0o644, Size: size, Chunks: chunks}
	}
	tests := []struct {
		name    string
		entries []Entry
		want    string
	}{
		{"dotdot", []Entry{dir, file("d/../x", 0)}, `".."`},
		{"absolute", []Entry{file("/x", 0)}, "absolute"},
		{"duplicate", []Entry{dir, file("d/a", 0), file("d/a", 0)}, "duplicate path"},
		{"unsorted", []Entry{dir, file("d/b", 0), file("d/a", 0)}, "not sorted"},
		{"missing parent", []Entry{file("d/a", 0)}, `parent "d"`},
		{"parent is a file", []Entry{file("d", 0), file("d/a", 0)}, `parent "d"`},
		{"parent is a symlink", []Entry{{Path: "d", Type: TypeSymlink, Target: "/"}, file("d/a", 0)}, `parent "d"`},
		{"unknown type", []Entry{{Path: "x", Type: 9}}, "unknown type 9"},
		{"zero type", []Entry{{Path: "x"}}, "unknown type 0"},
		{"mode bits", []Entry{{Path: "x", Type: TypeDir, Mode: 0o170755}}, "outside"},
		{"larger than chunks", []Entry{file("x", 4, c)}, "file size 4 but chunks hold 3"},
		{"smaller than chunks", []Entry{file("x", 2, c)}, "chunks hold 3"},
		{"more chunks than bytes", []Entry{file("x", 1, c, c)}, "2 chunks for 1 bytes"},
		{"size without chunks", []Entry{file("x", 10)}, "chunks hold 0"},
		{"zero chunk", []Entry{file("x", 3, ChunkRef{ID: c.ID, CSize: 3}, c)}, "size 0 outside"},
		{"huge chunk", []Entry{file("x", MaxChunkSize+1, ChunkRef{ID: c.ID, Size: MaxChunkSize + 1, CSize: 3})}, "outside 1.."},
		{"zero csize", []Entry{file("x", 3, ChunkRef{ID: c.ID, Size: 3})}, "compressed size 0"},
		{"huge csize", []Entry{file("x", 3, ChunkRef{ID: c.ID, Size: 3, CSize: MaxCompressedSize + 1})}, "compressed size"},
		{"dir with chunks", []Entry{{Path: "x", Type: TypeDir, Size: 3, Chunks: []ChunkRef{c}}}, "only files have content"},
		{"symlink with size", []Entry{{Path: "x", Type: TypeSymlink, Target: "y", Size: 1}}, "only files have content"},
		{"file with target", []Entry{{Path: "x", Type: TypeFile, Target: "y"}}, "link target"},
		{"fifo with rdev", []Entry{{Path: "x", Type: TypeFIFO, Rdev: 1}}, "device number"},
		{"empty target", []Entry{{Path: "x", Type: TypeSymlink}}, "empty target"},
		{"long target", []Entry{{Path: "x", Type: TypeSymlink, Target: strings.Repeat("a", MaxTargetLen+1)}}, "target is 4097"},
		{"NUL target", []Entry{{Path: "x", Type: TypeSymlink, Target: "a\x00"}}, "NUL"},
		{"uid -1", []Entry{{Path: "x", Type: TypeDir, UID: OwnerUnchanged}}, `uid 4294967295 is chown's "leave unchanged"`},
		{"gid -1", []Entry{{Path: "x", Type: TypeFIFO, GID: OwnerUnchanged}}, `gid 4294967295 is chown's "leave unchanged"`},
		{"packed past the chunk", []Entry{packed("x", 2, c, 2)}, "packed at 2..4, past the end of its 3-byte"},
		{"packed offset wraps", []Entry{packed("x", 3, c, 1<<32-1)}, "past the end"},
		{"packed and chunked", []Entry{{Path: "x", Type: TypeFile, Size: 3, Chunks: []ChunkRef{c}, Pack: &PackRef{Chunk: c}}}, "also has 1 chunks"},
		{"packed empty file", []Entry{packed("x", 0, c, 0)}, "empty file is packed"},
		{"packed into a bad chunk", []Entry{packed("x", 1, ChunkRef{ID: c.ID, Size: 3}, 0)}, "pack chunk 0"},
		{"packed dir", []Entry{{Path: "x", Type: TypeDir, Pack: &PackRef{Chunk: c}}}, "only files have content"},
		{"hard link to nothing", []Entry{{Path: "x", Type: TypeHardlink, Target: "y"}}, `hard link to "y", which is not a regular file listed before it`},
		{"hard link to a later file", []Entry{{Path: "a", Type: TypeHardlink, Target: "b"}, file("b", 3, c)}, "not a regular file listed before it"},
		{"hard link to a dir", []Entry{dir, {Path: "x", Type: TypeHardlink, Target: "d"}}, "not a regular file"},
		{"hard link to a hard link", []Entry{file("a", 3, c), {Path: "b", Type: TypeHardlink, Target: "a"}, {Path: "c", Type: TypeHardlink, Target: "b"}}, `hard link to "b"`},
		{"hard link with a mode", []Entry{file("a", 3, c), {Path: "b", Type: TypeHardlink, Target: "a", Mode: 0o644}}, "hard link has fields of its own"},
		{"hard link target dotdot", []Entry{{Path: "b", Type: TypeHardlink, Target: "../etc/shadow"}}, `hard link target: path has a ".." component`},
	}
	for _, tt := range tests {
		f := &Flist{Entries: tt.entries}
		err := f.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v, want %q", tt.name, err, tt.want)
			continue
		}
		var ee *EntryError
		if !errors.As(err, &ee) || ee.Path != tt.entries[ee.Index].Path {
			t.Errorf("%s: error %v does not name the entry", tt.name, err)
		}
		if _, err := f.Encode(); err == nil {
			t.Errorf("%s: Encode accepted", tt.name)
		}
	}
	if err := (&Flist{Entries: make([]Entry, MaxEntries+1)}).Validate(); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("too many entries: %v", err)
	}
}

func packed(p string, size uint64, c ChunkRef, off uint32) Entry {
	return Entry{Path: p, Type: TypeFile, Mode: 0o644, Size: size, Pack: &PackRef{Chunk: c, Off: off}}
}

// packedSample is sample with small files packed into one shared chunk,
// which makes it a version-2 flist.
func packedSample(t testing.TB) *Flist {
	f := sample(t)
	p := ref(t, "#!/bin/sh\nhello world\n")
	f.Entries[5].Chunks, f.Entries[5].Pack = nil, &PackRef{Chunk: p, Off: 10}
	f.Entries[11].Chunks, f.Entries[11].Pack = nil, &PackRef{Chunk: p, Off: 0}
	f.Entries[11].Size = 10
	return f
}

func TestRoundTripPacked(t *testing.T) {
	f := packedSample(t)
	b, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("ZBFL\x02\x00\x00\x00")) {
		t.Fatalf("header % x, want version 2", b[:8])
	}
	g, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f, g) {
		t.Fatalf("round trip differs:\n%+v\n%+v", f, g)
	}
}

// encodeRaw writes entries without validating, so Decode sees what a hostile
// producer could send.
func encodeRaw(entries []Entry) []byte {
	b := []byte("ZBFL\x01\x00\x00\x00")
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for i := range entries {
		b = appendEntry(b, &entries[i])
	}
	return b
}

func TestDecodeRefuses(t *testing.T) {
	good, err := sample(t).Encode()
	if err != nil {
		t.Fatal(err)
	}
	with := func(off int, bs ...byte) []byte {
		b := append([]byte(nil), good...)
		copy(b[off:], bs)
		return b
	}
	// Entry 0 starts at byte 9: path length 3, "dev", type.
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"short header", good[:7], "truncated"},
		{"bad magic", with(0, 'Z', 'B', 'F', 'X'), "bad magic"},
		{"version 4", with(4, 4), "unsupported version 4, this reader knows 1..3"},
		{"version 2 without packs", with(4, 2), "version 2 but no packed file or hard link: not canonical (version 1)"},
		{"pack truncated", func() []byte {
			b, err := packedSample(t).Encode()
			if err != nil {
				t.Fatal(err)
			}
			return b[:len(b)-1]
		}(), "pack: pack offset: truncated"},
		{"version 0", with(4, 0), "unsupported version 0"},
		{"flags", with(6, 1), "unknown flags"},
		{"no count", good[:8], "entry count: truncated"},
		{"count too big", append([]byte("ZBFL\x01\x00\x00\x00"), binary.AppendUvarint(nil, MaxEntries+1)...), "limit 1000000"},
		{"count past input", append([]byte("ZBFL\x01\x00\x00\x00"), 100), "cannot fit"},
		{"overlong count", append([]byte("ZBFL\x01\x00\x00\x00"), 0x80, 0x00), "overlong varint"},
		{"overflowing count", append([]byte("ZBFL\x01\x00\x00\x00"), bytes.Repeat([]byte{0xff}, 11)...), "overlong varint"},
		{"trailing", append(append([]byte(nil), good...), 0), "1 trailing bytes"},
		{"truncated", good[:len(good)-1], "cannot fit"},
		{"truncated varint", func() []byte {
			b := encodeRaw([]Entry{{Path: "a", Type: TypeFile, Size: 1, Chunks: []ChunkRef{{Size: 1, CSize: 300}}}})
			return b[:len(b)-1]
		}(), `entry 0 ("a"): chunk 0: compressed size: truncated`},
		{"unknown type", with(13, 7), `entry 0 ("dev"): unknown type 7`},
		{"path length past input", with(9, 0xff, 0x7f), "path is 16383 bytes, limit 4096"},
		{"huge", make([]byte, MaxMetadataSize+1), "limit"},
		{"dotdot", encodeRaw([]Entry{{Path: "..", Type: TypeDir}}), `".."`},
		{"duplicate", encodeRaw([]Entry{{Path: "a", Type: TypeDir}, {Path: "a", Type: TypeDir}}), "duplicate path"},
		{"uid out of range", append(append([]byte("ZBFL\x01\x00\x00\x00\x01\x01a\x02\x00"), binary.AppendUvarint(nil, 1<<32)...), make([]byte, 8)...), "uid: 4294967296 out of range"},
		{"uid -1", encodeRaw([]Entry{{Path: "a", Type: TypeDir, UID: OwnerUnchanged}}), `entry 0 ("a"): uid 4294967295`},
		{"gid -1", encodeRaw([]Entry{{Path: "a", Type: TypeFile, GID: OwnerUnchanged}}), `entry 0 ("a"): gid 4294967295`},
		{"chunk count past size", encodeRaw([]Entry{{Path: "a", Type: TypeFile, Size: 1, Chunks: make([]ChunkRef, 2)}}), "2 chunks for 1 bytes"},
		{"chunk count past input", func() []byte {
			b := encodeRaw([]Entry{{Path: "a", Type: TypeFile, Size: 1 << 40}})
			return append(b[:len(b)-1], binary.AppendUvarint(nil, 1<<30)...)
		}(), "cannot fit"},
		{"chunk size over uint32", func() []byte {
			b := encodeRaw([]Entry{{Path: "a", Type: TypeFile, Size: 1 << 40, Chunks: []ChunkRef{{Size: 1}}}})
			b = b[:len(b)-2]
			b = binary.AppendUvarint(b, 1<<33)
			return append(b, 1)
		}(), "size: 8589934592 out of range"},
	}
	for _, tt := range tests {
		_, err := Decode(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Decode = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestDecodeOverlongField(t *testing.T) {
	// Spell entry 0's mode (0o755 = 0xed 0x03) with a redundant zero group:
	// same number, different bytes, so it must be refused.
	b := encodeRaw([]Entry{{Path: "a", Type: TypeDir, Mode: 0o755}})
	i := bytes.Index(b, []byte{0xed, 0x03})
	bad := append(append(append([]byte(nil), b[:i]...), 0xed, 0x83, 0x00), b[i+2:]...)
	if _, err := Decode(bad); err == nil || !strings.Contains(err.Error(), `entry 0 ("a"): mode: overlong varint`) {
		t.Fatalf("Decode = %v", err)
	}
	if _, err := Decode(b); err != nil {
		t.Fatalf("control: %v", err)
	}
}

func TestDecodeChunkIDs(t *testing.T) {
	f := sample(t)
	b, _ := f.Encode()
	g, _ := Decode(b)
	want := digest.Of([]byte("world\n"))
	if got := g.Entries[5].Chunks[1].ID; got != want {
		t.Fatalf("chunk id %s, want %s", got, want)
	}
}
