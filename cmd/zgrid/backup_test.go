package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// grid is a data directory with a root (channel stable), a release key
// and one flist in its store.
type grid struct {
	c                  cli
	dir, data, key, fl string
}

func newGrid(t *testing.T, c cli) grid {
	g := grid{c: c, dir: t.TempDir()}
	g.data, g.key = filepath.Join(g.dir, "grid"), filepath.Join(g.dir, "release.key")
	rootKey := filepath.Join(g.dir, "root.key")
	c.run(0, "init", "--data", g.data)
	c.run(0, "key", "new", "--out", g.key)
	c.run(0, "key", "new", "--out", rootKey)
	c.run(0, "root", "init", "--data", g.data, "--root-key", rootKey+".pub", "--sign", rootKey, "--release-key", g.key+".pub", "--channel", "stable")
	tree := filepath.Join(g.dir, "tree")
	os.MkdirAll(filepath.Join(tree, "bin"), 0o755)
	os.WriteFile(filepath.Join(tree, "bin", "core0"), []byte("#!/bin/sh\n"), 0o755)
	out, _ := c.run(0, "flist", "build", "--data", g.data, tree)
	g.fl = strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	return g
}

func (g grid) release(v int) []string {
	return []string{"--key", g.key, "--channel", "stable", "--version", fmt.Sprint(v),
		"--component", "name=core0,flist=" + g.fl + ",mount=/", "--entry", "/bin/core0"}
}

