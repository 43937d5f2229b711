package flist

import (
	"archive/tar"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zeroboot/zeroboot/pkg/digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Sink receives every chunk the builder produces. The same chunk may be put
// more than once (identical content in two files); a sink must be idempotent.
// compressed is not reused after PutChunk returns.
//
// PutChunk returns the reference as stored: same ID and Size, and CSize the
// length of the copy the sink holds, which is not the offered one when the
// sink already had a valid copy compressed differently (stored bytes never
// change). The builder records that CSize so the flist can read what is
// actually stored.
type Sink interface {
	PutChunk(ref ChunkRef, compressed []byte) (ChunkRef, error)
}

// Progress is a snapshot of a build. Bytes and Chunks count content that
// reached the sink.
type Progress struct {
	Files, Bytes, Chunks int64
	Elapsed              time.Duration
}

// Builder turns a tree into an Flist, pushing its chunks to Sink. Memory is
// bounded by about Workers×ChunkSize×2 whatever the file sizes.
type Builder struct {
	ChunkSize int // default DefaultChunkSize, at most MaxChunkSize
	// PackLimit is the largest file packed with other small files into
	// shared chunks: default DefaultPackLimit, at most ChunkSize; negative
	// packs nothing.
	PackLimit int
	// Version is the flist version to write: 0 for DefaultVersion; 3
	// names chunks by BLAKE3; 2 by SHA-256, for readers older than
	// version 3; 1 for readers older than version 2, which packs nothing
	// and stores the names of a file with hard links as separate files.
	Version int
	// Exclude lists path.Match patterns of entries left out, with
	// everything under them: a pattern with a "/" is matched against the
	// whole path, one without against each name in it.
	Exclude []string
	// Skip is asked about an entry that cannot be stored (a file or
	// directory that cannot be opened, a socket): true leaves it out,
	// false fails the build with err. Nil fails.
	Skip     func(path string, err error) bool
	Sink     Sink
	Workers  int            // default runtime.NumCPU()
	Progress func(Progress) // at most ~10 calls a second, and once at the end
}

const progressEvery = 100 * time.Millisecond

// DefaultPackLimit is Builder.PackLimit when unset: most files of an OS
// tree are smaller, and each would otherwise cost a reader a request.
const DefaultPackLimit = 64 << 10

// A pack is closed after a file whose content digest's first 16 bits are
// below packCut (one file in 64 on average), or when the next file would
// not fit. Cutting by content rather than by count alone means one added or
// removed file changes only its own pack, not every later one, so two
// releases of a tree still share most packs.
const packCut = 1 << 16 / 64

// pending is an entry whose chunk list is still being filled by workers.
// A packed file's fr is its pack's, holding one chunk; off is where the
// file's bytes start in it.
type pending struct {
	e      Entry
	fr     *fileRefs
	packed bool
	off    uint32
	link   *linkGroup // set for every name of a file with hard links
}

// linkGroup is the names of one file with hard links: src is the name read
// first, with the content. In the flist the first name in path order holds
// the file and the others are hard links to it, whatever order they were
// read in.
type linkGroup struct {
	src   pending
	first string // set by assemble
}

type devIno struct{ dev, ino uint64 }

// openPack is the shared chunk being filled with small files.
type openPack struct {
	buf   []byte
	n     int
	fr    *fileRefs
	first string // its first file, named in errors
}

// packedAt is where content already packed in this build lies, so an
// identical small file is stored once.
type packedAt struct {
	fr  *fileRefs
	off uint32
}

// fileRefs collects a file's chunk references, written by workers in any
// order. It grows as chunks arrive so that nothing is allocated from a
// declared (possibly lying) size.
type fileRefs struct {
	mu   sync.Mutex
	refs []ChunkRef
	n    int // chunks dispatched, set by the producer when the file is read
}

func (f *fileRefs) set(i int, r ChunkRef) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.refs) <= i {
		f.refs = append(f.refs, ChunkRef{})
	}
	f.refs[i] = r
}

