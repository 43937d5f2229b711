package flist

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// countSink drops chunks, counting what would have been stored.
type countSink struct{ raw, compressed, chunks atomic.Int64 }

func (s *countSink) PutChunk(ref ChunkRef, c []byte) (ChunkRef, error) {
	s.raw.Add(int64(ref.Size))
	s.compressed.Add(int64(len(c)))
	s.chunks.Add(1)
	return ref, nil
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// BenchmarkBuildTree builds a generated tree (ZEROBOOT_BENCH_MB, default
// 200 MB) and compares with `tar -cf - | zstd -3 -T0` on the same tree. The
// tree is cached under the system temp dir (zeroboot-flist-bench-*) so
// repeated runs do not regenerate it; delete it to reclaim the space.
func BenchmarkBuildTree(b *testing.B) {
	mb := 200
	if s := os.Getenv("ZEROBOOT_BENCH_MB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("ZEROBOOT_BENCH_MB=%q: want a positive integer", s)
		}
		mb = n
	}
	dir, total := benchTree(b, int64(mb)<<20)
	ctx := context.Background()

	var sink countSink
	runs := 0
	start := time.Now()
	for b.Loop() {
		if _, err := (&Builder{Sink: &sink}).BuildDir(ctx, dir); err != nil {
			b.Fatal(err)
		}
		runs++
	}
	elapsed := time.Since(start)
	flistRate := float64(total) * float64(runs) / elapsed.Seconds() / 1e6
	ratio := float64(sink.raw.Load()) / float64(sink.compressed.Load())
	b.ReportMetric(flistRate, "MB/s")
	b.ReportMetric(ratio, "ratio")
	b.Logf("flist: %d MB in %d files, %.1f MB/s, compression %.2fx, %d chunks per build",
		total>>20, countFiles(b, dir), flistRate, ratio, sink.chunks.Load()/int64(runs))

	// As many runs as the build had, so both see the same share of a noisy
	// machine.
	tarRate, tarRatio, err := tarZstd(dir, total, runs)
	if err != nil {
		b.Logf("tar | zstd comparison skipped: %v", err)
		return
	}
	b.ReportMetric(flistRate/tarRate, "flist/tar-zstd")
	b.Logf("tar -cf - | zstd -3 -T0: %.1f MB/s, compression %.2fx; flist/tar-zstd throughput %.2f",
		tarRate, tarRatio, flistRate/tarRate)
}

func tarZstd(dir string, total int64, runs int) (rate, ratio float64, err error) {
	for _, tool := range []string{"tar", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			return 0, 0, fmt.Errorf("%s not installed", tool)
		}
	}
	var secs float64
	for range runs {
		s, r, err := tarZstdOnce(dir, total)
		if err != nil {
			return 0, 0, err
		}
		secs, ratio = secs+s, r
	}
	return float64(total) * float64(runs) / secs / 1e6, ratio, nil
}

func tarZstdOnce(dir string, total int64) (secs, ratio float64, err error) {
	tar := exec.Command("tar", "-cf", "-", "-C", dir, ".")
	zstd := exec.Command("zstd", "-3", "-T0", "-q", "-c")
	pipe, err := tar.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	var out countWriter
	zstd.Stdin, zstd.Stdout = pipe, &out
	start := time.Now()
	if err := zstd.Start(); err != nil {
		return 0, 0, err
	}
	if err := tar.Run(); err != nil {
		zstd.Wait()
		return 0, 0, fmt.Errorf("tar: %w", err)
	}
	if err := zstd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("zstd: %w", err)
	}
	return time.Since(start).Seconds(), float64(total) / float64(out.n), nil
}

func countFiles(b *testing.B, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	return n
}

