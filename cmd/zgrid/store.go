package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/store"
)

func cmdStore(args []string) error {
	return subcommand("store", map[string]func([]string) error{"verify": cmdStoreVerify, "gc": cmdStoreGC}, args)
}

// storeIndex is what a store's flists reference: every chunk any of them
// fetches, by ID.
type storeIndex struct {
	flists []digest.Digest
	refs   map[digest.Digest]flist.ChunkRef
	bad    []string // flists that do not verify, with why
}

// indexStore reads every flist of d; one that does not verify (its bytes
// do not hash to its name, or do not decode) is listed in bad.
func indexStore(ctx context.Context, d *store.Dir) (*storeIndex, error) {
	dir := filepath.Dir(d.FlistPath(digest.Digest{}))
	names, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	ix := &storeIndex{refs: map[digest.Digest]flist.ChunkRef{}}
	for _, n := range names {
		if strings.HasPrefix(n.Name(), ".") {
			continue // an interrupted write's temporary file
		}
		id, err := digest.Parse("sha256:" + n.Name())
		if err != nil {
			ix.bad = append(ix.bad, fmt.Sprintf("flists/%s: not an flist name", quoted(n.Name())))
			continue
		}
		f, err := d.Flist(ctx, id)
		if err != nil {
			ix.bad = append(ix.bad, fmt.Sprintf("flist %s: %v", id, err))
			continue
		}
		ix.flists = append(ix.flists, id)
		for _, c := range f.Fetches() {
			ix.refs[c.ID] = c
		}
	}
	return ix, nil
}

func cmdStoreVerify(args []string) error {
	fs := newFlags("store verify", "zgrid store verify --data DIR",
		`Check every flist of the store (its bytes hash to its name and decode)
and every chunk an flist references (present, one zstd frame within its
size bounds, content hashing to its ID), as a node would before writing a
byte. Chunks no flist references are counted, not opened. Exits 1 when
anything is wrong, naming each object.`,
		"  zgrid store verify --data ./grid")
	data := fs.String("data", "", "data directory (required)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *data == "" {
		return usageErr(fs, "need --data")
	}
	d := &store.Dir{Root: filepath.Join(*data, storeDir)}
	ctx := context.Background()
	ix, err := indexStore(ctx, d)
	if err != nil {
		return err
	}
	bad, chunkErrs := ix.bad, 0
	ids := make([]digest.Digest, 0, len(ix.refs))
	for id := range ix.refs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].Hex() < ids[j].Hex() })
	start, last := time.Now(), time.Now()
	for i, id := range ids {
		if _, err := d.Chunk(ctx, ix.refs[id], nil); err != nil {
			bad = append(bad, err.Error())
			chunkErrs++
		}
		if time.Since(last) > time.Second {
			last = time.Now()
			fmt.Fprintf(os.Stderr, "verified %d of %d chunks\n", i+1, len(ids))
		}
	}
	orphans, err := unreferenced(d, ix, 0)
	if err != nil {
		return err
	}
	for _, b := range bad {
		fmt.Println(b)
	}
	fmt.Printf("%d flists, %d chunks referenced and verified in %.1f s, %d not referenced by any flist (zgrid store gc), %d problems\n",
		len(ix.flists), len(ids)-chunkErrs, time.Since(start).Seconds(), len(orphans), len(bad))
	if len(bad) > 0 {
		return fmt.Errorf("store %s: %d problems", d.Root, len(bad))
	}
	return nil
}

// unreferenced lists the stored chunks no flist references whose file is
// older than grace.
func unreferenced(d *store.Dir, ix *storeIndex, grace time.Duration) ([]digest.Digest, error) {
	var out []digest.Digest
	now := time.Now()
	err := d.WalkChunks(func(id digest.Digest) error {
		if _, ok := ix.refs[id]; ok {
			return nil
		}
		fi, err := os.Stat(d.ChunkPath(id))
		if err != nil {
			return fmt.Errorf("stat chunk %s: %w", id, err)
		}
		if now.Sub(fi.ModTime()) >= grace {
			out = append(out, id)
		}
		return nil
	})
	return out, err
}

func cmdStoreGC(args []string) error {
	fs := newFlags("store gc", "zgrid store gc --data DIR [--grace DURATION] [--dry-run]",
		`Remove the chunks that no flist of the store references. A chunk newer
than --grace is kept: a build or upload in progress stores its chunks
before its flist, and must finish within the grace (default 24h). An flist
that does not verify stops the collection (its chunks cannot be known);
run zgrid store verify. Flists themselves are never removed.`,
		`  zgrid store gc --data ./grid --dry-run
  zgrid store gc --data ./grid --grace 1h`)
	data := fs.String("data", "", "data directory (required)")
	grace := fs.Duration("grace", 24*time.Hour, "keep unreferenced chunks younger than this")
	dry := fs.Bool("dry-run", false, "list what would be removed, remove nothing")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *data == "" || *grace < 0 {
		return usageErr(fs, "need --data, and a --grace of 0 or more")
	}
	d := &store.Dir{Root: filepath.Join(*data, storeDir)}
	ix, err := indexStore(context.Background(), d)
	if err != nil {
		return err
	}
	if len(ix.bad) > 0 {
		return fmt.Errorf("store %s: %s; not collecting (zgrid store verify)", d.Root, ix.bad[0])
	}
	orphans, err := unreferenced(d, ix, *grace)
	if err != nil {
		return err
	}
	var freed int64
	var n int
	for _, id := range orphans {
		p := d.ChunkPath(id)
		// A build that reused it since the walk made it young again.
		fi, err := os.Stat(p)
		if err != nil || time.Since(fi.ModTime()) < *grace {
			continue
		}
		freed += fi.Size()
		n++
		// By its store name: no flist says which hash an orphan's is of.
		if *dry {
			fmt.Println("would remove", flist.ChunkName(id))
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", flist.ChunkName(id), err)
		}
	}
	verb := "removed"
	if *dry {
		verb = "would remove"
	}
	fmt.Printf("%d flists reference %d chunks; %s %d unreferenced chunks older than %s (%.1f MB)\n",
		len(ix.flists), len(ix.refs), verb, n, *grace, float64(freed)/1e6)
	return nil
}
