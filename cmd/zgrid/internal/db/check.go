package db

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's on-disk format (go.etcd.io/bbolt, internal/common), read here
// without bbolt: bbolt maps the whole file and trusts its meta pages, so a
// truncated file makes it touch memory past the end of the file (SIGBUS,
// which no recover catches). Pages 0 and 1 are meta pages: a 16-byte page
// header (id uint64, flags uint16, count uint16, overflow uint32), then the
// meta (magic, version, page size, flags uint32; root bucket pgid and
// sequence, freelist pgid, high water mark pgid, txid, checksum uint64), in
// the machine's byte order. The checksum is FNV-64a of the meta before it.
const (
	pageHeaderSize = 16
	metaSize       = 64
	metaChecksumAt = 56 // bytes of the meta the checksum covers
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	metaPageFlag   = 0x04
	noFreelist     = ^uint64(0)
	minPageSize    = 1 << 10 // the range bbolt itself probes for a page size
	maxPageSize    = 1 << 24
)

// meta is one decoded meta page.
type meta struct {
	pageID, pageSize, root, freelist, hwm, txid uint64
}

// FileInfo is what the meta pages say about a database file.
type FileInfo struct {
	Size     int64  // bytes on disk
	PageSize int    // bbolt page size
	Pages    uint64 // high water mark: pages the newest meta says are in use
	TxID     uint64 // newest committed transaction
}

// CheckFile reads a database file's two meta pages and checks, without
// mapping it, that bbolt can open it safely: magic, version and checksum
// of both meta pages, one page size, and a file at least as long as the
// pages either meta page counts. bbolt accepts a file with one bad meta
// page (falling back to the other, one transaction older); this refuses
// it, because a meta page damaged after its commit was acknowledged would
// silently drop that commit. Errors wrap ErrCorrupt, or ErrMissing for a
// missing or empty file.
func CheckFile(path string) (FileInfo, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return FileInfo{}, fmt.Errorf("database %s: %w: no such file", path, ErrMissing)
	}
	if err != nil {
		return FileInfo{}, fmt.Errorf("open database %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return FileInfo{}, fmt.Errorf("stat database %s: %w", path, err)
	}
	info := FileInfo{Size: st.Size()}
	if !st.Mode().IsRegular() {
		return info, fmt.Errorf("database %s: %w: not a regular file (%s)", path, ErrCorrupt, st.Mode().Type())
	}
	if info.Size == 0 {
		return info, fmt.Errorf("database %s: %w: the file is empty (0 bytes)", path, ErrMissing)
	}
	m0, err := readMeta(f, 0, 0)
	if err != nil {
		// Page 1 is where this machine's page size puts it, most likely.
		other, oerr := readMeta(f, 1, uint64(os.Getpagesize()))
		return info, fmt.Errorf("database %s (%d bytes): %w: meta page 0: %v%s", path, info.Size, ErrCorrupt, err, intact(1, other, oerr))
	}
	m1, err := readMeta(f, 1, m0.pageSize)
	if err != nil {
		return info, fmt.Errorf("database %s (%d bytes): %w: meta page 1: %v%s", path, info.Size, ErrCorrupt, err, intact(0, m0, nil))
	}
	if m1.pageSize != m0.pageSize {
		return info, fmt.Errorf("database %s: %w: meta pages disagree on the page size (%d, %d)", path, ErrCorrupt, m0.pageSize, m1.pageSize)
	}
	newest := m0
	if m1.txid > m0.txid {
		newest = m1
	}
	info.PageSize, info.Pages, info.TxID = int(m0.pageSize), newest.hwm, newest.txid
	for i, m := range []meta{m0, m1} {
		if need := m.hwm * m.pageSize; uint64(info.Size) < need {
			return info, fmt.Errorf("database %s: %w: truncated: the file is %d bytes, meta page %d (transaction %d) says its pages reach %d bytes",
				path, ErrCorrupt, info.Size, i, m.txid, need)
		}
	}
	return info, nil
}

// intact says that the other meta page checks out: bbolt would open the
// file from it, as of one transaction earlier, which is worth knowing
// when no backup is newer.
func intact(n int, m meta, err error) string {
	if err != nil {
		return ""
	}
	return fmt.Sprintf(" (meta page %d checks out: transaction %d)", n, m.txid)
}

// readMeta reads and checks meta page n (0 or 1). Page 0 starts the file;
// page 1 starts one page in, at pageSize, which only page 0 tells.
func readMeta(r io.ReaderAt, n, pageSize uint64) (meta, error) {
	buf := make([]byte, pageHeaderSize+metaSize)
	if got, err := r.ReadAt(buf, int64(n*pageSize)); err != nil {
		if errors.Is(err, io.EOF) {
			return meta{}, fmt.Errorf("truncated: the file ends %d bytes into the page", got)
		}
		return meta{}, err
	}
	e := binary.NativeEndian
	hdr, mb := buf[:pageHeaderSize], buf[pageHeaderSize:]
	m := meta{
		pageID:   e.Uint64(hdr[0:]),
		pageSize: uint64(e.Uint32(mb[8:])),
		root:     e.Uint64(mb[16:]),
		freelist: e.Uint64(mb[32:]),
		hwm:      e.Uint64(mb[40:]),
		txid:     e.Uint64(mb[48:]),
	}
	h := fnv.New64a()
	h.Write(mb[:metaChecksumAt])
	switch {
	case e.Uint32(mb[0:]) != boltMagic:
		return m, fmt.Errorf("magic %#x, want %#x: not a bbolt database, or overwritten", e.Uint32(mb[0:]), boltMagic)
	case e.Uint32(mb[4:]) != boltVersion:
		return m, fmt.Errorf("format version %d, want %d", e.Uint32(mb[4:]), boltVersion)
	case e.Uint64(mb[metaChecksumAt:]) != h.Sum64():
		return m, errors.New("checksum mismatch: the page was changed after it was written")
	case e.Uint16(hdr[8:]) != metaPageFlag || m.pageID != n:
		return m, fmt.Errorf("page header says page %d, flags %#x: not meta page %d", m.pageID, e.Uint16(hdr[8:]), n)
	case m.pageSize < minPageSize || m.pageSize > maxPageSize || m.pageSize&(m.pageSize-1) != 0:
		return m, fmt.Errorf("page size %d is not a power of two in [%d, %d]", m.pageSize, minPageSize, maxPageSize)
	case m.hwm < 2 || m.root >= m.hwm || (m.freelist != noFreelist && m.freelist >= m.hwm):
		return m, fmt.Errorf("root page %d, freelist page %d, high water mark %d are inconsistent", m.root, m.freelist, m.hwm)
	}
	return m, nil
}