// benchTree makes (or reuses) a deterministic tree of about size bytes:
// 40% small files (1-64 KiB, half text-like, half random), 60% large files
// (4-24 MiB alternating text-like and random stretches).
func benchTree(b *testing.B, size int64) (string, int64) {
	b.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("zeroboot-flist-bench-v1-%d", size))
	done := dir + ".done"
	if s, err := os.ReadFile(done); err == nil {
		if n, err := strconv.ParseInt(string(s), 10, 64); err == nil {
			return dir, n
		}
	}
	os.RemoveAll(dir)
	b.Logf("generating %d MB benchmark tree in %s", size>>20, dir)
	choose := rand.New(rand.NewPCG(2026, 1))
	noise := rand.NewChaCha8([32]byte{'z', 'e', 'r', 'o', 'b', 'o', 'o', 't'})
	words := make([]string, 512)
	for i := range words {
		w := make([]byte, 2+choose.IntN(9))
		for j := range w {
			w[j] = 'a' + byte(choose.IntN(26))
		}
		words[i] = string(w)
	}
	text := func(n int) []byte {
		var buf bytes.Buffer
		for buf.Len() < n {
			buf.WriteString(words[choose.IntN(len(words))])
			if choose.IntN(12) == 0 {
				buf.WriteByte('\n')
			} else {
				buf.WriteByte(' ')
			}
		}
		return buf.Bytes()[:n]
	}
	random := func(n int) []byte {
		p := make([]byte, n)
		noise.Read(p)
		return p
	}
	write := func(name string, content func(w io.Writer) int64) int64 {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		n := content(f)
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		return n
	}
	var total int64
	for i := 0; total < size*4/10; i++ {
		n := 1<<10 + choose.IntN(63<<10)
		gen := text
		if i%2 == 1 {
			gen = random
		}
		total += write(fmt.Sprintf("small/d%03d/f%05d", i/100, i), func(w io.Writer) int64 {
			k, err := w.Write(gen(n))
			if err != nil {
				b.Fatal(err)
			}
			return int64(k)
		})
	}
	for i := 0; total < size; i++ {
		n := min(int64(4<<20+choose.IntN(20<<20)), size-total+1)
		total += write(fmt.Sprintf("large/blob%02d", i), func(w io.Writer) int64 {
			var k int64
			for k < n {
				part := int(min(n-k, 256<<10))
				gen := text
				if choose.IntN(2) == 0 {
					gen = random
				}
				m, err := w.Write(gen(part))
				if err != nil {
					b.Fatal(err)
				}
				k += int64(m)
			}
			return k
		})
	}
	if err := os.WriteFile(done, []byte(strconv.FormatInt(total, 10)), 0o644); err != nil {
		b.Fatal(err)
	}
	return dir, total
}

// BenchmarkChunkHash: each chunk Hash on one core, at the sizes chunks
// have (a small file's pack is up to a chunk; DefaultChunkSize, the
// largest), side by side in one run: SHA-256 is the baseline. Besides
// MB/s of wall time it reports MB/cpu-s, bytes over the process's CPU
// time: on a shared machine the wall-clock rate is mostly the neighbours'.
func BenchmarkChunkHash(b *testing.B) {
	buf := make([]byte, MaxChunkSize)
	r := rand.NewChaCha8([32]byte{})
	r.Read(buf)
	for _, size := range []int{4 << 10, 16 << 10, 64 << 10, 256 << 10, DefaultChunkSize, MaxChunkSize} {
		for _, h := range Hashes {
			b.Run(fmt.Sprintf("%s/%dKiB", h, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				start := cpuTime(b)
				for b.Loop() {
					h.Sum(buf[:size])
				}
				b.ReportMetric(float64(size)*float64(b.N)/(cpuTime(b)-start).Seconds()/1e6, "MB/cpu-s")
			})
		}
	}
}

// cpuTime is the user and system time this process has used.
func cpuTime(b *testing.B) time.Duration {
	u, s := rusage(b)
	return u + s
}

// BenchmarkExtractSmallFiles extracts 4,000 small files five directories
// deep, packed as a tree of /usr is, with openat2 and, as the baseline in
// the same run, with os.Root's walk (a kernel without openat2). Reported:
// files/s and the system calls' share of the CPU.
//
//	go test -run '^$' -bench ExtractSmallFiles ./pkg/flist/
func BenchmarkExtractSmallFiles(b *testing.B) {
	src := b.TempDir()
	const files = 4000
	for i := range files {
		d := filepath.Join(src, "usr", "share", fmt.Sprintf("p%02d", i%40), "doc", "x")
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		body := bytes.Repeat([]byte(fmt.Sprintf("file %d ", i)), 40+i%200)
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", i)), body, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	st := newMemStore()
	f, err := (&Builder{Sink: st}).BuildDir(context.Background(), src)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sys  func(int, string, *unix.OpenHow) (int, error)
	}{
		{"openat2", unix.Openat2},
		{"os.Root", func(int, string, *unix.OpenHow) (int, error) { return -1, unix.ENOSYS }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			openat2 = tc.sys
			defer func() { openat2 = unix.Openat2 }()
			dst := shmDir(b)
			var cpu, sys time.Duration
			n := 0
			for b.Loop() {
				dir := filepath.Join(dst, fmt.Sprint(n))
				n++
				u0, s0 := rusage(b)
				if err := (&Extractor{Source: st}).Extract(context.Background(), f, dir); err != nil {
					b.Fatal(err)
				}
				u1, s1 := rusage(b)
				cpu += u1 - u0 + s1 - s0
				sys += s1 - s0
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
			b.ReportMetric(float64(files*n)/b.Elapsed().Seconds(), "files/s")
			b.ReportMetric(cpu.Seconds()*1e6/float64(files*n), "cpu_µs/file")
			b.ReportMetric(100*sys.Seconds()/cpu.Seconds(), "sys_%")
		})
	}
}

func rusage(b *testing.B) (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// shmDir is a directory on /dev/shm, the tmpfs a node extracts into is
// one; elsewhere the figures would be the disk's.
func shmDir(b *testing.B) string {
	d, err := os.MkdirTemp("/dev/shm", "zeroboot-flist-bench-")
	if err != nil {
		b.Skipf("no /dev/shm to extract into: %v", err)
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}
