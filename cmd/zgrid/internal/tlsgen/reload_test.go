package tlsgen

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReloader: a reissued certificate is served at the next handshake
// after the check interval, without a restart; a broken pair keeps the
// last good one, with a warning; a pair missing at the start is an error.
func TestReloader(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if _, err := Generate(dir, Options{SANs: []string{"localhost"}, Now: now}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	r, err := NewReloader(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r.Every = time.Nanosecond
	sans := func() []string {
		t.Helper()
		c, err := r.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return SANs(leaf)
	}
	if got := sans(); strings.Join(got, ",") != "localhost" {
		t.Fatalf("first certificate's names %v", got)
	}
	if _, err := Reissue(dir, Options{SANs: []string{"localhost", "registry.example"}, Now: now}); err != nil {
		t.Fatal(err)
	}
	if got := sans(); strings.Join(got, ",") != "localhost,registry.example" {
		t.Errorf("after reissue: names %v, want the new certificate's", got)
	}
	if !strings.Contains(logs.String(), "server certificate reloaded") {
		t.Errorf("reload not logged: %s", logs.String())
	}
	// A half-written certificate: the good one stays.
	if err := os.WriteFile(filepath.Join(dir, ServerCert), []byte("-----BEGIN CERT"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := sans(); strings.Join(got, ",") != "localhost,registry.example" {
		t.Errorf("after a broken write: names %v, want the last good certificate", got)
	}
	if !strings.Contains(logs.String(), "server certificate not reloaded") {
		t.Errorf("broken pair not warned about: %s", logs.String())
	}
	if _, err := NewReloader(t.TempDir(), slog.Default()); err == nil || !strings.Contains(err.Error(), "server.pem") {
		t.Errorf("NewReloader without a pair: %v", err)
	}
}
