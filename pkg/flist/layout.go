package flist

import "github.com/zeroboot/zeroboot/pkg/digest"

// The store layout (docs/flist.md, "Store layout"), one definition for the
// directory a server keeps and the URLs a node fetches: slash-separated
// paths under a store's root.

// ChunkName is where chunk id lives under a store root:
// chunks/<first 2 hex digits>/<64 hex digits>.
func ChunkName(id digest.Digest) string {
	h := id.Hex()
	return "chunks/" + h[:2] + "/" + h
}

// FlistName is where flist metadata id lives under a store root:
// flists/<64 hex digits>.
func FlistName(id digest.Digest) string { return "flists/" + id.Hex() }
