package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/internal/testenv"
	"github.com/zeroboot/zeroboot/pkg/atomicfile"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// startServe runs zgrid serve on data with args until the test ends and
// returns its URL once it is healthy, and the file its log goes to.
func startServe(t *testing.T, c cli, data string, env []string, args ...string) (url, logFile string) {
	t.Helper()
	port := freePort(t)
	url = fmt.Sprintf("https://127.0.0.1:%d", port)
	var log bytes.Buffer
	f, err := os.CreateTemp(t.TempDir(), "serve-*.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	srv := exec.Command(c.bin, append([]string{"serve", "--data", data, "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, args...)...)
	srv.Env = append(os.Environ(), env...)
	srv.Stdout = io.MultiWriter(&log, f)
	srv.Stderr = srv.Stdout
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	waitHealthy(t, url, filepath.Join(data, "tls", "ca.pem"), &log)
	return url, f.Name()
}

// TestReplicas: two zgrid serve processes on one PostgreSQL database (and
// one data directory, as replicas sharing their store would) are one
// registry. A node boots through one and reports through the other with
// its token; boots at once through both record every node once and hold
// --max-nodes; admin commands with --data do not touch the stale zgrid.db.
func TestReplicas(t *testing.T) {
	pg := testenv.Postgres(t, "fsync=off")
	name := pg.NewDatabase(t)
	pgURL := pg.URL(name) // TCP: the password comes apart
	c := cli{t: t, bin: zgrid(t)}
	dir := t.TempDir()
	data := filepath.Join(dir, "grid")
	c.run(0, "init", "--data", data)
	for _, k := range []string{"root", "rel"} {
		c.run(0, "key", "new", "--out", filepath.Join(dir, k+".key"))
	}
	c.run(0, "root", "init", "--data", data, "--root-key", filepath.Join(dir, "root.key.pub"), "--sign", filepath.Join(dir, "root.key"), "--release-key", filepath.Join(dir, "rel.key.pub"))
	tree := filepath.Join(dir, "tree", "bin")
	os.MkdirAll(tree, 0o755)
	os.WriteFile(filepath.Join(tree, "core0"), []byte("#!/bin/sh\n"), 0o755)
	out, _ := c.run(0, "flist", "build", "--data", data, filepath.Dir(tree))
	fl := strings.Fields(out)[len(strings.Fields(out))-1]

	// The password stays off the command line.
	if _, errs := c.run(1, "serve", "--data", data, "--postgres", "postgres://zgrid:hunter2@127.0.0.1/x"); !strings.Contains(errs, "--postgres: the URL holds a password") || strings.Contains(errs, "hunter2") {
		t.Errorf("password in --postgres: %s", errs)
	}
	// The store published as static files, as rclone sync would copy it,
	// served by a plain file server: B hands it to nodes first.
	mirror := httptest.NewServer(http.FileServer(http.Dir(syncStore(t, filepath.Join(data, "store")))))
	defer mirror.Close()
	pwfile := filepath.Join(dir, "pg.password")
	os.WriteFile(pwfile, []byte("wrong-password\n"), 0o600)
	if _, errs := c.run(1, "serve", "--data", data, "--postgres", pgURL, "--postgres-password-file", pwfile); !strings.Contains(errs, "password authentication failed") || strings.Contains(errs, "wrong-password") {
		t.Errorf("wrong password: %s", errs)
	}
	os.WriteFile(pwfile, []byte(pg.Password+"\n"), 0o600)
	const limit = 40
	flags := []string{"--rate", "0", "--max-nodes", fmt.Sprint(limit)}
	a, aLog := startServe(t, c, data, nil, append(flags, "--postgres", pgURL, "--postgres-password-file", pwfile)...)
	// The second replica takes its URL, password and all, from the
	// environment.
	b, bLog := startServe(t, c, data, []string{"ZGRID_POSTGRES=" + pg.PasswordURL(name)}, append(flags, "--mirror", mirror.URL, "--mirrors-first")...)

	// Made through one replica, seen through the other.
	c.run(0, "farm", "create", "demo", "--channel", "stable", "--data", data, "--server", a)
	out, _ = c.run(0, "release", "publish", "--data", data, "--server", b, "--key", filepath.Join(dir, "rel.key"), "--channel", "stable", "--version", "1",
		"--component", "name=core0,flist="+fl+",mount=/", "--entry", "/bin/core0")
	if !strings.Contains(out, "published stable version 1") {
		t.Fatalf("publish through replica B: %s", out)
	}
	if out, _ := c.run(0, "farm", "list", "--data", data, "--server", b); !strings.Contains(out, "demo") {
		t.Errorf("farm made through A not listed by B:\n%s", out)
	}

	if _, errs := c.run(0, "flist", "extract", "--store", mirror.URL, fl, filepath.Join(dir, "out")); !strings.Contains(errs, "extracted") {
		t.Errorf("flist extract from the synced store: %s", errs)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out", "bin", "core0")); err != nil || string(b) != "#!/bin/sh\n" {
		t.Errorf("extracted from the synced store: %q, %v", b, err)
	}

	hc := httpsClient(t, filepath.Join(data, "tls", "ca.pem"))
	tok, code := boot(t, hc, a, "n-one")
	if code != http.StatusOK {
		t.Fatalf("boot through A: HTTP %d", code)
	}
	if _, stores := bootStores(t, hc, b, "n-mirror"); len(stores) != 2 || stores[0] != mirror.URL {
		t.Errorf("B's boot answer offers stores %v, want the mirror %s first", stores, mirror.URL)
	}
	if code := report(t, hc, b, "n-one", tok, registry.StateReady); code/100 != 2 {
		t.Fatalf("report through B with A's token: HTTP %d", code)
	}
	if code := report(t, hc, b, "n-one", strings.Repeat("0", len(tok)), registry.StateReady); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("report through B with a wrong token: HTTP %d, want refused", code)
	}
	if out, _ := c.run(0, "node", "show", "n-one", "--data", data, "--server", a, "-o", "json"); !strings.Contains(out, `"state": "ready"`) {
		t.Errorf("A does not see the report B took:\n%s", out)
	}

	// Boots at once through both, each reporting through the other.
	const nodes = 100
	var wg sync.WaitGroup
	codes := make([]int, nodes)
	reports := make([]int, nodes)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			via, other := a, b
			if i%2 == 1 {
				via, other = b, a
			}
			id := fmt.Sprintf("storm-%03d", i)
			tok, codes[i] = boot(t, hc, via, id)
			if codes[i] == http.StatusOK {
				reports[i] = report(t, hc, other, id, tok, registry.StateReady)
			}
		}()
	}
	wg.Wait()
	answered := 0
	for i := range nodes {
		switch {
		case codes[i] == http.StatusOK:
			answered++
			if reports[i]/100 != 2 {
				t.Errorf("node %d: report through the other replica: HTTP %d", i, reports[i])
			}
		case codes[i] != http.StatusServiceUnavailable:
			t.Errorf("node %d: boot HTTP %d, want 200 or 503 (limit)", i, codes[i])
		}
	}
	var list []records.Node
	out, _ = c.run(0, "node", "list", "--data", data, "--server", b, "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, n := range list {
		if n.State == registry.StateReady {
			ready++
		}
	}
	// n-one and n-mirror, then 38 of the storm: the limit is the registry's, not each
	// replica's.
	if answered != limit-2 || len(list) != limit || ready != limit-1 {
		t.Errorf("%d storm boots answered, %d nodes listed, %d ready: want %d, %d, %d", answered, len(list), ready, limit-2, limit, limit-1)
	}

	// --data alone goes to the server (at the default address, not this
	// test's), never to the zgrid.db zgrid init left.
	for _, tc := range []struct {
		want string
		args []string
	}{
		{defaultURL, []string{"node", "list", "--data", data}},
		{"use pg_dump", []string{"backup", "--data", data, filepath.Join(dir, "b.db")}},
		{"restore them with pg_restore", []string{"restore", "--data", data, filepath.Join(dir, "b.db")}},
		{"are in PostgreSQL", []string{"serve", "--data", data, "--listen", "127.0.0.1:0"}},
	} {
		if _, errs := c.run(1, tc.args...); !strings.Contains(errs, tc.want) {
			t.Errorf("zgrid %s: %s, want %q", strings.Join(tc.args, " "), errs, tc.want)
		}
	}
	if _, errs := c.run(1, "backup", "--data", data, "--server", a, filepath.Join(dir, "b.db")); !strings.Contains(errs, "pg_dump") {
		t.Errorf("backup through a replica: %s", errs)
	}
	// The logs name the database, never the password.
	for _, f := range []string{aLog, bLog} {
		log, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("records=postgresql://zgrid@127.0.0.1:%d/%s", pg.Port, name); !strings.Contains(string(log), want) || strings.Contains(string(log), pg.Password) {
			t.Errorf("replica log (want %s, no password):\n%s", want, log)
		}
	}
}