type job struct {
	path string
	off  uint64
	buf  []byte
	n    int
	fr   *fileRefs
	idx  int
}

// build is one run of the chunking pipeline: a producer reads files in
// order and fills buffers, workers compress and sink them.
type build struct {
	ctx       context.Context
	chunkSize int
	packLimit int
	hash      Hash // names every chunk, and finds duplicate small files
	pack      openPack
	seen      map[digest.Digest]packedAt
	inodes    map[devIno]*linkGroup // files with hard links, by inode; nil: copy them
	jobs      chan job
	free      chan []byte
	allocated int // buffers made so far; producer only
	files     atomic.Int64
	bytes     atomic.Int64
	chunks    atomic.Int64
}

// version is the flist version b writes.
func (b *Builder) version() int { return cmp.Or(b.Version, DefaultVersion) }

func (b *Builder) config() (chunkSize, packLimit, workers int, err error) {
	chunkSize, packLimit, workers = b.ChunkSize, b.PackLimit, b.Workers
	v := b.version()
	if chunkSize == 0 {
		chunkSize = DefaultChunkSize
	}
	if chunkSize < 0 || chunkSize > MaxChunkSize {
		return 0, 0, 0, fmt.Errorf("build: chunk size %d outside 1..%d", chunkSize, MaxChunkSize)
	}
	for _, pat := range b.Exclude {
		if _, err := path.Match(pat, ""); err != nil || pat == "" {
			return 0, 0, 0, fmt.Errorf("build: exclude pattern %q: %v", pat, cmp.Or(err, errors.New("empty")))
		}
	}
	switch {
	case v < VersionPlain || v > Version:
		return 0, 0, 0, fmt.Errorf("build: flist version %d, this builder writes %d..%d", v, VersionPlain, Version)
	case packLimit < 0 || v == VersionPlain:
		packLimit = 0
	case packLimit == 0:
		packLimit = min(DefaultPackLimit, chunkSize)
	case packLimit > chunkSize:
		return 0, 0, 0, fmt.Errorf("build: pack limit %d over the chunk size %d", packLimit, chunkSize)
	}
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	if b.Sink == nil {
		return 0, 0, 0, errors.New("build: no sink")
	}
	return chunkSize, packLimit, workers, nil
}

// run drives produce (which reads the tree and dispatches content) against
// the worker pool, then assembles and validates the sorted Flist.
func (b *Builder) run(ctx context.Context, produce func(*build) ([]pending, error)) (*Flist, error) {
	chunkSize, packLimit, workers, err := b.config()
	if err != nil {
		return nil, err
	}
	var inodes map[devIno]*linkGroup
	if b.version() != VersionPlain {
		inodes = make(map[devIno]*linkGroup)
	}
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	bd := &build{
		ctx:       gctx,
		chunkSize: chunkSize,
		packLimit: packLimit,
		hash:      versionHash(uint16(b.version())),
		seen:      make(map[digest.Digest]packedAt),
		inodes:    inodes,
		jobs:      make(chan job),
		free:      make(chan []byte, workers+1),
	}
	for range workers {
		g.Go(func() error { return bd.work(b.Sink) })
	}
	var out []pending
	g.Go(func() error {
		defer close(bd.jobs)
		var err error
		if out, err = produce(bd); err != nil {
			return err
		}
		return bd.closePack()
	})
	stop := b.report(bd, start)
	err = g.Wait()
	stop()
	if err != nil {
		return nil, err
	}
	return assemble(out, bd.hash)
}

// report calls Progress on a ticker until the returned stop is called, then
// once more with the final figures.
func (b *Builder) report(bd *build, start time.Time) (stop func()) {
	if b.Progress == nil {
		return func() {}
	}
	snap := func() Progress {
		return Progress{Files: bd.files.Load(), Bytes: bd.bytes.Load(), Chunks: bd.chunks.Load(), Elapsed: time.Since(start)}
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				b.Progress(snap())
			}
		}
	}()
	return func() {
		close(done)
		<-exited
		b.Progress(snap())
	}
}

