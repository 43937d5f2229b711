package tlsgen

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/registry"
)

// serveDir serves HTTPS on 127.0.0.1 with dir's server certificate, as
// zgrid serve does, answering status reports.
func serveDir(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(LoadServer(dir))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// report sends a status report as a node does, with the node's client
// trusting caPEM only.
func report(srv *httptest.Server, caPEM []byte) error {
	hc, err := registry.NewHTTPClient(caPEM, nil)
	if err != nil {
		return err
	}
	c := &registry.Client{URLs: []string{srv.URL}, HTTP: hc}
	return c.Status(context.Background(), registry.StatusReport{NodeID: "n1", Source: registry.SourcePID1, State: registry.StateReady,
		Token: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"})
}

// Nodes whose image trusts the old CA, the overlap bundle or the new CA,
// against the server before, during and after a rotation: nobody loses
// the server as long as images carry the bundle before the finish.
func TestRotationPhases(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if _, err := Generate(dir, Options{SANs: []string{"localhost", "127.0.0.1"}, Now: now}); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	oldCA := read(CACert)
	if _, err := FinishRotation(dir, now); !errors.Is(err, ErrNoRotation) || !strings.Contains(err.Error(), "zgrid tls rotate begin") {
		t.Fatalf("finish without begin: %v", err)
	}
	before := serveDir(t, dir)
	next, err := BeginRotation(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := BeginRotation(dir, now); err == nil || !strings.Contains(err.Error(), "one is already under way") || !strings.Contains(err.Error(), next.Subject.CommonName) {
		t.Fatalf("begin twice: %v", err)
	}
	bundle, newCA := read(CACert), read(NextCACert)
	if string(read(CACert+".old")) != string(oldCA) {
		t.Error("the old ca.pem was not kept")
	}
	st, err := RotationState(dir)
	if err != nil || len(st.Bundle) != 2 || st.Next == nil || string(st.Bundle[1].Raw) != string(next.Raw) {
		t.Fatalf("state during the overlap: %+v %v", st, err)
	}
	overlap := serveDir(t, dir) // the server keeps its old-CA certificate
	if _, err := FinishRotation(dir, now); err != nil {
		t.Fatal(err)
	}
	after := serveDir(t, dir)
	if string(read(CACert)) != string(newCA) {
		t.Error("after finish, ca.pem is not the new CA alone")
	}
	if _, err := os.Stat(filepath.Join(dir, NextCACert)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("next-ca.pem left: %v", err)
	}
	if _, err := FinishRotation(dir, now); !errors.Is(err, ErrNoRotation) {
		t.Errorf("finish twice: %v", err)
	}
	// The new CA signs what comes next: reissue works under it.
	if _, err := Reissue(dir, Options{SANs: []string{"127.0.0.1", "registry.example"}, Now: now}); err != nil {
		t.Errorf("reissue after the rotation: %v", err)
	}

	const refused = "not signed by a CA this node trusts"
	for _, tc := range []struct {
		phase string
		srv   *httptest.Server
		trust string
		ca    []byte
		ok    bool
	}{
		{"before", before, "old CA", oldCA, true},
		{"before", before, "bundle", bundle, true},
		{"before", before, "new CA", newCA, false},
		{"overlap", overlap, "old CA", oldCA, true},
		{"overlap", overlap, "bundle", bundle, true},
		{"overlap", overlap, "new CA", newCA, false},
		{"after", after, "old CA", oldCA, false},
		{"after", after, "bundle", bundle, true},
		{"after", after, "new CA", newCA, true},
	} {
		err := report(tc.srv, tc.ca)
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s, node trusting the %s: refused: %v", tc.phase, tc.trust, err)
		case !tc.ok && err == nil:
			t.Errorf("%s, node trusting the %s: connected", tc.phase, tc.trust)
		case !tc.ok && !strings.Contains(err.Error(), refused):
			t.Errorf("%s, node trusting the %s: error %q does not say %q", tc.phase, tc.trust, err, refused)
		}
	}
}

func TestAbortRotation(t *testing.T) {
	dir := t.TempDir()
	if _, err := Generate(dir, Options{SANs: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(filepath.Join(dir, CACert))
	server, _ := os.ReadFile(filepath.Join(dir, ServerCert))
	if err := AbortRotation(dir); !errors.Is(err, ErrNoRotation) {
		t.Fatalf("abort without begin: %v", err)
	}
	if _, err := BeginRotation(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := AbortRotation(dir); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, CACert)); string(after) != string(ca) {
		t.Error("abort did not put the old ca.pem back")
	}
	if after, _ := os.ReadFile(filepath.Join(dir, ServerCert)); string(after) != string(server) {
		t.Error("abort changed the server certificate")
	}
	for _, f := range []string{NextCACert, NextCAKey} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", f, err)
		}
	}
	if _, err := BeginRotation(dir, time.Now()); err != nil {
		t.Errorf("begin after abort: %v", err)
	}
}

// A ca.pem that does not hold the next CA (edited, or a begin cut short)
// is not finished: images built from it would lose the server.
func TestFinishRefusesBundleWithoutNext(t *testing.T) {
	dir := t.TempDir()
	if _, err := Generate(dir, Options{SANs: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := BeginRotation(dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(filepath.Join(dir, CACert+".old"))
	os.WriteFile(filepath.Join(dir, CACert), old, 0o644)
	if _, err := FinishRotation(dir, time.Now()); err == nil || !strings.Contains(err.Error(), "does not hold the next CA") {
		t.Fatalf("finish with a ca.pem lacking the next CA: %v", err)
	}
}
