package flist

import (
	"fmt"

	"github.com/zeebo/blake3"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

// Hash is the function that names a chunk: a chunk's ID is the Hash of
// its uncompressed bytes. An flist has one, given by its version
// (docs/flist.md, "Chunk hash"), and every ChunkRef carries it so that
// whatever verifies a chunk (OpenChunk, CheckContent) hashes with the
// flist's function and no other. The flist's own digest, which a signed
// release names, is SHA-256 in every version.
type Hash uint8

const (
	// SHA256 names the chunks of versions 1 and 2. It is the zero Hash, so
	// a ChunkRef made without one is a version-2 reference, as before
	// there was a choice.
	SHA256 Hash = iota
	// BLAKE3 (BLAKE3-256, unkeyed) names the chunks of version 3: about
	// twice SHA-256's speed with SHA-NI per core on 16 KiB to 1 MiB
	// chunks, level at 4 KiB (BenchmarkChunkHash, bench/README.md).
	BLAKE3
)

// Hashes lists every Hash, for flags and tables.
var Hashes = []Hash{SHA256, BLAKE3}

// Sum hashes b with h: the one definition of a chunk ID under h.
func (h Hash) Sum(b []byte) digest.Digest {
	if h == BLAKE3 {
		return blake3.Sum256(b)
	}
	return digest.Of(b)
}

func (h Hash) String() string {
	switch h {
	case SHA256:
		return "sha256"
	case BLAKE3:
		return "blake3"
	}
	return fmt.Sprintf("hash(%d)", uint8(h))
}

func (h Hash) valid() bool { return h <= BLAKE3 }

// Name writes id as "ALG:HEX" ("sha256:…", "blake3:…"), the way messages
// and zgrid name a chunk.
func (h Hash) Name(id digest.Digest) string { return h.String() + ":" + id.Hex() }

// ParseHash reads a Hash by its String.
func ParseHash(s string) (Hash, error) {
	for _, h := range Hashes {
		if h.String() == s {
			return h, nil
		}
	}
	return 0, fmt.Errorf("chunk hash %q: want sha256 or blake3", s)
}

// versionHash is the chunk hash of flist version v: BLAKE3 from version
// 3 on, SHA-256 before.
func versionHash(v uint16) Hash {
	if v >= VersionBLAKE3 {
		return BLAKE3
	}
	return SHA256
}
