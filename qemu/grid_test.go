package qemu

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bins are the static programs the tests boot, built once per run.
var bins struct{ dir, init, core0, demosvc, zgrid, mkinitramfs string }

// buildBins compiles the node and control-plane programs the way the
// Makefile does (static, with an embedded build time).
func buildBins(dir string) error {
	bins.dir = dir
	bt := fmt.Sprint(time.Now().Add(-time.Hour).Unix())
	for _, p := range []struct {
		out *string
		pkg string
	}{
		{&bins.init, "./init"}, {&bins.core0, "./cmd/core0"}, {&bins.demosvc, "./cmd/demosvc"}, {&bins.zgrid, "./cmd/zgrid"}, {&bins.mkinitramfs, "./cmd/mkinitramfs"},
	} {
		*p.out = filepath.Join(dir, filepath.Base(p.pkg))
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.buildTime="+bt, "-o", *p.out, p.pkg)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", p.pkg, err, out)
		}
	}
	return nil
}

// grid is a zgrid data dir, release key and running server, driven through
// the zgrid CLI exactly as an operator would.
type grid struct {
	t       testing.TB
	dir     string
	data    string
	key     string
	rootKey string
	port    int
	server  *exec.Cmd
	log     bytes.Buffer
	// serveArgs are extra zgrid serve flags.
	serveArgs []string
}

func newGrid(t testing.TB) *grid {
	t.Helper()
	g := &grid{t: t, dir: t.TempDir()}
	g.data = filepath.Join(g.dir, "grid")
	g.key = filepath.Join(g.dir, "release.key")
	g.rootKey = filepath.Join(g.dir, "root.key")
	// The sites of the network tests (network_test.go) reach it at their
	// gateways too.
	g.run("init", "--data", g.data, "--san", HostAddr, "--san", siteV4, "--san", siteDeadV4, "--san", siteV6)
	g.run("key", "new", "--out", g.key)
	g.run("key", "new", "--out", g.rootKey)
	g.run("root", "init", "--data", g.data, "--root-key", g.rootKey+".pub", "--sign", g.rootKey, "--release-key", g.key+".pub")
	return g
}

func (g *grid) run(args ...string) string {
	g.t.Helper()
	cmd := exec.Command(bins.zgrid, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		g.t.Fatalf("zgrid %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// publish packs tree into an flist and publishes it as the only component
// of version v on channel stable, with Core-0 at /bin/core0.
func (g *grid) publish(tree string, v int, coreArgs ...string) string {
	return g.publishWith(g.key, "24h", tree, v, coreArgs...)
}

// publishWith is publish signed by key, valid for expires; through the
// running server when there is one.
func (g *grid) publishWith(key, expires, tree string, v int, coreArgs ...string) string {
	digest := g.flistOf(tree)
	g.publishFlist(key, expires, digest, v, coreArgs...)
	return digest
}

// publishFlist publishes the flist digest as publishWith does.
func (g *grid) publishFlist(key, expires, digest string, v int, coreArgs ...string) {
	args := []string{"release", "publish", "--data", g.data, "--key", key,
		"--channel", "stable", "--version", fmt.Sprint(v), "--expires", expires,
		"--component", "name=core0,flist=" + digest + ",mount=/", "--entry", "/bin/core0"}
	for _, a := range coreArgs {
		args = append(args, "--arg", a)
	}
	if g.server != nil {
		args = append(args, "--server", g.url(""))
	}
	g.run(args...)
}

// freePort is a loopback port nothing listens on (now).
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (g *grid) serve() {
	g.t.Helper()
	g.port = freePort(g.t)
	g.start()
	g.run("farm", "create", "demo", "--channel", "stable", "--data", g.data, "--server", g.url(""))
}

// restart stops the server and starts it again on the same port, as an
// operator does after zgrid root rotate.
func (g *grid) restart() {
	g.t.Helper()
	g.server.Process.Kill()
	g.server.Wait()
	g.start()
}

func (g *grid) start() {
	g.t.Helper()
	g.server = exec.Command(bins.zgrid, append([]string{"serve", "--data", g.data, "--listen", fmt.Sprintf("127.0.0.1:%d", g.port)}, g.serveArgs...)...)
	g.server.Stdout, g.server.Stderr = &g.log, &g.log
	if err := g.server.Start(); err != nil {
		g.t.Fatal(err)
	}
	srv := g.server
	g.t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := g.client().Get(g.url("/healthz"))
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("zgrid serve not healthy: %v\n%s", err, g.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (g *grid) url(p string) string { return fmt.Sprintf("https://127.0.0.1:%d%s", g.port, p) }

// registry is the URL the node uses: the host's loopback through QEMU's
// user network.
func (g *grid) registry() string { return fmt.Sprintf("https://%s:%d", HostAddr, g.port) }

func (g *grid) client() *http.Client {
	pem, err := os.ReadFile(filepath.Join(g.data, "tls", "ca.pem"))
	if err != nil {
		g.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
}

// node reads one node's record through the admin API.
func (g *grid) node(id string) (map[string]any, error) {
	token, err := os.ReadFile(filepath.Join(g.data, "admin.token"))
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequest("GET", g.url("/v1/admin/nodes/"+id), nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := g.client().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("node %s: HTTP %d", id, resp.StatusCode)
	}
	var m map[string]any
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// waitNode polls the registry until the node's state is want.
func (g *grid) waitNode(ctx context.Context, id, want string) (map[string]any, error) {
	var last map[string]any
	for {
		m, err := g.node(id)
		if err == nil {
			last = m
			if m["state"] == want {
				return m, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("node %s never reached %q (last: %v, err: %v)", id, want, last["state"], err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// initramfs builds the node image with the grid's trust root and CA.
func (g *grid) initramfs(kver string) string {
	g.t.Helper()
	out := filepath.Join(g.dir, "initramfs.cpio.zst")
	cmd := exec.Command(bins.mkinitramfs, "-init", bins.init, "-kernel-version", kver,
		"-file", filepath.Join(g.data, "tuf", "root", "1.root.json")+":/etc/zeroboot/root.json",
		"-file", filepath.Join(g.data, "tuf", "channels.json")+":/etc/zeroboot/channels.json",
		"-file", filepath.Join(g.data, "tls", "ca.pem")+":/etc/zeroboot/ca.pem",
		"-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		g.t.Fatalf("mkinitramfs: %v\n%s", err, b)
	}
	return out
}

// core0Tree is the demo component: the demo Core-0 at /bin/core0.
func core0Tree(t testing.TB) string {
	dir := filepath.Join(t.TempDir(), "core0")
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bins.core0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "core0"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
