package flist

import (
	"encoding/binary"
	"fmt"
)

// Encode validates f and returns its canonical encoding: the same Flist
// always gives the same bytes, hence the same digest.
func (f *Flist) Encode() ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	b := make([]byte, 0, 64+len(f.Entries)*64)
	b = append(b, Magic...)
	b = binary.LittleEndian.AppendUint16(b, f.version())
	b = binary.LittleEndian.AppendUint16(b, 0) // flags
	b = binary.AppendUvarint(b, uint64(len(f.Entries)))
	for i := range f.Entries {
		b = appendEntry(b, &f.Entries[i])
		if len(b) > MaxMetadataSize {
			return nil, fmt.Errorf("encode: metadata over %d bytes at entry %d (%q)", MaxMetadataSize, i, f.Entries[i].Path)
		}
	}
	return b, nil
}

func appendEntry(b []byte, e *Entry) []byte {
	b = appendString(b, e.Path)
	b = append(b, byte(e.Type))
	b = binary.AppendUvarint(b, uint64(e.Mode))
	b = binary.AppendUvarint(b, uint64(e.UID))
	b = binary.AppendUvarint(b, uint64(e.GID))
	b = binary.AppendVarint(b, e.MTime)
	b = binary.AppendUvarint(b, e.Size)
	b = appendString(b, e.Target)
	b = binary.AppendUvarint(b, e.Rdev)
	b = binary.AppendUvarint(b, uint64(len(e.Chunks)))
	for _, c := range e.Chunks {
		b = appendChunk(b, c)
	}
	if e.Pack != nil {
		b = appendChunk(b, e.Pack.Chunk)
		b = binary.AppendUvarint(b, uint64(e.Pack.Off))
	}
	return b
}

func appendChunk(b []byte, c ChunkRef) []byte {
	b = append(b, c.ID[:]...)
	b = binary.AppendUvarint(b, uint64(c.Size))
	return binary.AppendUvarint(b, uint64(c.CSize))
}

// version is the oldest encoding that can hold f: one flist has one
// encoding, a tree without packed files or hard links stays readable by
// readers that know only version 1, and a SHA-256 flist by readers that
// know only 1..2. A BLAKE3 flist is version 3 whatever it holds.
func (f *Flist) version() uint16 {
	if f.Hash == BLAKE3 {
		return VersionBLAKE3
	}
	for i := range f.Entries {
		if e := &f.Entries[i]; e.Pack != nil || e.Type == TypeHardlink {
			return VersionPacked
		}
	}
	return VersionPlain
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
