package flist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zeroboot/zeroboot/internal/testenv"
)

func buildTree(t *testing.T) (dir string, files map[string][]byte, f *Flist, st *memStore) {
	t.Helper()
	return buildTreeVersion(t, 0)
}

// versions are the flist versions a test runs under: each chunk hash, and
// the version without packs.
var versions = []int{VersionPlain, VersionPacked, VersionBLAKE3}

func buildTreeVersion(t *testing.T, v int) (dir string, files map[string][]byte, f *Flist, st *memStore) {
	t.Helper()
	testenv.NeedRoot(t, "creating device nodes and chown")
	dir = t.TempDir()
	files = makeTree(t, dir)
	st = newMemStore()
	f, err := (&Builder{ChunkSize: testChunk, Sink: st, Version: v}).BuildDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, files, f, st
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	must(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return err
	}))
	return out
}

func TestExtractRoundTrip(t *testing.T) { eachOpener(t, testExtractVersions) }

func testExtractVersions(t *testing.T) {
	for _, v := range versions {
		t.Run(fmt.Sprintf("version %d", v), func(t *testing.T) { testExtractRoundTrip(t, v) })
	}
}

func testExtractRoundTrip(t *testing.T, v int) {
	_, files, built, st := buildTreeVersion(t, v)
	enc, err := built.Encode()
	if err != nil || enc[4] != byte(v) {
		t.Fatalf("built as version %d, encoded %v, %v", v, enc[:6], err)
	}
	// Extract what a node would: the decoded bytes, whose chunk refs take
	// their hash from the version alone.
	f, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if f.Hash != versionHash(uint16(v)) || !reflect.DeepEqual(f, built) {
		t.Fatalf("version %d flist decodes with chunks named by %s, or differently from its build", v, f.Hash)
	}
	out := filepath.Join(t.TempDir(), "root")
	var done, total int64
	x := &Extractor{Source: st, Parallel: 2, Policy: Policy{AllowDevices: true, AllowSetuid: true}, Chown: true,
		Progress: func(d, tot int64) { done, total = d, tot }}
	if err := x.Extract(context.Background(), f, out); err != nil {
		t.Fatal(err)
	}
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join(out, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", p, len(got), err, len(want))
		}
	}
	if target, err := os.Readlink(filepath.Join(out, "usr/motd")); err != nil || target != "../etc/motd" {
		t.Errorf("symlink: %q %v", target, err)
	}
	// Reading the result back must give the same flist: every mode, owner,
	// time, type, target, device number and chunk.
	again, err := (&Builder{ChunkSize: testChunk, Sink: newMemStore(), Version: v}).BuildDir(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again.Entries, f.Entries) {
		for i := range min(len(again.Entries), len(f.Entries)) {
			if !reflect.DeepEqual(again.Entries[i], f.Entries[i]) {
				t.Fatalf("entry %d: extracted %+v, flist %+v", i, again.Entries[i], f.Entries[i])
			}
		}
		t.Fatalf("%d entries extracted, %d in flist", len(again.Entries), len(f.Entries))
	}
	if done != total || total == 0 {
		t.Errorf("progress ended at %d/%d", done, total)
	}
}

