package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/flist"
)

// parallel is the node's setting (init/handoff.go leaves the default).
const parallel = flist.DefaultParallel

// BenchmarkDelivery measures the node's "components" step end to end on a
// generated tree of ZEROBOOT_BENCH_MB (default 200) MB: metadata and
// chunks fetched over HTTPS from a static file server on loopback,
// verified, decompressed and written to tmpfs. It reports the time next to
// the delivery-limits model's lower bound for the same bytes on this
// machine, and the peak heap during extraction. See README.md.
func BenchmarkDelivery(b *testing.B) {
	mb, err := benchMB()
	if err != nil {
		b.Fatal(err)
	}
	src, total := cachedTree(b, mb<<20)
	fx := newFixture(b, src)
	dir, where := scratch(b, 2*total+128<<20)
	ctx := context.Background()

	var runs int
	var measured time.Duration
	var peak, grew heap // highest values, and highest rise over the heap before the run
	var hwm uint64
	var cpu time.Duration
	hwmOK := true
	for b.Loop() {
		b.StopTimer()
		dest := filepath.Join(dir, fmt.Sprintf("run-%d", runs))
		fx.fresh()
		runtime.GC()
		debug.FreeOSMemory()
		if resetHWM() != nil {
			hwmOK = false
		}
		base := readHeap()
		stop := watchHeap(10 * time.Millisecond)
		cpu0 := cpuTime()
		b.StartTimer()
		d, err := deliver(ctx, fx, dest, parallel)
		b.StopTimer()
		cpu += cpuTime() - cpu0
		p := stop()
		peak = peak.max(p)
		grew = grew.max(heap{p.Inuse - min(p.Inuse, base.Inuse), p.Live - min(p.Live, base.Live)})
		if runs == 0 {
			b.Logf("heap before the first delivery (the benchmark's own setup): %.1f MiB in use, %.1f MiB live", float64(base.Inuse)/(1<<20), float64(base.Live)/(1<<20))
		}
		if err != nil {
			b.Fatal(err)
		}
		if h, err := vmHWM(); err == nil {
			hwm = max(hwm, h)
		} else {
			hwmOK = false
		}
		if err := fx.checkTraffic(); err != nil {
			b.Fatal(err)
		}
		if runs == 0 {
			if err := sameTree(src, dest); err != nil {
				b.Fatalf("extracted tree differs from the source: %v", err)
			}
		}
		if err := os.RemoveAll(dest); err != nil {
			b.Fatal(err)
		}
		runs++
		measured += d
		b.StartTimer()
	}
	b.StopTimer()

	m, err := measureMachine(ctx, fx, dir, runtime.NumCPU())
	if err != nil {
		b.Fatal(err)
	}
	l := load{bytes: fx.bytes, wire: fx.wire, requests: fx.refs + 1, parallel: parallel}
	ts := m.terms(l)
	lim := bound(ts)
	ms := measured.Seconds() / float64(runs)
	slot := float64(parallel * flist.DefaultChunkSize)

	b.ReportMetric(float64(fx.bytes)/ms/1e6, "MB/s")
	b.ReportMetric(float64(fx.wire)/1e6, "wire_MB")
	b.ReportMetric(float64(l.requests), "requests")
	b.ReportMetric(float64(fx.conns.Load()), "conns")
	b.ReportMetric(float64(peak.Inuse)/(1<<20), "peak_heap_MiB")
	b.ReportMetric(float64(grew.Inuse)/(1<<20), "delivery_heap_MiB")
	b.ReportMetric(float64(grew.Live)/(1<<20), "delivery_live_MiB")
	b.ReportMetric(cpu.Seconds()/float64(runs), "cpu_s")
	if hwmOK {
		b.ReportMetric(float64(hwm)/(1<<20), "vmhwm_MiB")
	}
	b.ReportMetric(lim.s, "limit_s")
	b.ReportMetric(ms, "measured_s")
	b.ReportMetric(ms/lim.s, "ratio")

	b.Logf("tree %d MB (%d entries, %d chunk references), written to %s", fx.bytes>>20, len(fx.fl.Entries), fx.refs, where)
	b.Logf("machine: %d cores; per core sha-256 %.0f MB/s, zstd decode %.0f MB/s (%s); tmpfs write %.0f MB/s (all cores); HTTPS link %.0f MB/s, %.0f µs per request (sample %d MB)",
		m.cores, m.sha/1e6, m.zstd/1e6, m.zstdHow, m.write/1e6, m.link/1e6, float64(m.rtt.Microseconds()), m.sampleSize>>20)
	b.Logf("model terms: %s (cpu = %s)", describe(ts), describe(m.work(l.bytes, m.sha)))
	hwmText := "VmHWM not resettable here"
	if hwmOK {
		hwmText = fmt.Sprintf("process VmHWM %.1f MiB (reset before each run; includes the in-process server)", float64(hwm)/(1<<20))
	}
	b.Logf("delivery: %.1f MB in %.3f s = %.0f MB/s; wire %.1f MB in %d requests over %d connection(s); limit %.3f s (bound by %s); ratio measured/limit %.2f; process CPU %.2f s (%.0f%% of %d cores; includes the in-process server)",
		float64(fx.bytes)/1e6, ms, float64(fx.bytes)/ms/1e6, float64(fx.wire)/1e6, l.requests, fx.conns.Load(),
		lim.s, lim.name, ms/lim.s, cpu.Seconds()/float64(runs), 100*cpu.Seconds()/float64(runs)/ms/float64(m.cores), m.cores)
	b.Logf("memory: peak heap in use %.1f MiB, of which the delivery added %.1f MiB = %.1f x Parallel x chunk size (%d x %d KiB) = %.1f%% of the tree; live heap rose at most %.1f MiB (%.1f x); %s",
		float64(peak.Inuse)/(1<<20), float64(grew.Inuse)/(1<<20), float64(grew.Inuse)/slot, parallel, flist.DefaultChunkSize>>10,
		100*float64(grew.Inuse)/float64(fx.bytes), float64(grew.Live)/(1<<20), float64(grew.Live)/slot, hwmText)
}

