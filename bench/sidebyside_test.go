package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/store"
)

// Environment of a re-executed test binary. With envFileServer set it is
// not a test run but the side-by-side benchmark's file server: plain
// HTTP/1.1 http.FileServer of that directory on 127.0.0.1:0, printing its
// port on stdout and exiting when stdin closes. With envRelay also set it
// listens there too, relaying every connection to the file server with
// envRelayDelay added to each direction, and prints the relay's port.
const (
	envFileServer = "ZEROBOOT_BENCH_FILESERVER"
	envRelay      = "ZEROBOOT_BENCH_RELAY"
	envRelayDelay = "ZEROBOOT_BENCH_RELAY_DELAY"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envFileServer); dir != "" {
		if err := fileServerMain(dir); err != nil {
			fmt.Fprintln(os.Stderr, "file server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func fileServerMain(dir string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if addr := os.Getenv(envRelay); addr != "" {
		delay, err := time.ParseDuration(os.Getenv(envRelayDelay))
		if err != nil {
			return fmt.Errorf("%s: %w", envRelayDelay, err)
		}
		rl, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		go relay(rl, ln.Addr().String(), delay)
		port = rl.Addr().(*net.TCPAddr).Port
	}
	go func() { // the benchmark holds stdin open while it needs us
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Println(port)
	// A plain listener: HTTP/1.1 only, no TLS, no h2c.
	return (&http.Server{Handler: http.FileServer(http.Dir(dir))}).Serve(ln)
}

// relay accepts connections on ln and joins each to a new connection to
// upstream, delaying every byte by delay in each direction.
func relay(ln net.Listener, upstream string, delay time.Duration) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				return
			}
			var wg sync.WaitGroup
			wg.Go(func() { delayCopy(u.(*net.TCPConn), c.(*net.TCPConn), delay) })
			wg.Go(func() { delayCopy(c.(*net.TCPConn), u.(*net.TCPConn), delay) })
			wg.Wait()
			c.Close()
			u.Close()
		}()
	}
}

// segment is bytes read from one side and the time they may go out of the
// other.
type segment struct {
	b   *[]byte
	n   int
	due time.Time
}

var segmentBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// delayCopy copies src to dst, each read held until delay after it was
// read. Reading goes on while earlier reads wait (a queue of up to 1024
// reads of up to 64 KiB), so the delay adds latency without limiting
// throughput to one window per delay. EOF is passed on as a half close
// once the data before it has gone out.
func delayCopy(dst, src *net.TCPConn, delay time.Duration) {
	q := make(chan segment, 1024)
	go func() {
		defer close(q)
		for {
			b := segmentBufs.Get().(*[]byte)
			n, err := src.Read(*b)
			if n > 0 {
				q <- segment{b, n, time.Now().Add(delay)}
			} else {
				segmentBufs.Put(b)
			}
			if err != nil {
				return
			}
		}
	}()
	for s := range q {
		if d := time.Until(s.due); d > 0 {
			time.Sleep(d)
		}
		_, err := dst.Write((*s.b)[:s.n])
		segmentBufs.Put(s.b)
		if err != nil {
			src.Close()
			dst.Close()
			for range q {
			}
			return
		}
	}
	dst.CloseWrite()
}

// sbsInputs is the side-by-side benchmark's prepared input, cached under
// the temp dir: the tree, the flist store, the desync store and index, the
// tarballs.
type sbsInputs struct {
	Root   string        `json:"-"`
	ID     digest.Digest `json:"id"`        // the tree as a version-2 flist: chunks named by SHA-256
	ID3    digest.Digest `json:"id_blake3"` // the same tree as a version-3 flist: by BLAKE3
	Bytes  int64         `json:"bytes"`     // regular file content
	Files  int           `json:"files"`
	Links  int           `json:"links"`
	Dirs   int           `json:"dirs"` // not counting the top
	Wire   int64         `json:"wire"` // flist metadata plus every chunk reference's compressed size
	Wire3  int64         `json:"wire_blake3"`
	ZstSHA string        `json:"zst_sha256"`
	ZstLen int64         `json:"zst_bytes"`
	Desync bool          `json:"-"`
}

func (in *sbsInputs) tree() string  { return filepath.Join(in.Root, "tree") }
func (in *sbsInputs) serve() string { return filepath.Join(in.Root, "serve") } // what the file server serves
func (in *sbsInputs) tar() string   { return filepath.Join(in.Root, "tree.tar") }

// sbsVersion names the cache layout; bump it when what is prepared changes.
const sbsVersion = "v2"