func TestExtractPolicy(t *testing.T) {
	_, _, f, st := buildTree(t)
	tests := []struct {
		policy Policy
		want   string
	}{
		{Policy{}, "extract a/null: chardev refused by policy"},
		{Policy{AllowSetuid: true}, "extract a/null: chardev refused by policy"},
		{Policy{AllowDevices: true}, "extract usr/bin/su: mode 04755 refused by policy"},
	}
	for _, tt := range tests {
		out := t.TempDir()
		err := (&Extractor{Source: st, Policy: tt.policy}).Extract(context.Background(), f, out)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.policy, err, tt.want)
		}
		if l := listDir(t, out); len(l) != 0 {
			t.Errorf("%+v: refused flist still wrote %v", tt.policy, l)
		}
	}
	setgid := &Flist{Entries: []Entry{{Path: "g", Type: TypeFile, Mode: 0o2755}}}
	if err := (&Extractor{Source: st}).Extract(context.Background(), setgid, t.TempDir()); err == nil || !strings.Contains(err.Error(), "setuid/setgid") {
		t.Errorf("setgid file: %v", err)
	}
	dirs := &Flist{Entries: []Entry{{Path: "g", Type: TypeDir, Mode: 0o2775}, {Path: "tmp", Type: TypeDir, Mode: 0o1777}, {Path: "tmp/p", Type: TypeFIFO, Mode: 0o600}}}
	out := t.TempDir()
	if err := (&Extractor{Source: st}).Extract(context.Background(), dirs, out); err != nil {
		t.Fatalf("setgid dir, sticky dir, fifo: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(out, "g")); err != nil || fi.Mode()&os.ModeSetgid == 0 {
		t.Errorf("setgid dir mode lost: %v %v", fi.Mode(), err)
	}
}

func TestExtractTamperedChunk(t *testing.T) {
	for _, v := range versions {
		t.Run(fmt.Sprintf("version %d", v), func(t *testing.T) { testExtractTamperedChunk(t, v) })
	}
}

func testExtractTamperedChunk(t *testing.T, v int) {
	_, _, f, st := buildTreeVersion(t, v)
	var e Entry
	for _, e = range f.Entries {
		if e.Path == "data/f5" {
			break
		}
	}
	// Random content is stored as a raw zstd block, so flipping its last
	// byte still decompresses and only the hash can tell.
	c := e.Chunks[1]
	blob := append([]byte(nil), st.blobs[c.ID]...)
	blob[len(blob)-1] ^= 0xff
	st.blobs[c.ID] = blob
	err := (&Extractor{Source: st, Policy: Policy{AllowDevices: true, AllowSetuid: true}}).Extract(context.Background(), f, t.TempDir())
	want := "extract data/f5 at offset 4096: chunk " + c.Name() + ": content hash mismatch: got " + f.Hash.String() + ":"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Extract = %v\nwant %q", err, want)
	}
}

// lyingSource cannot skip the check (only OpenChunk and CheckContent make
// a Verified), so it answers with another chunk's verified content, or with
// none.
type lyingSource struct{ other Verified }

func (s lyingSource) Chunk(context.Context, ChunkRef, []byte) (Verified, error) {
	return s.other, nil
}

func TestExtractChecksSourceBytes(t *testing.T) {
	c := ref(t, "hello")
	other, err := CheckContent(ref(t, "world"), []byte("world"))
	if err != nil {
		t.Fatal(err)
	}
	f := &Flist{Entries: []Entry{{Path: "f", Type: TypeFile, Mode: 0o644, Size: 5, Chunks: []ChunkRef{c}}}}
	for _, src := range []lyingSource{{other}, {}} {
		err := (&Extractor{Source: src}).Extract(context.Background(), f, t.TempDir())
		want := "extract f at offset 0: " + c.String() + ": source returned " + src.other.Ref().String()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Extract = %v, want %q", err, want)
		}
	}
}

func TestCheckContent(t *testing.T) {
	c := ref(t, "hello")
	for _, tc := range []struct {
		raw  string
		want string
	}{{"hello", ""}, {"hellO", "content hash mismatch"}, {"hell", "4 bytes, declared 5"}} {
		v, err := CheckContent(c, []byte(tc.raw))
		switch {
		case tc.want == "" && (err != nil || string(v.Bytes()) != "hello" || v.Ref() != c):
			t.Errorf("CheckContent(%q) = %q %v", tc.raw, v.Bytes(), err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || v.Bytes() != nil):
			t.Errorf("CheckContent(%q) = %q %v, want %q", tc.raw, v.Bytes(), err, tc.want)
		}
	}
}

