package bench

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// cachedTree returns a generated tree of about size bytes under the system
// temp dir (zeroboot-delivery-bench-v1-<size>), generating it the first
// time. A .done file beside it records the content size, so an interrupted
// generation is redone rather than trusted. Delete both to reclaim space.
func cachedTree(tb testing.TB, size int64) (string, int64) {
	tb.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("zeroboot-delivery-bench-v1-%d", size))
	done := dir + ".done"
	if s, err := os.ReadFile(done); err == nil {
		if n, err := strconv.ParseInt(string(s), 10, 64); err == nil {
			return dir, n
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("generating %d MB tree in %s", size>>20, dir)
	total, err := genTree(dir, size)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(done, []byte(strconv.FormatInt(total, 10)), 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir, total
}

// genTree writes a deterministic tree of about size content bytes into dir
// and returns the exact content size: 40% small files (1-64 KiB, half
// text-like, half random), 60% large files (4-24 MiB of 256 KiB stretches,
// each text-like or random), so about half the bytes compress. A few odd
// entries keep the extractor honest: an empty file, an executable, a
// duplicate (same chunks referenced twice) and a symlink.
func genTree(dir string, size int64) (int64, error) {
	g := &gen{
		dir:    dir,
		choose: rand.New(rand.NewPCG(2026, 7)),
		noise:  rand.NewChaCha8([32]byte{'d', 'e', 'l', 'i', 'v', 'e', 'r', 'y'}),
	}
	g.words = make([]string, 512)
	for i := range g.words {
		w := make([]byte, 2+g.choose.IntN(9))
		for j := range w {
			w[j] = 'a' + byte(g.choose.IntN(26))
		}
		g.words[i] = string(w)
	}
	var total int64
	for i := 0; total < size*4/10; i++ {
		n, err := g.file(fmt.Sprintf("small/d%03d/f%05d", i/100, i), 0o644, 1<<10+g.choose.IntN(63<<10), i%2 == 1)
		if err != nil {
			return 0, err
		}
		total += n
	}
	for i := 0; total < size; i++ {
		n := min(int64(4<<20+g.choose.IntN(20<<20)), size-total+1)
		k, err := g.large(fmt.Sprintf("large/blob%02d", i), n)
		if err != nil {
			return 0, err
		}
		total += k
	}
	n, err := g.file("bin/tool", 0o755, 3<<10, false)
	if err != nil {
		return 0, err
	}
	total += n
	if _, err := g.file("etc/empty", 0o644, 0, false); err != nil {
		return 0, err
	}
	dup, err := os.ReadFile(filepath.Join(dir, "small/d000/f00001"))
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/copy"), dup, 0o644); err != nil {
		return 0, err
	}
	total += int64(len(dup))
	if err := os.Symlink("../bin/tool", filepath.Join(dir, "etc/tool-link")); err != nil {
		return 0, err
	}
	return total, nil
}

type gen struct {
	dir    string
	choose *rand.Rand
	noise  *rand.ChaCha8
	words  []string
}

func (g *gen) text(n int) []byte {
	var buf bytes.Buffer
	for buf.Len() < n {
		buf.WriteString(g.words[g.choose.IntN(len(g.words))])
		if g.choose.IntN(12) == 0 {
			buf.WriteByte('\n')
		} else {
			buf.WriteByte(' ')
		}
	}
	return buf.Bytes()[:n]
}

func (g *gen) random(n int) []byte {
	p := make([]byte, n)
	g.noise.Read(p)
	return p
}

func (g *gen) create(name string, mode os.FileMode) (*os.File, error) {
	p := filepath.Join(g.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
}

func (g *gen) file(name string, mode os.FileMode, n int, random bool) (int64, error) {
	f, err := g.create(name, mode)
	if err != nil {
		return 0, err
	}
	content := g.text(n)
	if random {
		content = g.random(n)
	}
	k, err := f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return int64(k), err
}

func (g *gen) large(name string, n int64) (int64, error) {
	f, err := g.create(name, 0o644)
	if err != nil {
		return 0, err
	}
	var k int64
	for k < n && err == nil {
		part := int(min(n-k, 256<<10))
		content := g.text(part)
		if g.choose.IntN(2) == 0 {
			content = g.random(part)
		}
		var m int
		m, err = f.Write(content)
		k += int64(m)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return k, err
}

// sameTree reports the first difference between two trees: the set of
// names, each entry's type, permission bits and mtime (seconds, as an
// flist keeps it), symlink targets, and regular files byte for byte.
func sameTree(want, got string) error {
	names := map[string]bool{}
	err := filepath.WalkDir(got, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(got, p)
		names[rel] = true
		return err
	})
	if err != nil {
		return err
	}
	err = filepath.WalkDir(want, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(want, p)
		if err != nil {
			return err
		}
		if !names[rel] {
			return fmt.Errorf("%s: missing from the extracted tree", rel)
		}
		delete(names, rel)
		if rel == "." { // the destination is ours, not the flist's
			return nil
		}
		if err := sameEntry(p, filepath.Join(got, rel)); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for rel := range names {
		return fmt.Errorf("%s: extracted but not in the source", rel)
	}
	return nil
}

func sameEntry(want, got string) error {
	wi, err := os.Lstat(want)
	if err != nil {
		return err
	}
	gi, err := os.Lstat(got)
	if err != nil {
		return err
	}
	if wi.Mode() != gi.Mode() {
		return fmt.Errorf("mode %v, want %v", gi.Mode(), wi.Mode())
	}
	// Symlink times are not part of what a component promises.
	if wi.Mode().Type() != fs.ModeSymlink && wi.ModTime().Unix() != gi.ModTime().Unix() {
		return fmt.Errorf("mtime %v, want %v", gi.ModTime().Unix(), wi.ModTime().Unix())
	}
	switch {
	case wi.Mode().Type() == fs.ModeSymlink:
		wt, err := os.Readlink(want)
		if err != nil {
			return err
		}
		gt, err := os.Readlink(got)
		if err != nil {
			return err
		}
		if wt != gt {
			return fmt.Errorf("symlink to %q, want %q", gt, wt)
		}
	case wi.Mode().IsRegular():
		if wi.Size() != gi.Size() {
			return fmt.Errorf("size %d, want %d", gi.Size(), wi.Size())
		}
		if ws, gs := wi.Sys().(*syscall.Stat_t), gi.Sys().(*syscall.Stat_t); ws.Uid != gs.Uid && os.Geteuid() == 0 {
			return fmt.Errorf("owner %d, want %d", gs.Uid, ws.Uid)
		}
		return sameContent(want, got)
	}
	return nil
}

func sameContent(want, got string) error {
	wf, err := os.Open(want)
	if err != nil {
		return err
	}
	defer wf.Close()
	gf, err := os.Open(got)
	if err != nil {
		return err
	}
	defer gf.Close()
	wb, gb := make([]byte, 256<<10), make([]byte, 256<<10)
	for off := int64(0); ; {
		wn, werr := io.ReadFull(wf, wb)
		gn, gerr := io.ReadFull(gf, gb)
		if wn != gn || !bytes.Equal(wb[:wn], gb[:gn]) {
			i := 0
			for i < min(wn, gn) && wb[i] == gb[i] {
				i++
			}
			return fmt.Errorf("content differs at byte %d", off+int64(i))
		}
		off += int64(wn)
		if werr == io.EOF || werr == io.ErrUnexpectedEOF {
			return nil
		}
		if werr != nil {
			return werr
		}
		if gerr != nil {
			return gerr
		}
	}
}
