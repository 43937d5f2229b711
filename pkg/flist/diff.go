package flist

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

// Change is one path that differs between two flists.
type Change struct {
	Path string
	Kind ChangeKind
	// What says which fields differ for a ChangeModified entry, in
	// Entry field order ("type", "mode", "owner", "mtime", "content",
	// "pack", "target", "rdev"). "pack" is a packed file of unchanged size
	// whose content now lies elsewhere, or a file of unchanged size whose
	// chunks the two flists name by different hashes (a version-2 and a
	// version-3 flist): its bytes were not compared.
	What []string
}

// ChangeKind is how a path changed.
type ChangeKind byte

// Change kinds, as `zgrid flist diff` prints them.
const (
	ChangeAdded    ChangeKind = '+'
	ChangeRemoved  ChangeKind = '-'
	ChangeModified ChangeKind = '~'
)

func (c Change) String() string {
	if c.Kind == ChangeModified {
		return fmt.Sprintf("%c %s (%s)", c.Kind, c.Path, strings.Join(c.What, " "))
	}
	return fmt.Sprintf("%c %s", c.Kind, c.Path)
}

// Diff lists the paths added, removed or modified from a to b, in path
// order. Both must be valid (sorted by path), as Decode returns them.
func Diff(a, b *Flist) []Change {
	var out []Change
	i, j := 0, 0
	for i < len(a.Entries) || j < len(b.Entries) {
		switch {
		case j == len(b.Entries) || (i < len(a.Entries) && a.Entries[i].Path < b.Entries[j].Path):
			out = append(out, Change{Path: a.Entries[i].Path, Kind: ChangeRemoved})
			i++
		case i == len(a.Entries) || b.Entries[j].Path < a.Entries[i].Path:
			out = append(out, Change{Path: b.Entries[j].Path, Kind: ChangeAdded})
			j++
		default:
			if what := differs(&a.Entries[i], &b.Entries[j]); len(what) > 0 {
				out = append(out, Change{Path: a.Entries[i].Path, Kind: ChangeModified, What: what})
			}
			i++
			j++
		}
	}
	return out
}

func differs(a, b *Entry) []string {
	var what []string
	add := func(diff bool, name string) {
		if diff {
			what = append(what, name)
		}
	}
	add(a.Type != b.Type, "type")
	add(a.Mode != b.Mode, "mode")
	add(a.UID != b.UID || a.GID != b.GID, "owner")
	add(a.MTime != b.MTime, "mtime")
	content, moved := contentDiffers(a, b)
	add(content, "content")
	add(moved, "pack")
	add(a.Target != b.Target, "target")
	add(a.Rdev != b.Rdev, "rdev")
	return what
}

// contentDiffers compares content by chunk IDs (CSize may differ for the
// same bytes). A packed file's own bytes have no ID, so one of the same
// size that now lies elsewhere is "moved": its bytes were not compared.
// So is one whose chunks are named by another hash: IDs of two functions
// say nothing about each other.
func contentDiffers(a, b *Entry) (content, moved bool) {
	sameID := func(x, y ChunkRef) bool { return x.ID == y.ID && x.Hash == y.Hash && x.Size == y.Size }
	switch {
	case a.Size != b.Size:
		return true, false
	case a.Size > 0 && a.Refs()[0].Hash != b.Refs()[0].Hash:
		return false, true
	case a.Pack == nil && b.Pack == nil:
		return !slices.EqualFunc(a.Chunks, b.Chunks, sameID), false
	case a.Pack != nil && b.Pack != nil && a.Pack.Off == b.Pack.Off && sameID(a.Pack.Chunk, b.Pack.Chunk):
		return false, false
	}
	return false, true
}

// Fetches lists the chunks an Extractor fetches for f, one per request:
// every chunk of every unpacked file, and each pack once.
func (f *Flist) Fetches() []ChunkRef {
	var out []ChunkRef
	packs := map[ChunkRef]bool{}
	for i := range f.Entries {
		e := &f.Entries[i]
		out = append(out, e.Chunks...)
		if e.Pack != nil && !packs[e.Pack.Chunk] {
			packs[e.Pack.Chunk] = true
			out = append(out, e.Pack.Chunk)
		}
	}
	return out
}