func TestExtractRefusesOversizedFile(t *testing.T) {
	c := ref(t, "hello")
	f := &Flist{Entries: []Entry{{Path: "f", Type: TypeFile, Mode: 0o644, Size: 1 << 30, Chunks: []ChunkRef{c}}}}
	out := t.TempDir()
	err := (&Extractor{Source: newMemStore()}).Extract(context.Background(), f, out)
	if err == nil || !strings.Contains(err.Error(), `flist entry 0 ("f"): file size 1073741824 but chunks hold 5 bytes`) {
		t.Fatalf("Extract = %v", err)
	}
	if l := listDir(t, out); len(l) != 0 {
		t.Fatalf("wrote %v", l)
	}
}

func TestExtractHostile(t *testing.T) { eachOpener(t, testExtractHostile) }

func testExtractHostile(t *testing.T) {
	st := newMemStore()
	body := []byte("pwned")
	c, blob, err := CompressChunk(SHA256, body)
	must(t, err)
	_, err = st.PutChunk(c, blob)
	must(t, err)
	pwn := func(p string) Entry {
		return Entry{Path: p, Type: TypeFile, Mode: 0o644, Size: 5, Chunks: []ChunkRef{c}}
	}

	outside := t.TempDir()
	tests := []struct {
		name    string
		entries []Entry
	}{
		{"absolute symlink then file", []Entry{{Path: "evil", Type: TypeSymlink, Target: outside}, pwn("evil/pwned")}},
		{"relative escape then file", []Entry{{Path: "evil", Type: TypeSymlink, Target: "../../../../../../../../" + outside}, pwn("evil/pwned")}},
		{"root symlink then dir", []Entry{{Path: "evil", Type: TypeSymlink, Target: "/"}, {Path: "evil/tmp", Type: TypeDir, Mode: 0o755}}},
		{"escape then fifo", []Entry{{Path: "evil", Type: TypeSymlink, Target: outside}, {Path: "evil/p", Type: TypeFIFO}}},
		{"escape then symlink", []Entry{{Path: "evil", Type: TypeSymlink, Target: outside}, {Path: "evil/l", Type: TypeSymlink, Target: "x"}}},
		{"dotdot path", []Entry{pwn("../pwned")}},
	}
	for _, tt := range tests {
		f := &Flist{Entries: tt.entries}
		// The validated path refuses these outright...
		if err := (&Extractor{Source: st}).Extract(context.Background(), f, t.TempDir()); err == nil {
			t.Errorf("%s: Extract accepted", tt.name)
		}
		// ...and the os.Root layer holds even without validation.
		dir := filepath.Join(t.TempDir(), "a", "b", "c")
		err := (&Extractor{Source: st}).extract(context.Background(), f, dir)
		if err == nil || !strings.Contains(err.Error(), "escapes") {
			t.Errorf("%s: unvalidated extract = %v, want the root to refuse an escape", tt.name, err)
		}
		if l := listDir(t, outside); len(l) != 0 {
			t.Fatalf("%s: wrote outside the root: %v", tt.name, l)
		}
	}
	if _, err := os.Stat("/pwned"); err == nil {
		t.Fatal("/pwned exists")
	}
}

func TestExtractThroughExistingSymlinks(t *testing.T) {
	eachOpener(t, testExtractThroughExistingSymlinks)
}

func testExtractThroughExistingSymlinks(t *testing.T) {
	st := newMemStore()
	body := []byte("pwned")
	c, blob, err := CompressChunk(SHA256, body)
	must(t, err)
	_, err = st.PutChunk(c, blob)
	must(t, err)
	outside := t.TempDir()
	tests := []struct {
		name, link, target string
		f                  *Flist
		want               string
	}{
		{"dir over symlink", "etc", outside, &Flist{Entries: []Entry{{Path: "etc", Type: TypeDir, Mode: 0o755}, {Path: "etc/passwd", Type: TypeFile, Size: 5, Chunks: []ChunkRef{c}}}}, "extract etc: exists and is not a directory"},
		{"file over symlink", "passwd", filepath.Join(outside, "passwd"), &Flist{Entries: []Entry{{Path: "passwd", Type: TypeFile, Size: 5, Chunks: []ChunkRef{c}}}}, "extract passwd:"},
		{"fifo over symlink", "p", filepath.Join(outside, "p"), &Flist{Entries: []Entry{{Path: "p", Type: TypeFIFO}}}, "extract p: create fifo:"},
		{"symlink over symlink", "l", filepath.Join(outside, "l"), &Flist{Entries: []Entry{{Path: "l", Type: TypeSymlink, Target: "x"}}}, "extract l: create symlink:"},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		must(t, os.Symlink(tt.target, filepath.Join(dir, tt.link)))
		err := (&Extractor{Source: st}).Extract(context.Background(), tt.f, dir)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
		if l := listDir(t, outside); len(l) != 0 {
			t.Fatalf("%s: wrote outside the root: %v", tt.name, l)
		}
	}
}

