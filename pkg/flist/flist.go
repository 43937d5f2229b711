// Package flist describes a component's file tree (paths, types, modes,
// owners, times, and the content-addressed chunks of every file), encodes it
// in a small canonical binary form, builds it from a directory or a tar
// stream, and extracts it safely into a directory. docs/flist.md is the
// normative description of the format.
package flist

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Type is the kind of an entry.
type Type uint8

// Entry types. Zero is not a type, so a forgotten field is refused.
const (
	TypeFile Type = iota + 1
	TypeDir
	TypeSymlink
	TypeCharDev
	TypeBlockDev
	TypeFIFO
	// TypeHardlink is another name for the file entry at Target, listed
	// earlier: it shares that file's content and metadata (version 2).
	TypeHardlink
)

func (t Type) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	case TypeCharDev:
		return "chardev"
	case TypeBlockDev:
		return "blockdev"
	case TypeFIFO:
		return "fifo"
	case TypeHardlink:
		return "hardlink"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

func (t Type) valid() bool { return t >= TypeFile && t <= TypeHardlink }

// Format limits. They bound what a reader allocates for a hostile blob and
// are part of the format: an flist outside them is invalid.
const (
	Magic = "ZBFL"
	// Version is the newest encoding this package reads and writes.
	// Encode writes the oldest that holds the flist: VersionPlain when no
	// file is packed and no entry is a hard link, so such a tree stays
	// readable by version-1 readers; VersionPacked adds both;
	// VersionBLAKE3 is version 2 with chunks named by BLAKE3 (Hash).
	Version       = VersionBLAKE3
	VersionPlain  = 1
	VersionPacked = 2
	VersionBLAKE3 = 3
	// DefaultVersion is what a Builder writes unless told: the newest
	// that every node in the field reads.
	DefaultVersion  = VersionPacked
	MaxMetadataSize = 64 << 20
	MaxEntries      = 1_000_000
	MaxPathLen      = 4096
	MaxNameLen      = 255
	MaxTargetLen    = 4096
	// ModeMask is the permission bits plus setuid, setgid and sticky.
	ModeMask = 0o7777
	// OwnerUnchanged is (uint32)-1, which chown(2) takes as "leave this
	// id as it is": an entry owned by it would silently keep the
	// extractor's own uid or gid, so no entry may have it.
	OwnerUnchanged = 1<<32 - 1
)

// Entry is one node of the tree. Path is relative to the component root,
// which is not itself an entry.
type Entry struct {
	Path   string
	Type   Type
	Mode   uint32 // ModeMask bits only
	UID    uint32
	GID    uint32
	MTime  int64  // unix seconds
	Size   uint64 // files only: sum of chunk sizes
	Target string // symlinks only
	Rdev   uint64 // device nodes only
	Chunks []ChunkRef
	// Pack, for a small file, holds its whole content as a slice of one
	// chunk shared with other small files; such a file has no Chunks.
	Pack *PackRef
}

// PackRef is where a packed file's content lies: bytes [Off, Off+Size) of
// Chunk, Size being the file's.
type PackRef struct {
	Chunk ChunkRef
	Off   uint32
}

// Refs is the chunks e's content comes from: its own, or its pack's.
func (e *Entry) Refs() []ChunkRef {
	if e.Pack != nil {
		return []ChunkRef{e.Pack.Chunk}
	}
	return e.Chunks
}

// Flist is a component's tree, entries sorted by path.
type Flist struct {
	Entries []Entry
	// Hash names every chunk of the flist (each ChunkRef's Hash is this
	// one): SHA256 (the zero Hash) in versions 1 and 2, BLAKE3 in 3.
	Hash Hash
}

