package flist

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

func TestChunkRoundTrip(t *testing.T) {
	random := make([]byte, 300000)
	rand.Read(random)
	for _, h := range Hashes {
		for name, raw := range map[string][]byte{
			"text":   bytes.Repeat([]byte("zeroboot "), 10000),
			"random": random,
			"one":    {7},
			"max":    bytes.Repeat([]byte{1}, MaxChunkSize),
		} {
			ref, c, err := CompressChunk(h, raw)
			if err != nil {
				t.Fatalf("%s %s: %v", h, name, err)
			}
			if ref.Hash != h || ref.ID != h.Sum(raw) {
				t.Fatalf("%s %s: CompressChunk named it %s", h, name, ref)
			}
			v, err := OpenChunk(ref, c, nil)
			got := v.Bytes()
			if err != nil || !bytes.Equal(got, raw) || v.Ref() != ref {
				t.Fatalf("%s %s: OpenChunk = %d bytes, %v", h, name, len(got), err)
			}
		}
	}
}

func TestOpenChunkRefuses(t *testing.T) {
	for _, h := range Hashes {
		t.Run(h.String(), func(t *testing.T) { testOpenChunkRefuses(t, h) })
	}
}

func testOpenChunkRefuses(t *testing.T, h Hash) {
	raw := bytes.Repeat([]byte("abc"), 1000)
	ref, c, err := CompressChunk(h, raw)
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
		{"other content", ChunkRef{Hash: ref.Hash, ID: ref.ID, Size: ref.Size, CSize: uint32(len(other))}, other, "hash mismatch"},
		{"bomb", ChunkRef{Hash: ref.Hash, ID: ref.ID, Size: ref.Size, CSize: uint32(len(bomb))}, bomb, "zstd"},
		{"one byte more", ChunkRef{Hash: ref.Hash, ID: ref.ID, Size: ref.Size, CSize: uint32(len(longer))}, longer, "inflates past"},
		{"short", ChunkRef{Hash: ref.Hash, ID: ref.ID, Size: ref.Size + 10, CSize: ref.CSize}, c, "inflates to"},
		{"zero size", ChunkRef{Hash: ref.Hash, ID: ref.ID, CSize: ref.CSize}, c, "out of bounds"},
		{"huge size", ChunkRef{Hash: ref.Hash, ID: ref.ID, Size: MaxChunkSize + 1, CSize: ref.CSize}, c, "out of bounds"},
		{"garbage", ChunkRef{Hash: ref.Hash, ID: ref.ID, Size: ref.Size, CSize: 5}, []byte("hello"), "zstd"},
		{"one byte after the frame", ChunkRef{Hash: ref.Hash, ID: ref.ID, Size: ref.Size, CSize: ref.CSize + 1}, append(append([]byte(nil), c...), 0), "after the zstd frame"},
		{"junk after the frame", ChunkRef{Hash: ref.Hash, ID: ref.ID, Size: ref.Size, CSize: ref.CSize + 9}, append(append([]byte(nil), c...), "123456789"...), "after the zstd frame"},
		// The same bytes named by the other function's ID: a reader must
		// hash with the flist's function, not try both.
		{"named by the other hash", ChunkRef{Hash: ref.Hash, ID: otherHash(h).Sum(raw), Size: ref.Size, CSize: ref.CSize}, c, "hash mismatch"},
	}
	tests = append(tests, frameTests(t, raw, ref)...)
	for _, tc := range tests {
		got, err := OpenChunk(tc.ref, tc.blob, nil)
		if err == nil {
			t.Errorf("%s: accepted (%d bytes)", tc.name, len(got.Bytes()))
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.ref.Name()) {
			t.Errorf("%s: error %q lacks %q or the chunk ID", tc.name, err, tc.want)
		}
	}
}

// skippable is a skippable zstd frame (magic 0x184D2A5?) holding data.
func skippable(data string) []byte {
	b := []byte{0x50, 0x2a, 0x4d, 0x18}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// frameTests are blobs whose content is right but which are not exactly
// one zstd frame: a streaming decoder would read across frames and skip
// skippable ones, so the stored bytes would not be the ones checked.
func frameTests(t *testing.T, raw []byte, ref ChunkRef) []struct {
	name string
	ref  ChunkRef
	blob []byte
	want string
} {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	one := enc.EncodeAll(raw, nil)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	half := len(raw) / 2
	crc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	withCRC := crc.EncodeAll(raw, nil)
	blobs := []struct {
		name string
		blob []byte
		want string
	}{
		{"two frames", cat(enc.EncodeAll(raw[:half], nil), enc.EncodeAll(raw[half:], nil)), "after the zstd frame"},
		{"empty frame after", cat(one, enc.EncodeAll(nil, nil)), "after the zstd frame"},
		{"leading skippable frame", cat(skippable("hello"), one), "skippable"},
		{"trailing skippable frame", cat(one, skippable("hello")), "after the zstd frame"},
		{"only a skippable frame", skippable("hello"), "skippable"},
		{"checksum cut off", withCRC[:len(withCRC)-1], ""},
	}
	out := make([]struct {
		name string
		ref  ChunkRef
		blob []byte
		want string
	}, len(blobs))
	for i, b := range blobs {
		out[i].name, out[i].blob, out[i].want = b.name, b.blob, b.want
		out[i].ref = ChunkRef{Hash: ref.Hash, ID: ref.ID, Size: ref.Size, CSize: uint32(len(b.blob))}
	}
	return out
}

// TestOpenChunkOneFrame: a frame with a content checksum, or any block
// type the encoder chose, is still one frame and is accepted.
func TestOpenChunkOneFrame(t *testing.T) {
	random := make([]byte, 200000)
	rand.Read(random)
	crc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	for name, raw := range map[string][]byte{
		"rle":        bytes.Repeat([]byte{0}, 300000),
		"raw blocks": random,
		"mixed":      append(bytes.Repeat([]byte("ab"), 100000), random...),
		"with crc":   bytes.Repeat([]byte("zeroboot "), 1000),
	} {
		blob := crc.EncodeAll(raw, nil)
		ref := ChunkRef{ID: digest.Of(raw), Size: uint32(len(raw)), CSize: uint32(len(blob))}
		if got, err := OpenChunk(ref, blob, nil); err != nil || !bytes.Equal(got.Bytes(), raw) {
			t.Errorf("%s: %d bytes, %v", name, len(got.Bytes()), err)
		}
	}
}

// TestOpenChunkReusesDst: content lands in the caller's buffer when it is
// large enough, and in a new one otherwise, so pooled buffers are reused
// without ever being written past their capacity.
func TestOpenChunkReusesDst(t *testing.T) {
	raw := bytes.Repeat([]byte("reuse "), 1000)
	ref, c, err := CompressChunk(SHA256, raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		dst   []byte
		share bool
	}{{"large enough", make([]byte, 3, len(raw)), true}, {"too small", make([]byte, 0, len(raw)-1), false}, {"nil", nil, false}} {
		v, err := OpenChunk(ref, c, tc.dst)
		if err != nil || !bytes.Equal(v.Bytes(), raw) {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if shared := cap(tc.dst) > 0 && &v.Bytes()[0] == &tc.dst[:1][0]; shared != tc.share {
			t.Errorf("%s: shares dst = %v, want %v", tc.name, shared, tc.share)
		}
	}
}
