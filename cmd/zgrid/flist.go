package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/term"

	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/store"
)

func cmdFlist(args []string) error {
	return subcommand("flist", map[string]func([]string) error{
		"build": cmdFlistBuild, "extract": cmdFlistExtract, "ls": cmdFlistLs, "inspect": cmdFlistInspect, "diff": cmdFlistDiff,
	}, args)
}

// flistSink is where a build goes: a local store directory or a server.
type flistSink interface {
	flist.Sink
	PutFlist(encoded []byte) (digest.Digest, error)
}

func cmdFlistBuild(args []string) error {
	fs := newFlags("flist build", "zgrid flist build [--data DIR | --server URL --token-file F --ca FILE] [--chunk-size N] [--pack-limit N] [--format 1|2|3] [--exclude PATTERN]... [--unreadable fail|skip] [--workers N] DIR_OR_TAR",
		`Pack a directory tree, or a tar archive (plain, gzip or zstd; "-" reads
stdin), into an flist: metadata plus content-addressed zstd chunks, stored in
DIR/store with --data, or uploaded to a running server with --server. The
same tree always gives the same digest. The flist digest (sha256:...) is the
last line on stdout; progress goes to stderr (live on a terminal, one
summary line otherwise). Files of at most --pack-limit bytes share chunks
(packs), so a node fetches an OS tree's many small files in few requests;
a file with hard links is stored once. --format 3 names chunks by BLAKE3
(nodes verify them faster; nodes older than version 3 refuse it), 2 by
SHA-256, and 1 writes a version-1 flist for nodes older than version 2:
nothing packed, hard links stored as separate files (docs/flist.md). --exclude leaves out entries whose name
(a pattern without "/") or path (with "/") matches, with everything under
them. An entry that cannot be read or stored (a socket, a file or directory
that cannot be opened) fails the build unless --unreadable skip, which
leaves it out with a warning. A symlink to a directory packs the directory.`,
		`  zgrid flist build --data ./grid ./rootfs
  zgrid flist build --server https://192.0.2.2:8443 --token-file admin.token --ca ca.pem rootfs.tar.zst
  tar -C rootfs -c . | zgrid flist build --data ./grid -`)
	var c conn
	c.register(fs)
	chunk := fs.Int("chunk-size", flist.DefaultChunkSize, fmt.Sprintf("chunk size in bytes (at most %d)", flist.MaxChunkSize))
	pack := fs.Int("pack-limit", flist.DefaultPackLimit, "largest file packed with other small files into shared chunks, in bytes (0: none)")
	format := fs.Int("format", flist.DefaultVersion, fmt.Sprintf("flist version to write, %d..%d: %d names chunks by BLAKE3, %d by SHA-256, %d packs nothing", flist.VersionPlain, flist.Version, flist.VersionBLAKE3, flist.VersionPacked, flist.VersionPlain))
	var exclude listFlag
	fs.Var(&exclude, "exclude", "leave out entries matching this path.Match pattern, and what is under them (repeatable)")
	unreadable := fs.String("unreadable", "fail", "an entry that cannot be read or stored: fail the build, or skip it with a warning")
	workers := fs.Int("workers", 0, "parallel compressors (default: number of CPUs)")
	arg, err := oneArg(fs, args, "DIR_OR_TAR")
	if err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	var sink flistSink
	if c.server == "" {
		sink = &store.Dir{Root: filepath.Join(c.data, storeDir)}
		if _, err := os.Stat(filepath.Join(c.data, dbFile)); err != nil {
			return fmt.Errorf("data directory %s: %w (run zgrid init first)", c.data, err)
		}
	} else {
		a, err := c.admin()
		if err != nil {
			return err
		}
		sink = &store.Uploader{URL: a.url, Token: a.token, Client: a.http}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *pack < 0 {
		return usageErr(fs, "--pack-limit must be 0 or more")
	}
	if *pack == 0 {
		*pack = -1 // the Builder's "none"; its 0 is the default
	}
	if *format < flist.VersionPlain || *format > flist.Version {
		return usageErr(fs, "--format %d: want %d..%d", *format, flist.VersionPlain, flist.Version)
	}
	b := &flist.Builder{ChunkSize: *chunk, PackLimit: min(*pack, *chunk), Version: *format, Exclude: exclude, Sink: sink, Workers: *workers}
	switch *unreadable {
	case "fail":
	case "skip":
		b.Skip = func(p string, err error) bool {
			fmt.Fprintf(os.Stderr, "\nzgrid flist build: skipped %s: %s\n", quoted(p), console.Sanitize(err.Error(), 512))
			return true
		}
	default:
		return usageErr(fs, "--unreadable %q: want fail or skip", *unreadable)
	}
	id, err := buildFlist(ctx, arg, b, sink, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Println(id)
	return nil
}

func buildFlist(ctx context.Context, src string, b *flist.Builder, sink flistSink, errw *os.File) (digest.Digest, error) {
	var last flist.Progress
	var mu sync.Mutex
	live := term.IsTerminal(int(errw.Fd()))
	b.Progress = func(p flist.Progress) {
		mu.Lock()
		defer mu.Unlock()
		last = p
		if live {
			fmt.Fprintf(errw, "\r%s", progressLine(p))
		}
	}
	var f *flist.Flist
	var err error
	if st, serr := os.Stat(src); serr == nil && st.IsDir() {
		f, err = b.BuildDir(ctx, src)
	} else {
		var r io.ReadCloser
		if r, err = openTar(src); err == nil {
			f, err = b.BuildTar(ctx, r)
			r.Close()
		}
	}
	if err != nil {
		if live {
			fmt.Fprintln(errw)
		}
		return digest.Digest{}, fmt.Errorf("build %s: %w", src, err)
	}
	enc, err := f.Encode()
	if err != nil {
		return digest.Digest{}, fmt.Errorf("encode flist of %s: %w", src, err)
	}
	id, err := sink.PutFlist(enc)
	if err != nil {
		return id, err
	}
	mu.Lock()
	defer mu.Unlock()
	if live {
		fmt.Fprint(errw, "\r")
	}
	fmt.Fprintf(errw, "%s, %d entries, metadata %d bytes\n", progressLine(last), len(f.Entries), len(enc))
	if len(f.Entries) == 0 {
		fmt.Fprintf(errw, "zgrid flist build: warning: %s holds nothing: the flist is empty\n", src)
	}
	return id, nil
}

func progressLine(p flist.Progress) string {
	rate := 0.0
	if s := p.Elapsed.Seconds(); s > 0 {
		rate = float64(p.Bytes) / 1e6 / s
	}
	return fmt.Sprintf("%d files, %.1f MB in %d chunks, %.1f MB/s", p.Files, float64(p.Bytes)/1e6, p.Chunks, rate)
}

// openTar opens a tar archive, undoing gzip or zstd compression found by
// magic bytes. "-" is stdin.
func openTar(src string) (io.ReadCloser, error) {
	var f *os.File
	if src == "-" {
		f = os.Stdin
	} else {
		var err error
		if f, err = os.Open(src); err != nil {
			return nil, err
		}
	}
	br := bufio.NewReaderSize(f, 1<<16)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		gz, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: gzip: %w", src, err)
		}
		return readCloser{gz, f}, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: zstd: %w", src, err)
		}
		return readCloser{zr.IOReadCloser(), f}, nil
	}
	return readCloser{br, f}, nil
}

type readCloser struct {
	io.Reader
	f io.Closer
}

func (r readCloser) Close() error {
	if c, ok := r.Reader.(io.Closer); ok {
		c.Close()
	}
	return r.f.Close()
}
