package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/pe"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/internal/testenv"
)

func writeKeyCert(t *testing.T, dir, name string) (key, cert string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	key, cert = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pem")
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	return key, cert
}

func TestKeyMatchesCert(t *testing.T) {
	dir := t.TempDir()
	ka, ca := writeKeyCert(t, dir, "a")
	kb, _ := writeKeyCert(t, dir, "b")
	if err := keyMatchesCert(ka, ca); err != nil {
		t.Fatalf("matching pair refused: %v", err)
	}
	err := keyMatchesCert(kb, ca)
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched pair: %v", err)
	}
}

func TestBuildNamesMissingFile(t *testing.T) {
	dir := t.TempDir()
	o := options{kernel: filepath.Join(dir, "vmlinuz"), initrd: filepath.Join(dir, "initrd"), stub: DefaultStub, out: filepath.Join(dir, "out.efi")}
	err := o.build()
	if err == nil || !strings.Contains(err.Error(), "-kernel "+o.kernel) {
		t.Fatalf("missing kernel: %v", err)
	}
	if _, err := os.Stat(o.out); err == nil {
		t.Fatal("output left behind")
	}
}

func TestLayoutFollowsStub(t *testing.T) {
	_, err := os.Stat(DefaultStub)
	testenv.Need(t, err == nil, "the systemd EFI stub %s (systemd-boot-efi; make deps): %v", DefaultStub, err)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, make([]byte, 5000), 0o644)
	os.WriteFile(b, []byte("x"), 0o644)
	args, err := layout(DefaultStub, []section{{".osrel", a}, {".linux", b}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.Open(DefaultStub)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var end uint64
	for _, s := range f.Sections {
		end = max(end, uint64(s.VirtualAddress)+uint64(max(s.VirtualSize, s.Size)))
	}
	// The first section at the page after the stub's end, the second two
	// pages on (5000 bytes); ImageBase is 0 in Debian's stub.
	first := alignUp(end, 4096) + f.OptionalHeader.(*pe.OptionalHeader64).ImageBase
	got := strings.Join(args, " ")
	want := fmt.Sprintf("--add-section .osrel=%s --change-section-vma .osrel=0x%x --add-section .linux=%s --change-section-vma .linux=0x%x", a, first, b, first+0x2000)
	if got != want {
		t.Fatalf("layout:\n got %s\nwant %s", got, want)
	}
	if _, err := layout(DefaultStub, []section{{".sdmagic", a}}); err == nil {
		t.Fatal("a section the stub already has was added")
	}
}
