package flist

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

// Chunk limits. A chunk is at most MaxChunkSize bytes uncompressed; its
// compressed form may be slightly larger for incompressible data, never more
// than MaxCompressedSize.
const (
	DefaultChunkSize  = 1 << 20
	MaxChunkSize      = 4 << 20
	MaxCompressedSize = MaxChunkSize + MaxChunkSize/64 + 1024
)

// ChunkRef points at one chunk of a file's content. ID is the SHA-256 of the
// uncompressed bytes. Size is exact; CSize is the most compressed bytes a
// reader accepts: the same content compressed by another zstd version may
// be stored smaller (a store keeps the smallest copy it was given), never
// larger, so a blob longer than CSize is refused before decompressing.
type ChunkRef struct {
	ID    digest.Digest
	Size  uint32 // uncompressed bytes
	CSize uint32 // zstd-compressed bytes at most (as built)
}

func (r ChunkRef) String() string { return "chunk " + r.ID.String() }

var (
	encOnce sync.Once
	encoder *zstd.Encoder
	decPool = sync.Pool{New: func() any {
		// One goroutine per decoder: chunks are decoded in parallel by
		// callers, and a small window bounds the memory a hostile frame can
		// claim.
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(8<<20), zstd.WithDecoderMaxMemory(MaxChunkSize+1))
		if err != nil {
			panic(err)
		}
		return d
	}}
)

// CompressChunk compresses raw (at most MaxChunkSize bytes) into one
// self-contained zstd frame and returns its reference.
func CompressChunk(raw []byte) (ChunkRef, []byte, error) {
	if len(raw) == 0 || len(raw) > MaxChunkSize {
		return ChunkRef{}, nil, fmt.Errorf("compress chunk: size %d outside 1..%d", len(raw), MaxChunkSize)
	}
	encOnce.Do(func() {
		var err error
		// No checksum in the frame: the SHA-256 of the content is the check.
		// EncodeAll runs one call per internal encoder, so the concurrency
		// is what lets the builder's workers compress in parallel; the
		// output does not depend on it.
		encoder, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderCRC(false), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithWindowSize(MaxChunkSize))
		if err != nil {
			panic(err)
		}
	})
	c := encoder.EncodeAll(raw, nil)
	if len(c) > MaxCompressedSize {
		return ChunkRef{}, nil, fmt.Errorf("compress chunk: %d bytes compressed to %d, over %d", len(raw), len(c), MaxCompressedSize)
	}
	return ChunkRef{ID: digest.Of(raw), Size: uint32(len(raw)), CSize: uint32(len(c))}, c, nil
}

// OpenChunk checks a stored chunk against its reference and returns the
// uncompressed bytes. It refuses a blob longer than CSize, a
// frame that inflates past Size (a decompression bomb stops at Size+1 bytes)
// or stops short of it, and content whose hash is not ID. Only bytes that
// pass are returned.
func OpenChunk(ref ChunkRef, compressed []byte) ([]byte, error) {
	if ref.Size == 0 || ref.Size > MaxChunkSize || ref.CSize == 0 || ref.CSize > MaxCompressedSize {
		return nil, fmt.Errorf("%s: declared size %d/%d compressed out of bounds", ref, ref.Size, ref.CSize)
	}
	if len(compressed) == 0 || len(compressed) > int(ref.CSize) {
		return nil, fmt.Errorf("%s: blob is %d bytes, declared at most %d", ref, len(compressed), ref.CSize)
	}
	d := decPool.Get().(*zstd.Decoder)
	defer decPool.Put(d)
	if err := d.Reset(bytes.NewReader(compressed)); err != nil {
		return nil, fmt.Errorf("%s: zstd: %w", ref, err)
	}
	raw := make([]byte, int(ref.Size))
	if n, err := io.ReadFull(d, raw); err == io.ErrUnexpectedEOF || err == io.EOF {
		return nil, fmt.Errorf("%s: inflates to %d bytes, declared %d", ref, n, ref.Size)
	} else if err != nil {
		return nil, fmt.Errorf("%s: zstd: %w", ref, err)
	}
	// The frame must end exactly here: no more content (a bomb stops at
	// Size+1 bytes) and no bytes after it, so what was stored is exactly
	// what was checked.
	var one [1]byte
	switch n, err := d.Read(one[:]); {
	case n > 0:
		return nil, fmt.Errorf("%s: inflates past its declared %d bytes", ref, ref.Size)
	case err != io.EOF:
		return nil, fmt.Errorf("%s: data after the zstd frame: %v", ref, err)
	}
	if got := digest.Of(raw); got != ref.ID {
		return nil, fmt.Errorf("%s: content hash mismatch: got %s", ref, got)
	}
	return raw, nil
}
