package bench

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/internal/testenv"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// BenchmarkBootStorm is many nodes booting at once against one zgrid
// serve (TLS 1.3, the rate limit off) on this machine, the load generator
// beside it, once with the records in bbolt (zgrid.db) and once in
// PostgreSQL (zgrid serve --postgres, a server the benchmark starts, with
// its default durability: fsync and synchronous commit on). Each
// simulated node opens its own TLS connection, asks POST /v1/boot, then
// reports booting and ready with the boot's token on the same connection,
// as PID 1 and Core-0 do. It prints boots/s and the boot request's latency
// percentiles beside the TLS handshake rate of the same server and client
// in the same run, which bounds them.
//
//	go test -run '^$' -bench BootStorm -benchtime 1x ./bench/
//	ZEROBOOT_BENCH_NODES=10000 ZEROBOOT_BENCH_CONCURRENCY=1000 go test -run '^$' -bench BootStorm -benchtime 1x ./bench/
func BenchmarkBootStorm(b *testing.B) {
	nodes, err := envInt("ZEROBOOT_BENCH_NODES", 2000)
	if err != nil {
		b.Fatal(err)
	}
	conc, err := envInt("ZEROBOOT_BENCH_CONCURRENCY", 200)
	if err != nil {
		b.Fatal(err)
	}
	for _, backend := range []struct {
		name  string
		flags func(b *testing.B) []string // zgrid serve's, for the records
	}{
		{"bbolt", func(*testing.B) []string { return nil }},
		{"postgres", func(b *testing.B) []string {
			pg := testenv.Postgres(b)
			return []string{"--postgres", pg.SocketURL(pg.NewDatabase(b))}
		}},
	} {
		b.Run(backend.name, func(b *testing.B) {
			g := startStormGrid(b, int(nodes), backend.flags(b)...)
			// Handshakes before and after: on a shared machine the
			// two differ by what else ran meanwhile.
			hs := handshakeRate(b, g, int(min(nodes, 2000)), int(conc))
			srv0, gen0 := procCPU(b, g.pid), cpuTime()
			res := storm(b, g, int(nodes), int(conc))
			srvCPU, genCPU := procCPU(b, g.pid)-srv0, cpuTime()-gen0
			hsAfter := handshakeRate(b, g, int(min(nodes, 2000)), int(conc))
			lat := res.latencies
			slices.Sort(lat)
			pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
			perBoot := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(len(lat)) }
			fmt.Fprintf(os.Stderr, "bootstorm %s: %d nodes, %d at a time: %.0f boots/s (%d answered, %d lost, %d refused), boot p50 %s p99 %s max %s; TLS handshakes alone %.0f/s before, %.0f/s after; CPU per boot: server %.2f ms, load generator %.2f ms\n",
				backend.name, nodes, conc, res.rate, len(lat), res.lost, res.refused, pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), hs, hsAfter, perBoot(srvCPU), perBoot(genCPU))
			b.ReportMetric(res.rate, "boots/s")
			b.ReportMetric(float64(pct(0.99).Milliseconds()), "p99_ms")
			b.ReportMetric(float64(pct(0.5).Milliseconds()), "p50_ms")
			b.ReportMetric(float64(res.lost), "lost")
			b.ReportMetric(hs, "handshakes/s")
			b.ReportMetric(hsAfter, "handshakes_after/s")
			b.ReportMetric(perBoot(srvCPU), "server_cpu_ms/boot")
			b.ReportMetric(perBoot(genCPU), "loadgen_cpu_ms/boot")
		})
	}
}

type stormGrid struct {
	url  string
	pid  int             // zgrid serve's
	pool *http.Transport // a template: TLS config with the grid's CA
}

