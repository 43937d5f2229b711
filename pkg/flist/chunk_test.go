package flist

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestChunkRoundTrip(t *testing.T) {
	random := make([]byte, 300000)
	rand.Read(random)
	for name, raw := range map[string][]byte{
		"text":   bytes.Repeat([]byte("zeroboot "), 10000),
		"random": random,
		"one":    {7},
		"max":    bytes.Repeat([]byte{1}, MaxChunkSize),
	} {
		ref, c, err := CompressChunk(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := OpenChunk(ref, c)
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("%s: OpenChunk = %d bytes, %v", name, len(got), err)
		}
	}
}

func TestOpenChunkRefuses(t *testing.T) {
	raw := bytes.Repeat([]byte("abc"), 1000)
	ref, c, err := CompressChunk(raw)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil)
	bomb := enc.EncodeAll(make([]byte, 64<<20), nil)
	other := enc.EncodeAll(bytes.Repeat([]byte("abd"), 1000), nil)
	longer := enc.EncodeAll(append(append([]byte(nil), raw...), 'x'), nil)
	flip := append([]byte(nil), c...)
	flip[len(flip)/2] ^= 1

	tests := []struct {
		name string
		ref  ChunkRef
		blob []byte
		want string
	}{
		{"truncated", ref, c[:len(c)-1], "declared"},
		{"longer", ref, append(append([]byte(nil), c...), 0), "declared"},
		{"flipped byte", ref, flip, ""},
		{"other content", ChunkRef{ID: ref.ID, Size: ref.Size, CSize: uint32(len(other))}, other, "hash mismatch"},
		{"bomb", ChunkRef{ID: ref.ID, Size: ref.Size, CSize: uint32(len(bomb))}, bomb, "zstd"},
		{"one byte more", ChunkRef{ID: ref.ID, Size: ref.Size, CSize: uint32(len(longer))}, longer, "inflates past"},
		{"short", ChunkRef{ID: ref.ID, Size: ref.Size + 10, CSize: ref.CSize}, c, "inflates to"},
		{"zero size", ChunkRef{ID: ref.ID, CSize: ref.CSize}, c, "out of bounds"},
		{"huge size", ChunkRef{ID: ref.ID, Size: MaxChunkSize + 1, CSize: ref.CSize}, c, "out of bounds"},
		{"garbage", ChunkRef{ID: ref.ID, Size: ref.Size, CSize: 5}, []byte("hello"), "zstd"},
		{"one byte after the frame", ChunkRef{ID: ref.ID, Size: ref.Size, CSize: ref.CSize + 1}, append(append([]byte(nil), c...), 0), "after the zstd frame"},
		{"junk after the frame", ChunkRef{ID: ref.ID, Size: ref.Size, CSize: ref.CSize + 9}, append(append([]byte(nil), c...), "123456789"...), "after the zstd frame"},
	}
	for _, tc := range tests {
		got, err := OpenChunk(tc.ref, tc.blob)
		if err == nil {
			t.Errorf("%s: accepted (%d bytes)", tc.name, len(got))
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), ref.ID.String()) {
			t.Errorf("%s: error %q lacks %q or the chunk ID", tc.name, err, tc.want)
		}
	}
}
