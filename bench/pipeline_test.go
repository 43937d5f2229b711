package bench

import (
	"bufio"
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/fetch"
	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/store"
)

// fixture is a built component served over HTTPS the way any static mirror
// would serve a store tree, with counters on the server side.
type fixture struct {
	store   *store.Dir
	fl      *flist.Flist
	id      digest.Digest
	bytes   int64 // content bytes the flist describes
	refs    int   // chunk references: one request each
	wire    int64 // compressed bytes of every reference, plus the metadata
	srv     *httptest.Server
	client  *http.Client
	storeAt string // store base URL

	requests, sent, conns atomic.Int64
}

// newFixture builds src into a store in a temp dir and serves that dir under
// /store/ with net/http's FileServer over HTTPS (the server offers HTTP/2,
// as zgrid's does; fetch.HTTP takes HTTP/1.1). The client is the node's own (registry.NewHTTPClient: TLS 1.3 only,
// pinned CA), trusting only the test server's certificate.
func newFixture(tb testing.TB, src string) *fixture {
	tb.Helper()
	fx := &fixture{store: &store.Dir{Root: filepath.Join(tb.TempDir(), "store")}}
	fl, err := (&flist.Builder{Sink: fx.store}).BuildDir(context.Background(), src)
	if err != nil {
		tb.Fatal(err)
	}
	meta, err := fl.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	if fx.id, err = fx.store.PutFlist(meta); err != nil {
		tb.Fatal(err)
	}
	fx.fl, fx.wire = fl, int64(len(meta))
	for _, e := range fl.Entries {
		fx.bytes += int64(e.Size)
	}
	for _, c := range fl.Fetches() {
		fx.refs++
		fx.wire += int64(c.CSize)
	}

	files := http.StripPrefix("/store/", http.FileServer(http.Dir(fx.store.Root)))
	fx.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fx.requests.Add(1)
		files.ServeHTTP(countingWriter{w, &fx.sent}, r)
	}))
	fx.srv.EnableHTTP2 = true
	fx.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			fx.conns.Add(1)
		}
	}
	fx.srv.StartTLS()
	tb.Cleanup(fx.srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fx.srv.Certificate().Raw})
	if fx.client, err = registry.NewHTTPClient(ca, nil); err != nil {
		tb.Fatal(err)
	}
	fx.storeAt = fx.srv.URL + "/store"
	return fx
}

// countingWriter counts response body bytes: what went over the wire
// before TLS framing.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// fresh forgets counters and connections, so the next delivery starts like
// a booting node's: no connection, TLS handshake included.
func (fx *fixture) fresh() {
	fx.client.CloseIdleConnections()
	fx.requests.Store(0)
	fx.sent.Store(0)
	fx.conns.Store(0)
}

// deliver is the node's "components" step for one component (as in
// init/handoff.go): fetch and verify the metadata, decode it, extract it
// with every chunk verified into dest.
func deliver(ctx context.Context, fx *fixture, dest string, parallel int) (time.Duration, error) {
	src := &fetch.HTTP{URLs: []string{fx.storeAt}, Client: fx.client}
	start := time.Now()
	meta, err := src.FlistBytes(ctx, fx.id)
	if err != nil {
		return 0, err
	}
	fl, err := flist.Decode(meta)
	if err != nil {
		return 0, fmt.Errorf("flist %s: %w", fx.id.Short(), err)
	}
	x := &flist.Extractor{Source: src, Parallel: parallel, Chown: os.Geteuid() == 0}
	if err := x.Extract(ctx, fl, dest); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// checkTraffic says whether the server saw exactly one request per chunk
// reference plus the metadata, and exactly their bytes: no retry, nothing
// fetched twice, nothing skipped.
func (fx *fixture) checkTraffic() error {
	if got, want := fx.requests.Load(), int64(fx.refs+1); got != want {
		return fmt.Errorf("server saw %d requests, want %d (chunk references + metadata)", got, want)
	}
	if got := fx.sent.Load(); got != fx.wire {
		return fmt.Errorf("server sent %d body bytes, want %d (compressed chunks + metadata)", got, fx.wire)
	}
	return nil
}

// heap is the heap at one moment: Inuse is MemStats.HeapInuse (objects,
// dead or alive, plus free space in in-use spans); Live is what the last
// garbage collection found reachable, so Inuse minus Live is GC headroom
// (GOGC) and garbage not yet swept.
type heap struct{ Inuse, Live uint64 }

// readHeap reads the heap without stopping the world.
func readHeap() heap {
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	metrics.Read(s)
	return heap{Inuse: s[0].Value.Uint64() + s[1].Value.Uint64(), Live: s[2].Value.Uint64()}
}

func (h heap) max(o heap) heap { return heap{max(h.Inuse, o.Inuse), max(h.Live, o.Live)} }

// watchHeap samples the heap every period until the returned function is
// called, which returns the highest values seen.
func watchHeap(period time.Duration) (stop func() heap) {
	quit, done := make(chan struct{}), make(chan heap)
	go func() {
		peak := readHeap()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				peak = peak.max(readHeap())
			case <-quit:
				done <- peak.max(readHeap())
				return
			}
		}
	}()
	return func() heap { close(quit); return <-done }
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetHWM sets the process's peak RSS (VmHWM) to its current RSS
// (proc(5), clear_refs value 5, Linux 4.0+).
func resetHWM() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// vmHWM reads the process's peak resident set size.
func vmHWM() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/self/status VmHWM %q: %w", v, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/self/status: no VmHWM line")
}

// scratch returns a fresh directory for extraction: on /dev/shm (tmpfs,
// where a node assembles its root) when it has need bytes free, otherwise
// in tb.TempDir(). where says which, with the filesystem type.
func scratch(tb testing.TB, need int64) (dir, where string) {
	tb.Helper()
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) == nil && int64(st.Bavail)*st.Bsize >= need {
		d, err := os.MkdirTemp("/dev/shm", "zeroboot-delivery-")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(d) })
		return d, "/dev/shm (tmpfs)"
	}
	dir = tb.TempDir()
	kind := "not tmpfs"
	if unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC {
		kind = "tmpfs"
	}
	return dir, fmt.Sprintf("%s (%s; /dev/shm missing or short of %d MB)", dir, kind, need>>20)
}

// uniqueChunks returns up to max bytes of distinct chunks of fx, taken
// evenly across the flist so small and large, text and random are all
// represented: raw[i] is the content of compressed[i].
func uniqueChunks(ctx context.Context, fx *fixture, max int64) (raw, compressed [][]byte, err error) {
	seen := map[digest.Digest]bool{}
	var refs []flist.ChunkRef
	var total int64
	for _, c := range fx.fl.Fetches() {
		if !seen[c.ID] {
			seen[c.ID] = true
			refs = append(refs, c)
			total += int64(c.Size)
		}
	}
	stride := int(total/max) + 1
	for i := 0; i < len(refs); i += stride {
		c, err := os.ReadFile(fx.store.ChunkPath(refs[i].ID))
		if err != nil {
			return nil, nil, err
		}
		r, err := flist.OpenChunk(refs[i], c, nil)
		if err != nil {
			return nil, nil, err
		}
		raw, compressed = append(raw, r.Bytes()), append(compressed, c)
	}
	if len(raw) == 0 {
		return nil, nil, fmt.Errorf("flist %s has no chunks", fx.id.Short())
	}
	return raw, compressed, ctx.Err()
}

func sum(bs [][]byte) int64 {
	var n int64
	for _, b := range bs {
		n += int64(len(b))
	}
	return n
}