func benchMB() (int64, error) {
	s := os.Getenv("ZEROBOOT_BENCH_MB")
	if s == "" {
		return 200, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > 1<<20 {
		return 0, fmt.Errorf("ZEROBOOT_BENCH_MB=%q: want a whole number of megabytes, 1 to %d", s, 1<<20)
	}
	return n, nil
}

// TestDelivery runs the benchmark's pipeline once on a small tree and checks
// that it delivers the source byte for byte, with exactly the traffic the
// benchmark reports.
func TestDelivery(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if _, err := genTree(src, 4<<20); err != nil {
		t.Fatal(err)
	}
	fx := newFixture(t, src)
	dir, _ := scratch(t, 64<<20)
	dest := filepath.Join(dir, "out")
	stop := watchHeap(10 * time.Millisecond)
	if _, err := deliver(context.Background(), fx, dest, parallel); err != nil {
		t.Fatal(err)
	}
	peak := stop()
	if err := sameTree(src, dest); err != nil {
		t.Fatalf("extracted tree differs from the source: %v", err)
	}
	if err := fx.checkTraffic(); err != nil {
		t.Error(err)
	}
	// HTTP/1.1 on a few kept-alive connections (fetch.HTTP): at most one
	// per request in flight, plus the metadata's, whatever the requests.
	if n := fx.conns.Load(); n < 1 || n > parallel+1 {
		t.Errorf("%d connections for %d requests, want 1 to %d (kept alive, one per request in flight)", n, fx.requests.Load(), parallel+1)
	}
	if peak.Inuse == 0 || peak.Live == 0 {
		t.Error("heap sampler saw no heap in use")
	}
}

// TestDeliveryDetectsDifferences makes sure the byte-for-byte check can
// fail: a tree with one byte changed, one file missing or a mode changed is
// not the same tree.
func TestDeliveryDetectsDifferences(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if _, err := genTree(src, 1<<20); err != nil {
		t.Fatal(err)
	}
	fx := newFixture(t, src)
	for _, tc := range []struct {
		name   string
		damage func(dir string) error
	}{
		{"one byte", func(dir string) error {
			p := filepath.Join(dir, "small/d000/f00003")
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 1
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(p, b, 0); err != nil {
				return err
			}
			return os.Chtimes(p, fi.ModTime(), fi.ModTime())
		}},
		{"missing file", func(dir string) error { return os.Remove(filepath.Join(dir, "etc/copy")) }},
		{"extra file", func(dir string) error { return os.WriteFile(filepath.Join(dir, "etc/new"), nil, 0o644) }},
		{"mode", func(dir string) error { return os.Chmod(filepath.Join(dir, "bin/tool"), 0o644) }},
		{"symlink target", func(dir string) error {
			p := filepath.Join(dir, "etc/tool-link")
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Symlink("elsewhere", p)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "out")
			if _, err := deliver(context.Background(), fx, dest, parallel); err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(dest); err != nil {
				t.Fatal(err)
			}
			if err := sameTree(src, dest); err == nil {
				t.Fatal("damaged tree compared equal to the source")
			} else {
				t.Logf("found: %v", err)
			}
		})
	}
}

// TestModel checks the model's arithmetic on round numbers.
func TestModel(t *testing.T) {
	m := machine{cores: 2, sha: 1e9, zstd: 5e8, write: 4e9, link: 1e8, rtt: 10 * time.Millisecond}
	slowDisk := m
	slowDisk.write = 5e8
	for _, tc := range []struct {
		name string
		m    machine
		load load
		want term
	}{
		// 1 GB over 2 cores: hash 0.5 s, zstd 1 s, write 0.25 s, which
		// add up on the shared cores to 1.75 s; wire 0.5 s; 10 rounds of
		// 4 requests 0.1 s.
		{"cpu-bound", m, load{bytes: 1e9, wire: 5e7, requests: 40, parallel: 4}, term{"cpu", 1.75}},
		{"wire-bound", m, load{bytes: 1e8, wire: 3e8, requests: 40, parallel: 4}, term{"wire", 3}},
		// 1001 requests at 4 in flight is 251 rounds.
		{"request-bound", m, load{bytes: 1e6, wire: 1e6, requests: 1001, parallel: 4}, term{"requests", 2.51}},
		// A slow write adds to the rest: 0.5 + 1 + 2 s.
		{"slow-write", slowDisk, load{bytes: 1e9, wire: 1, requests: 1, parallel: 4}, term{"cpu", 3.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := tc.m.terms(tc.load)
			got := bound(ts)
			if got.name != tc.want.name || got.s < tc.want.s*0.999 || got.s > tc.want.s*1.001 {
				t.Errorf("bound = %v, want %v (terms: %s)", got, tc.want, describe(ts))
			}
		})
	}
}
