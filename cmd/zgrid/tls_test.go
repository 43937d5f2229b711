package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/registry"
)

func TestTLSReissue(t *testing.T) {
	c := cli{t: t, bin: zgrid(t)}
	data := filepath.Join(t.TempDir(), "grid")
	c.run(0, "init", "--data", data, "--san", "registry.example")
	ca, _ := os.ReadFile(filepath.Join(data, "tls", "ca.pem"))
	out, _ := c.run(0, "tls", "reissue", "--data", data, "--san", "new.example", "--san", "198.51.100.7")
	if !strings.Contains(out, "registry.example") || !strings.Contains(out, "new.example") || !strings.Contains(out, "198.51.100.7") {
		t.Errorf("reissue kept or added the wrong names: %s", out)
	}
	out, _ = c.run(0, "tls", "show", "--data", data)
	if !strings.Contains(out, "server.pem") || !strings.Contains(out, "new.example") || !strings.Contains(out, "zgrid registry CA") {
		t.Errorf("tls show: %s", out)
	}
	if after, _ := os.ReadFile(filepath.Join(data, "tls", "ca.pem")); string(after) != string(ca) {
		t.Error("reissue changed the CA")
	}
	out, _ = c.run(0, "tls", "reissue", "--data", data, "--san", "only.example", "--replace")
	if strings.Contains(out, "registry.example") || !strings.Contains(out, "only.example") {
		t.Errorf("--replace: %s", out)
	}
	if _, errs := c.run(2, "tls", "reissue", "--data", data); !strings.Contains(errs, "at least one --san") {
		t.Errorf("no --san: %s", errs)
	}
}

// A CA rotation against a real zgrid serve, restarted during the overlap
// and left running through finish, which it picks up without a restart:
// nodes whose image trusts the old CA, the overlap bundle or the new CA,
// with the node's own client. Mistakes are refused.
func TestTLSRotate(t *testing.T) {
	dir := t.TempDir()
	c := cli{t: t, bin: zgrid(t)}
	data := filepath.Join(dir, "grid")
	key := filepath.Join(dir, "root.key")
	c.run(0, "init", "--data", data)
	c.run(0, "key", "new", "--out", key)
	c.run(0, "root", "init", "--data", data, "--root-key", key+".pub", "--sign", key, "--release-key", key+".pub")
	ca := func() []byte {
		b, err := os.ReadFile(filepath.Join(data, "tls", "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, sub := range []string{"begin", "finish", "abort"} {
		if _, errs := c.run(0, "tls", "rotate", sub, "--help"); !strings.Contains(errs, "usage: zgrid tls rotate "+sub) || !strings.Contains(errs, "examples:") {
			t.Errorf("tls rotate %s --help: %s", sub, errs)
		}
	}
	if _, errs := c.run(1, "tls", "rotate", "finish", "--data", data); !strings.Contains(errs, "no CA rotation under way") || !strings.Contains(errs, "zgrid tls rotate begin") {
		t.Errorf("finish without begin: %s", errs)
	}
	if _, errs := c.run(1, "tls", "rotate", "abort", "--data", data); !strings.Contains(errs, "nothing to abort") {
		t.Errorf("abort without begin: %s", errs)
	}
	oldCA := ca()
	url, stop := serveTLS(t, c, data)
	out, _ := c.run(0, "tls", "rotate", "begin", "--data", data)
	if !strings.Contains(out, "zgrid tls rotate finish") {
		t.Errorf("begin: %s", out)
	}
	if _, errs := c.run(1, "tls", "rotate", "begin", "--data", data); !strings.Contains(errs, "already under way") {
		t.Errorf("begin twice: %s", errs)
	}
	bundle := ca()
	newCA, _ := os.ReadFile(filepath.Join(data, "tls", "next-ca.pem"))
	if out, _ := c.run(0, "tls", "show", "--data", data); strings.Count("\n"+out, "\nca.pem ") != 2 || !strings.Contains(out, "rotation    under way") {
		t.Errorf("tls show during the overlap: %s", out)
	}
	// A reissue during the overlap stays under the old CA.
	c.run(0, "tls", "reissue", "--data", data, "--san", "more.example")
	phases := []struct {
		name string
		ok   map[string]bool // by what the node trusts
	}{
		{"before", map[string]bool{"old": true, "bundle": true, "new": false}},
		{"overlap", map[string]bool{"old": true, "bundle": true, "new": false}},
		{"after", map[string]bool{"old": false, "bundle": true, "new": true}},
	}
	trust := map[string][]byte{"old": oldCA, "bundle": bundle, "new": newCA}
	check := func(phase int, url string) {
		for name, pem := range trust {
			err := healthz(url, pem)
			if want := phases[phase].ok[name]; want != (err == nil) {
				t.Errorf("%s, node trusting the %s CA: err %v, want connected=%v", phases[phase].name, name, err, want)
			} else if err != nil && !strings.Contains(err.Error(), "certificate signed by unknown authority") {
				t.Errorf("%s, node trusting the %s CA: unclear refusal %v", phases[phase].name, name, err)
			}
		}
	}
	check(0, url) // the server started before begin, still running
	stop()
	url, stop = serveTLS(t, c, data) // restarted during the overlap: its certificate is still the old CA's
	check(1, url)
	out, _ = c.run(0, "tls", "rotate", "finish", "--data", data)
	if !strings.Contains(out, "a running zgrid serve uses it from its next handshake") || !strings.Contains(out, "more.example") {
		t.Errorf("finish: %s", out)
	}
	if string(ca()) != string(newCA) {
		t.Error("after finish ca.pem is not the new CA alone")
	}
	// The running server looks at its certificate once a second.
	time.Sleep(1100 * time.Millisecond)
	check(2, url)
	stop()
	if _, errs := c.run(1, "tls", "rotate", "finish", "--data", data); !strings.Contains(errs, "no CA rotation under way") {
		t.Errorf("finish twice: %s", errs)
	}
}

// serveTLS starts zgrid serve on data and returns its URL and a function
// that stops it (else it stops when the test ends).
func serveTLS(t *testing.T, c cli, data string) (string, func()) {
	t.Helper()
	url := fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
	var log bytes.Buffer
	srv := exec.Command(c.bin, "serve", "--data", data, "--listen", strings.TrimPrefix(url, "https://"))
	srv.Stdout, srv.Stderr = &log, &log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { srv.Process.Kill(); srv.Wait() }) }
	t.Cleanup(stop)
	waitHealthy(t, url, filepath.Join(data, "tls", "ca.pem"), &log)
	return url, stop
}

// healthz asks url with the node's client trusting caPEM only.
func healthz(url string, caPEM []byte) error {
	hc, err := registry.NewHTTPClient(caPEM, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Get(url + "/healthz")
	if err != nil {
		return err
	}
	return resp.Body.Close()
}
