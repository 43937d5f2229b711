// Package chunkcache keeps verified chunk content on a local disk, so a
// node that reboots into a release it already had writes its components
// from the disk instead of fetching them (docs/chunkcache.md).
//
// The disk is untrusted: anyone with the machine in hand can write it.
// Nothing read from it is used before its SHA-256 matches the chunk
// reference the signed release gave (flist.CheckContent), never on the
// strength of an index or a length. A corrupt entry is a miss; the caller
// fetches the chunk and its Put replaces the entry. Any I/O error turns the
// cache off for the rest of the boot with one warning: the node goes on
// from the network.
//
// The layout is a ring of records after a header block, so the cache never
// fills: new records overwrite the oldest.
package chunkcache

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

// Format constants (docs/chunkcache.md).
const (
	Magic       = "ZBCACHE1"
	Version     = 1
	BlockSize   = 4096
	MinSize     = 16 << 20
	recordMagic = "ZBCR"
	headerLen   = 48 // of the header block: magic, version, size, instance, crc
	recordLen   = 96 // of a record header: 68 bytes used, the rest zeros
	// probeLen is how much of a device must be zeros for Open to format it
	// without being told to: a disk with anything on it is not ours.
	probeLen = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Device is what the cache reads and writes: an *os.File on a block device
// or a file.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Close() error
}

// Options are Open's choices.
type Options struct {
	// Wipe formats a device that does not hold a cache even when it is
	// not empty (zeroboot.cache.wipe). Without it only a device whose
	// first MiB is zeros is formatted.
	Wipe bool
	// Log is told when the cache turns itself off or finds a corrupt
	// entry; nil is silent.
	Log func(msg string, args ...any)
}

// Stats count what the cache did since Open.
type Stats struct {
	Entries      int // indexed records
	Hits         int
	Misses       int
	Corrupt      int // entries whose content did not match their chunk
	Puts         int
	BytesRead    int64
	BytesWritten int64
	Disabled     string // why the cache is off, "" while on
}

// Cache is a chunk cache on one device. Safe for concurrent use.
type Cache struct {
	name     string
	dev      Device
	size     int64
	instance [16]byte
	log      func(msg string, args ...any)

	mu    sync.Mutex
	index map[digest.Digest]record
	ring  []record // indexed and pending records in write order, oldest first
	head  int64    // where the next record goes
	seq   uint64   // of the last record written
	stats Stats
}

// record is one chunk's place on the device.
type record struct {
	off  int64
	size uint32
	seq  uint64
	id   digest.Digest
}

func (r record) end() int64 { return r.off + align(recordLen+int64(r.size)) }

func align(n int64) int64 { return (n + BlockSize - 1) / BlockSize * BlockSize }

// Open opens the cache on path (a block device or a file), formatting it
// when it is empty or Wipe says so, and indexes the records on it.
func Open(path string, o Options) (*Cache, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("chunk cache %s: %w", path, err)
	}
	// Seek works for block devices, where Stat reports size 0.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("chunk cache %s: size: %w", path, err)
	}
	c, err := OpenDevice(path, f, size, o)
	if err != nil {
		f.Close()
		return nil, err
	}
	return c, nil
}

// OpenDevice is Open on a device already opened, of size bytes; name is
// used in messages.
func OpenDevice(name string, dev Device, size int64, o Options) (*Cache, error) {
	size = size / BlockSize * BlockSize
	if size < MinSize {
		return nil, fmt.Errorf("chunk cache %s: %d bytes, need at least %d", name, size, MinSize)
	}
	c := &Cache{name: name, dev: dev, size: size, log: o.Log, index: make(map[digest.Digest]record), head: BlockSize}
	if c.log == nil {
		c.log = func(string, ...any) {}
	}
	hdr := make([]byte, BlockSize)
	if _, err := dev.ReadAt(hdr, 0); err != nil {
		return nil, fmt.Errorf("chunk cache %s: read header: %w", name, err)
	}
	switch ours, err := c.parseHeader(hdr); {
	case err != nil:
		return nil, err
	case ours:
		if err := c.scan(); err != nil {
			return nil, err
		}
		return c, nil
	}
	if !o.Wipe {
		if err := c.checkEmpty(); err != nil {
			return nil, err
		}
	}
	if err := c.format(); err != nil {
		return nil, err
	}
	return c, nil
}

// parseHeader says whether hdr is a cache header; one of ours that is
// damaged or from another version is an error, not a disk to format.
func (c *Cache) parseHeader(hdr []byte) (bool, error) {
	if string(hdr[:8]) != Magic {
		return false, nil
	}
	if crc32.Checksum(hdr[:headerLen-4], castagnoli) != binary.LittleEndian.Uint32(hdr[headerLen-4:]) {
		return false, fmt.Errorf("chunk cache %s: header checksum mismatch (damaged; zeroboot.cache.wipe=1 reformats it)", c.name)
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != Version {
		return false, fmt.Errorf("chunk cache %s: format version %d, this build reads %d (zeroboot.cache.wipe=1 reformats it)", c.name, v, Version)
	}
	// A device that shrank keeps only what still fits; one that grew
	// keeps its old size until formatted again.
	c.size = min(c.size, int64(binary.LittleEndian.Uint64(hdr[16:])))
	copy(c.instance[:], hdr[24:40])
	return true, nil
}

func (c *Cache) checkEmpty() error {
	b := make([]byte, min(probeLen, c.size))
	if _, err := c.dev.ReadAt(b, 0); err != nil {
		return fmt.Errorf("chunk cache %s: read: %w", c.name, err)
	}
	if i := bytes.IndexFunc(b, func(r rune) bool { return r != 0 }); i >= 0 {
		return fmt.Errorf("chunk cache %s: holds data that is not a zeroboot cache (non-zero byte at %d); refusing to format it (zeroboot.cache.wipe=1 allows it)", c.name, i)
	}
	return nil
}

func (c *Cache) format() error {
	if _, err := rand.Read(c.instance[:]); err != nil {
		return fmt.Errorf("chunk cache %s: %w", c.name, err)
	}
	hdr := make([]byte, 2*BlockSize) // the header, and a zero block where the first record goes
	copy(hdr, Magic)
	binary.LittleEndian.PutUint32(hdr[8:], Version)
	binary.LittleEndian.PutUint64(hdr[16:], uint64(c.size))
	copy(hdr[24:40], c.instance[:])
	binary.LittleEndian.PutUint32(hdr[headerLen-4:], crc32.Checksum(hdr[:headerLen-4], castagnoli))
	if _, err := c.dev.WriteAt(hdr, 0); err != nil {
		return fmt.Errorf("chunk cache %s: format: %w", c.name, err)
	}
	if err := c.dev.Sync(); err != nil {
		return fmt.Errorf("chunk cache %s: format: %w", c.name, err)
	}
	return nil
}
