package flist

import (
	"errors"
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

// ChunkRef points at one chunk of a file's content. ID is the Hash (the
// flist's) of the uncompressed bytes. Size is exact; CSize is the most compressed bytes a
// reader accepts: the same content compressed by another zstd version may
// be stored smaller (a store keeps the smallest copy it was given), never
// larger, so a blob longer than CSize is refused before decompressing.
type ChunkRef struct {
	ID    digest.Digest
	Size  uint32 // uncompressed bytes
	CSize uint32 // zstd-compressed bytes at most (as built)
	Hash  Hash   // the function ID is of: the flist's (not encoded per chunk)
}

func (r ChunkRef) String() string { return "chunk " + r.Name() }

// Name is "ALG:HEX", e.g. "blake3:…".
func (r ChunkRef) Name() string { return r.Hash.Name(r.ID) }

// Sum hashes content as r's ID was: r.Hash.Sum.
func (r ChunkRef) Sum(b []byte) digest.Digest { return r.Hash.Sum(b) }

var (
	encOnce sync.Once
	encoder *zstd.Encoder
	decPool = sync.Pool{New: func() any {
		// One goroutine per decoder: chunks are decoded in parallel by
		// callers, and a small window bounds the memory a hostile frame can
		// claim.
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(8<<20), zstd.WithDecoderMaxMemory(MaxChunkSize+1),
			zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(err)
		}
		return d
	}}
)

// CompressChunk compresses raw (at most MaxChunkSize bytes) into one
// self-contained zstd frame and returns its reference, named by h.
func CompressChunk(h Hash, raw []byte) (ChunkRef, []byte, error) {
	if len(raw) == 0 || len(raw) > MaxChunkSize {
		return ChunkRef{}, nil, fmt.Errorf("compress chunk: size %d outside 1..%d", len(raw), MaxChunkSize)
	}
	encOnce.Do(func() {
		var err error
		// No checksum in the frame: the hash of the content is the check.
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
	return ChunkRef{ID: h.Sum(raw), Size: uint32(len(raw)), CSize: uint32(len(c)), Hash: h}, c, nil
}

// Verified is chunk content that OpenChunk or CheckContent checked against
// its reference. Its fields are unexported so that only this package makes
// one: a ChunkSource cannot hand the extractor bytes that skipped the
// check, and the extractor need not hash them again.
type Verified struct {
	ref ChunkRef
	b   []byte
}

// Ref is the reference the content was checked against.
func (v Verified) Ref() ChunkRef { return v.ref }

// Bytes is the checked content. It may share memory with the dst the
// caller gave; the caller must not change it.
func (v Verified) Bytes() []byte { return v.b }

// For returns the content when v is chunk c's: v was hashed once, by the
// function that made it, so what is left to check is that a ChunkSource
// handed back this chunk and not another (or nothing).
func (v Verified) For(c ChunkRef) ([]byte, error) {
	if got := v.Ref(); got.ID != c.ID || got.Hash != c.Hash || got.Size != c.Size || len(v.b) != int(c.Size) {
		return nil, fmt.Errorf("%s: source returned %s (%d bytes)", c, got, len(v.b))
	}
	return v.b, nil
}

// OpenChunk checks a stored chunk against its reference and returns the
// uncompressed bytes, decoded into dst's memory when cap(dst) is at least
// ref.Size (so a caller can reuse buffers) and into a new slice otherwise.
// It refuses a blob longer than CSize, one that is not exactly one zstd
// frame (several frames, a skippable frame, bytes after the frame), a frame
// that inflates past Size (the decoder is limited to Size bytes of output,
// so a bomb stops there) or stops short of it, and content whose hash is
// not ID under ref.Hash. Only bytes that pass are returned.
func OpenChunk(ref ChunkRef, compressed, dst []byte) (Verified, error) {
	if ref.Size == 0 || ref.Size > MaxChunkSize || ref.CSize == 0 || ref.CSize > MaxCompressedSize {
		return Verified{}, fmt.Errorf("%s: declared size %d/%d compressed out of bounds", ref, ref.Size, ref.CSize)
	}
	if len(compressed) == 0 || len(compressed) > int(ref.CSize) {
		return Verified{}, fmt.Errorf("%s: blob is %d bytes, declared at most %d", ref, len(compressed), ref.CSize)
	}
	if err := oneFrame(compressed); err != nil {
		return Verified{}, fmt.Errorf("%s: %w", ref, err)
	}
	raw, err := inflate(ref, compressed, dst)
	if err != nil {
		return Verified{}, err
	}
	return CheckContent(ref, raw)
}

// CheckContent returns raw as Verified when it is exactly ref's content:
// ref.Size bytes whose ref.Hash is ref.ID. It is for content kept
// uncompressed (a local cache); stored blobs go through OpenChunk.
func CheckContent(ref ChunkRef, raw []byte) (Verified, error) {
	if len(raw) != int(ref.Size) {
		return Verified{}, fmt.Errorf("%s: %d bytes, declared %d", ref, len(raw), ref.Size)
	}
	if !ref.Hash.valid() {
		return Verified{}, fmt.Errorf("%s: unknown chunk hash", ref)
	}
	if got := ref.Sum(raw); got != ref.ID {
		return Verified{}, fmt.Errorf("%s: content hash mismatch: got %s", ref, ref.Hash.Name(got))
	}
	return Verified{ref: ref, b: raw}, nil
}

// inflate decodes one frame into dst (or a new slice) and insists that it
// holds exactly ref.Size bytes. The output's capacity is exactly Size and
// the decoder is limited to it, so a bomb stops there.
func inflate(ref ChunkRef, compressed, dst []byte) ([]byte, error) {
	d := decPool.Get().(*zstd.Decoder)
	defer decPool.Put(d)
	out := dst[:0:cap(dst)]
	if cap(out) < int(ref.Size) {
		out = make([]byte, 0, ref.Size)
	}
	raw, err := d.DecodeAll(compressed, out[:0:ref.Size])
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded):
		return nil, fmt.Errorf("%s: inflates past its declared %d bytes", ref, ref.Size)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%s: frame cut short: inflates to %d bytes, declared %d", ref, len(raw), ref.Size)
	case err != nil:
		return nil, fmt.Errorf("%s: zstd: %w", ref, err)
	case len(raw) != int(ref.Size):
		return nil, fmt.Errorf("%s: inflates to %d bytes, declared %d", ref, len(raw), ref.Size)
	}
	return raw, nil
}