// serve starts zgrid serve on a free port and waits until it answers.
func (g grid) serve(t *testing.T, extra ...string) (string, *exec.Cmd) {
	t.Helper()
	port := freePort(t)
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	var log bytes.Buffer
	srv := exec.Command(g.c.bin, append([]string{"serve", "--data", g.data, "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, extra...)...)
	srv.Stdout, srv.Stderr = &log, &log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	waitHealthy(t, url, filepath.Join(g.data, "tls", "ca.pem"), &log)
	return url, srv
}

// admin sends one admin API request and returns its status (0 when the
// request got no answer).
type admin struct {
	url, token string
	hc         *http.Client
}

func (g grid) admin(t *testing.T, url string) admin {
	tok, err := os.ReadFile(filepath.Join(g.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return admin{url, strings.TrimSpace(string(tok)), httpsClient(t, filepath.Join(g.data, "tls", "ca.pem"))}
}

func (a admin) post(path string, body []byte, auth bool) int {
	req, err := http.NewRequest("POST", a.url+path, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func stop(t *testing.T, srv *exec.Cmd) {
	t.Helper()
	srv.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Fatalf("serve did not stop cleanly: %v", err)
	}
}

// TestBackupRestore: a backup taken through a running server holds what
// was acknowledged before it and nothing after; restore refuses while the
// server runs and refuses a broken backup, then brings back exactly the
// backup's farms, releases and nodes.
func TestBackupRestore(t *testing.T) {
	c := cli{t: t, bin: zgrid(t)}
	g := newGrid(t, c)
	url, srv := g.serve(t)
	remote := []string{"--data", g.data, "--server", url}
	c.run(0, append([]string{"farm", "create", "demo", "--channel", "stable"}, remote...)...)
	c.run(0, append([]string{"farm", "create", "lab", "--channel", "stable", "--enroll", "approval"}, remote...)...)
	c.run(0, append(append([]string{"release", "publish"}, g.release(3)...), remote...)...)
	if st := g.admin(t, url).post("/v1/boot", []byte(`{"protocol":2,"node_id":"n0123","farm":"demo","agent":"backup-test"}`), false); st != 200 {
		t.Fatalf("boot: HTTP %d", st)
	}
	bak := filepath.Join(g.dir, "zgrid.bak")
	out, _ := c.run(0, append([]string{"backup", bak}, remote...)...)
	if !strings.Contains(out, "backup of "+url+" written to "+bak) || !strings.Contains(out, "2 farms, 1 releases, 1 nodes") {
		t.Errorf("backup: %s", out)
	}
	// Without a token, no backup.
	req, _ := http.NewRequest("GET", url+"/v1/admin/backup", nil)
	if resp, err := g.admin(t, url).hc.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("backup without a token: %v %v", resp, err)
	}

	// Changes after the backup.
	c.run(0, append([]string{"farm", "create", "later", "--channel", "stable"}, remote...)...)
	c.run(0, append(append([]string{"release", "publish"}, g.release(4)...), remote...)...)
	_, errs := c.run(1, "restore", "--data", g.data, bak)
	if !strings.Contains(errs, "stop zgrid serve") {
		t.Errorf("restore while serving: %s", errs)
	}
	stop(t, srv)

	// Offline, the backup reads the database directly.
	bak2 := filepath.Join(g.dir, "offline.bak")
	out, _ = c.run(0, "backup", "--data", g.data, bak2)
	if !strings.Contains(out, "written to "+bak2) || !strings.Contains(out, "3 farms, 2 releases, 1 nodes") {
		t.Errorf("offline backup: %s", out)
	}

	// A broken backup is refused and changes nothing.
	broken := filepath.Join(g.dir, "broken.bak")
	b, _ := os.ReadFile(bak)
	os.WriteFile(broken, b[:len(b)/2], 0o600)
	_, errs = c.run(1, "restore", "--data", g.data, broken)
	if !strings.Contains(errs, broken) || !strings.Contains(errs, "truncated") {
		t.Errorf("restore of a truncated backup: %s", errs)
	}
	if out, _ = c.run(0, "farm", "list", "--data", g.data); !strings.Contains(out, "later") {
		t.Errorf("a refused restore changed the database:\n%s", out)
	}

	out, _ = c.run(0, "restore", "--data", g.data, bak)
	if !strings.Contains(out, "restored "+filepath.Join(g.data, "zgrid.db")) || !strings.Contains(out, "2 farms, 1 releases, 1 nodes") ||
		!regexp.MustCompile(`kept as \S+zgrid\.db\.replaced-\d{8}T\d{6}Z\n`).MatchString(out) {
		t.Errorf("restore: %s", out)
	}
	farms, _ := c.run(0, "farm", "list", "--data", g.data)
	rels, _ := c.run(0, "release", "list", "--data", g.data)
	nodes, _ := c.run(0, "node", "list", "--data", g.data)
	if !regexp.MustCompile(`(?m)^demo\s`).MatchString(farms) || !regexp.MustCompile(`(?m)^lab\s+stable\s+enroll approval`).MatchString(farms) || strings.Contains(farms, "later") {
		t.Errorf("farms after restore:\n%s", farms)
	}
	// farm show reads the restored records here, with no server.
	if show, _ := c.run(0, "farm", "show", "lab", "--data", g.data); !regexp.MustCompile(`(?m)^policy\s+enroll approval$`).MatchString(show) ||
		!regexp.MustCompile(`(?m)^serves\s+version 3 to 100% of nodes \(expires \d{4}-`).MatchString(show) {
		t.Errorf("farm show after restore:\n%s", show)
	}
	if !regexp.MustCompile(`(?m)^stable\s+3\s+current`).MatchString(rels) || regexp.MustCompile(`(?m)^stable\s+4`).MatchString(rels) {
		t.Errorf("releases after restore:\n%s", rels)
	}
	if !regexp.MustCompile(`(?m)^n0123\s+demo\s`).MatchString(nodes) {
		t.Errorf("nodes after restore:\n%s", nodes)
	}
	// Restored without the store it was taken with: the restore says which
	// flist the current release lacks.
	flist := filepath.Join(g.data, "store", "flists", g.fl[len("sha256:"):])
	if err := os.Rename(flist, flist+".away"); err != nil {
		t.Fatal(err)
	}
	_, errs = c.run(0, "restore", "--data", g.data, bak)
	if !strings.Contains(errs, "warning: channel stable version 3: component core0 needs flist "+g.fl+", not in the store") {
		t.Errorf("restore without the flist in the store: %s", errs)
	}
	os.Rename(flist+".away", flist)
	if _, errs = c.run(0, "restore", "--data", g.data, bak); errs != "" {
		t.Errorf("restore with the whole store warns: %s", errs)
	}

	// The server starts on the restored database and serves it.
	url, _ = g.serve(t)
	if out, _ = c.run(0, "farm", "list", "--data", g.data, "--server", url); out != farms {
		t.Errorf("farm list from the server after restore:\n%s\nwant\n%s", out, farms)
	}
}

// TestDamagedDatabase: serve and the admin commands refuse a lost,
// truncated or damaged database with an error naming the file and what
// to do; none crashes (exit status 1, no signal) and none makes a fresh
// database.
func TestDamagedDatabase(t *testing.T) {
	c := cli{t: t, bin: zgrid(t)}
	g := newGrid(t, c)
	for i := range 60 {
		c.run(0, "farm", "create", fmt.Sprintf("farm%03d-%s", i, strings.Repeat("x", 40)), "--channel", "stable", "--data", g.data)
	}
	p := filepath.Join(g.data, "zgrid.db")
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	info, err := db.CheckFile(p)
	if err != nil {
		t.Fatal(err)
	}
	ps, end := info.PageSize, int(info.Pages)*info.PageSize
	if end < 6*ps {
		t.Fatalf("database of %d pages: too small to cut", info.Pages)
	}
	flipped := func(offs ...int) []byte {
		b := slices.Clone(good)
		for _, o := range offs {
			b[o] ^= 0xff
		}
		return b
	}
	cases := []struct {
		name   string
		file   []byte // nil: no file
		phrase string
	}{
		{"missing", nil, "the file is gone"},
		{"empty", []byte{}, "empty (0 bytes)"},
		{"last page cut", good[:end-ps], "truncated"},
		{"one page", good[:ps], "truncated"},
		{"meta 0 flipped", flipped(16 + 44), "meta page 0: checksum mismatch"},
		{"meta 1 flipped", flipped(ps + 16), "meta page 1: magic"},
	}
	cmds := [][]string{
		{"serve", "--data", g.data, "--listen", "127.0.0.1:0"},
		{"node", "list", "--data", g.data},
		{"farm", "list", "--data", g.data},
		{"farm", "create", "new", "--channel", "stable", "--data", g.data},
		{"backup", "--data", g.data, filepath.Join(g.dir, "b.db")},
	}
	for _, tc := range cases {
		for _, args := range cmds {
			os.Remove(p)
			if tc.file != nil {
				os.WriteFile(p, tc.file, 0o600)
			}
			_, errs := c.run(1, args...)
			if !strings.Contains(errs, p) || !strings.Contains(errs, tc.phrase) || !strings.Contains(errs, "zgrid restore --data "+g.data) {
				t.Errorf("%s, zgrid %s: stderr does not name %s, say %q and the restore:\n%s", tc.name, strings.Join(args[:2], " "), p, tc.phrase, errs)
			}
			after, err := os.ReadFile(p)
			if (tc.file == nil) != (err != nil) || !bytes.Equal(after, tc.file) {
				t.Errorf("%s, zgrid %s: the database file changed (%d bytes, %v)", tc.name, args[0], len(after), err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(g.dir, "b.db")); err == nil {
		t.Error("a backup of a damaged database was written")
	}
	_, errs := c.run(1, "farm", "list", "--data", t.TempDir())
	if !strings.Contains(errs, "run zgrid init --data") {
		t.Errorf("a directory never initialised: %s", errs)
	}
}

// TestCrashKeepsAcknowledgedWrites: zgrid serve is SIGKILLed while farms,
// node boots and releases are being written; after each kill every
// acknowledged write is there, nothing but attempted writes is, every
// record is whole, the counters agree with the records, and the server
// starts again.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	c := cli{t: t, bin: zgrid(t)}
	g := newGrid(t, c)
	c.run(0, "farm", "create", "demo", "--channel", "stable", "--data", g.data)
	c.run(0, append(append([]string{"release", "publish"}, g.release(1)...), "--data", g.data)...)
	const versions = 80
	uploads := map[int][]byte{}
	for v := 2; v <= versions; v++ {
		f := filepath.Join(g.dir, fmt.Sprintf("v%d.json", v))
		c.run(0, append([]string{"release", "create", "--out", f}, g.release(v)...)...)
		uploads[v], _ = os.ReadFile(f)
	}
	w := newWrites()
	w.acked["version"]["1"], w.acked["farm"]["demo"] = true, true // written offline
	next := 2
	for round := range 3 {
		url, srv := g.serve(t, "--rate", "0")
		a := g.admin(t, url)
		var wg sync.WaitGroup
		write := func(kind string, body func(i int) (string, []byte, bool, bool)) {
			defer wg.Done()
			for i := 0; ; i++ {
				key, b, auth, ok := body(i)
				if !ok {
					return
				}
				path := map[string]string{"farm": "/v1/admin/farms", "node": "/v1/boot", "version": "/v1/admin/releases"}[kind]
				w.attempt(kind, key)
				st := a.post(path, b, auth)
				if st == 0 {
					return // killed
				}
				if st/100 != 2 {
					t.Errorf("round %d: %s %s: HTTP %d", round, kind, key, st)
					return
				}
				w.ack(kind, key)
			}
		}
		wg.Add(3)
		go write("farm", func(i int) (string, []byte, bool, bool) {
			n := fmt.Sprintf("r%d-f%04d", round, i)
			return n, fmt.Appendf(nil, `{"name":%q,"channel":"stable"}`, n), true, true
		})
		go write("node", func(i int) (string, []byte, bool, bool) {
			n := fmt.Sprintf("n%d%04d", round, i)
			return n, fmt.Appendf(nil, `{"protocol":2,"node_id":%q,"farm":"demo","agent":"crash-test"}`, n), false, true
		})
		go write("version", func(i int) (string, []byte, bool, bool) {
			v := next + i
			return fmt.Sprint(v), uploads[v], true, v <= versions
		})
		deadline := time.Now().Add(time.Minute)
		for w.count("farm") < 25*(round+1) || w.count("node") < 25*(round+1) {
			if time.Now().After(deadline) || t.Failed() {
				t.Fatalf("round %d: %d farms, %d nodes acknowledged in a minute", round, w.count("farm"), w.count("node"))
			}
			time.Sleep(5 * time.Millisecond)
		}
		srv.Process.Kill() // SIGKILL, mid-write
		srv.Wait()
		wg.Wait()
		next = w.check(t, filepath.Join(g.data, "zgrid.db"), round) + 1
	}
}

// writes tracks what the crash test attempted and what was acknowledged.
type writes struct {
	mu        sync.Mutex
	attempted map[string]map[string]bool
	acked     map[string]map[string]bool
}

func newWrites() *writes {
	w := &writes{attempted: map[string]map[string]bool{}, acked: map[string]map[string]bool{}}
	for _, k := range []string{"farm", "node", "version"} {
		w.attempted[k], w.acked[k] = map[string]bool{}, map[string]bool{}
	}
	return w
}

func (w *writes) attempt(kind, key string) { w.mu.Lock(); w.attempted[kind][key] = true; w.mu.Unlock() }
func (w *writes) ack(kind, key string)     { w.mu.Lock(); w.acked[kind][key] = true; w.mu.Unlock() }
func (w *writes) count(kind string) int    { w.mu.Lock(); defer w.mu.Unlock(); return len(w.acked[kind]) }

// check opens the killed server's database and compares it with the
// writes; it returns the highest release version stored.
func (w *writes) check(t *testing.T, path string, round int) int {
	t.Helper()
	if err := db.Verify(path); err != nil {
		t.Fatalf("round %d: database after SIGKILL: %v", round, err)
	}
	d, err := db.OpenReadOnly(path, time.Second)
	if err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	defer d.Close()
	farms, err := d.Farms()
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := d.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	rels, err := d.Releases("stable")
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]map[string]bool{"farm": {}, "node": {}, "version": {}}
	for _, f := range farms {
		if f.Channel != "stable" || f.Created.IsZero() {
			t.Errorf("round %d: farm %+v is not the one written", round, f)
		}
		stored["farm"][f.Name] = true
	}
	for _, n := range nodes {
		if n.Farm != "demo" || n.Agent != "crash-test" || n.State != registry.StateBooting || n.ReleaseServed == 0 {
			t.Errorf("round %d: node %+v is not whole", round, n)
		}
		stored["node"][n.ID] = true
	}
	high := 0
	for _, r := range rels {
		up, err := records.DecodeUpload(r.Envelope)
		if err != nil || r.Channel != "stable" {
			t.Errorf("round %d: release %d does not decode: %v", round, r.Version, err)
			continue
		}
		var tg struct {
			Signed struct{ Version int } `json:"signed"`
		}
		if err := json.Unmarshal(up.Targets, &tg); err != nil || tg.Signed.Version != int(r.Version) {
			t.Errorf("round %d: release %d holds targets of version %d (%v)", round, r.Version, tg.Signed.Version, err)
		}
		stored["version"][fmt.Sprint(r.Version)] = true
		high = max(high, int(r.Version))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for kind, got := range stored {
		for k := range w.acked[kind] {
			if !got[k] {
				t.Errorf("round %d: acknowledged %s %s is gone after SIGKILL", round, kind, k)
			}
		}
		for k := range got {
			if !w.attempted[kind][k] && !w.acked[kind][k] {
				t.Errorf("round %d: %s %s is stored but was never written", round, kind, k)
			}
		}
		// Acknowledged ones and at most the one in flight at the kill.
		if len(got) > len(w.acked[kind])+1 {
			t.Errorf("round %d: %d %ss stored, %d acknowledged", round, len(got), kind, len(w.acked[kind]))
		}
		// Writes in flight that made it are acknowledged from now on.
		for k := range got {
			w.acked[kind][k] = true
		}
	}
	if n, err := d.NodeCount(); err != nil || n != len(nodes) {
		t.Errorf("round %d: node counter %d, %d node records (%v)", round, n, len(nodes), err)
	}
	if st, err := d.NodeStates(); err != nil || st[registry.StateBooting] != len(nodes) || len(st) != 1 {
		t.Errorf("round %d: state counters %v, %d booting nodes (%v)", round, st, len(nodes), err)
	}
	if latest, err := d.LatestRelease("stable"); err != nil || int(latest.Version) != high {
		t.Errorf("round %d: latest release %d, highest stored %d (%v)", round, latest.Version, high, err)
	}
	t.Logf("round %d: %d farms, %d nodes, %d releases stored after SIGKILL", round, len(farms), len(nodes), len(rels))
	return high
}

func TestBackupHelpAndUsage(t *testing.T) {
	c := cli{t: t, bin: zgrid(t)}
	for _, tc := range []struct{ cmd, says string }{
		{"backup", "does not hold the content store"},
		{"restore", "zgrid.db.replaced-<UTC time>"},
	} {
		_, errs := c.run(0, tc.cmd, "--help")
		if !strings.Contains(errs, "usage: zgrid "+tc.cmd) || !strings.Contains(errs, "examples:") || !strings.Contains(errs, tc.says) {
			t.Errorf("%s --help:\n%s", tc.cmd, errs)
		}
	}
	if out, _ := c.run(0, "--help"); !strings.Contains(out, "backup ") || !strings.Contains(out, "restore ") {
		t.Errorf("zgrid --help does not list backup and restore:\n%s", out)
	}
	if _, errs := c.run(2, "backup", "--data", t.TempDir()); !strings.Contains(errs, "need one FILE") {
		t.Errorf("backup without FILE: %s", errs)
	}
	if _, errs := c.run(2, "restore", "x.db"); !strings.Contains(errs, "need --data DIR") {
		t.Errorf("restore without --data: %s", errs)
	}
	if _, errs := c.run(1, "backup", filepath.Join(t.TempDir(), "b.db")); !strings.Contains(errs, "--data DIR or --server URL") {
		t.Errorf("backup without a registry: %s", errs)
	}
}