func assemble(ps []pending, h Hash) (*Flist, error) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].e.Path < ps[j].e.Path })
	f := &Flist{Entries: make([]Entry, len(ps)), Hash: h}
	for i, p := range ps {
		var err error
		if g := p.link; g != nil {
			f.Entries[i], err = g.entry(p.e.Path)
		} else {
			f.Entries[i], err = p.entry()
		}
		if err != nil {
			return nil, err
		}
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	return f, nil
}

// entry is p's entry with the chunk references the workers returned.
func (p pending) entry() (Entry, error) {
	if p.fr != nil {
		if len(p.fr.refs) != p.fr.n {
			return Entry{}, fmt.Errorf("build %s: %d of %d chunks came back", p.e.Path, len(p.fr.refs), p.fr.n)
		}
		p.e.Chunks = p.fr.refs
	}
	if p.packed {
		p.e.Pack, p.e.Chunks = &PackRef{Chunk: p.fr.refs[0], Off: p.off}, nil
	}
	return p.e, nil
}

// entry is name's entry: the file with the content when it is the
// group's first name in path order (assemble goes in that order), else a
// hard link to that first name.
func (g *linkGroup) entry(name string) (Entry, error) {
	if g.first != "" {
		return Entry{Path: name, Type: TypeHardlink, Target: g.first}, nil
	}
	g.first = name
	p := g.src
	p.e.Path = name
	return p.entry()
}

func (bd *build) work(sink Sink) error {
	for j := range bd.jobs {
		ref, c, err := CompressChunk(bd.hash, j.buf[:j.n])
		bd.free <- j.buf
		if err != nil {
			return fmt.Errorf("build %s at offset %d: %w", j.path, j.off, err)
		}
		stored, err := sink.PutChunk(ref, c)
		if err != nil {
			return fmt.Errorf("build %s at offset %d: put %s: %w", j.path, j.off, ref, err)
		}
		if err := checkStored(ref, stored); err != nil {
			return fmt.Errorf("build %s at offset %d: put %s: %w", j.path, j.off, ref, err)
		}
		j.fr.set(j.idx, stored)
		bd.bytes.Add(int64(j.n))
		bd.chunks.Add(1)
	}
	return nil
}

// checkStored refuses a sink's answer that names another chunk or a
// compressed size no reader would accept.
func checkStored(offered, stored ChunkRef) error {
	if stored.ID != offered.ID || stored.Hash != offered.Hash || stored.Size != offered.Size {
		return fmt.Errorf("sink answered with %s", stored)
	}
	if stored.CSize == 0 || stored.CSize > MaxCompressedSize {
		return fmt.Errorf("sink stored %d compressed bytes, want 1..%d", stored.CSize, MaxCompressedSize)
	}
	return nil
}

// buffer hands out one of at most cap(free) chunk buffers.
func (bd *build) buffer() ([]byte, error) {
	select {
	case b := <-bd.free:
		return b, nil
	default:
	}
	if bd.allocated < cap(bd.free) {
		bd.allocated++
		return make([]byte, bd.chunkSize), nil
	}
	select {
	case b := <-bd.free:
		return b, nil
	case <-bd.ctx.Done():
		return nil, bd.ctx.Err()
	}
}

// content reads a file's p.e.Size bytes from r: packed with other small
// files, or cut into chunks of its own.
func (bd *build) content(p *pending, r io.Reader) error {
	if p.e.Size == 0 || p.e.Size > uint64(bd.packLimit) {
		var err error
		p.fr, err = bd.chunkFile(p.e.Path, r, p.e.Size)
		return err
	}
	return bd.packFile(p, r)
}

