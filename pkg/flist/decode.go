package flist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

// Smallest possible encodings, used to refuse a count before allocating for
// it: a count can never exceed what the remaining input could hold.
const (
	headerSize   = 4 + 2 + 2
	minEntrySize = 11 // 1-byte path len + 1-byte path + type + 8 one-byte varints
	minChunkSize = digest.Size + 2
)

var (
	errTruncated = errors.New("truncated")
	errOverlong  = errors.New("overlong varint")
)

// Decode parses and validates an encoded flist. The caller must already have
// checked the bytes against their digest; Decode still treats them as
// hostile: every count is checked against the remaining input before
// anything is allocated for it, and only canonical encodings are accepted,
// so an accepted input re-encodes to the same bytes.
func Decode(b []byte) (*Flist, error) { return decode(b, Version) }

// decode reads versions 1..newest: newest below Version is a reader as
// released before Version, which a test holds to its words.
func decode(b []byte, newest uint16) (*Flist, error) {
	if len(b) > MaxMetadataSize {
		return nil, fmt.Errorf("decode flist: %d bytes, limit %d", len(b), MaxMetadataSize)
	}
	if len(b) < headerSize {
		return nil, fmt.Errorf("decode flist: header: %w (%d bytes)", errTruncated, len(b))
	}
	if string(b[:4]) != Magic {
		return nil, fmt.Errorf("decode flist: bad magic %q, want %q", b[:4], Magic)
	}
	v := binary.LittleEndian.Uint16(b[4:])
	if v < VersionPlain || v > newest {
		return nil, fmt.Errorf("decode flist: unsupported version %d, this reader knows %d..%d", v, VersionPlain, newest)
	}
	if fl := binary.LittleEndian.Uint16(b[6:]); fl != 0 {
		return nil, fmt.Errorf("decode flist: unknown flags %#04x", fl)
	}
	d := decoder{b: b, off: headerSize, version: v, hash: versionHash(v)}
	n, err := d.uvarint()
	if err != nil {
		return nil, fmt.Errorf("decode flist: entry count: %w", err)
	}
	if n > MaxEntries {
		return nil, fmt.Errorf("decode flist: %d entries, limit %d", n, MaxEntries)
	}
	if n > uint64(d.left()/minEntrySize) {
		return nil, fmt.Errorf("decode flist: %d entries cannot fit in %d remaining bytes", n, d.left())
	}
	f := &Flist{Entries: make([]Entry, n), Hash: d.hash}
	for i := range f.Entries {
		if err := d.entry(&f.Entries[i]); err != nil {
			return nil, fmt.Errorf("decode flist: %w", &EntryError{Index: i, Path: f.Entries[i].Path, Err: err})
		}
	}
	if d.left() != 0 {
		return nil, fmt.Errorf("decode flist: %d trailing bytes after %d entries", d.left(), n)
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("decode flist: %w", err)
	}
	if f.version() != v {
		// Version 2 without a packed file would be a second encoding of
		// a version-1 flist, hence a second digest. (Version 3 is always
		// its own: its chunk IDs are of another hash.)
		return nil, fmt.Errorf("decode flist: version %d but no packed file or hard link: not canonical (version %d)", v, f.version())
	}
	return f, nil
}

type decoder struct {
	b       []byte
	off     int
	version uint16
	hash    Hash // every chunk's, from the version
}

func (d *decoder) left() int { return len(d.b) - d.off }

// uvarint reads a minimally encoded unsigned varint.
func (d *decoder) uvarint() (uint64, error) {
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		return 0, errTruncated
	case n < 0:
		return 0, errOverlong
	case n > 1 && d.b[d.off+n-1] == 0:
		// A trailing zero group adds nothing: a second spelling of the same
		// number would give a second digest for the same flist.
		return 0, errOverlong
	}
	d.off += n
	return v, nil
}

func (d *decoder) varint() (int64, error) {
	ux, err := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, err
}

func (d *decoder) u32(what string) (uint32, error) {
	v, err := d.uvarint()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if v > math.MaxUint32 {
		return 0, fmt.Errorf("%s: %d out of range", what, v)
	}
	return uint32(v), nil
}

func (d *decoder) str(what string, limit int) (string, error) {
	n, err := d.uvarint()
	if err != nil {
		return "", fmt.Errorf("%s length: %w", what, err)
	}
	if n > uint64(limit) {
		return "", fmt.Errorf("%s is %d bytes, limit %d", what, n, limit)
	}
	if n > uint64(d.left()) {
		return "", fmt.Errorf("%s: %w (%d bytes declared, %d left)", what, errTruncated, n, d.left())
	}
	s := string(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return s, nil
}

func (d *decoder) entry(e *Entry) error {
	var err error
	if e.Path, err = d.str("path", MaxPathLen); err != nil {
		return err
	}
	if d.left() < 1 {
		return fmt.Errorf("type: %w", errTruncated)
	}
	e.Type = Type(d.b[d.off])
	d.off++
	if !e.Type.valid() || (e.Type == TypeHardlink && d.version < VersionPacked) {
		return fmt.Errorf("unknown type %d", uint8(e.Type))
	}
	if e.Mode, err = d.u32("mode"); err != nil {
		return err
	}
	if e.UID, err = d.u32("uid"); err != nil {
		return err
	}
	if e.GID, err = d.u32("gid"); err != nil {
		return err
	}
	if e.MTime, err = d.varint(); err != nil {
		return fmt.Errorf("mtime: %w", err)
	}
	if e.Size, err = d.uvarint(); err != nil {
		return fmt.Errorf("size: %w", err)
	}
	if e.Target, err = d.str("symlink target", MaxTargetLen); err != nil {
		return err
	}
	if e.Rdev, err = d.uvarint(); err != nil {
		return fmt.Errorf("rdev: %w", err)
	}
	n, err := d.uvarint()
	if err != nil {
		return fmt.Errorf("chunk count: %w", err)
	}
	if n > e.Size {
		return fmt.Errorf("%d chunks for %d bytes", n, e.Size)
	}
	if n > uint64(d.left()/minChunkSize) {
		return fmt.Errorf("%d chunks cannot fit in %d remaining bytes", n, d.left())
	}
	if n > 0 {
		e.Chunks = make([]ChunkRef, n)
	}
	for j := range e.Chunks {
		if err := d.chunk(&e.Chunks[j]); err != nil {
			return fmt.Errorf("chunk %d: %w", j, err)
		}
	}
	if n == 0 && e.Size > 0 && e.Type == TypeFile && d.version >= VersionPacked {
		return d.pack(e)
	}
	return nil
}

// pack reads a packed file's reference: in version 2, a file with content
// and no chunks of its own is followed by its pack chunk and offset.
func (d *decoder) pack(e *Entry) error {
	e.Pack = new(PackRef)
	if err := d.chunk(&e.Pack.Chunk); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	var err error
	if e.Pack.Off, err = d.u32("pack offset"); err != nil {
		return fmt.Errorf("pack: %w", err)
	}
	return nil
}

func (d *decoder) chunk(c *ChunkRef) error {
	if d.left() < digest.Size {
		return fmt.Errorf("id: %w", errTruncated)
	}
	copy(c.ID[:], d.b[d.off:])
	d.off += digest.Size
	c.Hash = d.hash
	var err error
	if c.Size, err = d.u32("size"); err != nil {
		return err
	}
	c.CSize, err = d.u32("compressed size")
	return err
}
