package tlsgen

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGenerateVerifies(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	files, err := Generate(dir, Options{SANs: []string{"registry.example", "192.0.2.2", "::1"}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CAKey, ServerKey} {
		st, err := os.Stat(files[name])
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	caPEM, err := os.ReadFile(files[CACert])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	pair, err := tls.LoadX509KeyPair(LoadServer(dir))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		at   time.Time
		ok   bool
	}{
		{"registry.example", now, true},
		{"192.0.2.2", now, true},
		{"::1", now, true},
		{"registry.example", now.Add(9 * 365 * 24 * time.Hour), true},
		{"registry.example", now.Add(-2 * time.Hour), true}, // back-dated for skew
		{"other.example", now, false},
		{"198.51.100.1", now, false},
		{"registry.example", now.Add(11 * 365 * 24 * time.Hour), false},
		{"registry.example", now.Add(-48 * time.Hour), false},
	} {
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: tc.name, Roots: pool, CurrentTime: tc.at})
		if (err == nil) != tc.ok {
			t.Errorf("verify %s at %v: err=%v, want ok=%v", tc.name, tc.at, err, tc.ok)
		}
	}
}

func TestGenerateRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, CACert), []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(dir, Options{SANs: []string{"localhost"}}); err == nil {
		t.Fatal("Generate overwrote an existing ca.pem")
	}
	b, _ := os.ReadFile(filepath.Join(dir, CACert))
	if string(b) != "precious" {
		t.Fatalf("ca.pem changed to %q", b)
	}
}

func TestGenerateNeedsSANs(t *testing.T) {
	if _, err := Generate(t.TempDir(), Options{}); err == nil {
		t.Fatal("Generate without SANs succeeded")
	}
}

// A reissued server certificate has the new names and verifies against the
// same CA file nodes carry; the old pair is kept.
func TestReissue(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := Generate(dir, Options{SANs: []string{"localhost"}, Now: now}); err != nil {
		t.Fatal(err)
	}
	caBefore, _ := os.ReadFile(filepath.Join(dir, CACert))
	oldCert, _ := os.ReadFile(filepath.Join(dir, ServerCert))
	leaf, err := Reissue(dir, Options{SANs: []string{"localhost", "registry.example", "198.51.100.7"}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if got := SANs(leaf); len(got) != 3 || got[1] != "registry.example" || got[2] != "198.51.100.7" {
		t.Errorf("SANs %v", got)
	}
	caAfter, _ := os.ReadFile(filepath.Join(dir, CACert))
	if string(caBefore) != string(caAfter) {
		t.Fatal("the CA changed")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caAfter)
	if _, err := tls.LoadX509KeyPair(LoadServer(dir)); err != nil {
		t.Fatalf("new pair: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "registry.example", CurrentTime: now}); err != nil {
		t.Errorf("verify against the old CA: %v", err)
	}
	if kept, _ := os.ReadFile(filepath.Join(dir, ServerCert+".old")); string(kept) != string(oldCert) {
		t.Error("the old certificate was not kept")
	}
	// A CA key that is not the CA's is refused, naming both files.
	other := t.TempDir()
	if _, err := Generate(other, Options{SANs: []string{"x"}, Now: now}); err != nil {
		t.Fatal(err)
	}
	k, _ := os.ReadFile(filepath.Join(other, CAKey))
	os.WriteFile(filepath.Join(dir, CAKey), k, 0o600)
	if _, err := Reissue(dir, Options{SANs: []string{"x"}, Now: now}); err == nil || !strings.Contains(err.Error(), "is not the key of") {
		t.Errorf("mismatched CA key: %v", err)
	}
}