// packFile appends a small file to the open pack, or points it at an
// identical one already packed.
func (bd *build) packFile(p *pending, r io.Reader) error {
	size := int(p.e.Size)
	if bd.pack.buf != nil && bd.pack.n+size > bd.chunkSize {
		if err := bd.closePack(); err != nil {
			return err
		}
	}
	if bd.pack.buf == nil {
		buf, err := bd.buffer()
		if err != nil {
			return err
		}
		bd.pack = openPack{buf: buf, fr: &fileRefs{n: 1}, first: p.e.Path}
	}
	dst := bd.pack.buf[bd.pack.n : bd.pack.n+size]
	if _, err := io.ReadFull(r, dst); err != nil {
		return fmt.Errorf("build %s: read at offset 0: %w", p.e.Path, err)
	}
	bd.files.Add(1)
	sum := bd.hash.Sum(dst)
	if at, ok := bd.seen[sum]; ok {
		p.fr, p.off, p.packed = at.fr, at.off, true
		return nil
	}
	at := packedAt{fr: bd.pack.fr, off: uint32(bd.pack.n)}
	bd.seen[sum] = at
	p.fr, p.off, p.packed = at.fr, at.off, true
	bd.pack.n += size
	if binary.BigEndian.Uint16(sum[:2]) < packCut {
		return bd.closePack()
	}
	return nil
}

// closePack hands the open pack, if any, to the workers as one chunk.
func (bd *build) closePack() error {
	pk := bd.pack
	if pk.buf == nil {
		return nil
	}
	bd.pack = openPack{}
	if pk.n == 0 {
		bd.free <- pk.buf
		return nil
	}
	select {
	case bd.jobs <- job{path: pk.first, buf: pk.buf, n: pk.n, fr: pk.fr}:
		return nil
	case <-bd.ctx.Done():
		bd.free <- pk.buf
		return bd.ctx.Err()
	}
}

// chunkFile reads exactly size bytes from r and dispatches them as chunks.
func (bd *build) chunkFile(name string, r io.Reader, size uint64) (*fileRefs, error) {
	fr := &fileRefs{}
	var off uint64
	for ; off < size; fr.n++ {
		n := int(min(size-off, uint64(bd.chunkSize)))
		buf, err := bd.buffer()
		if err != nil {
			return nil, err
		}
		if err := readChunk(r, buf[:n], off); err != nil {
			bd.free <- buf
			return nil, fmt.Errorf("build %s: read at offset %d: %w", name, off, err)
		}
		select {
		case bd.jobs <- job{path: name, off: off, buf: buf, n: n, fr: fr, idx: fr.n}:
		case <-bd.ctx.Done():
			bd.free <- buf
			return nil, bd.ctx.Err()
		}
		off += uint64(n)
	}
	bd.files.Add(1)
	return fr, nil
}

// readChunk fills buf with the next len(buf) bytes of r. From a sparse
// file (a *sparseFile), a range that is all hole is zeros without being
// read: a 100 GB disk image of 1 GB data costs reading 1 GB.
func readChunk(r io.Reader, buf []byte, off uint64) error {
	if s, ok := r.(sparseFile); ok {
		if hole, err := s.skipHole(int64(off), int64(len(buf))); err != nil || hole {
			clear(buf)
			return err
		}
	}
	_, err := io.ReadFull(r, buf)
	return err
}

// sparseFile is a regular file with fewer blocks than its size says.
type sparseFile struct{ *os.File }

// skipHole says whether [off, off+n) holds no data (SEEK_DATA finds the
// next data past it, or none) and leaves the offset after the range if so,
// at off otherwise.
func (s sparseFile) skipHole(off, n int64) (bool, error) {
	data, err := s.Seek(off, unix.SEEK_DATA)
	hole := errors.Is(err, syscall.ENXIO) || (err == nil && data >= off+n)
	if err != nil && !hole {
		return false, err
	}
	next := off
	if hole {
		next = off + n
	}
	_, err = s.Seek(next, io.SeekStart)
	return hole, err
}