// Zstd block types (RFC 8878, section 3.1.1.2).
const (
	blockRaw = iota
	blockRLE
	blockCompressed
	blockReserved
)

// oneFrame refuses a blob that is not exactly one zstd data frame. The
// decoder would read on into a next frame and skip skippable frames
// without a word, so the blob could hold bytes the digest does not speak
// for. A frame cut short is left to the decoder, which says how far it
// got.
func oneFrame(b []byte) error {
	n, err := frameSize(b)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil
	case err != nil:
		return fmt.Errorf("zstd frame: %w", err)
	case n != len(b):
		return fmt.Errorf("data after the zstd frame (%d bytes)", len(b)-n)
	}
	return nil
}

// frameSize is the length of the zstd frame at the start of b, found by
// walking its block headers without decoding them. A skippable frame, a
// reserved block type or a frame cut short is an error.
func frameSize(b []byte) (int, error) {
	var h zstd.Header
	if _, err := h.DecodeAndStrip(b); err != nil {
		return 0, fmt.Errorf("header: %w", err)
	}
	if h.Skippable {
		return 0, errors.New("skippable frame; a chunk is one data frame")
	}
	n := h.HeaderSize
	for last := false; !last; {
		if len(b)-n < 3 {
			return 0, fmt.Errorf("block header at byte %d: %w", n, io.ErrUnexpectedEOF)
		}
		bh := uint32(b[n]) | uint32(b[n+1])<<8 | uint32(b[n+2])<<16
		n += 3
		last = bh&1 != 0
		size := int(bh >> 3)
		switch (bh >> 1) & 3 {
		case blockRLE:
			size = 1 // one byte, repeated size times
		case blockReserved:
			return 0, fmt.Errorf("block at byte %d has the reserved type", n-3)
		}
		if len(b)-n < size {
			return 0, fmt.Errorf("block at byte %d: %d bytes declared: %w", n-3, size, io.ErrUnexpectedEOF)
		}
		n += size
	}
	if h.HasCheckSum {
		if len(b)-n < 4 {
			return 0, fmt.Errorf("content checksum: %w", io.ErrUnexpectedEOF)
		}
		n += 4
	}
	return n, nil
}
