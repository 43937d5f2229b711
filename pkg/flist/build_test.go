package flist

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/zeroboot/zeroboot/internal/testenv"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

// memStore is a Sink and a ChunkSource backed by a map.
type memStore struct {
	mu    sync.Mutex
	blobs map[digest.Digest][]byte
	puts  int
	gets  int
}

func newMemStore() *memStore { return &memStore{blobs: make(map[digest.Digest][]byte)} }

// PutChunk keeps the first copy of a chunk, like a real store.
func (m *memStore) PutChunk(ref ChunkRef, c []byte) (ChunkRef, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.puts++
	if have, ok := m.blobs[ref.ID]; ok {
		ref.CSize = uint32(len(have))
		return ref, nil
	}
	m.blobs[ref.ID] = c
	return ref, nil
}

func (m *memStore) Chunk(ctx context.Context, ref ChunkRef, buf []byte) (Verified, error) {
	m.mu.Lock()
	c, ok := m.blobs[ref.ID]
	m.gets++
	m.mu.Unlock()
	if !ok {
		return Verified{}, fmt.Errorf("%s: not in store", ref)
	}
	return OpenChunk(ref, c, buf)
}

func (m *memStore) fetched(t *testing.T) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gets
}

func (m *memStore) content(t *testing.T, e Entry) []byte {
	t.Helper()
	var b []byte
	for _, r := range e.Refs() {
		v, err := m.Chunk(context.Background(), r, nil)
		if err != nil {
			t.Fatalf("%s: %v", e.Path, err)
		}
		b = append(b, v.Bytes()...)
	}
	if e.Pack != nil {
		return b[e.Pack.Off : uint64(e.Pack.Off)+e.Size]
	}
	return b
}

const testChunk = 4096

