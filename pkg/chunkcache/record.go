package chunkcache

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
)

// encodeRecord is a record header: magic, content size, sequence, the
// cache's instance (so records of an earlier format are not read), chunk
// ID, and a CRC-32C of those 64 bytes.
func (c *Cache) encodeRecord(r record) []byte {
	b := make([]byte, recordLen)
	copy(b, recordMagic)
	binary.LittleEndian.PutUint32(b[4:], r.size)
	binary.LittleEndian.PutUint64(b[8:], r.seq)
	copy(b[16:32], c.instance[:])
	copy(b[32:64], r.id[:])
	binary.LittleEndian.PutUint32(b[64:], crc32.Checksum(b[:64], castagnoli))
	return b
}

// decodeRecord reads a record header at off; ok is false for anything that
// is not a whole header of this cache.
func (c *Cache) decodeRecord(b []byte, off int64) (record, bool) {
	if string(b[:4]) != recordMagic || crc32.Checksum(b[:64], castagnoli) != binary.LittleEndian.Uint32(b[64:]) ||
		string(b[16:32]) != string(c.instance[:]) {
		return record{}, false
	}
	r := record{off: off, size: binary.LittleEndian.Uint32(b[4:]), seq: binary.LittleEndian.Uint64(b[8:])}
	copy(r.id[:], b[32:64])
	if r.size == 0 || r.size > flist.MaxChunkSize || r.end() > c.size {
		return record{}, false
	}
	return r, true
}

// scan indexes the records from the start of the ring while their
// sequence numbers rise. The first that does not (a header cut by a newer
// record, zeros, an older lap of the ring) is where the last boot stopped
// writing: the head. The records of the lap before it follow the head, and
// are indexed too, as the oldest.
func (c *Cache) scan() error {
	b := make([]byte, recordLen)
	for off := int64(BlockSize); off+recordLen <= c.size; {
		if _, err := c.dev.ReadAt(b, off); err != nil {
			return fmt.Errorf("chunk cache %s: read record at %d: %w", c.name, off, err)
		}
		r, ok := c.decodeRecord(b, off)
		if !ok || (len(c.ring) > 0 && r.seq <= c.seq) {
			break
		}
		c.ring = append(c.ring, r)
		c.index[r.id] = r
		c.seq, c.head = r.seq, r.end()
		off = c.head
	}
	if len(c.ring) > 0 {
		if err := c.scanPrevious(); err != nil {
			return err
		}
	}
	c.stats.Entries = len(c.index)
	return nil
}

// maxSpan is the most device space one record takes.
var maxSpan = align(recordLen + flist.MaxChunkSize)

// scanPrevious indexes the previous lap: its records run from the first
// whole one after the head (the newest lap's last record may have cut
// one, so it starts within maxSpan of the head) while their sequence
// numbers rise and stay below the newest lap's. They go at the front of
// the ring, the next to be overwritten, and never shadow a newer record of
// the same chunk. Whatever they hold is re-hashed at Get like any record.
func (c *Cache) scanPrevious() error {
	first := c.ring[0].seq
	off, err := c.findRecord(c.head, min(c.head+maxSpan, c.size))
	if err != nil || off < 0 {
		return err
	}
	var older []record
	b := make([]byte, recordLen)
	for last := uint64(0); off+recordLen <= c.size; {
		if _, err := c.dev.ReadAt(b, off); err != nil {
			return fmt.Errorf("chunk cache %s: read record at %d: %w", c.name, off, err)
		}
		r, ok := c.decodeRecord(b, off)
		if !ok || r.seq <= last || r.seq >= first {
			break
		}
		older = append(older, r)
		if _, newer := c.index[r.id]; !newer {
			c.index[r.id] = r
		}
		last, off = r.seq, r.end()
	}
	c.ring = append(older, c.ring...)
	return nil
}

// findRecord returns the offset of the first block in [from, to) that
// starts with a record header of this cache, or -1.
func (c *Cache) findRecord(from, to int64) (int64, error) {
	if to-from < recordLen {
		return -1, nil
	}
	buf := make([]byte, to-from)
	if _, err := c.dev.ReadAt(buf, from); err != nil {
		return 0, fmt.Errorf("chunk cache %s: read at %d: %w", c.name, from, err)
	}
	for i := int64(0); i+recordLen <= int64(len(buf)); i += BlockSize {
		if _, ok := c.decodeRecord(buf[i:i+recordLen], from+i); ok {
			return from + i, nil
		}
	}
	return -1, nil
}