// BuildDir builds an Flist of the tree under dir (dir itself is not an
// entry). Symlinks are stored, never followed; a file with hard links is
// stored once; sockets are refused.
func (b *Builder) BuildDir(ctx context.Context, dir string) (*Flist, error) {
	// A symlink to a directory packs the directory: WalkDir would take
	// the link itself as the whole tree and find nothing in it.
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("build %s: not a directory", dir)
	}
	return b.run(ctx, func(bd *build) ([]pending, error) {
		var out []pending
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err := bd.ctx.Err(); err != nil {
				return err
			}
			rel, rerr := filepath.Rel(dir, p)
			if rerr != nil || rel == "." {
				if err != nil {
					return fmt.Errorf("build: %w", err)
				}
				return rerr
			}
			rel = filepath.ToSlash(rel)
			if b.excluded(rel) {
				return skipEntry(d)
			}
			var pe pending
			if err == nil {
				pe, err = bd.dirEntry(p, rel)
			} else {
				err = unstorable{fmt.Errorf("build %s: %w", rel, err)}
			}
			var u unstorable
			if errors.As(err, &u) && b.Skip != nil && b.Skip(rel, u.err) {
				return skipEntry(d)
			}
			if err != nil {
				return err
			}
			out = append(out, pe)
			return nil
		})
		return out, err
	})
}

// unstorable is an entry the builder cannot read or store (Builder.Skip
// may leave it out); any other error fails the build.
type unstorable struct{ err error }

func (u unstorable) Error() string { return u.err.Error() }
func (u unstorable) Unwrap() error { return u.err }

// skipEntry leaves d out of a walk, with its contents.
func skipEntry(d fs.DirEntry) error {
	if d != nil && d.IsDir() {
		return fs.SkipDir
	}
	return nil
}

// excluded says whether rel, or a directory above it, matches Exclude.
func (b *Builder) excluded(rel string) bool {
	for p := rel; p != "."; p = path.Dir(p) {
		for _, pat := range b.Exclude {
			target := p
			if !strings.Contains(pat, "/") {
				target = path.Base(p)
			}
			if ok, _ := path.Match(pat, target); ok {
				return true
			}
		}
	}
	return false
}

func (bd *build) dirEntry(full, rel string) (pending, error) {
	st, err := lstat(full)
	if err != nil {
		return pending{}, fmt.Errorf("build %s: %w", rel, err)
	}
	e, err := statEntry(rel, st)
	if err != nil {
		return pending{}, err
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		e.Type = TypeDir
	case syscall.S_IFLNK:
		e.Type = TypeSymlink
		if e.Target, err = os.Readlink(full); err != nil {
			return pending{}, fmt.Errorf("build %s: %w", rel, err)
		}
	case syscall.S_IFCHR:
		e.Type, e.Rdev = TypeCharDev, st.Rdev
	case syscall.S_IFBLK:
		e.Type, e.Rdev = TypeBlockDev, st.Rdev
	case syscall.S_IFIFO:
		e.Type = TypeFIFO
	case syscall.S_IFSOCK:
		return pending{}, unstorable{fmt.Errorf("build %s: is a socket; sockets cannot be stored in an flist", rel)}
	case syscall.S_IFREG:
		return bd.regularEntry(full, e, st)
	default:
		return pending{}, fmt.Errorf("build %s: unsupported file type %#o", rel, st.Mode&syscall.S_IFMT)
	}
	return pending{e: e}, nil
}

// regularEntry reads a regular file, once per inode: a further name of a
// file with hard links joins the first one's group.
func (bd *build) regularEntry(full string, e Entry, st *syscall.Stat_t) (pending, error) {
	key := devIno{uint64(st.Dev), st.Ino}
	links := st.Nlink > 1 && bd.inodes != nil
	if g, ok := bd.inodes[key]; ok && links {
		return pending{e: Entry{Path: e.Path, Type: TypeFile}, link: g}, nil
	}
	e.Type, e.Size = TypeFile, uint64(st.Size)
	p := pending{e: e}
	if err := bd.regular(full, &p, st); err != nil {
		return p, err
	}
	if links {
		p.link = &linkGroup{src: p}
		bd.inodes[key] = p.link
	}
	return p, nil
}

