package flist

import (
	"fmt"
	"slices"
	"strings"
)

// Change is one path that differs between two flists.
type Change struct {
	Path string
	Kind ChangeKind
	// What says which fields differ for a ChangeModified entry, in
	// Entry field order ("type", "mode", "owner", "mtime", "content",
	// "target", "rdev").
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
	// Content is its chunk IDs: CSize may differ for the same bytes.
	add(a.Size != b.Size || !slices.EqualFunc(a.Chunks, b.Chunks, func(x, y ChunkRef) bool { return x.ID == y.ID && x.Size == y.Size }), "content")
	add(a.Target != b.Target, "target")
	add(a.Rdev != b.Rdev, "rdev")
	return what
}

// Summary counts what an flist holds.
type Summary struct {
	Entries  int
	ByType   map[Type]int
	Bytes    uint64 // file content
	Chunks   int    // chunk references
	Unique   int    // distinct chunks: what a fresh extraction fetches at most
	Wire     uint64 // compressed bytes of the distinct chunks, at most
	Setuid   int    // entries with setuid or setgid bits
	MaxChunk uint32
}

// Summarize counts f's entries, bytes and chunks.
func Summarize(f *Flist) Summary {
	s := Summary{Entries: len(f.Entries), ByType: map[Type]int{}}
	seen := map[ChunkRef]bool{}
	for i := range f.Entries {
		e := &f.Entries[i]
		s.ByType[e.Type]++
		s.Bytes += e.Size
		if e.Mode&0o6000 != 0 {
			s.Setuid++
		}
		for _, c := range e.Chunks {
			s.Chunks++
			s.MaxChunk = max(s.MaxChunk, c.Size)
			if !seen[ChunkRef{ID: c.ID}] {
				seen[ChunkRef{ID: c.ID}] = true
				s.Unique++
				s.Wire += uint64(c.CSize)
			}
		}
	}
	return s
}