// Get returns ref's content from the cache, read into dst's memory when it
// is large enough, once it hashes to ref.ID. A corrupt entry is dropped and
// reported as a miss.
func (c *Cache) Get(ref flist.ChunkRef, dst []byte) (flist.Verified, bool) {
	c.mu.Lock()
	r, ok := c.index[ref.ID]
	off := c.stats.Disabled
	c.mu.Unlock()
	if !ok || off != "" || r.size != ref.Size {
		c.count(func(s *Stats) { s.Misses++ })
		return flist.Verified{}, false
	}
	buf := dst[:0]
	if cap(buf) < int(r.size) {
		buf = make([]byte, r.size)
	}
	buf = buf[:r.size]
	if _, err := c.dev.ReadAt(buf, r.off+recordLen); err != nil {
		c.disable(fmt.Sprintf("read at %d: %v", r.off, err))
		return flist.Verified{}, false
	}
	v, err := flist.CheckContent(ref, buf)
	if err != nil {
		c.mu.Lock()
		if c.index[ref.ID] == r {
			delete(c.index, ref.ID)
		}
		c.stats.Corrupt++
		c.stats.Misses++
		c.mu.Unlock()
		c.log("chunk cache: corrupt entry, fetching it again", "cache", c.name, "offset", r.off, "err", err)
		return flist.Verified{}, false
	}
	c.count(func(s *Stats) { s.Hits++; s.BytesRead += int64(r.size) })
	return v, true
}

// Put stores verified content. It never fails: an error turns the cache
// off with a warning.
func (c *Cache) Put(v flist.Verified) {
	ref, content := v.Ref(), v.Bytes()
	if len(content) == 0 {
		return
	}
	r, ok := c.reserve(ref.ID, uint32(len(content)))
	if !ok {
		return
	}
	// Content first: a header on disk then always has its content behind
	// it, barring reordering, which the hash check at Get catches.
	if _, err := c.dev.WriteAt(content, r.off+recordLen); err != nil {
		c.disable(fmt.Sprintf("write at %d: %v", r.off, err))
		return
	}
	if _, err := c.dev.WriteAt(c.encodeRecord(r), r.off); err != nil {
		c.disable(fmt.Sprintf("write at %d: %v", r.off, err))
		return
	}
	c.mu.Lock()
	c.index[r.id] = r
	c.stats.Puts++
	c.stats.BytesWritten += int64(r.size)
	c.mu.Unlock()
}

// reserve takes the next place in the ring for a record and forgets the
// oldest records it will overwrite.
func (c *Cache) reserve(id digest.Digest, size uint32) (record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stats.Disabled != "" {
		return record{}, false
	}
	if have, ok := c.index[id]; ok && have.size == size {
		return record{}, false // a concurrent Put of the same chunk
	}
	c.seq++
	r := record{off: c.head, size: size, seq: c.seq, id: id}
	if r.end() > c.size {
		// Wrap. The records between the head and the end are the oldest;
		// forget them now, so the ring stays in the order it is
		// overwritten.
		for len(c.ring) > 0 && c.ring[0].off >= c.head {
			c.forget(c.ring[0])
		}
		r.off = BlockSize
	}
	for len(c.ring) > 0 && c.ring[0].off < r.end() && c.ring[0].end() > r.off {
		c.forget(c.ring[0])
	}
	c.ring = append(c.ring, r)
	c.head = r.end()
	return r, true
}

// forget drops the oldest record of the ring, and its index entry unless
// a newer record of the same chunk took its place.
func (c *Cache) forget(old record) {
	if c.index[old.id] == old {
		delete(c.index, old.id)
	}
	c.ring = c.ring[1:]
}

func (c *Cache) count(f func(*Stats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

// disable turns the cache off for good, saying why once.
func (c *Cache) disable(why string) {
	c.mu.Lock()
	first := c.stats.Disabled == ""
	if first {
		c.stats.Disabled = why
	}
	c.mu.Unlock()
	if first {
		c.log("chunk cache: turned off, going on from the network", "cache", c.name, "err", why)
	}
}

// Stats returns the counts so far.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Entries = len(c.index)
	return s
}

// Close flushes what was written and closes the device.
func (c *Cache) Close() error {
	err := c.dev.Sync()
	if cerr := c.dev.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("chunk cache %s: close: %w", c.name, err)
	}
	return nil
}

// Source reads chunks from Cache and fetches the rest from Next, putting
// what Next verified into the cache. It implements flist.ChunkSource.
type Source struct {
	Cache *Cache
	Next  flist.ChunkSource
}

// Chunk implements flist.ChunkSource.
func (s Source) Chunk(ctx context.Context, ref flist.ChunkRef, buf []byte) (flist.Verified, error) {
	if v, ok := s.Cache.Get(ref, buf); ok {
		return v, nil
	}
	v, err := s.Next.Chunk(ctx, ref, buf)
	if err != nil {
		return v, err
	}
	s.Cache.Put(v)
	return v, nil
}
