// Package testchunk makes the chunks and flists that the store tests on
// both sides (pkg/store, pkg/fetch) put and fetch.
package testchunk

import (
	"bytes"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/flist"
)

// Chunk is a compressible chunk of content repeated: its reference (named
// by SHA-256), its stored blob and its content.
func Chunk(t testing.TB, content string) (flist.ChunkRef, []byte, []byte) {
	t.Helper()
	return ChunkOf(t, flist.SHA256, content)
}

// ChunkOf is Chunk named by h.
func ChunkOf(t testing.TB, h flist.Hash, content string) (flist.ChunkRef, []byte, []byte) {
	t.Helper()
	raw := bytes.Repeat([]byte(content), 1000)
	ref, c, err := flist.CompressChunk(h, raw)
	if err != nil {
		t.Fatal(err)
	}
	return ref, c, raw
}

// Flist is the encoding of an flist of one directory, name.
func Flist(t testing.TB, name string) []byte {
	t.Helper()
	f := &flist.Flist{Entries: []flist.Entry{{Path: name, Type: flist.TypeDir, Mode: 0o755}}}
	b, err := f.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Content is the bytes of what a ChunkSource returned, with its error.
func Content(v flist.Verified, err error) ([]byte, error) { return v.Bytes(), err }