// makeTree writes a tree with every kind of entry and file sizes around the
// chunk boundaries, all times fixed so two trees compare equal.
func makeTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	rnd := rand.New(rand.NewPCG(1, 2))
	files := map[string][]byte{}
	for i, n := range []int{0, 1, testChunk - 1, testChunk, testChunk + 1, 3*testChunk + 100} {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rnd.IntN(256))
		}
		files[fmt.Sprintf("data/f%d", i)] = b
	}
	files["etc/motd"] = bytes.Repeat([]byte("welcome to zeroboot\n"), 1000)
	files["usr/bin/su"] = []byte("#!/bin/sh\n")
	files["a-b"] = []byte("sorts before a/")
	for _, d := range []string{"data", "etc", "usr/bin", "a", "empty"} {
		must(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	for p, b := range files {
		must(t, os.WriteFile(filepath.Join(dir, p), b, 0o644))
	}
	must(t, os.WriteFile(filepath.Join(dir, "a/x"), []byte("x"), 0o600))
	files["a/x"] = []byte("x")
	// syscall.Chmod: os.Chmod would drop 04000 and 02000, which os spells
	// as ModeSetuid and ModeSetgid.
	must(t, syscall.Chmod(filepath.Join(dir, "usr/bin/su"), 0o4755))
	must(t, syscall.Chmod(filepath.Join(dir, "empty"), 0o2750))
	must(t, os.Symlink("../etc/motd", filepath.Join(dir, "usr/motd")))
	must(t, os.Symlink("/nonexistent/abs", filepath.Join(dir, "abs")))
	must(t, os.Link(filepath.Join(dir, "etc/motd"), filepath.Join(dir, "etc/motd.link")))
	files["etc/motd.link"] = files["etc/motd"]
	must(t, syscall.Mkfifo(filepath.Join(dir, "a/fifo"), 0o640))
	must(t, syscall.Mknod(filepath.Join(dir, "a/null"), syscall.S_IFCHR|0o666, 0x103))
	must(t, syscall.Chmod(filepath.Join(dir, "a/null"), 0o666)) // undo the umask
	when := time.Unix(1700000000, 0)
	must(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		ts := []unix.Timespec{unix.NsecToTimespec(when.UnixNano()), unix.NsecToTimespec(when.UnixNano())}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	}))
	return files
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestBuildDirContent(t *testing.T) {
	testenv.NeedRoot(t, "creating a device node")
	dir := t.TempDir()
	files := makeTree(t, dir)
	st := newMemStore()
	var last Progress
	calls := 0
	b := &Builder{ChunkSize: testChunk, Sink: st, Workers: 3, Progress: func(p Progress) { last = p; calls++ }}
	f, err := b.BuildDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]Entry{}
	var total int64
	for _, e := range f.Entries {
		byPath[e.Path] = e
		total += int64(e.Size)
	}
	for p, want := range files {
		e, ok := byPath[p]
		if e.Type == TypeHardlink {
			e, ok = byPath[e.Target] // the one copy of its content
		}
		if !ok || e.Type != TypeFile || e.Size != uint64(len(want)) {
			t.Fatalf("%s: %+v", p, e)
		}
		if got := st.content(t, e); !bytes.Equal(got, want) {
			t.Errorf("%s: content differs", p)
		}
		for i, c := range e.Chunks {
			if i < len(e.Chunks)-1 && c.Size != testChunk {
				t.Errorf("%s chunk %d: size %d, want %d", p, i, c.Size, testChunk)
			}
		}
	}
	checks := []struct {
		path string
		want Entry
	}{
		{"usr/motd", Entry{Type: TypeSymlink, Target: "../etc/motd"}},
		{"abs", Entry{Type: TypeSymlink, Target: "/nonexistent/abs"}},
		{"a/fifo", Entry{Type: TypeFIFO, Mode: 0o640}},
		{"a/null", Entry{Type: TypeCharDev, Mode: 0o666, Rdev: 0x103}},
		{"empty", Entry{Type: TypeDir, Mode: 0o2750}},
		{"usr/bin/su", Entry{Type: TypeFile, Mode: 0o4755}},
	}
	for _, c := range checks {
		e := byPath[c.path]
		if e.Type != c.want.Type || e.Target != c.want.Target || e.Rdev != c.want.Rdev || (c.want.Mode != 0 && e.Mode != c.want.Mode) {
			t.Errorf("%s: got %+v, want %+v", c.path, e, c.want)
		}
	}
	if byPath["data"].MTime != 1700000000 {
		t.Errorf("data mtime %d", byPath["data"].MTime)
	}
	if _, ok := byPath["."]; ok {
		t.Error("root listed as an entry")
	}
	// etc/motd.link is a second name of etc/motd: read once.
	if calls == 0 || last.Bytes != total || last.Files != int64(len(files)-1) || last.Chunks != int64(st.puts) {
		t.Errorf("final progress %+v after %d calls; want %d bytes, %d files, %d chunks", last, calls, total, len(files)-1, st.puts)
	}
}

func TestBuildDeterministic(t *testing.T) {
	testenv.NeedRoot(t, "creating a device node")
	dir := t.TempDir()
	makeTree(t, dir)
	var out [][]byte
	for _, workers := range []int{1, 4} {
		f, err := (&Builder{ChunkSize: testChunk, Sink: newMemStore(), Workers: workers}).BuildDir(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		b, err := f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	if !bytes.Equal(out[0], out[1]) {
		t.Fatal("two builds of the same tree differ")
	}
}

// goTar writes dir as a tar the way a build pipeline might, hard links as
// TypeLink to the first name seen for an inode.
func goTar(t *testing.T, dir string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[uint64]string{}
	must(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		target, _ := os.Readlink(p)
		hdr, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		hdr.Name = "./" + filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().IsRegular() {
			if first, ok := seen[st.Ino]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				seen[st.Ino] = hdr.Name
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	}))
	must(t, tw.Close())
	return buf.Bytes()
}

func TestBuildDirEqualsBuildTar(t *testing.T) {
	testenv.NeedRoot(t, "creating a device node")
	dir := t.TempDir()
	makeTree(t, dir)
	b := &Builder{ChunkSize: testChunk, Sink: newMemStore()}
	want, err := b.BuildDir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	tars := map[string][]byte{"archive/tar": goTar(t, dir)}
	if _, err := exec.LookPath("tar"); err == nil {
		// Packs follow the order files are read: a directory is read in
		// WalkDir's order, which tar(1) gives with --sort=name.
		out, err := exec.Command("tar", "--sort=name", "-C", dir, "-cf", "-", ".").Output()
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		tars["tar(1)"] = out
	} else {
		t.Log("tar(1) not installed: comparing with archive/tar output only")
	}
	for name, tb := range tars {
		got, err := b.BuildTar(context.Background(), bytes.NewReader(tb))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got.Entries, want.Entries) {
			for i := range min(len(got.Entries), len(want.Entries)) {
				if !reflect.DeepEqual(got.Entries[i], want.Entries[i]) {
					t.Errorf("%s: entry %d: tar %+v, dir %+v", name, i, got.Entries[i], want.Entries[i])
					break
				}
			}
			t.Fatalf("%s: %d entries from tar, %d from dir", name, len(got.Entries), len(want.Entries))
		}
	}
}