// cachedUsrTree returns the side-by-side inputs for about size bytes of
// /usr, preparing them the first time: a .done file beside the directory
// holds the figures, so an interrupted preparation is redone. Delete both to
// get the space back. The desync part is prepared (and marked done) on its
// own, only when desync is installed.
func cachedUsrTree(tb testing.TB, size int64, desync string) *sbsInputs {
	tb.Helper()
	root := filepath.Join(os.TempDir(), fmt.Sprintf("zeroboot-sidebyside-%s-%d", sbsVersion, size))
	done := root + ".done"
	in := &sbsInputs{}
	b, err := os.ReadFile(done)
	if err == nil {
		if err = json.Unmarshal(b, in); err == nil {
			// Stale when this checkout's flist code no longer reads it.
			for _, id := range []digest.Digest{in.ID, in.ID3} {
				if _, err = (&store.Dir{Root: filepath.Join(root, "serve")}).Flist(context.Background(), id); err != nil {
					sbsLog("cached flist no longer decodes (%v): preparing again", err)
					break
				}
			}
		}
	}
	if err != nil {
		if err := os.RemoveAll(root); err != nil {
			tb.Fatal(err)
		}
		in = &sbsInputs{Root: root}
		sbsLog("preparing side-by-side inputs (%d MB of /usr) in %s", size>>20, root)
		start := time.Now()
		if err := in.prepare(size); err != nil {
			tb.Fatal(err)
		}
		b, _ := json.Marshal(in)
		if err := os.WriteFile(done, b, 0o644); err != nil {
			tb.Fatal(err)
		}
		sbsLog("prepared in %s", time.Since(start).Round(time.Second))
	}
	in.Root = root
	if desync == "" {
		return in
	}
	ddone := filepath.Join(root, "desync.done")
	if _, err := os.Stat(ddone); err != nil {
		ddir := filepath.Join(in.serve(), "desync")
		if err := os.RemoveAll(ddir); err != nil {
			tb.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(ddir, "store"), 0o755); err != nil {
			tb.Fatal(err)
		}
		sbsLog("preparing the desync store and index")
		if out, err := exec.Command(desync, "tar", "-n", "2", "-i", "-s", filepath.Join(ddir, "store"),
			filepath.Join(ddir, "index.caidx"), in.tree()).CombinedOutput(); err != nil {
			tb.Fatalf("desync tar: %v\n%s", err, out)
		}
		if err := os.WriteFile(ddone, nil, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	in.Desync = true
	return in
}

func (in *sbsInputs) prepare(size int64) error {
	if err := in.copyUsr(size); err != nil {
		return err
	}
	var err error
	if in.ID, in.Wire, err = in.buildFlist(flist.VersionPacked); err != nil {
		return err
	}
	if in.ID3, in.Wire3, err = in.buildFlist(flist.VersionBLAKE3); err != nil {
		return err
	}
	zst := filepath.Join(in.serve(), "tree.tar.zst")
	for _, c := range [][]string{
		{"tar", "--sort=name", "--numeric-owner", "-C", in.tree(), "-cf", in.tar(), "."},
		// Level 3 is zstd's default, and what flist.Builder uses (SpeedDefault).
		{"zstd", "-q", "-3", "-T2", "-o", zst, in.tar()},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	f, err := os.Open(zst)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if in.ZstLen, err = io.Copy(h, f); err != nil {
		return err
	}
	in.ZstSHA = hex.EncodeToString(h.Sum(nil))
	return nil
}

// buildFlist builds the tree as a version-v flist into the served store
// (both versions share it: their chunk names are of different hashes) and
// returns its digest and its bytes on the wire.
func (in *sbsInputs) buildFlist(v int) (digest.Digest, int64, error) {
	st := &store.Dir{Root: in.serve()}
	fl, err := (&flist.Builder{Sink: st, Version: v}).BuildDir(context.Background(), in.tree())
	if err != nil {
		return digest.Digest{}, 0, fmt.Errorf("build version-%d flist: %w", v, err)
	}
	meta, err := fl.Encode()
	if err != nil {
		return digest.Digest{}, 0, err
	}
	id, err := st.PutFlist(meta)
	if err != nil {
		return id, 0, err
	}
	wire := int64(len(meta))
	for _, c := range fl.Fetches() {
		wire += int64(c.CSize)
	}
	return id, wire, nil
}

// copyUsr copies regular files and symlinks from /usr, walking it in
// sorted order, into in.tree() until size content bytes are there.
// Unreadable files and directories are skipped, as are devices, sockets and
// FIFOs. Permission bits are kept but not setuid, setgid or sticky (so no
// row needs a flag to allow them), mtimes are kept (for directories too),
// hard links become separate files.
func (in *sbsInputs) copyUsr(size int64) error {
	const src = "/usr"
	dst := in.tree()
	type dirTime struct {
		path string
		t    time.Time
	}
	var dirs []dirTime
	made := map[string]bool{}
	var mkdirs func(rel string) error
	mkdirs = func(rel string) error {
		if rel == "." || made[rel] {
			return nil
		}
		if err := mkdirs(filepath.Dir(rel)); err != nil {
			return err
		}
		fi, err := os.Stat(filepath.Join(src, rel))
		if err != nil {
			return err
		}
		if err := os.Mkdir(filepath.Join(dst, rel), fi.Mode().Perm()|0o700); err != nil {
			return err
		}
		made[rel] = true
		in.Dirs++
		dirs = append(dirs, dirTime{filepath.Join(dst, rel), fi.ModTime()})
		return nil
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == src {
				return err
			}
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if in.Bytes >= size {
			return fs.SkipAll
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		switch {
		case d.Type() == fs.ModeSymlink:
			target, err := os.Readlink(p)
			if err != nil {
				return nil
			}
			if err := mkdirs(filepath.Dir(rel)); err != nil {
				return err
			}
			in.Links++
			return os.Symlink(target, filepath.Join(dst, rel))
		case d.Type().IsRegular():
			n, err := copyRegular(p, filepath.Join(dst, rel), func() error { return mkdirs(filepath.Dir(rel)) })
			if err != nil {
				return err
			}
			if n >= 0 {
				in.Files++
				in.Bytes += n
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	for _, d := range slices.Backward(dirs) {
		if err := os.Chtimes(d.path, d.t, d.t); err != nil {
			return err
		}
	}
	return nil
}

// copyRegular copies one file, calling mkdir first, and returns its size,
// or -1 when src cannot be read (skipped, nothing created).
func copyRegular(src, dst string, mkdir func() error) (int64, error) {
	f, err := os.Open(src)
	if err != nil {
		return -1, nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return -1, nil
	}
	if _, err := f.Read(make([]byte, 1)); err != nil && err != io.EOF {
		return -1, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return -1, nil
	}
	if err := mkdir(); err != nil {
		return 0, err
	}
	w, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(w, f)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return -1, nil // changed or unreadable under us: skip it
	}
	if err := os.Chmod(dst, fi.Mode().Perm()); err != nil { // past the umask
		return 0, err
	}
	return n, os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}

// treeCount is what a tree holds, not counting its top directory.
type treeCount struct {
	Files, Links, Dirs int
	Bytes              int64
}

func countTree(dir string) (treeCount, error) {
	var c treeCount
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		switch {
		case d.IsDir():
			c.Dirs++
		case d.Type() == fs.ModeSymlink:
			c.Links++
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			c.Files++
			c.Bytes += fi.Size()
		}
		return nil
	})
	return c, err
}

// sbsRow is one way of delivering the tree.
type sbsRow struct {
	name, metric string
	// cmd returns the command that delivers into dest (an empty directory
	// on a fresh tmpfs; aside is a scratch directory beside it, same tmpfs).
	cmd       func(dest, aside string) *exec.Cmd
	check     func(dest, aside string) error // extra check after the first run
	skip      string                         // why the row is not run
	localOnly bool                           // not run on the shaped link

	wall, rss, cpu []float64
	failed         string
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// sbsScratch gives each run a fresh filesystem: a new tmpfs mounted on a
// temp dir when root, otherwise a new directory on /dev/shm, removed after.
type sbsScratch struct {
	base  string // where mount points or /dev/shm dirs are made
	mount bool
	size  int64
	where string
}

func newScratch(tb testing.TB, need int64) *sbsScratch {
	tb.Helper()
	avail := memAvailable()
	if os.Geteuid() == 0 {
		if avail < need+256<<20 {
			tb.Fatalf("MemAvailable %d MB, need %d MB for a tmpfs run", avail>>20, (need+256<<20)>>20)
		}
		s := &sbsScratch{base: tb.TempDir(), mount: true, size: need}
		s.where = fmt.Sprintf("a fresh tmpfs per run (mount -t tmpfs, size=%dM, under %s; MemAvailable %d MB)", need>>20, s.base, avail>>20)
		return s
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		tb.Skipf("not root and /dev/shm is not a tmpfs: no tmpfs to write into")
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		tb.Skipf("/dev/shm has %d MB free, need %d MB", free>>20, need>>20)
	}
	d, err := os.MkdirTemp("/dev/shm", "zeroboot-sidebyside-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return &sbsScratch{base: d, where: fmt.Sprintf("a fresh directory per run on /dev/shm (tmpfs, %d MB free), rm -rf after", int64(st.Bavail)*st.Bsize>>20)}
}

// fresh returns an empty directory on a fresh filesystem and the function
// that removes it.
func (s *sbsScratch) fresh() (string, func() error, error) {
	d, err := os.MkdirTemp(s.base, "run-")
	if err != nil {
		return "", nil, err
	}
	if !s.mount {
		return d, func() error { return os.RemoveAll(d) }, nil
	}
	if err := unix.Mount("tmpfs", d, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", s.size)); err != nil {
		return "", nil, fmt.Errorf("mount tmpfs on %s: %w", d, err)
	}
	return d, func() error {
		if err := unix.Unmount(d, 0); err != nil {
			if err := unix.Unmount(d, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", d, err)
			}
		}
		return os.Remove(d)
	}, nil
}

func memAvailable() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "MemAvailable:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// runRows runs every row runs times, round robin (so a busy moment of the
// shared machine is spread over rows), each run into a fresh filesystem,
// and checks the first run of each row against the source.
func runRows(b *testing.B, in *sbsInputs, sc *sbsScratch, rows []*sbsRow, runs int, wrap func(*exec.Cmd) *exec.Cmd) {
	b.Helper()
	want := treeCount{in.Files, in.Links, in.Dirs, in.Bytes}
	for run := range runs {
		for _, r := range rows {
			if r.skip != "" || r.failed != "" {
				continue
			}
			mnt, drop, err := sc.fresh()
			if err != nil {
				b.Fatal(err)
			}
			dest, aside := filepath.Join(mnt, "out"), filepath.Join(mnt, "aside")
			for _, d := range []string{dest, aside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					b.Fatal(err)
				}
			}
			wall, rss, cpu, err := measure(r.cmd(dest, aside), filepath.Join(mnt, "rusage"), wrap)
			if err != nil {
				r.failed = err.Error()
				sbsLog("row %s failed: %s", r.name, r.failed)
			} else {
				r.wall = append(r.wall, wall.Seconds())
				r.rss = append(r.rss, float64(rss)/(1<<20))
				r.cpu = append(r.cpu, cpu.Seconds())
				if run == 0 {
					if got, err := countTree(dest); err != nil || got != want {
						r.failed = fmt.Sprintf("extracted tree %+v (%v), want %+v", got, err, want)
						sbsLog("row %s: %s", r.name, r.failed)
					} else if r.check != nil {
						if err := r.check(dest, aside); err != nil {
							r.failed = err.Error()
							sbsLog("row %s: %s", r.name, r.failed)
						}
					}
				}
			}
			if err := drop(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// gnuTime is GNU time (/usr/bin/time), when it is there and works; see
// measure.
var gnuTime = sync.OnceValue(func() string {
	p, err := exec.LookPath("time")
	if err != nil || exec.Command(p, "-f", "%M", "-o", os.DevNull, "true").Run() != nil {
		return ""
	}
	return p
})

// measure runs cmd (inside wrap when not nil) and returns its wall time,
// peak RSS and CPU time (user + system).
//
// Both come from wait4's rusage: the CPU time from cmd's ProcessState, the
// peak RSS from GNU time's report of the same rusage for its child when GNU
// time is installed. The peak RSS wait4 gives for a child of this process
// is never below this process's own peak: Go starts children with
// CLONE_VM|CLONE_VFORK, so until exec the child runs in this process's
// memory, and exec (exec_mmap) folds that memory's high-water mark into the
// child's maxrss. GNU time forks from its own small process, so the figure
// it reports is the command's (and its waited-for descendants'), with a
// floor of about 1 MiB (see rssFloor). Without GNU time the figure is
// ProcessState's and only an upper bound.
func measure(cmd *exec.Cmd, report string, wrap func(*exec.Cmd) *exec.Cmd) (wall time.Duration, rss int64, cpu time.Duration, err error) {
	gt := gnuTime()
	if gt != "" {
		c := exec.Command(gt, append([]string{"-o", report, "-f", "zbb-rusage %M"}, cmd.Args...)...)
		c.Env, c.Dir = cmd.Env, cmd.Dir
		cmd = c
	}
	if wrap != nil {
		cmd = wrap(cmd)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("%v: %v\n%s", cmd.Args, err, tail(out.String(), 2000))
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	rss = ru.Maxrss << 10 // KiB on Linux
	if gt != "" {
		b, err := os.ReadFile(report)
		if err != nil {
			return 0, 0, 0, err
		}
		i := bytes.LastIndex(b, []byte("zbb-rusage "))
		if i < 0 {
			return 0, 0, 0, fmt.Errorf("%s: no rusage line in %q", gt, b)
		}
		var kb int64
		if _, err := fmt.Sscan(string(b[i+len("zbb-rusage "):]), &kb); err != nil {
			return 0, 0, 0, fmt.Errorf("%s: %q: %w", gt, b, err)
		}
		rss = kb << 10
	}
	return wall, rss, cpu, nil
}

// rssFloor is the peak RSS measure reports for a command that does
// nothing, and how it was measured.
func rssFloor(dir string, wrap func(*exec.Cmd) *exec.Cmd) string {
	_, rss, _, err := measure(exec.Command("true"), filepath.Join(dir, "rusage-floor"), wrap)
	if err != nil {
		return err.Error()
	}
	how := "GNU time (" + gnuTime() + ") reporting wait4's rusage of its child"
	if gnuTime() == "" {
		how = "no GNU time: os/exec ProcessState Maxrss, which includes this test process's own peak (upper bound only)"
	}
	return fmt.Sprintf("peak RSS from %s; floor (for true) %.1f MiB", how, float64(rss)/(1<<20))
}

// sbsLog prints one line of the side-by-side report on stderr as it
// happens. testing trims a benchmark's b.Log output to 10 lines, so only
// the final table goes through b.Log.
func sbsLog(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sidebyside: "+format+"\n", args...)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// sbsHeader heads the rows rowTable returns.
const sbsHeader = "| link | row | MB/s | s | peak RSS MiB | CPU s | speed vs desync |"

// rowTable returns a table row of medians for each row, reports them as
// metrics named prefix+metric+"_MB/s" and so on, and prints the table on
// stderr. "speed vs desync" is desync's median seconds over the row's.
func rowTable(b *testing.B, in *sbsInputs, rows []*sbsRow, prefix, link string) []string {
	b.Helper()
	var desync float64
	for _, r := range rows {
		if r.metric == "desync" && r.failed == "" && len(r.wall) > 0 {
			desync = median(r.wall)
		}
	}
	var lines []string
	for _, r := range rows {
		name := strings.ReplaceAll(r.name, "|", `\|`) // a markdown table cell
		switch {
		case r.skip != "":
			lines = append(lines, fmt.Sprintf("| %s | %s | skipped: %s | | | | |", link, name, r.skip))
			continue
		case r.failed != "" && len(r.wall) == 0:
			lines = append(lines, fmt.Sprintf("| %s | %s | failed (see the log) | | | | |", link, name))
			continue
		}
		s, rss, cpu := median(r.wall), median(r.rss), median(r.cpu)
		vs := "n/a"
		if desync > 0 {
			vs = fmt.Sprintf("%.2f×", desync/s)
		}
		note := ""
		if r.failed != "" {
			note = " (check failed, see the log)"
		}
		lines = append(lines, fmt.Sprintf("| %s | %s%s | %.0f | %.3f | %.1f | %.2f | %s |", link, name, note, float64(in.Bytes)/s/1e6, s, rss, cpu, vs))
		if r.failed == "" {
			b.ReportMetric(float64(in.Bytes)/s/1e6, prefix+r.metric+"_MB/s")
			b.ReportMetric(s, prefix+r.metric+"_s")
			b.ReportMetric(rss, prefix+r.metric+"_rss_MiB")
		}
	}
	sbsLog("%s\n%s\n%s", sbsHeader, "|---|---|---|---|---|---|---|", strings.Join(lines, "\n"))
	return lines
}

// fileServer is the benchmark's file server: this test binary re-executed
// (see TestMain), as its own process so its memory and CPU are no row's.
type fileServer struct {
	cmd    *exec.Cmd
	port   string
	stderr bytes.Buffer
}

// startFileServer starts the file server for dir, inside the network
// namespace ns when ns is not empty, with the relay when relayAddr is not
// empty. It is stopped at cleanup.
func startFileServer(tb testing.TB, dir, ns, relayAddr string, delay time.Duration) *fileServer {
	tb.Helper()
	self, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	args := []string{self, "-test.run=^$"}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...) // ip execs: no process in between
	}
	s := &fileServer{cmd: exec.Command(args[0], args[1:]...)}
	s.cmd.Env = append(os.Environ(), envFileServer+"="+dir)
	if relayAddr != "" {
		s.cmd.Env = append(s.cmd.Env, envRelay+"="+relayAddr, envRelayDelay+"="+delay.String())
	}
	s.cmd.Stderr = &s.stderr
	stdin, err := s.cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("file server did not start: %v\n%s", err, s.stderr.String())
	}
	s.port = strings.TrimSpace(line)
	return s
}

// shapedLink makes two network namespaces joined by a veth pair with tbf
// at rate on both ends: server side 198.51.100.1, client side
// 198.51.100.2. They are deleted at cleanup.
func shapedLink(tb testing.TB, rate string) (srvNS, cliNS string) {
	tb.Helper()
	id := strconv.Itoa(os.Getpid())
	srvNS, cliNS = "zbb-s"+id, "zbb-c"+id
	vs, vc := "zbb-vs"+id, "zbb-vc"+id
	ip := func(args ...string) {
		tb.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			tb.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{srvNS, cliNS} {
		ip("netns", "add", ns)
		tb.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				sbsLog("ip netns del %s: %v %s", ns, err, out)
			}
		})
	}
	ip("link", "add", vs, "netns", srvNS, "type", "veth", "peer", "name", vc, "netns", cliNS)
	for _, e := range []struct{ ns, dev, addr string }{{srvNS, vs, "198.51.100.1/24"}, {cliNS, vc, "198.51.100.2/24"}} {
		ip("-n", e.ns, "link", "set", "lo", "up")
		ip("-n", e.ns, "addr", "add", e.addr, "dev", e.dev)
		ip("-n", e.ns, "link", "set", e.dev, "up")
		// burst: at least rate/HZ and above veth's 64 KiB GSO packets.
		ip("netns", "exec", e.ns, "tc", "qdisc", "add", "dev", e.dev, "root", "tbf", "rate", rate, "burst", "512kb", "latency", "20ms")
	}
	return srvNS, cliNS
}

// requestRTT is curl's time from connected to first response byte for an
// object the server does not have (a 404: no file to read), median of 5
// fresh connections: one request's round trip plus the server's work.
func requestRTT(wrap func(*exec.Cmd) *exec.Cmd, url string) string {
	var conn, req []float64
	for range 5 {
		cmd := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{time_connect} %{time_starttransfer}", url)
		if wrap != nil {
			cmd = wrap(cmd)
		}
		out, err := cmd.Output()
		if err != nil {
			return fmt.Sprintf("curl: %v", err)
		}
		var c, s float64
		if _, err := fmt.Sscan(string(out), &c, &s); err != nil {
			return fmt.Sprintf("curl -w: %q", out)
		}
		conn, req = append(conn, c), append(req, s-c)
	}
	return fmt.Sprintf("curl, median of 5: connect %.2f ms, then request to first byte %.2f ms", median(conn)*1e3, median(req)*1e3)
}

func readAll(root string) (int64, error) {
	var n int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		k, err := io.Copy(io.Discard, f)
		n += k
		return err
	})
	return n, err
}

func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			return "", errors.New("no go.mod above the bench package")
		}
		d = up
	}
}

func envInt(name string, def int64) (int64, error) {
	s := os.Getenv(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive whole number", name, s)
	}
	return n, nil
}

// BenchmarkSideBySide delivers the same ~ZEROBOOT_BENCH_MB (default 500)
// MB tree of real /usr files with zgrid flist extract, desync, curl|zstd|tar
// (with and without a SHA-256 on the way) and plain tar from page cache,
// from one plain HTTP/1.1 file server (a separate process), into a fresh
// tmpfs per run; then again, for the network rows, over a shaped link (two
// network namespaces, tbf 1 Gbit/s, 1 ms each way added by a relay). It
// reports median MB/s, seconds and peak RSS of each. See README.md.
func BenchmarkSideBySide(b *testing.B) {
	mb, err := envInt("ZEROBOOT_BENCH_MB", 500)
	if err != nil {
		b.Fatal(err)
	}
	runs64, err := envInt("ZEROBOOT_BENCH_RUNS", 3)
	if err != nil {
		b.Fatal(err)
	}
	runs := int(runs64)
	desync, derr := exec.LookPath("desync")
	in := cachedUsrTree(b, mb<<20, desync)
	tmp := b.TempDir()

	// zgrid from this checkout.
	zgrid := filepath.Join(tmp, "zgrid")
	var zgridSkip string
	if root, err := moduleRoot(); err != nil {
		zgridSkip = err.Error()
	} else {
		build := exec.Command("go", "build", "-o", zgrid, "./cmd/zgrid")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			zgridSkip = fmt.Sprintf("go build ./cmd/zgrid: %v", err)
			sbsLog("%s\n%s", zgridSkip, out)
		}
	}

	// Untimed: everything served, and tree.tar, into the page cache once.
	served, err := readAll(in.serve())
	if err != nil {
		b.Fatal(err)
	}
	tarLen, err := readAll(in.tar())
	if err != nil {
		b.Fatal(err)
	}

	// Room for the tree with every file rounded up to pages, plus slack.
	sc := newScratch(b, 2*in.Bytes+int64(in.Files+in.Links+in.Dirs)*4096+256<<20)

	srv := startFileServer(b, in.serve(), "", "", 0)
	loop := "http://127.0.0.1:" + srv.port
	sbsLog("tree: %.1f MB of /usr in %d files, %d symlinks, %d directories (flist %s: %.1f MB on the wire; as BLAKE3 flist %s: %.1f MB; tree.tar.zst %.1f MB; tree.tar %.1f MB); served %.1f MB from %s; writing to %s",
		float64(in.Bytes)/1e6, in.Files, in.Links, in.Dirs, in.ID.Short(), float64(in.Wire)/1e6, in.ID3.Short(), float64(in.Wire3)/1e6, float64(in.ZstLen)/1e6, float64(tarLen)/1e6,
		float64(served)/1e6, in.serve(), sc.where)
	sbsLog("loopback: %s", requestRTT(nil, loop+"/chunks/00/none"))
	sbsLog("requests: %s", sbsRequests(in))
	sbsLog("%s", rssFloor(tmp, nil))

	rows := func(base string, local bool) []*sbsRow {
		extract := func(name, metric string, id digest.Digest) *sbsRow {
			return &sbsRow{name: name, metric: metric, skip: zgridSkip,
				cmd: func(dest, _ string) *exec.Cmd {
					return exec.Command(zgrid, "flist", "extract", "--store", base+"/", id.String(), dest)
				},
				check: func(dest, _ string) error {
					if err := sameTree(in.tree(), dest); err != nil {
						return fmt.Errorf("extracted tree differs from the source: %w", err)
					}
					return nil
				}}
		}
		rs := []*sbsRow{
			extract("zgrid flist extract (v2, SHA-256)", "zgrid", in.ID),
			extract("zgrid flist extract (v3, BLAKE3)", "zgrid_b3", in.ID3),
			{name: "desync untar -n 8", metric: "desync",
				cmd: func(dest, _ string) *exec.Cmd {
					return exec.Command(desync, "untar", "-n", "8", "-s", base+"/desync/store/", "-i", base+"/desync/index.caidx", dest)
				}},
			{name: "curl | tee >(openssl sha256) | zstd -d | tar -x", metric: "curl_sha", localOnly: true,
				cmd: func(dest, aside string) *exec.Cmd {
					return exec.Command("bash", "-c", `set -o pipefail; curl -s "$1" | tee >(openssl sha256 -r > "$2") | zstd -q -d | tar -x -C "$3"; wait $!`,
						"bash", base+"/tree.tar.zst", filepath.Join(aside, "sha256"), dest)
				},
				check: func(_, aside string) error {
					got, err := os.ReadFile(filepath.Join(aside, "sha256"))
					if err != nil {
						return err
					}
					if f := strings.Fields(string(got)); len(f) == 0 || f[0] != in.ZstSHA {
						return fmt.Errorf("openssl sha256 gave %q, want %s", got, in.ZstSHA)
					}
					return nil
				}},
			{name: "curl | zstd -d | tar -x", metric: "curl",
				cmd: func(dest, _ string) *exec.Cmd {
					return exec.Command("bash", "-c", `set -o pipefail; curl -s "$1" | zstd -q -d | tar -x -C "$2"`, "bash", base+"/tree.tar.zst", dest)
				}},
			{name: "tar -x from page cache (floor)", metric: "tar", localOnly: true,
				cmd: func(dest, _ string) *exec.Cmd { return exec.Command("tar", "-x", "-C", dest, "-f", in.tar()) }},
		}
		if desync == "" {
			rs[2].skip = fmt.Sprintf("desync not in PATH (%v)", derr)
		}
		return slices.DeleteFunc(rs, func(r *sbsRow) bool { return r.localOnly && !local })
	}
	if desync == "" {
		sbsLog("desync not in PATH: its row is skipped (%v)", derr)
	}

	local := rows(loop, true)
	runRows(b, in, sc, local, runs, nil)

	// The machine limit for this tree, from rates measured as
	// BenchmarkDelivery measures them, on this tree's chunks.
	cores := runtime.NumCPU()
	m, err := sbsMachine(in, sc, cores)
	if err != nil {
		b.Fatal(err)
	}
	sbsLog("machine: %d cores; per core sha-256 %.0f MB/s, blake3 %.0f MB/s, zstd decode %.0f MB/s (%s); tmpfs write %.0f MB/s (all cores); sample %d MB of this tree's chunks",
		cores, m.sha/1e6, m.blake3/1e6, m.zstd/1e6, m.zstdHow, m.write/1e6, m.sampleSize>>20)
	// One limit per flist: the hash term is its chunk hash's.
	for i, h := range []struct {
		name, metric string
		rate         float64
	}{{"sha-256 (v2)", "", m.sha}, {"blake3 (v3)", "_b3", m.blake3}} {
		ts := m.work(in.Bytes, h.rate)
		lim := total("cpu", ts)
		sbsLog("machine limit for this tree, %s flist: %.3f s (%s, added: they share the cores)", h.name, lim.s, describe(ts))
		b.ReportMetric(lim.s, "limit"+h.metric+"_s")
		if z := local[i]; z.failed == "" && len(z.wall) > 0 {
			s := median(z.wall)
			b.ReportMetric(s/lim.s, "zgrid"+h.metric+"_limit_ratio")
			sbsLog("zgrid, %s flist: %.3f s = %.2f × the limit", h.name, s, s/lim.s)
		}
	}
	sbsLog("loopback, %d runs per row, medians:", runs)
	table := rowTable(b, in, local, "", "loopback")
	defer func() { b.Log(sbsHeader + "\n" + strings.Join(table, "\n")) }()

	// The shaped link.
	var why string
	switch {
	case os.Getenv("ZEROBOOT_BENCH_SHAPED") == "0":
		why = "ZEROBOOT_BENCH_SHAPED=0"
	case os.Geteuid() != 0:
		why = "not root"
	default:
		if _, err := exec.LookPath("ip"); err != nil {
			why = "no ip command"
		} else if _, err := exec.LookPath("tc"); err != nil {
			why = "no tc command"
		}
	}
	if why != "" {
		sbsLog("shaped link skipped: %s", why)
		return
	}
	srvNS, cliNS := shapedLink(b, "1gbit")
	ssrv := startFileServer(b, in.serve(), srvNS, "198.51.100.1:80", time.Millisecond)
	far := "http://198.51.100.1:" + ssrv.port
	inCli := func(c *exec.Cmd) *exec.Cmd {
		w := exec.Command("ip", append([]string{"netns", "exec", cliNS}, c.Args...)...)
		w.Env, w.Dir = c.Env, c.Dir
		return w
	}
	sbsLog("shaped link (%s → %s, tbf 1gbit both ends, relay +1 ms each way): %s", cliNS, srvNS, requestRTT(inCli, far+"/chunks/00/none"))
	sbsLog("shaped link: %s", rssFloor(tmp, inCli))
	shaped := rows(far, false)
	runRows(b, in, sc, shaped, runs, inCli)
	sbsLog("shaped link (1 Gbit/s, 2 ms RTT by relay), %d runs per row, medians:", runs)
	table = append(table, rowTable(b, in, shaped, "shaped_", "shaped")...)
}