// startStormGrid makes a data directory with a root, a tiny release and
// farm demo, and starts zgrid serve on it with the rate limit off and
// records, its flags for where the records are.
func startStormGrid(b *testing.B, nodes int, records ...string) *stormGrid {
	root, err := moduleRoot()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	zgrid := filepath.Join(dir, "zgrid")
	if out, err := (&exec.Cmd{Path: goBin(b), Args: []string{"go", "build", "-o", zgrid, "./cmd/zgrid"}, Dir: root}).CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/zgrid: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "grid")
	run := func(args ...string) string {
		out, err := exec.Command(zgrid, args...).CombinedOutput()
		if err != nil {
			b.Fatalf("zgrid %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("init", "--data", data)
	run("key", "new", "--out", filepath.Join(dir, "root.key"))
	run("key", "new", "--out", filepath.Join(dir, "rel.key"))
	run("root", "init", "--data", data, "--root-key", filepath.Join(dir, "root.key.pub"), "--sign", filepath.Join(dir, "root.key"), "--release-key", filepath.Join(dir, "rel.key.pub"))
	tree := filepath.Join(dir, "tree", "bin")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "core0"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		b.Fatal(err)
	}
	fl := strings.Fields(run("flist", "build", "--data", data, filepath.Dir(tree)))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv := exec.Command(zgrid, append([]string{"serve", "--data", data, "--listen", addr, "--rate", "0", "--max-nodes", fmt.Sprint(nodes * 2)}, records...)...)
	stderr, _ := srv.StderrPipe()
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	up := make(chan struct{})
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			if strings.Contains(s.Text(), "zgrid serving") {
				close(up)
				break
			}
		}
		for s.Scan() { // keep the pipe drained
		}
	}()
	select {
	case <-up:
	case <-time.After(30 * time.Second):
		b.Fatal("zgrid serve did not start")
	}
	// Through the server, which holds the records whichever backend.
	remote := []string{"--data", data, "--server", "https://" + addr}
	run(append([]string{"release", "publish", "--key", filepath.Join(dir, "rel.key"), "--channel", "stable", "--version", "1",
		"--component", "name=core0,flist=" + fl[len(fl)-1] + ",mount=/", "--entry", "/bin/core0"}, remote...)...)
	run(append([]string{"farm", "create", "demo", "--channel", "stable"}, remote...)...)
	ca, err := os.ReadFile(filepath.Join(data, "tls", "ca.pem"))
	if err != nil {
		b.Fatal(err)
	}
	hc, err := registry.NewHTTPClient(ca, nil)
	if err != nil {
		b.Fatal(err)
	}
	return &stormGrid{url: "https://" + addr, pid: srv.Process.Pid, pool: hc.Transport.(*http.Transport)}
}

// procCPU is the CPU time (user and system) process pid has used, from
// /proc/PID/stat (proc(5): fields 14 and 15, in clock ticks of 1/100 s,
// the value on Linux x86-64).
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name, field 2, may hold spaces; fields count from its ')'.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	var ticks int64
	for _, v := range f[11:13] { // utime, stime: fields 14 and 15
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

func goBin(b *testing.B) string {
	p, err := exec.LookPath("go")
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// nodeClient is one simulated node's client: its own connection, kept
// for its three requests.
func (g *stormGrid) nodeClient() *http.Client {
	t := g.pool.Clone()
	t.MaxIdleConnsPerHost = 1
	return &http.Client{Transport: t, Timeout: 5 * time.Minute}
}

type stormResult struct {
	rate          float64
	latencies     []time.Duration // of the boot requests answered
	lost, refused int64
}

// storm runs nodes simulated nodes, conc at a time.
func storm(b *testing.B, g *stormGrid, nodes, conc int) stormResult {
	var (
		mu            sync.Mutex
		lat           = make([]time.Duration, 0, nodes)
		lost, refused atomic.Int64
		next          atomic.Int64
		wg            sync.WaitGroup
	)
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(nodes); i = next.Add(1) {
				d, err := bootOnce(g)
				switch {
				case err == errRefused:
					refused.Add(1)
				case err != nil:
					lost.Add(1)
				default:
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if len(lat) == 0 {
		b.Fatalf("no node booted (%d lost, %d refused)", lost.Load(), refused.Load())
	}
	return stormResult{rate: float64(len(lat)) / el.Seconds(), latencies: lat, lost: lost.Load(), refused: refused.Load()}
}

var errRefused = fmt.Errorf("refused")

// bootOnce is one node: boot, then two reports with the boot's token.
func bootOnce(g *stormGrid) (time.Duration, error) {
	c := g.nodeClient()
	defer c.CloseIdleConnections()
	id := make([]byte, 16)
	rand.Read(id)
	nodeID := "n" + hex.EncodeToString(id)
	req, _ := json.Marshal(registry.BootRequest{Protocol: registry.Protocol, NodeID: nodeID, Farm: "demo", Agent: "bootstorm"})
	t0 := time.Now()
	resp, err := c.Post(g.url+"/v1/boot", "application/json", bytes.NewReader(req))
	if err != nil {
		return 0, err
	}
	var ans registry.BootResponse
	err = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	d := time.Since(t0)
	if resp.StatusCode != http.StatusOK {
		return 0, errRefused
	}
	if err != nil {
		return 0, err
	}
	for _, st := range []string{registry.StateBooting, registry.StateReady} {
		rep, _ := json.Marshal(registry.StatusReport{NodeID: nodeID, Source: registry.SourcePID1, State: st, Token: ans.Token})
		r, err := c.Post(g.url+"/v1/status", "application/json", bytes.NewReader(rep))
		if err != nil {
			return 0, err
		}
		r.Body.Close()
		if r.StatusCode/100 != 2 {
			return 0, fmt.Errorf("status %s: HTTP %d", st, r.StatusCode)
		}
	}
	return d, nil
}

// handshakeRate is how many new TLS connections a second the server and
// this client manage together, each with one GET /healthz.
func handshakeRate(b *testing.B, g *stormGrid, n, conc int) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				c := g.nodeClient()
				if r, err := c.Get(g.url + "/healthz"); err == nil {
					r.Body.Close()
				}
				c.CloseIdleConnections()
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}