func TestExtractSecondComponent(t *testing.T) {
	st := newMemStore()
	mk := func(paths ...string) *Flist {
		f := &Flist{}
		for _, p := range paths {
			if strings.HasSuffix(p, "/") {
				f.Entries = append(f.Entries, Entry{Path: strings.TrimSuffix(p, "/"), Type: TypeDir, Mode: 0o755})
				continue
			}
			c, blob, err := CompressChunk(SHA256, []byte(p))
			must(t, err)
			_, err = st.PutChunk(c, blob)
			must(t, err)
			f.Entries = append(f.Entries, Entry{Path: p, Type: TypeFile, Mode: 0o644, Size: uint64(c.Size), Chunks: []ChunkRef{c}})
		}
		return f
	}
	dir := t.TempDir()
	x := &Extractor{Source: st}
	must(t, x.Extract(context.Background(), mk("usr/", "usr/bin/", "usr/bin/core0"), dir))
	must(t, x.Extract(context.Background(), mk("etc/", "etc/x", "usr/", "usr/lib/", "usr/lib/libc.so"), dir))
	for _, p := range []string{"usr/bin/core0", "usr/lib/libc.so", "etc/x"} {
		if b, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(b) != p {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}
	err := x.Extract(context.Background(), mk("usr/", "usr/bin/", "usr/bin/core0"), dir)
	if err == nil || !strings.Contains(err.Error(), "extract usr/bin/core0:") || !errors.Is(err, os.ErrExist) {
		t.Errorf("colliding file: %v", err)
	}
	err = x.Extract(context.Background(), mk("etc/", "etc/x/"), dir)
	if err == nil || !strings.Contains(err.Error(), "extract etc/x: exists and is not a directory") {
		t.Errorf("dir over file: %v", err)
	}
}

// slowSource counts chunks in flight, fails one chunk and holds the others
// until cancelled.
type slowSource struct {
	st       *memStore
	fail     ChunkRef
	inflight atomic.Int32
	max      atomic.Int32
	mu       sync.Mutex
}

func (s *slowSource) Chunk(ctx context.Context, ref ChunkRef, buf []byte) (Verified, error) {
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	s.mu.Lock()
	if n > s.max.Load() {
		s.max.Store(n)
	}
	s.mu.Unlock()
	if ref == s.fail {
		time.Sleep(20 * time.Millisecond)
		return Verified{}, errors.New("mirror down")
	}
	select {
	case <-ctx.Done():
		return Verified{}, ctx.Err()
	case <-time.After(5 * time.Millisecond):
	}
	return s.st.Chunk(ctx, ref, buf)
}

func TestExtractBoundedAndCancels(t *testing.T) {
	st := newMemStore()
	var raw []byte
	for i := range 64 * testChunk {
		raw = append(raw, byte(i*7/testChunk))
	}
	f, err := (&Builder{ChunkSize: testChunk, Sink: st}).BuildTar(context.Background(), bytes.NewReader(mkTar(t, file("big", string(raw)))))
	must(t, err)
	src := &slowSource{st: st, fail: ChunkRef{Size: 1}}
	out := t.TempDir()
	must(t, (&Extractor{Source: src, Parallel: 3}).Extract(context.Background(), f, out))
	if got, _ := os.ReadFile(filepath.Join(out, "big")); !bytes.Equal(got, raw) {
		t.Fatal("content differs")
	}
	if m := src.max.Load(); m > 3 || m < 2 {
		t.Errorf("max chunks in flight %d, want 2..3", m)
	}
	src = &slowSource{st: st, fail: f.Entries[0].Chunks[10]}
	start := time.Now()
	err = (&Extractor{Source: src, Parallel: 3}).Extract(context.Background(), f, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "extract big at offset 40960: mirror down") {
		t.Fatalf("Extract = %v", err)
	}
	// 64 chunks at 5 ms, 3 at a time, would take ~110 ms; stopping at the
	// tenth takes about half.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v after the first error", d)
	}
}