type tarMember struct {
	hdr  tar.Header
	body string
}

func mkTar(t *testing.T, members ...tarMember) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		h := m.hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(m.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		must(t, tw.WriteHeader(&h))
		_, err := io.WriteString(tw, m.body)
		must(t, err)
	}
	must(t, tw.Close())
	return buf.Bytes()
}

func file(name, body string) tarMember { return tarMember{tar.Header{Name: name}, body} }

func TestBuildTarNormalizes(t *testing.T) {
	st := newMemStore()
	in := mkTar(t,
		tarMember{tar.Header{Name: "./", Typeflag: tar.TypeDir}, ""},
		file("./usr/lib/x.so", "elf"),
		tarMember{tar.Header{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 5, ModTime: time.Unix(99, 0)}, ""},
		tarMember{tar.Header{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 5, ModTime: time.Unix(99, 0)}, ""},
		tarMember{tar.Header{Name: "usr/lib/y.so", Typeflag: tar.TypeLink, Linkname: "./usr/lib/x.so"}, ""},
		tarMember{tar.Header{Name: "a//b/./c/", Typeflag: tar.TypeDir, Mode: 0o711}, ""},
	)
	f, err := (&Builder{Sink: st}).BuildTar(context.Background(), bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range f.Entries {
		got = append(got, fmt.Sprintf("%s %s %o %d/%d %d", e.Path, e.Type, e.Mode, e.UID, e.GID, e.MTime))
	}
	want := []string{
		"a dir 755 0/0 0",
		"a/b dir 755 0/0 0",
		"a/b/c dir 711 0/0 0",
		"usr dir 750 5/0 99",
		"usr/lib dir 755 0/0 0",
		"usr/lib/x.so file 644 0/0 0",
		"usr/lib/y.so hardlink 0 0/0 0",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if l := f.Entries[6]; l.Target != "usr/lib/x.so" || string(st.content(t, f.Entries[5])) != "elf" {
		t.Fatalf("hard link %+v does not name its target", l)
	}
}

func TestBuildTarRefuses(t *testing.T) {
	tests := []struct {
		name string
		in   []tarMember
		want string
	}{
		{"dotdot", []tarMember{file("../evil", "x")}, `"../evil": name has a ".." component`},
		{"inner dotdot", []tarMember{file("a/../../evil", "x")}, `".." component`},
		{"absolute", []tarMember{file("/etc/passwd", "x")}, `"/etc/passwd": absolute name`},
		{"duplicate file", []tarMember{file("a", "x"), file("./a", "y")}, `"./a": duplicate name`},
		{"link to nothing", []tarMember{{tar.Header{Name: "b", Typeflag: tar.TypeLink, Linkname: "a"}, ""}}, "not a regular file earlier"},
		{"link to dir", []tarMember{{tar.Header{Name: "d", Typeflag: tar.TypeDir}, ""}, {tar.Header{Name: "b", Typeflag: tar.TypeLink, Linkname: "d"}, ""}}, "not a regular file earlier"},
		{"link escaping", []tarMember{{tar.Header{Name: "b", Typeflag: tar.TypeLink, Linkname: "../a"}, ""}}, `hard link target "../a"`},
		{"parent is a file", []tarMember{file("a", "x"), file("a/b", "y")}, `parent "a" is a file`},
		{"parent is a symlink", []tarMember{{tar.Header{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "/etc"}, ""}, file("a/passwd", "y")}, `parent "a" is a symlink`},
		{"root as file", []tarMember{file(".", "")}, "names the root"},
		{"unsupported type", []tarMember{{tar.Header{Name: "c", Typeflag: tar.TypeCont}, ""}}, "unsupported type"},
		{"long name", []tarMember{file(strings.Repeat("n", 300), "x")}, "component is 300 bytes"},
		{"uid -1", []tarMember{{tar.Header{Name: "f", Uid: OwnerUnchanged}, "x"}}, `tar entry "f": uid 4294967295 is chown's "leave unchanged" value`},
		{"gid -1", []tarMember{{tar.Header{Name: "d", Typeflag: tar.TypeDir, Gid: OwnerUnchanged}, ""}}, `tar entry "d": gid 4294967295`},
	}
	for _, tt := range tests {
		_, err := (&Builder{Sink: newMemStore()}).BuildTar(context.Background(), bytes.NewReader(mkTar(t, tt.in...)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	trunc := mkTar(t, file("a", strings.Repeat("x", 10000)))
	if _, err := (&Builder{Sink: newMemStore()}).BuildTar(context.Background(), bytes.NewReader(trunc[:5000])); err == nil || !strings.Contains(err.Error(), "build a: read at offset 0") {
		t.Errorf("truncated tar: %v", err)
	}
}

// TestStatEntryOwner: a file on disk owned by (uint32)-1 (an image made
// elsewhere; chown cannot set it here) is a build error naming the file.
func TestStatEntryOwner(t *testing.T) {
	tests := []struct {
		uid, gid uint32
		want     string
	}{
		{0, 0, ""},
		{OwnerUnchanged - 1, OwnerUnchanged - 1, ""},
		{OwnerUnchanged, 0, `build usr/bin/x: uid 4294967295 is chown's "leave unchanged" value`},
		{0, OwnerUnchanged, `build usr/bin/x: gid 4294967295`},
	}
	for _, tt := range tests {
		e, err := statEntry("usr/bin/x", &syscall.Stat_t{Mode: syscall.S_IFREG | 0o755, Uid: tt.uid, Gid: tt.gid})
		switch {
		case tt.want == "" && (err != nil || e.UID != tt.uid || e.GID != tt.gid || e.Mode != 0o755):
			t.Errorf("%d/%d: %+v, %v", tt.uid, tt.gid, e, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%d/%d: %v, want %q", tt.uid, tt.gid, err, tt.want)
		}
	}
}

func TestBuildDirRefusesSocket(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = (&Builder{Sink: newMemStore()}).BuildDir(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), "build sock: is a socket") {
		t.Fatalf("BuildDir = %v", err)
	}
}

type failSink struct{ after int }

func (s *failSink) PutChunk(ref ChunkRef, _ []byte) (ChunkRef, error) {
	if s.after == 0 {
		return ChunkRef{}, errors.New("disk full")
	}
	s.after--
	return ref, nil
}

func TestBuildErrors(t *testing.T) {
	in := mkTar(t, file("big", strings.Repeat("z", 10*testChunk)))
	_, err := (&Builder{ChunkSize: testChunk, Sink: &failSink{after: 3}, Workers: 1}).BuildTar(context.Background(), bytes.NewReader(in))
	if err == nil || !strings.Contains(err.Error(), "build big at offset 12288: put chunk sha256:") || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("sink failure: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (&Builder{Sink: newMemStore()}).BuildTar(ctx, bytes.NewReader(in)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	for _, b := range []*Builder{{ChunkSize: MaxChunkSize + 1, Sink: newMemStore()}, {ChunkSize: -1, Sink: newMemStore()}, {}} {
		if _, err := b.BuildTar(context.Background(), bytes.NewReader(in)); err == nil {
			t.Errorf("builder %+v accepted", b)
		}
	}
	if _, err := (&Builder{Sink: newMemStore()}).BuildDir(context.Background(), filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing dir accepted")
	}
}

// answerSink stores nothing and answers every put with answer(ref).
type answerSink struct{ answer func(ChunkRef) ChunkRef }

func (s answerSink) PutChunk(ref ChunkRef, _ []byte) (ChunkRef, error) { return s.answer(ref), nil }

// The flist records the reference the sink says it stored, and refuses an
// answer that names another chunk or an impossible compressed size.
func TestBuildRecordsStoredRef(t *testing.T) {
	in := mkTar(t, file("f", strings.Repeat("y", 3*testChunk)))
	grow := func(r ChunkRef) ChunkRef { r.CSize += 100; return r }
	f, err := (&Builder{ChunkSize: testChunk, Sink: answerSink{grow}}).BuildTar(context.Background(), bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := CompressChunk(SHA256, []byte(strings.Repeat("y", testChunk)))
	must(t, err)
	for _, got := range f.Entries[0].Chunks {
		if got.ID != want.ID || got.Size != want.Size || got.CSize != want.CSize+100 {
			t.Fatalf("flist records %s/%d, want the sink's CSize %d", got, got.CSize, want.CSize+100)
		}
	}
	for _, tc := range []struct {
		name   string
		answer func(ChunkRef) ChunkRef
		want   string
	}{
		{"other id", func(r ChunkRef) ChunkRef { r.ID[0] ^= 1; return r }, "sink answered with chunk"},
		{"other size", func(r ChunkRef) ChunkRef { r.Size--; return r }, "sink answered with chunk"},
		{"zero csize", func(r ChunkRef) ChunkRef { r.CSize = 0; return r }, "sink stored 0 compressed bytes"},
		{"huge csize", func(r ChunkRef) ChunkRef { r.CSize = MaxCompressedSize + 1; return r }, fmt.Sprintf("want 1..%d", MaxCompressedSize)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&Builder{ChunkSize: testChunk, Sink: answerSink{tc.answer}}).BuildTar(context.Background(), bytes.NewReader(in))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "build f at offset") {
				t.Fatalf("BuildTar = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// smallTree writes n small files of random content (plus one duplicate of
// the first) into dir, in n/50 directories.
func smallTree(t *testing.T, dir string, n int, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 1))
	var first []byte
	for i := range n {
		b := make([]byte, 200+rnd.IntN(3000))
		for j := range b {
			b[j] = byte(rnd.IntN(256))
		}
		p := filepath.Join(dir, fmt.Sprintf("d%02d/f%04d", i/50, i))
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, b, 0o644))
		if first == nil {
			first = b
		}
	}
	must(t, os.WriteFile(filepath.Join(dir, "d00/copy"), first, 0o644))
}

func packs(f *Flist) map[digest.Digest]bool {
	m := map[digest.Digest]bool{}
	for _, e := range f.Entries {
		if e.Pack != nil {
			m[e.Pack.Chunk.ID] = true
		}
	}
	return m
}

func TestBuildPacks(t *testing.T) {
	dir := t.TempDir()
	smallTree(t, dir, 600, 1)
	must(t, os.WriteFile(filepath.Join(dir, "big"), bytes.Repeat([]byte("x"), 70<<10), 0o644))
	st := newMemStore()
	f, err := (&Builder{Sink: st, Workers: 2}).BuildDir(context.Background(), dir)
	must(t, err)
	byPath := map[string]Entry{}
	for _, e := range f.Entries {
		byPath[e.Path] = e
	}
	if e := byPath["big"]; e.Pack != nil || len(e.Chunks) != 1 {
		t.Errorf("a file over DefaultPackLimit is packed: %+v", e)
	}
	if a, b := byPath["d00/f0000"].Pack, byPath["d00/copy"].Pack; a == nil || b == nil || *a != *b {
		t.Errorf("identical small files packed twice: %+v %+v", a, b)
	}
	for p, e := range byPath {
		if e.Type != TypeFile {
			continue
		}
		want, err := os.ReadFile(filepath.Join(dir, p))
		must(t, err)
		if !bytes.Equal(st.content(t, e), want) {
			t.Errorf("%s: content differs", p)
		}
	}
	// 600 files of 1.7 KB on average: about 1 MB, cut by content about
	// every 64 files, so a reader fetches tens of chunks, not 600.
	if n := len(packs(f)); n < 3 || n > 40 {
		t.Errorf("%d packs for 600 small files", n)
	}
	b, err := f.Encode()
	must(t, err)
	if b[4] != VersionPacked {
		t.Errorf("packed flist encoded as version %d", b[4])
	}

	plain, err := (&Builder{Sink: st, PackLimit: -1}).BuildDir(context.Background(), dir)
	must(t, err)
	if len(packs(plain)) != 0 {
		t.Error("PackLimit -1 packed files")
	}
	if b, err := plain.Encode(); err != nil || b[4] != VersionPlain {
		t.Errorf("unpacked flist: version %d, %v", b[4], err)
	}
	if _, err := (&Builder{Sink: st, ChunkSize: 4096, PackLimit: 8192}).BuildDir(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "pack limit 8192 over the chunk size 4096") {
		t.Errorf("pack limit over chunk size: %v", err)
	}
}

// One file added to a tree changes the pack it falls in, not every pack
// after it: releases of a tree keep sharing their packs.
func TestBuildPacksResync(t *testing.T) {
	dir := t.TempDir()
	smallTree(t, dir, 2000, 2)
	st := newMemStore()
	b := &Builder{Sink: st}
	before, err := b.BuildDir(context.Background(), dir)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "d05/added"), []byte("a new small file"), 0o644))
	after, err := b.BuildDir(context.Background(), dir)
	must(t, err)
	old, cur := packs(before), packs(after)
	changed := 0
	for id := range cur {
		if !old[id] {
			changed++
		}
	}
	if changed == 0 || changed > 3 {
		t.Errorf("%d of %d packs changed after adding one file", changed, len(cur))
	}
}

// A file with hard links is stored once, whatever order its names are
// read in: the first name in path order holds it, the others link to it.
func TestBuildHardLinks(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "d"), 0o755))
	big := bytes.Repeat([]byte("0123456789"), 20_000)
	must(t, os.WriteFile(filepath.Join(dir, "d/read-first"), big, 0o640))
	must(t, os.Link(filepath.Join(dir, "d/read-first"), filepath.Join(dir, "d-link")))
	must(t, os.Link(filepath.Join(dir, "d/read-first"), filepath.Join(dir, "d/b-link")))
	st := newMemStore()
	f, err := (&Builder{Sink: st}).BuildDir(context.Background(), dir)
	must(t, err)
	var got []string
	var bytes uint64
	for _, e := range f.Entries {
		got = append(got, e.Path+" "+e.Type.String()+" "+e.Target)
		bytes += e.Size
	}
	// WalkDir reads d/read-first (inside d) before d-link, which sorts
	// first in byte order ('-' < '/').
	want := []string{"d dir ", "d-link file ", "d/b-link hardlink d-link", "d/read-first hardlink d-link"}
	if !slices.Equal(got, want) {
		t.Fatalf("entries %q, want %q", got, want)
	}
	if bytes != uint64(len(big)) {
		t.Errorf("content %d bytes, want %d: counted once", bytes, len(big))
	}
	enc, err := f.Encode()
	must(t, err)
	if enc[4] != VersionPacked {
		t.Errorf("hard links encoded as version %d", enc[4])
	}
	out := t.TempDir()
	must(t, (&Extractor{Source: st}).Extract(context.Background(), f, out))
	var ino []uint64
	for _, p := range []string{"d-link", "d/b-link", "d/read-first"} {
		var s syscall.Stat_t
		must(t, syscall.Stat(filepath.Join(out, p), &s))
		ino = append(ino, s.Ino)
		if s.Nlink != 3 || s.Mode&0o777 != 0o640 || s.Size != int64(len(big)) {
			t.Errorf("%s: nlink %d mode %o size %d", p, s.Nlink, s.Mode&0o777, s.Size)
		}
	}
	if ino[0] != ino[1] || ino[1] != ino[2] {
		t.Errorf("inodes %v: not one file", ino)
	}
	// Version 1, for older readers: every name a file of its own.
	v1, err := (&Builder{Sink: st, Version: VersionPlain}).BuildDir(context.Background(), dir)
	must(t, err)
	for _, e := range v1.Entries {
		if e.Type == TypeHardlink || e.Pack != nil || (e.Type == TypeFile && e.Size != uint64(len(big))) {
			t.Errorf("version 1 build: %+v", e)
		}
	}
	if enc, err := v1.Encode(); err != nil || enc[4] != VersionPlain {
		t.Errorf("version 1 build encoded as %v, %v", enc[:6], err)
	}
	if _, err := (&Builder{Sink: st, Version: 4}).BuildDir(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "flist version 4, this builder writes 1..3") {
		t.Errorf("version 4: %v", err)
	}
}

