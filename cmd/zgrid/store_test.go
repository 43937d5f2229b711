package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/store"
)

func TestStoreVerifyAndGC(t *testing.T) {
	c := cli{t: t, bin: zgrid(t)}
	dir := t.TempDir()
	data := filepath.Join(dir, "grid")
	c.run(0, "init", "--data", data)
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(tree, 0o755)
	os.WriteFile(filepath.Join(tree, "big"), []byte(strings.Repeat("zeroboot ", 300_000)), 0o644)
	os.WriteFile(filepath.Join(tree, "small"), []byte("small"), 0o644)
	c.run(0, "flist", "build", "--data", data, tree)

	d := &store.Dir{Root: filepath.Join(data, storeDir)}
	put := func(content string, age time.Duration) flist.ChunkRef {
		ref, blob, err := flist.CompressChunk(flist.SHA256, []byte(content))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.PutChunk(ref, blob); err != nil {
			t.Fatal(err)
		}
		when := time.Now().Add(-age)
		os.Chtimes(d.ChunkPath(ref.ID), when, when)
		return ref
	}
	old, young := put("an orphan from a withdrawn build", 48*time.Hour), put("an upload in progress", time.Minute)

	out, _ := c.run(0, "store", "verify", "--data", data)
	if !strings.Contains(out, "1 flists, 4 chunks referenced and verified") || !strings.Contains(out, "2 not referenced") {
		t.Errorf("verify: %s", out)
	}
	out, _ = c.run(0, "store", "gc", "--data", data, "--dry-run")
	if !strings.Contains(out, "would remove "+old.ID.String()) || strings.Contains(out, young.ID.String()) || !d.HasChunk(old.ID) {
		t.Errorf("gc --dry-run: %s", out)
	}
	out, _ = c.run(0, "store", "gc", "--data", data, "--grace", "1h")
	if !strings.Contains(out, "removed 1 unreferenced chunks") || d.HasChunk(old.ID) || !d.HasChunk(young.ID) {
		t.Errorf("gc: %s", out)
	}
	// The flist still extracts whole after the collection.
	c.run(0, "flist", "extract", "--data", data, lastLineOf(c.run(0, "flist", "build", "--data", data, tree)), filepath.Join(dir, "out"))

	// A damaged referenced chunk is named, and stops a collection.
	var victim string
	filepath.WalkDir(filepath.Join(d.Root, "chunks"), func(p string, e os.DirEntry, err error) error {
		if e != nil && e.Type().IsRegular() && !strings.Contains(p, young.ID.Hex()) {
			victim = p
		}
		return nil
	})
	b, _ := os.ReadFile(victim)
	b[len(b)/2] ^= 0xff
	os.WriteFile(victim, b, 0o644)
	out, _ = c.run(1, "store", "verify", "--data", data)
	if !strings.Contains(out, filepath.Base(victim)) || !strings.Contains(out, "1 problems") {
		t.Errorf("verify of a damaged chunk: %s", out)
	}
	os.WriteFile(filepath.Join(d.Root, "flists", strings.Repeat("0", 64)), []byte("junk"), 0o644)
	if _, errs := c.run(1, "store", "gc", "--data", data); !strings.Contains(errs, "not collecting") {
		t.Errorf("gc with a bad flist: %s", errs)
	}
}

func lastLineOf(out, _ string) string {
	l := strings.Split(strings.TrimSpace(out), "\n")
	return l[len(l)-1]
}
