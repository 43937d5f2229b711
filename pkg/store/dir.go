// Package store is the server's side of a content store: content-addressed
// zstd chunks named by the SHA-256 of their uncompressed bytes, and flist
// metadata named by the SHA-256 of the stored bytes, in the layout of
// docs/flist.md (flist.ChunkName, flist.FlistName). Dir keeps the tree on
// disk and never stores bytes it has not verified; Uploader writes to a
// running server's. Nodes read a store with pkg/fetch, which does not
// depend on this package.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/zeroboot/zeroboot/pkg/atomicfile"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
)

const tempPrefix = atomicfile.TempPrefix

// Dir is a store tree on local disk rooted at Root.
type Dir struct {
	Root string
}

// ChunkPath is where chunk id lives: Root/chunks/<2 hex>/<64 hex>.
func (d *Dir) ChunkPath(id digest.Digest) string {
	return filepath.Join(d.Root, filepath.FromSlash(flist.ChunkName(id)))
}

// FlistPath is where flist metadata id lives: Root/flists/<64 hex>.
func (d *Dir) FlistPath(id digest.Digest) string {
	return filepath.Join(d.Root, filepath.FromSlash(flist.FlistName(id)))
}

// PutChunk verifies compressed against ref and stores it unless a valid
// copy of the chunk is already stored, and returns the reference as stored:
// ref with CSize the length of the copy on disk. The first valid copy wins
// and is never replaced, so the bytes at a chunk's URL never change (the
// server serves them as immutable); a damaged stored file is replaced. It
// implements flist.Sink and is safe for concurrent use.
//
// Within one process check-and-write is serialised per chunk. Across
// processes sharing Root, a chunk nobody stored yet is linked into place
// without replacing (atomicfile.WriteNew), so of two racing writers one
// wins and the other reads back and answers with the winner's copy. Only
// the repair of a damaged copy renames over it.
func (d *Dir) PutChunk(ref flist.ChunkRef, compressed []byte) (flist.ChunkRef, error) {
	if _, err := flist.OpenChunk(ref, compressed, nil); err != nil {
		return ref, fmt.Errorf("store %s: refusing unverified bytes: %w", ref, err)
	}
	mu := &chunkLocks[ref.ID[0]]
	mu.Lock()
	defer mu.Unlock()
	stored, err := d.stored(ref)
	p := d.ChunkPath(ref.ID)
	if err == nil {
		// Reused: its time is now, so a collection running beside this
		// build (zgrid store gc keeps chunks younger than its grace) does
		// not take a chunk the flist being built is about to reference.
		now := time.Now()
		if err := os.Chtimes(p, now, now); err != nil {
			return ref, fmt.Errorf("store %s: %w", ref, err)
		}
		return stored, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		err = writeNew(p, compressed)
		if errors.Is(err, fs.ErrExist) {
			err = nil // another process stored it first: answer with its copy
		}
	} else {
		err = writeAtomic(p, compressed) // repair a damaged copy
	}
	if err != nil {
		return ref, fmt.Errorf("store %s: %w", ref, err)
	}
	if stored, err = d.stored(ref); err != nil {
		return ref, fmt.Errorf("store %s: after writing: %w", ref, err)
	}
	return stored, nil
}

// chunkLocks serialise PutChunk's check-and-write per chunk in this process,
// striped by the id's first byte: shared by every Dir, whatever its Root,
// so two Dir values for one tree still exclude each other.
var chunkLocks [256]sync.Mutex

// stored reads the stored copy of ref in one open and verifies it with its
// own length as CSize, returning ref as stored. Any error (missing,
// unreadable, damaged) means there is no copy worth keeping.
func (d *Dir) stored(ref flist.ChunkRef) (flist.ChunkRef, error) {
	b, err := readBounded(d.ChunkPath(ref.ID), flist.MaxCompressedSize)
	if err != nil {
		return ref, err
	}
	ref.CSize = uint32(len(b))
	if _, err := flist.OpenChunk(ref, b, nil); err != nil {
		return ref, err
	}
	return ref, nil
}

// PutFlist stores encoded flist metadata under its digest. The bytes must
// decode as an flist: a store holds only what a node could use.
func (d *Dir) PutFlist(encoded []byte) (digest.Digest, error) {
	id := digest.Of(encoded)
	if len(encoded) > flist.MaxMetadataSize {
		return id, fmt.Errorf("store flist %s: %d bytes, at most %d", id.Short(), len(encoded), flist.MaxMetadataSize)
	}
	if _, err := flist.Decode(encoded); err != nil {
		return id, fmt.Errorf("store flist %s: %w", id.Short(), err)
	}
	p := d.FlistPath(id)
	if same, err := sameFile(p, encoded); err != nil {
		return id, fmt.Errorf("store flist %s: %w", id.Short(), err)
	} else if same {
		return id, nil
	}
	if err := writeAtomic(p, encoded); err != nil {
		return id, fmt.Errorf("store flist %s: %w", id.Short(), err)
	}
	return id, nil
}