func TestBuildExcludeSkipAndRoots(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"keep/a", "keep/cache/x", "logs/old.log", "sub/tmp/y", "sub/z"} {
		must(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644))
	}
	l, err := net.Listen("unix", filepath.Join(dir, "keep/sock"))
	must(t, err)
	defer l.Close()
	var skipped []string
	b := &Builder{Sink: newMemStore(), Exclude: []string{"cache", "*.log", "sub/tmp"},
		Skip: func(p string, err error) bool { skipped = append(skipped, p+": "+err.Error()); return true }}
	paths := func(f *Flist) (out []string) {
		for _, e := range f.Entries {
			out = append(out, e.Path)
		}
		return out
	}
	want := []string{"keep", "keep/a", "logs", "sub", "sub/z"}
	f, err := b.BuildDir(context.Background(), dir)
	must(t, err)
	if got := paths(f); !slices.Equal(got, want) {
		t.Errorf("BuildDir with excludes: %q, want %q", got, want)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0], "keep/sock: build keep/sock: is a socket") {
		t.Errorf("skipped %q", skipped)
	}
	// A symlink to the tree packs the tree.
	link := filepath.Join(t.TempDir(), "link")
	must(t, os.Symlink(dir, link))
	if f, err := b.BuildDir(context.Background(), link); err != nil || !slices.Equal(paths(f), want) {
		t.Errorf("BuildDir of a symlink to the tree: %v %v", err, paths(f))
	}
	// The same patterns apply to a tar.
	out, err := exec.Command("tar", "--sort=name", "--exclude=sock", "-C", dir, "-cf", "-", ".").Output()
	must(t, err)
	b.Skip = nil
	f, err = b.BuildTar(context.Background(), bytes.NewReader(out))
	must(t, err)
	if got := paths(f); !slices.Equal(got, want) {
		t.Errorf("BuildTar with excludes: %q, want %q", got, want)
	}
	// Without Skip the socket fails the build, naming it.
	if _, err := b.BuildDir(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "build keep/sock: is a socket") {
		t.Errorf("socket without Skip: %v", err)
	}
	for _, in := range [][]byte{nil, make([]byte, 1024)} {
		if _, err := b.BuildTar(context.Background(), bytes.NewReader(in)); err == nil || !strings.Contains(err.Error(), "has no entries") {
			t.Errorf("tar of %d zero bytes: %v", len(in), err)
		}
	}
	if _, err := (&Builder{Sink: newMemStore(), Exclude: []string{"["}}).BuildDir(context.Background(), dir); err == nil || !strings.Contains(err.Error(), `exclude pattern "["`) {
		t.Errorf("bad pattern: %v", err)
	}
}

func TestSkipHole(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(p)
	must(t, err)
	defer f.Close()
	_, err = f.WriteAt([]byte("x"), 2<<20)
	must(t, err)
	must(t, f.Truncate(4<<20))
	s := sparseFile{f}
	for _, tc := range []struct {
		off, n int64
		hole   bool
	}{
		{0, 1 << 20, true},        // before the data
		{1 << 20, 1 << 20, true},  // ends where the data's block starts
		{2 << 20, 1 << 20, false}, // the data
		{3 << 20, 1 << 20, true},  // after the last data: ENXIO
	} {
		hole, err := s.skipHole(tc.off, tc.n)
		if err != nil || hole != tc.hole {
			t.Errorf("skipHole(%d, %d) = %v, %v; want %v", tc.off, tc.n, hole, err, tc.hole)
		}
		pos, _ := f.Seek(0, io.SeekCurrent)
		if want := tc.off + map[bool]int64{true: tc.n}[tc.hole]; pos != want {
			t.Errorf("skipHole(%d, %d) left the offset at %d, want %d", tc.off, tc.n, pos, want)
		}
	}
}