// statEntry is the metadata of rel as lstat gave it, refused before its
// content is read when no flist can hold it.
func statEntry(rel string, st *syscall.Stat_t) (Entry, error) {
	if err := CheckOwner(st.Uid, st.Gid); err != nil {
		return Entry{}, fmt.Errorf("build %s: %w", rel, err)
	}
	return Entry{Path: rel, Mode: st.Mode & ModeMask, UID: st.Uid, GID: st.Gid, MTime: st.Mtim.Sec}, nil
}

func lstat(p string) (*syscall.Stat_t, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	return &st, nil
}

// regular chunks a file, refusing one that was swapped or changed size
// between the lstat and the end of the read.
func (bd *build) regular(full string, p *pending, st *syscall.Stat_t) error {
	rel := p.e.Path
	f, err := os.OpenFile(full, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return unstorable{fmt.Errorf("build %s: %w", rel, err)}
	}
	defer f.Close()
	var fst syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &fst); err != nil {
		return fmt.Errorf("build %s: fstat: %w", rel, err)
	}
	if fst.Ino != st.Ino || fst.Dev != st.Dev {
		return fmt.Errorf("build %s: replaced while building", rel)
	}
	var r io.Reader = f
	if st.Blocks*512 < st.Size {
		r = sparseFile{f}
	}
	if err := bd.content(p, r); err != nil {
		return err
	}
	if n, _ := f.ReadAt(make([]byte, 1), st.Size); n != 0 {
		return fmt.Errorf("build %s: grew past %d bytes while building", rel, st.Size)
	}
	return nil
}

// BuildTar builds an Flist from a tar stream. Names are normalized ("./x",
// "x/"), names with ".." or a leading "/" are refused, missing parent
// directories are made up (0755, root, mtime 0), and a hard link becomes a
// file sharing its target's chunks. The target must come earlier in the
// stream, as tar requires.
func (b *Builder) BuildTar(ctx context.Context, r io.Reader) (*Flist, error) {
	return b.run(ctx, func(bd *build) ([]pending, error) {
		tr := tar.NewReader(r)
		var out []pending
		index := make(map[string]int)
		for members := 0; ; members++ {
			if err := bd.ctx.Err(); err != nil {
				return nil, err
			}
			hdr, err := tr.Next()
			if err == io.EOF && members == 0 {
				// An empty file or /dev/null reads as an empty archive; an
				// empty flist from it is never what was meant.
				return nil, errors.New("build: the tar archive has no entries (empty input?)")
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("build: read tar: %w", err)
			}
			if hdr.Typeflag == tar.TypeXGlobalHeader {
				continue // defaults for later headers, already applied by the reader
			}
			if name, err := tarName(hdr.Name); err == nil && name != "" && b.excluded(name) {
				continue // its content is skipped by the next Next
			}
			p, err := bd.tarEntry(tr, hdr, out, index)
			if err != nil {
				return nil, err
			}
			if p.e.Path == "" {
				continue // the root itself
			}
			if i, ok := index[p.e.Path]; ok {
				// A directory listed again updates its metadata, as tar
				// would; anything else twice is ambiguous.
				if out[i].e.Type != TypeDir || p.e.Type != TypeDir {
					return nil, fmt.Errorf("build: tar entry %q: duplicate name", hdr.Name)
				}
				out[i] = p
				continue
			}
			index[p.e.Path] = len(out)
			out = append(out, p)
		}
		return addParents(out, index)
	})
}