// HasChunk reports whether a file for chunk id exists. It says nothing about
// its content; Chunk verifies.
func (d *Dir) HasChunk(id digest.Digest) bool {
	fi, err := os.Stat(d.ChunkPath(id))
	return err == nil && fi.Mode().IsRegular()
}

// Chunk reads chunk ref and returns its verified uncompressed bytes, in
// buf's memory when it is large enough. It implements flist.ChunkSource.
func (d *Dir) Chunk(ctx context.Context, ref flist.ChunkRef, buf []byte) (flist.Verified, error) {
	if err := ctx.Err(); err != nil {
		return flist.Verified{}, err
	}
	if ref.CSize == 0 || ref.CSize > flist.MaxCompressedSize {
		return flist.Verified{}, fmt.Errorf("read %s: declared compressed size %d outside 1..%d", ref, ref.CSize, flist.MaxCompressedSize)
	}
	b, err := readBounded(d.ChunkPath(ref.ID), int64(ref.CSize))
	if err != nil {
		return flist.Verified{}, fmt.Errorf("read %s: %w", ref, err)
	}
	v, err := flist.OpenChunk(ref, b, buf)
	if err != nil {
		return flist.Verified{}, fmt.Errorf("read %s from %s: %w", ref, d.Root, err)
	}
	return v, nil
}

// FlistBytes reads flist metadata id and returns it once its digest matches.
func (d *Dir) FlistBytes(ctx context.Context, id digest.Digest) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := readBounded(d.FlistPath(id), flist.MaxMetadataSize)
	if err != nil {
		return nil, fmt.Errorf("read flist %s: %w", id.Short(), err)
	}
	if got := digest.Of(b); got != id {
		return nil, fmt.Errorf("read flist %s from %s: content hash is %s", id.Short(), d.Root, got)
	}
	return b, nil
}

// Flist reads, verifies and decodes flist metadata id.
func (d *Dir) Flist(ctx context.Context, id digest.Digest) (*flist.Flist, error) {
	return decodeFlist(d.FlistBytes(ctx, id))
}

func decodeFlist(b []byte, err error) (*flist.Flist, error) {
	if err != nil {
		return nil, err
	}
	return flist.Decode(b)
}

// WalkChunks calls fn with the id of every stored chunk, in name order.
// Temporary files of interrupted writes are skipped; any other stray file is
// an error naming it.
func (d *Dir) WalkChunks(fn func(id digest.Digest) error) error {
	top := filepath.Join(d.Root, "chunks")
	prefixes, err := os.ReadDir(top)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("walk chunks: %w", err)
	}
	for _, p := range prefixes {
		names, err := os.ReadDir(filepath.Join(top, p.Name()))
		if err != nil {
			return fmt.Errorf("walk chunks: %w", err)
		}
		for _, n := range names {
			if strings.HasPrefix(n.Name(), tempPrefix) {
				continue
			}
			id, err := digest.Parse(n.Name())
			if err != nil || !n.Type().IsRegular() || id.Hex()[:2] != p.Name() {
				return fmt.Errorf("walk chunks: unexpected %s in the store", filepath.Join(top, p.Name(), n.Name()))
			}
			if err := fn(id); err != nil {
				return err
			}
		}
	}
	return nil
}

// readBounded reads a regular file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s: %d bytes, at most %d", path, fi.Size(), max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: grew past %d bytes while read", path, max)
	}
	return b, nil
}

// sameFile reports whether path already holds exactly b.
func sameFile(path string, b []byte) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() || fi.Size() != int64(len(b)) {
		return false, nil
	}
	have, err := readBounded(path, int64(len(b)))
	if err != nil {
		return false, nil
	}
	return string(have) == string(b), nil
}

// writeAtomic makes path hold b or leaves it as it was (atomicfile.Write),
// creating missing fan-out directories durably first.
func writeAtomic(path string, b []byte) error {
	if err := mkdirDurable(filepath.Dir(path)); err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o644)
}

// writeNew creates path with b, never replacing a file there
// (atomicfile.WriteNew), creating missing fan-out directories first.
func writeNew(path string, b []byte) error {
	if err := mkdirDurable(filepath.Dir(path)); err != nil {
		return err
	}
	return atomicfile.WriteNew(path, b, 0o644)
}

// mkdirDurable creates dir and its parents, syncing the parent of each new
// directory so a chunk renamed into it is not lost with the directory.
func mkdirDurable(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	if err := mkdirDurable(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(dir))
}
