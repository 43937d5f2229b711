package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/zeroboot/zeroboot/pkg/flist"
)

// machine is what this machine can do, measured; rates in bytes/second.
type machine struct {
	cores      int
	sha        float64       // SHA-256, one core
	blake3     float64       // BLAKE3, one core (side by side only)
	zstd       float64       // zstd decode, one core, uncompressed bytes out
	zstdHow    string        // which decode API gave zstd
	write      float64       // tmpfs writes, all cores together
	link       float64       // one HTTPS connection, warm, compressed bytes
	rtt        time.Duration // one request on a warm connection
	sampleSize int64
}

// load is what one delivery moves.
type load struct {
	bytes    int64 // uncompressed content written
	wire     int64 // compressed bytes fetched
	requests int
	parallel int
}

type term struct {
	name string
	s    float64
}

// terms is the delivery-limits model. Fetching overlaps the work, so the
// wire and the request rounds are bounds of their own. Hashing, decoding
// and writing to tmpfs are all CPU on the same cores, so they cannot hide
// behind one another: their core-seconds add up and share the cores, one
// term ("cpu", the sum of work's terms).
func (m machine) terms(l load) []term {
	rounds := (l.requests + l.parallel - 1) / l.parallel
	return []term{
		{"wire", float64(l.wire) / m.link},
		{"requests", float64(rounds) * m.rtt.Seconds()},
		total("cpu", m.work(l.bytes, m.sha)),
	}
}

// work is the CPU delivering bytes costs, as wall seconds on all cores:
// hash (at hash bytes/s per core) and decode spread over the cores, and
// the tmpfs write rate as measured with one writer per core.
func (m machine) work(bytes int64, hash float64) []term {
	b, cores := float64(bytes), float64(m.cores)
	return []term{
		{"hash", b / (cores * hash)},
		{"zstd", b / (cores * m.zstd)},
		{"write", b / m.write},
	}
}

// total is one term of ts added.
func total(name string, ts []term) term {
	t := term{name: name}
	for _, x := range ts {
		t.s += x.s
	}
	return t
}

// bound is the largest term: the model's lower bound.
func bound(ts []term) term {
	return slices.MaxFunc(ts, func(a, b term) int {
		switch {
		case a.s < b.s:
			return -1
		case a.s > b.s:
			return 1
		}
		return 0
	})
}

func (t term) String() string { return fmt.Sprintf("%s %.3fs", t.name, t.s) }

func describe(ts []term) string {
	var parts []string
	for _, t := range ts {
		parts = append(parts, t.String())
	}
	return strings.Join(parts, ", ")
}

// minMeasure is how long each rate is measured: long enough to average out
// a scheduler tick on a shared machine, short enough to keep the run brief.
const minMeasure = 400 * time.Millisecond

// rate runs pass until minMeasure has passed (at least once) and returns
// bytes per second; pass returns the bytes it processed and the time that
// counts.
func rate(pass func() (int64, time.Duration, error)) (float64, error) {
	var n int64
	var d time.Duration
	for d < minMeasure {
		k, t, err := pass()
		if err != nil {
			return 0, err
		}
		n, d = n+k, d+t
	}
	return float64(n) / d.Seconds(), nil
}

func timed(f func() (int64, error)) (int64, time.Duration, error) {
	start := time.Now()
	n, err := f()
	return n, time.Since(start), err
}

func shaRate(raw [][]byte) (float64, error) { return hashRate(flist.SHA256, raw) }

// hashRate is h's rate on one core over raw, each buffer hashed whole as
// a node hashes a chunk.
func hashRate(h flist.Hash, raw [][]byte) (float64, error) {
	return rate(func() (int64, time.Duration, error) {
		return timed(func() (int64, error) {
			for _, r := range raw {
				h.Sum(r)
			}
			return sum(raw), nil
		})
	})
}

