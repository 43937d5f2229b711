package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/digest"
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
	if !strings.Contains(out, "would remove "+flist.ChunkName(old.ID)) || strings.Contains(out, young.ID.Hex()) || !d.HasChunk(old.ID) {
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

// TestFlistFormats: one tree built as a version-2 (SHA-256) and a
// version-3 (BLAKE3) flist into one store: each says its format, extracts
// to the tree, the store verifies both sets of chunks by their own hash,
// diff finds nothing, and a damaged BLAKE3 chunk is named by verify and
// refused by extract.
func TestFlistFormats(t *testing.T) {
	c := cli{t: t, bin: zgrid(t)}
	dir := t.TempDir()
	data := filepath.Join(dir, "grid")
	c.run(0, "init", "--data", data)
	tree := filepath.Join(dir, "tree")
	files := map[string]string{"big": strings.Repeat("zeroboot ", 300_000), "small": "small", "other": "another small file"}
	os.MkdirAll(tree, 0o755)
	for name, body := range files {
		os.WriteFile(filepath.Join(tree, name), []byte(body), 0o755) // executable: the release below starts /big
	}
	ids := map[string]string{}
	for _, tc := range []struct{ format, hash string }{{"2", "sha256"}, {"3", "blake3"}} {
		id := lastLineOf(c.run(0, "flist", "build", "--data", data, "--format", tc.format, tree))
		ids[tc.hash] = id
		out, _ := c.run(0, "flist", "inspect", "--data", data, id)
		if want := "format:         version " + tc.format + ", chunks named by " + tc.hash; !strings.Contains(out, want) {
			t.Errorf("inspect of the --format %s flist: %s\nwant %q", tc.format, out, want)
		}
		out = filepath.Join(dir, "out-"+tc.hash)
		c.run(0, "flist", "extract", "--data", data, id, out)
		for name, body := range files {
			if b, err := os.ReadFile(filepath.Join(out, name)); err != nil || string(b) != body {
				t.Errorf("--format %s: %s extracted as %d bytes, %v", tc.format, name, len(b), err)
			}
		}
	}
	if out, _ := c.run(0, "store", "verify", "--data", data); !strings.Contains(out, "2 flists") || !strings.Contains(out, " 0 problems") {
		t.Errorf("verify: %s", out)
	}
	if out, _ := c.run(0, "flist", "diff", "--data", data, ids["sha256"], ids["blake3"]); strings.TrimSpace(out) != "" {
		t.Errorf("diff of one tree in both formats: %q, want nothing", out)
	}
	if _, errs := c.run(2, "flist", "build", "--data", data, "--format", "4", tree); !strings.Contains(errs, "--format 4: want 1..3") {
		t.Errorf("--format 4: %s", errs)
	}

	// A release of the version-2 flist publishes quietly; one of the
	// version-3 flist warns that older nodes cannot read it.
	key, rootKey := filepath.Join(dir, "rel.key"), filepath.Join(dir, "root.key")
	c.run(0, "key", "new", "--out", key)
	c.run(0, "key", "new", "--out", rootKey)
	c.run(0, "root", "init", "--data", data, "--root-key", rootKey+".pub", "--sign", rootKey, "--release-key", key+".pub")
	for i, tc := range []struct{ hash, warn string }{
		{"sha256", ""},
		{"blake3", "warning: nodes of boot protocol below 6 cannot read this release's components (flist version 3)"},
	} {
		out, errs := c.run(0, "release", "publish", "--data", data, "--key", key, "--channel", "stable", "--version", fmt.Sprint(i+1),
			"--component", "name=root,flist="+ids[tc.hash]+",mount=/", "--entry", "/big")
		if !strings.Contains(out, "published stable version") || strings.Contains(errs, "warning:") != (tc.warn != "") || !strings.Contains(errs, tc.warn) {
			t.Errorf("publish of the %s flist: stdout %q stderr %q, want warning %q", tc.hash, out, errs, tc.warn)
		}
	}

	// Damage the chunk of "big" in the BLAKE3 flist only.
	d := &store.Dir{Root: filepath.Join(data, storeDir)}
	id, err := digest.Parse(ids["blake3"])
	if err != nil {
		t.Fatal(err)
	}
	f, err := d.Flist(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var victim flist.ChunkRef
	for _, e := range f.Entries {
		if e.Path == "big" {
			victim = e.Chunks[0]
		}
	}
	b, err := os.ReadFile(d.ChunkPath(victim.ID))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	os.WriteFile(d.ChunkPath(victim.ID), b, 0o644)
	if out, _ := c.run(1, "store", "verify", "--data", data); !strings.Contains(out, "chunk blake3:"+victim.ID.Hex()) || !strings.Contains(out, "1 problems") {
		t.Errorf("verify of a damaged BLAKE3 chunk: %s", out)
	}
	if _, errs := c.run(1, "flist", "extract", "--data", data, ids["blake3"], filepath.Join(dir, "again")); !strings.Contains(errs, "chunk blake3:"+victim.ID.Hex()) {
		t.Errorf("extract with a damaged BLAKE3 chunk: %s", errs)
	}
	c.run(0, "flist", "extract", "--data", data, ids["sha256"], filepath.Join(dir, "again-sha256"))
}