// TestExtractManyDirs comes back to a parent directory after a hundred
// others, and finishes every directory after its contents.
func TestExtractManyDirs(t *testing.T) {
	st := newMemStore()
	content := []byte("many dirs")
	c, blob, err := CompressChunk(SHA256, content)
	if err != nil {
		t.Fatal(err)
	}
	st.PutChunk(c, blob)
	file := func(p string) Entry {
		return Entry{Path: p, Type: TypeFile, Mode: 0o644, Size: uint64(len(content)), Chunks: []ChunkRef{c}}
	}
	f := &Flist{Entries: []Entry{{Path: "top", Type: TypeDir, Mode: 0o755}, file("top/a")}}
	for i := range 128 {
		d := fmt.Sprintf("top/d%03d", i)
		f.Entries = append(f.Entries, Entry{Path: d, Type: TypeDir, Mode: 0o755}, file(d+"/f"))
	}
	f.Entries = append(f.Entries, file("top/z"), Entry{Path: "top/zz", Type: TypeSymlink, Mode: 0o777, Target: "z"})
	out := t.TempDir()
	if err := (&Extractor{Source: st}).Extract(context.Background(), f, out); err != nil {
		t.Fatal(err)
	}
	for _, e := range f.Entries {
		if e.Type != TypeFile {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(out, e.Path)); err != nil || !bytes.Equal(b, content) {
			t.Errorf("%s: %q %v", e.Path, b, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(out, "top/zz")); err != nil || target != "z" {
		t.Errorf("top/zz: %q %v", target, err)
	}
}

// packedTree stores one pack holding "one", "two" and "three" and returns
// an flist whose files lie in it, across two directories.
func packedTree(t *testing.T) (*Flist, *memStore, ChunkRef) {
	st := newMemStore()
	c, blob, err := CompressChunk(SHA256, []byte("onetwothree"))
	must(t, err)
	_, err = st.PutChunk(c, blob)
	must(t, err)
	pk := func(p string, off, size uint32) Entry {
		return Entry{Path: p, Type: TypeFile, Mode: 0o640, MTime: 1700000000, Size: uint64(size), Pack: &PackRef{Chunk: c, Off: off}}
	}
	return &Flist{Entries: []Entry{
		{Path: "a", Type: TypeDir, Mode: 0o755},
		pk("a/one", 0, 3),
		pk("a/two", 3, 3),
		{Path: "b", Type: TypeDir, Mode: 0o700},
		pk("b/three", 6, 5),
		pk("b/z-same-as-one", 0, 3),
	}}, st, c
}

func TestExtractPacked(t *testing.T) {
	f, st, _ := packedTree(t)
	dir := t.TempDir()
	var done, total int64
	x := &Extractor{Source: st, Progress: func(d, tot int64) { done, total = d, tot }}
	must(t, x.Extract(context.Background(), f, dir))
	want := map[string]string{"a/one": "one", "a/two": "two", "b/three": "three", "b/z-same-as-one": "one"}
	for p, body := range want {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || string(b) != body {
			t.Errorf("%s: %q %v, want %q", p, b, err, body)
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, p))
		must(t, err)
		if fi.Mode().Perm() != 0o640 || fi.ModTime().Unix() != 1700000000 {
			t.Errorf("%s: mode %v mtime %v", p, fi.Mode(), fi.ModTime())
		}
	}
	if done != 14 || total != 14 {
		t.Errorf("progress %d/%d, want 14/14", done, total)
	}
	if st.fetched(t) != 1 {
		t.Errorf("pack fetched %d times, want once", st.fetched(t))
	}
}

func TestExtractPackedErrors(t *testing.T) {
	f, st, c := packedTree(t)
	blob := append([]byte(nil), st.blobs[c.ID]...)
	blob[len(blob)-1] ^= 0xff
	st.blobs[c.ID] = blob
	err := (&Extractor{Source: st}).Extract(context.Background(), f, t.TempDir())
	want := "extract a/one (packed at offset 0): " + c.String() + ": content hash mismatch"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("tampered pack: %v, want %q", err, want)
	}

	f, st, _ = packedTree(t)
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "b"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "b/three"), nil, 0o644))
	err = (&Extractor{Source: st}).Extract(context.Background(), f, dir)
	if err == nil || !strings.Contains(err.Error(), "extract b/three:") || !errors.Is(err, os.ErrExist) {
		t.Errorf("packed file over an existing one: %v", err)
	}
}

