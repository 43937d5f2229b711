package server

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/fetch"
	"github.com/zeroboot/zeroboot/pkg/flist"
)

// BenchmarkServeChunks measures blob serving over HTTPS on loopback:
// 32 chunks of 1 MiB (incompressible, so bytes on the wire = stored bytes)
// fetched and verified through fetch.HTTP, 4 at a time.
func BenchmarkServeChunks(b *testing.B) {
	e := newEnv(b)
	var refs []flist.ChunkRef
	for range 32 {
		raw := make([]byte, 1<<20)
		rand.Read(raw)
		ref, comp, err := flist.CompressChunk(flist.SHA256, raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.store.PutChunk(ref, comp); err != nil {
			b.Fatal(err)
		}
		refs = append(refs, ref)
	}
	remote := &fetch.HTTP{URLs: []string{e.ts.URL + "/store"}, Client: e.hc}
	b.SetBytes(int64(len(refs)) << 20)
	b.ResetTimer()
	for b.Loop() {
		sem := make(chan struct{}, 4)
		errs := make(chan error, len(refs))
		for _, ref := range refs {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				_, err := remote.Chunk(context.Background(), ref, nil)
				errs <- err
			}()
		}
		for range refs {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
}