// syncStore copies store as rclone sync --exclude '.tmp-*' would, to a
// new directory it returns.
func syncStore(t *testing.T, store string) string {
	dst := t.TempDir()
	err := filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err != nil || strings.HasPrefix(d.Name(), atomicfile.TempPrefix) {
			return err
		}
		rel, _ := filepath.Rel(store, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// boot asks url's /v1/boot for node id and returns its token.
func boot(t *testing.T, hc *http.Client, url, id string) (string, int) {
	body, _ := json.Marshal(registry.BootRequest{Protocol: registry.Protocol, NodeID: id, Farm: "demo", Agent: "replicas-test"})
	resp, err := hc.Post(url+"/v1/boot", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return "", 0
	}
	defer resp.Body.Close()
	var ans registry.BootResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			t.Error(err)
		}
	}
	return ans.Token, resp.StatusCode
}

// bootStores is boot, returning the stores the answer offers.
func bootStores(t *testing.T, hc *http.Client, url, id string) (int, []string) {
	body, _ := json.Marshal(registry.BootRequest{Protocol: registry.Protocol, NodeID: id, Farm: "demo", Agent: "replicas-test"})
	resp, err := hc.Post(url+"/v1/boot", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans registry.BootResponse
	json.NewDecoder(resp.Body).Decode(&ans)
	return resp.StatusCode, ans.Stores
}

// report sends a PID 1 status report for id to url.
func report(t *testing.T, hc *http.Client, url, id, token, state string) int {
	body, _ := json.Marshal(registry.StatusReport{NodeID: id, Source: registry.SourcePID1, State: state, Token: token})
	resp, err := hc.Post(url+"/v1/status", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