// A sparse file is built without reading its holes and extracted without
// fetching or writing its zero chunks: it stays sparse.
func TestSparseFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "disk.img")
	f, err := os.Create(p)
	must(t, err)
	data := bytes.Repeat([]byte("data"), 1<<18) // 1 MiB, at 3 MiB
	_, err = f.WriteAt(data, 3<<20)
	must(t, err)
	must(t, f.Truncate(8<<20))
	must(t, f.Close())
	st := newMemStore()
	fl, err := (&Builder{Sink: st}).BuildDir(context.Background(), dir)
	must(t, err)
	e := fl.Entries[0]
	if e.Size != 8<<20 || len(e.Chunks) != 8 {
		t.Fatalf("entry %+v", e)
	}
	zeros := 0
	for _, c := range e.Chunks {
		if isZeros(c) {
			zeros++
		}
	}
	if zeros != 7 {
		t.Fatalf("%d zero chunks, want 7", zeros)
	}
	out := t.TempDir()
	st.gets = 0
	must(t, (&Extractor{Source: st}).Extract(context.Background(), fl, out))
	if st.fetched(t) != 1 {
		t.Errorf("%d chunks fetched, want only the one with data", st.fetched(t))
	}
	got, err := os.ReadFile(filepath.Join(out, "disk.img"))
	must(t, err)
	want := make([]byte, 8<<20)
	copy(want[3<<20:], data)
	if !bytes.Equal(got, want) {
		t.Fatal("extracted content differs")
	}
	var s syscall.Stat_t
	must(t, syscall.Stat(filepath.Join(out, "disk.img"), &s))
	if s.Blocks*512 > 2<<20 {
		t.Errorf("extracted file takes %d bytes on disk, want about the 1 MiB of data", s.Blocks*512)
	}
}

// eachOpener runs test with openat2, and again as on a kernel without it
// (os.Root's walk), checking that each way was the one taken.
func eachOpener(t *testing.T, test func(t *testing.T)) {
	var calls atomic.Int64
	count := func(dirfd int, path string, how *unix.OpenHow) (int, error) {
		calls.Add(1)
		return unix.Openat2(dirfd, path, how)
	}
	enosys := func(int, string, *unix.OpenHow) (int, error) {
		calls.Add(1)
		return -1, unix.ENOSYS
	}
	for _, tc := range []struct {
		name string
		sys  func(int, string, *unix.OpenHow) (int, error)
	}{{"openat2", count}, {"os.Root", enosys}} {
		t.Run(tc.name, func(t *testing.T) {
			openat2 = tc.sys
			t.Cleanup(func() { openat2 = unix.Openat2 })
			calls.Store(0)
			test(t)
			if calls.Load() == 0 {
				t.Errorf("openat2 never called")
			}
		})
	}
}