// Summary counts what an flist holds.
type Summary struct {
	Version  uint16 // the encoding: the oldest that holds the flist
	Hash     Hash   // what names its chunks
	Entries  int
	ByType   map[Type]int
	Bytes    uint64 // file content
	Chunks   int    // chunk references
	Packed   int    // files whose content lies in a shared chunk
	Unique   int    // distinct chunks: what a fresh extraction fetches at most
	Wire     uint64 // compressed bytes of the distinct chunks, at most
	Fetches  int    // chunk requests a fresh extraction makes (len(Fetches()))
	Setuid   int    // entries with setuid or setgid bits
	MaxChunk uint32
}

// Summarize counts f's entries, bytes and chunks.
func Summarize(f *Flist) Summary {
	s := Summary{Version: f.version(), Hash: f.Hash, Entries: len(f.Entries), ByType: map[Type]int{}}
	seen := map[ChunkRef]bool{}
	for i := range f.Entries {
		e := &f.Entries[i]
		s.ByType[e.Type]++
		s.Bytes += e.Size
		if e.Mode&0o6000 != 0 {
			s.Setuid++
		}
		if e.Pack != nil {
			s.Packed++
		}
		for _, c := range e.Refs() {
			s.Chunks++
			s.MaxChunk = max(s.MaxChunk, c.Size)
			if !seen[ChunkRef{ID: c.ID}] {
				seen[ChunkRef{ID: c.ID}] = true
				s.Unique++
				s.Wire += uint64(c.CSize)
			}
		}
	}
	s.Fetches = len(f.Fetches())
	return s
}

// ComparePacked settles the "pack" changes of Diff by fetching the files'
// bytes from src: a file whose bytes are the same loses its "pack" (and the
// change goes when nothing else differs); one whose bytes differ gets
// "content" instead. Each pack is fetched at most once.
func ComparePacked(ctx context.Context, changes []Change, a, b *Flist, src ChunkSource) ([]Change, error) {
	f := &fetcher{ctx: ctx, src: src, packs: map[digest.Digest][]byte{}}
	var out []Change
	for _, c := range changes {
		i := slices.Index(c.What, "pack")
		if i < 0 {
			out = append(out, c)
			continue
		}
		x, err := f.content(entry(a, c.Path))
		if err != nil {
			return nil, err
		}
		y, err := f.content(entry(b, c.Path))
		if err != nil {
			return nil, err
		}
		c.What = slices.Delete(slices.Clone(c.What), i, i+1)
		if !bytes.Equal(x, y) {
			c.What = slices.Insert(c.What, i, "content")
		}
		if len(c.What) > 0 {
			out = append(out, c)
		}
	}
	return out, nil
}

// fetcher reads files' content for ComparePacked, keeping the packs it
// fetched: the files of one pack tend to change together.
type fetcher struct {
	ctx   context.Context
	src   ChunkSource
	packs map[digest.Digest][]byte
}

func (f *fetcher) content(e *Entry) ([]byte, error) {
	if e.Pack == nil {
		var b []byte
		for _, c := range e.Chunks {
			d, err := f.chunk(e.Path, c)
			if err != nil {
				return nil, err
			}
			b = append(b, d...)
		}
		return b, nil
	}
	d, ok := f.packs[e.Pack.Chunk.ID]
	if !ok {
		var err error
		if d, err = f.chunk(e.Path, e.Pack.Chunk); err != nil {
			return nil, err
		}
		f.packs[e.Pack.Chunk.ID] = d
	}
	return d[e.Pack.Off : uint64(e.Pack.Off)+e.Size], nil
}

func (f *fetcher) chunk(path string, c ChunkRef) ([]byte, error) {
	v, err := f.src.Chunk(f.ctx, c, nil)
	if err != nil {
		return nil, fmt.Errorf("compare %s: %w", path, err)
	}
	b, err := v.For(c)
	if err != nil {
		return nil, fmt.Errorf("compare %s: %w", path, err)
	}
	return b, nil
}

// entry finds path in f, whose entries are sorted by path.
func entry(f *Flist, path string) *Entry {
	i, ok := slices.BinarySearchFunc(f.Entries, path, func(e Entry, p string) int { return strings.Compare(e.Path, p) })
	if !ok {
		return nil
	}
	return &f.Entries[i]
}