// sbsRequests says how many objects each chunked row fetches: zgrid one
// per chunk reference plus the metadata; for desync, the chunks in its
// store (distinct chunks: what a run fetches at least).
func sbsRequests(in *sbsInputs) string {
	st := &store.Dir{Root: in.serve()}
	fl, err := st.Flist(context.Background(), in.ID)
	if err != nil {
		return err.Error()
	}
	refs := len(fl.Fetches())
	msg := fmt.Sprintf("zgrid %d (%d chunks, packs counted once, + the metadata, at most %d in flight)", refs+1, refs, flist.DefaultParallel)
	if f3, err := st.Flist(context.Background(), in.ID3); err == nil {
		msg += fmt.Sprintf("; as BLAKE3 flist %d", len(f3.Fetches())+1)
	}
	if in.Desync {
		n := 0
		filepath.WalkDir(filepath.Join(in.serve(), "desync", "store"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, ".cacnk") {
				n++
			}
			return err
		})
		msg += fmt.Sprintf("; desync store holds %d distinct chunks (-n 8 in flight)", n)
	}
	return msg
}

// sbsMachine measures SHA-256, zstd decode and tmpfs write as
// BenchmarkDelivery does (limits_test.go), on up to 64 MiB of this tree's
// chunks and on a fresh scratch filesystem.
func sbsMachine(in *sbsInputs, sc *sbsScratch, cores int) (machine, error) {
	m := machine{cores: cores}
	ctx := context.Background()
	st := &store.Dir{Root: in.serve()}
	fl, err := st.Flist(ctx, in.ID)
	if err != nil {
		return m, err
	}
	raw, compressed, err := uniqueChunks(ctx, &fixture{store: st, fl: fl, id: in.ID}, 64<<20)
	if err != nil {
		return m, err
	}
	m.sampleSize = sum(raw)
	if m.sha, err = shaRate(raw); err != nil {
		return m, err
	}
	if m.blake3, err = hashRate(flist.BLAKE3, raw); err != nil {
		return m, err
	}
	stream, all, err := zstdRates(raw, compressed)
	if err != nil {
		return m, err
	}
	m.zstd, m.zstdHow = stream, "stream (as OpenChunk)"
	if all > stream {
		m.zstd, m.zstdHow = all, "DecodeAll"
	}
	dir, drop, err := sc.fresh()
	if err != nil {
		return m, err
	}
	defer drop()
	m.write, err = writeRate(dir, raw, cores)
	return m, err
}
