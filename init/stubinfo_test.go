package main

import (
	"os"
	"path/filepath"
	"testing"
	"unicode/utf16"
)

func TestEFIStubInfo(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "StubInfo")
	b := []byte{0x06, 0, 0, 0} // attributes: boot service and runtime access
	for _, c := range utf16.Encode([]rune("systemd-stub 252.39-1~deb12u2\x00")) {
		b = append(b, byte(c), byte(c>>8))
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if s, ok := efiStubInfo(p); !ok || s != "systemd-stub 252.39-1~deb12u2" {
		t.Fatalf("efiStubInfo = %q, %v", s, ok)
	}
	if _, ok := efiStubInfo(filepath.Join(dir, "missing")); ok {
		t.Fatal("a missing variable read as a UKI boot")
	}
	if err := os.WriteFile(p, []byte{6, 0}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := efiStubInfo(p); ok {
		t.Fatal("a truncated variable read as a UKI boot")
	}
}