// zstdRates measures one decoder on one core, configured as flist.OpenChunk
// configures its decoders, both streaming (what OpenChunk does) and
// DecodeAll, after checking both give back raw.
func zstdRates(raw, compressed [][]byte) (stream, all float64, err error) {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(8<<20), zstd.WithDecoderMaxMemory(flist.MaxChunkSize+1))
	if err != nil {
		return 0, 0, err
	}
	defer d.Close()
	buf := make([]byte, flist.MaxChunkSize+1)
	streamOne := func(c []byte) ([]byte, error) {
		if err := d.Reset(bytes.NewReader(c)); err != nil {
			return nil, err
		}
		n, err := io.ReadFull(d, buf)
		if err != io.ErrUnexpectedEOF && err != io.EOF {
			return nil, fmt.Errorf("zstd stream: %v after %d bytes", err, n)
		}
		return buf[:n], nil
	}
	allOne := func(c []byte) ([]byte, error) { return d.DecodeAll(c, buf[:0]) }
	for i, c := range compressed {
		for _, dec := range []func([]byte) ([]byte, error){streamOne, allOne} {
			got, err := dec(c)
			if err != nil {
				return 0, 0, err
			}
			if !bytes.Equal(got, raw[i]) {
				return 0, 0, fmt.Errorf("zstd: chunk %d decodes to different bytes", i)
			}
		}
	}
	measure := func(dec func([]byte) ([]byte, error)) (float64, error) {
		return rate(func() (int64, time.Duration, error) {
			return timed(func() (int64, error) {
				var n int64
				for _, c := range compressed {
					out, err := dec(c)
					if err != nil {
						return 0, err
					}
					n += int64(len(out))
				}
				return n, nil
			})
		})
	}
	if stream, err = measure(streamOne); err != nil {
		return 0, 0, err
	}
	all, err = measure(allOne)
	return stream, all, err
}

// writeRate writes raw as new files under dir from cores goroutines at
// once, the way the extractor's chunk goroutines write, and removes them
// after each pass (not timed).
func writeRate(dir string, raw [][]byte, cores int) (float64, error) {
	pass := 0
	return rate(func() (int64, time.Duration, error) {
		d := filepath.Join(dir, fmt.Sprintf("write-%d", pass))
		pass++
		if err := os.Mkdir(d, 0o755); err != nil {
			return 0, 0, err
		}
		defer os.RemoveAll(d)
		return timed(func() (int64, error) {
			var wg sync.WaitGroup
			errs := make([]error, cores)
			for w := range cores {
				wg.Go(func() {
					for i := w; i < len(raw) && errs[w] == nil; i += cores {
						errs[w] = os.WriteFile(filepath.Join(d, fmt.Sprint(i)), raw[i], 0o644)
					}
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					return 0, err
				}
			}
			return sum(raw), nil
		})
	})
}

// linkRates measures the HTTPS path to the fixture's server: the median
// time of a request that finds nothing, and the rate of one connection
// fetching the largest chunks in turn.
func linkRates(fx *fixture) (rtt time.Duration, bw float64, err error) {
	get := func(url string) (int64, error) {
		resp, err := fx.client.Get(url)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		return io.Copy(io.Discard, resp.Body)
	}
	missing := fx.storeAt + "/chunks/00/none"
	if _, err := get(missing); err != nil { // connect and handshake first
		return 0, 0, err
	}
	var rtts []time.Duration
	for range 21 {
		start := time.Now()
		if _, err := get(missing); err != nil {
			return 0, 0, err
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	rtt = rtts[len(rtts)/2]

	big := fx.fl.Fetches()
	slices.SortFunc(big, func(a, b flist.ChunkRef) int { return int(b.CSize) - int(a.CSize) })
	big = big[:min(len(big), 16)]
	bw, err = rate(func() (int64, time.Duration, error) {
		return timed(func() (int64, error) {
			var n int64
			for _, c := range big {
				h := c.ID.Hex()
				k, err := get(fx.storeAt + "/chunks/" + h[:2] + "/" + h)
				if err != nil {
					return 0, err
				}
				if k != int64(c.CSize) {
					return 0, fmt.Errorf("%s: got %d bytes, want %d", c, k, c.CSize)
				}
				n += k
			}
			return n, nil
		})
	})
	return rtt, bw, err
}

// measureMachine measures every rate the model needs, on chunks of fx (at
// most 64 MiB of them) and on the scratch filesystem dir.
func measureMachine(ctx context.Context, fx *fixture, dir string, cores int) (machine, error) {
	m := machine{cores: cores}
	raw, compressed, err := uniqueChunks(ctx, fx, 64<<20)
	if err != nil {
		return m, err
	}
	m.sampleSize = sum(raw)
	if m.sha, err = shaRate(raw); err != nil {
		return m, fmt.Errorf("sha-256 rate: %w", err)
	}
	stream, all, err := zstdRates(raw, compressed)
	if err != nil {
		return m, fmt.Errorf("zstd rate: %w", err)
	}
	m.zstd, m.zstdHow = stream, "stream (as OpenChunk)"
	if all > stream {
		m.zstd, m.zstdHow = all, "DecodeAll"
	}
	if m.write, err = writeRate(dir, raw, cores); err != nil {
		return m, fmt.Errorf("tmpfs write rate: %w", err)
	}
	if m.rtt, m.link, err = linkRates(fx); err != nil {
		return m, fmt.Errorf("link rate: %w", err)
	}
	return m, nil
}