func (bd *build) tarEntry(tr *tar.Reader, hdr *tar.Header, out []pending, index map[string]int) (pending, error) {
	bad := func(format string, args ...any) (pending, error) {
		return pending{}, fmt.Errorf("build: tar entry %q: %s", hdr.Name, fmt.Sprintf(format, args...))
	}
	name, err := tarName(hdr.Name)
	if err != nil {
		return bad("%v", err)
	}
	if name == "" {
		if hdr.Typeflag != tar.TypeDir {
			return bad("names the root but is not a directory")
		}
		return pending{}, nil
	}
	if hdr.Uid < 0 || hdr.Uid > math.MaxUint32 || hdr.Gid < 0 || hdr.Gid > math.MaxUint32 {
		return bad("uid/gid %d/%d out of range", hdr.Uid, hdr.Gid)
	}
	if err := CheckOwner(uint32(hdr.Uid), uint32(hdr.Gid)); err != nil {
		return bad("%v", err)
	}
	e := Entry{Path: name, Mode: uint32(hdr.Mode) & ModeMask, UID: uint32(hdr.Uid), GID: uint32(hdr.Gid), MTime: hdr.ModTime.Unix()}
	switch hdr.Typeflag {
	case tar.TypeReg:
		if hdr.Size < 0 {
			return bad("negative size")
		}
		e.Type, e.Size = TypeFile, uint64(hdr.Size)
		p := pending{e: e}
		err := bd.content(&p, tr)
		return p, err
	case tar.TypeLink:
		target, err := tarName(hdr.Linkname)
		if err != nil {
			return bad("hard link target %q: %v", hdr.Linkname, err)
		}
		i, ok := index[target]
		if !ok || out[i].e.Type != TypeFile {
			return bad("hard link target %q is not a regular file earlier in the archive", hdr.Linkname)
		}
		// A hard link shares the inode, so metadata and content are the
		// target's: the same tree read from disk gives the same entries.
		if bd.inodes == nil { // version 1: a copy with the target's metadata
			p := out[i]
			p.e.Path = name
			return p, nil
		}
		if out[i].link == nil {
			out[i].link = &linkGroup{src: out[i]}
		}
		return pending{e: Entry{Path: name, Type: TypeFile}, link: out[i].link}, nil
	case tar.TypeSymlink:
		e.Type, e.Target = TypeSymlink, hdr.Linkname
	case tar.TypeChar, tar.TypeBlock:
		if hdr.Devmajor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor < 0 || hdr.Devminor > math.MaxUint32 {
			return bad("device %d:%d out of range", hdr.Devmajor, hdr.Devminor)
		}
		e.Type, e.Rdev = TypeCharDev, unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if hdr.Typeflag == tar.TypeBlock {
			e.Type = TypeBlockDev
		}
	case tar.TypeFifo:
		e.Type = TypeFIFO
	case tar.TypeDir:
		e.Type = TypeDir
	default:
		return bad("unsupported type %q", hdr.Typeflag)
	}
	return pending{e: e}, nil
}

// tarName normalizes a tar member name to an flist path; "" is the root.
func tarName(raw string) (string, error) {
	if strings.HasPrefix(raw, "/") {
		return "", errors.New("absolute name")
	}
	for _, c := range strings.Split(raw, "/") {
		if c == ".." {
			return "", errors.New(`name has a ".." component`)
		}
	}
	n := path.Clean(raw)
	if n == "." {
		return "", nil
	}
	if err := CheckPath(n); err != nil {
		return "", err
	}
	return n, nil
}

// addParents makes up directories a tar stream implies but does not list,
// with fixed metadata so the result does not depend on anything else.
func addParents(out []pending, index map[string]int) ([]pending, error) {
	for i := 0; i < len(out); i++ {
		p := out[i].e.Path
		for parent := path.Dir(p); parent != "."; parent = path.Dir(parent) {
			j, ok := index[parent]
			if ok {
				if out[j].e.Type != TypeDir {
					return nil, fmt.Errorf("build: tar entry %q: parent %q is a %s", p, parent, out[j].e.Type)
				}
				break
			}
			index[parent] = len(out)
			out = append(out, pending{e: Entry{Path: parent, Type: TypeDir, Mode: 0o755}})
		}
	}
	return out, nil
}
