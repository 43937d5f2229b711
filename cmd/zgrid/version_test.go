package main

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/server"
)

// TestVersion: the binary, built with a version set at link time, prints
// it for itself and, through a running registry, for the server; without a
// registry it prints the client alone; with one that is down it says why
// and exits 1 after the client line.
func TestVersion(t *testing.T) {
	const version = "v9.8.7-test"
	bin := filepath.Join(t.TempDir(), "zgrid")
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X github.com/zeroboot/zeroboot/cmd/zgrid/internal/server.Version="+version, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c := cli{t: t, bin: bin}
	clientLine := regexp.MustCompile(`(?m)^client: zgrid ` + regexp.QuoteMeta(version) + `, revision \S+, go1\.\S+\n`)

	if _, errs := c.run(0, "version", "--help"); !strings.Contains(errs, "usage: zgrid version") || !strings.Contains(errs, "examples:") {
		t.Errorf("version --help:\n%s", errs)
	}
	out, _ := c.run(0, "version")
	if !clientLine.MatchString(out) || !strings.Contains(out, "server: not asked (give --server URL or --data DIR)") {
		t.Errorf("version alone:\n%s", out)
	}

	g := newGrid(t, c)
	url, _ := g.serve(t)
	out, _ = c.run(0, "version", "--server", url, "--ca", filepath.Join(g.data, "tls", "ca.pem"))
	serverLine := regexp.MustCompile(`(?m)^server: zgrid ` + regexp.QuoteMeta(version) + `, revision \S+, go1\.\S+ at ` + regexp.QuoteMeta(url) + `\n`)
	if !clientLine.MatchString(out) || !serverLine.MatchString(out) || strings.Contains(out, "note:") {
		t.Errorf("version with a server:\n%s", out)
	}

	dead := fmt.Sprintf("https://127.0.0.1:%d", freePort(t))
	out, errs := c.run(1, "version", "--server", dead, "--data", g.data)
	if !clientLine.MatchString(out) || strings.Contains(out, "server:") {
		t.Errorf("version with the server down, stdout:\n%s", out)
	}
	if want := "zgrid version: server " + dead + ": could not be reached: "; !strings.Contains(errs, want) || !strings.Contains(errs, "connection refused") {
		t.Errorf("version with the server down, stderr %q, want %q and the reason", errs, want)
	}
}

// TestVersionAnswers: what the client makes of each kind of answer.
func TestVersionAnswers(t *testing.T) {
	mine := server.Build()
	other := mine
	other.Version = "v0.0.1-older"
	for _, tt := range []struct {
		name    string
		answer  func(w http.ResponseWriter)
		want    string // in stdout
		wantErr string
	}{
		{"same build", func(w http.ResponseWriter) { writeVersion(w, mine) }, "server: " + describe(mine) + " at ", ""},
		{"another build", func(w http.ResponseWriter) { writeVersion(w, other) }, "note: the server runs another build than this client", ""},
		{"newer server, more fields", func(w http.ResponseWriter) {
			fmt.Fprintf(w, `{"version":"v2","revision":"abc","go_version":"go1.99","built":"later"}`)
		}, "server: zgrid v2, revision abc, go1.99 at ", ""},
		{"server without the endpoint", func(w http.ResponseWriter) { http.Error(w, `{"error":"no endpoint"}`, 404) },
			"", "HTTP 404: the server is a zgrid from before GET /v1/version, or not a zgrid"},
		{"not a version", func(w http.ResponseWriter) { fmt.Fprint(w, `<html>hello</html>`) }, "", `not a version answer: "<html>hello</html>"`},
		{"server error", func(w http.ResponseWriter) { http.Error(w, "boom", 503) }, "", "HTTP 503 Service Unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v1/version" || r.Header.Get("Authorization") != "" {
					http.Error(w, "unexpected "+r.URL.Path, 400)
					return
				}
				tt.answer(w)
			}))
			defer ts.Close()
			ca := filepath.Join(t.TempDir(), "ca.pem")
			os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644)
			var out bytes.Buffer
			err := printVersions(&out, &conn{server: ts.URL + "/", ca: ca, tokenFile: "/nonexistent"})
			if !strings.HasPrefix(out.String(), "client: "+describe(mine)+"\n") {
				t.Errorf("stdout %q lacks the client line first", out.String())
			}
			if tt.wantErr == "" {
				if err != nil || !strings.Contains(out.String(), tt.want) {
					t.Errorf("stdout %q, err %v; want %q", out.String(), err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "server "+ts.URL+": no version: GET "+ts.URL+"/v1/version: ") {
				t.Errorf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func writeVersion(w http.ResponseWriter, b server.BuildInfo) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"version":%q,"revision":%q,"go_version":%q}`, b.Version, b.Revision, b.GoVersion)
}

func TestVersionNeedsCA(t *testing.T) {
	var out bytes.Buffer
	err := printVersions(&out, &conn{server: "https://192.0.2.1:8443"})
	if err == nil || !strings.Contains(err.Error(), "no registry CA: give --ca FILE (or --data DIR)") {
		t.Errorf("no CA: %v", err)
	}
}