// EntryError names the entry an error is about.
type EntryError struct {
	Index int
	Path  string
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("flist entry %d (%q): %v", e.Index, e.Path, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

func entryErr(i int, p string, format string, args ...any) error {
	return &EntryError{Index: i, Path: p, Err: fmt.Errorf(format, args...)}
}

// Validate checks every rule of docs/flist.md: limits, path rules, order,
// parents, and per-type fields. Encode and Decode call it; Extract calls it
// again because a Flist may have been built in memory.
func (f *Flist) Validate() error {
	if f == nil {
		return errors.New("flist: nil")
	}
	if len(f.Entries) > MaxEntries {
		return fmt.Errorf("flist: %d entries, limit %d", len(f.Entries), MaxEntries)
	}
	if !f.Hash.valid() {
		return fmt.Errorf("flist: unknown chunk %s", f.Hash)
	}
	dirs := make(map[string]struct{})
	files := make(map[string]struct{}) // regular files, which hard links may name
	for i := range f.Entries {
		e := &f.Entries[i]
		if err := CheckPath(e.Path); err != nil {
			return &EntryError{Index: i, Path: e.Path, Err: err}
		}
		if i > 0 {
			prev := f.Entries[i-1].Path
			if prev == e.Path {
				return entryErr(i, e.Path, "duplicate path")
			}
			if prev > e.Path {
				return entryErr(i, e.Path, "not sorted: comes after %q", prev)
			}
		}
		if parent := path.Dir(e.Path); parent != "." {
			if _, ok := dirs[parent]; !ok {
				return entryErr(i, e.Path, "parent %q is not a directory listed before it", parent)
			}
		}
		if err := e.check(); err != nil {
			return &EntryError{Index: i, Path: e.Path, Err: err}
		}
		if err := checkHash(f.Hash, e.Refs()); err != nil {
			return &EntryError{Index: i, Path: e.Path, Err: err}
		}
		switch e.Type {
		case TypeDir:
			dirs[e.Path] = struct{}{}
		case TypeFile:
			files[e.Path] = struct{}{}
		case TypeHardlink:
			if _, ok := files[e.Target]; !ok {
				return entryErr(i, e.Path, "hard link to %q, which is not a regular file listed before it", e.Target)
			}
		}
	}
	return nil
}

// CheckPath applies the path rules: relative, slash-separated, clean, no "."
// or ".." component, no NUL, bounded lengths.
func CheckPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > MaxPathLen:
		return fmt.Errorf("path is %d bytes, limit %d", len(p), MaxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return errors.New("path contains NUL")
	case p[0] == '/':
		return errors.New("absolute path")
	}
	for _, c := range strings.Split(p, "/") {
		switch {
		case c == "..":
			return errors.New("path has a \"..\" component")
		case c == ".":
			return errors.New("path has a \".\" component")
		case len(c) > MaxNameLen:
			return fmt.Errorf("path component is %d bytes, limit %d", len(c), MaxNameLen)
		}
	}
	if path.Clean(p) != p {
		return fmt.Errorf("path is not clean (want %q)", path.Clean(p))
	}
	return nil
}

// CheckOwner refuses a uid or gid of OwnerUnchanged.
func CheckOwner(uid, gid uint32) error {
	for _, id := range []struct {
		what string
		v    uint32
	}{{"uid", uid}, {"gid", gid}} {
		if id.v == OwnerUnchanged {
			return fmt.Errorf("%s %d is chown's \"leave unchanged\" value and cannot be given to a file", id.what, id.v)
		}
	}
	return nil
}

func (e *Entry) check() error {
	if !e.Type.valid() {
		return fmt.Errorf("unknown type %d", uint8(e.Type))
	}
	if e.Mode&^ModeMask != 0 {
		return fmt.Errorf("mode %#o has bits outside %#o", e.Mode, ModeMask)
	}
	if err := CheckOwner(e.UID, e.GID); err != nil {
		return err
	}
	if e.Type == TypeHardlink {
		return e.checkHardlink()
	}
	if e.Type != TypeSymlink && e.Target != "" {
		return fmt.Errorf("%s has a link target", e.Type)
	}
	if e.Type != TypeCharDev && e.Type != TypeBlockDev && e.Rdev != 0 {
		return fmt.Errorf("%s has a device number", e.Type)
	}
	if e.Type != TypeFile && (e.Size != 0 || len(e.Chunks) != 0 || e.Pack != nil) {
		return fmt.Errorf("%s has size %d and %d chunks; only files have content", e.Type, e.Size, len(e.Refs()))
	}
	switch e.Type {
	case TypeSymlink:
		switch {
		case e.Target == "":
			return errors.New("symlink has an empty target")
		case len(e.Target) > MaxTargetLen:
			return fmt.Errorf("symlink target is %d bytes, limit %d", len(e.Target), MaxTargetLen)
		case strings.IndexByte(e.Target, 0) >= 0:
			return errors.New("symlink target contains NUL")
		}
	case TypeFile:
		if e.Pack != nil {
			return checkPack(e.Size, e.Chunks, e.Pack)
		}
		return checkChunks(e.Size, e.Chunks)
	}
	return nil
}

// checkHardlink: a hard link is a name and its target; mode, owner, time
// and content are the target's, so its own fields are zero (one encoding).
func (e *Entry) checkHardlink() error {
	if err := CheckPath(e.Target); err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	if e.Mode != 0 || e.UID != 0 || e.GID != 0 || e.MTime != 0 || e.Size != 0 || e.Rdev != 0 || len(e.Chunks) != 0 || e.Pack != nil {
		return errors.New("hard link has fields of its own; they are its target's")
	}
	return nil
}

func checkPack(size uint64, chunks []ChunkRef, p *PackRef) error {
	switch {
	case len(chunks) != 0:
		return fmt.Errorf("packed file also has %d chunks of its own", len(chunks))
	case size == 0:
		return errors.New("empty file is packed; it has no content")
	}
	if err := checkRef(0, p.Chunk); err != nil {
		return fmt.Errorf("pack %w", err)
	}
	if end := uint64(p.Off) + size; end > uint64(p.Chunk.Size) {
		return fmt.Errorf("packed at %d..%d, past the end of its %d-byte %s", p.Off, end, p.Chunk.Size, p.Chunk)
	}
	return nil
}

// checkHash refuses a reference hashed with another function than the
// flist's: the encoding stores IDs alone, so it would be read back as
// naming other content.
func checkHash(h Hash, refs []ChunkRef) error {
	for j, c := range refs {
		if c.Hash != h {
			return fmt.Errorf("chunk %d (%s): named by %s in a %s flist", j, c.ID.Hex(), c.Hash, h)
		}
	}
	return nil
}

func checkRef(j int, c ChunkRef) error {
	if c.Size == 0 || c.Size > MaxChunkSize {
		return fmt.Errorf("chunk %d (%s): size %d outside 1..%d", j, c.Name(), c.Size, MaxChunkSize)
	}
	if c.CSize == 0 || c.CSize > MaxCompressedSize {
		return fmt.Errorf("chunk %d (%s): compressed size %d outside 1..%d", j, c.Name(), c.CSize, MaxCompressedSize)
	}
	return nil
}

func checkChunks(size uint64, chunks []ChunkRef) error {
	// Every chunk holds at least one byte, so a file has at most Size chunks.
	if uint64(len(chunks)) > size {
		return fmt.Errorf("%d chunks for %d bytes", len(chunks), size)
	}
	var sum uint64
	for j, c := range chunks {
		if err := checkRef(j, c); err != nil {
			return err
		}
		sum += uint64(c.Size)
	}
	if sum != size {
		return fmt.Errorf("file size %d but chunks hold %d bytes", size, sum)
	}
	return nil
}
