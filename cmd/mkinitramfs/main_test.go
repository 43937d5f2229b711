package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/initramfs"
)

func TestParseFile(t *testing.T) {
	tests := []struct {
		in      string
		want    initramfs.File
		wantErr string
	}{
		{"a:/etc/a", initramfs.File{Src: "a", Dst: "/etc/a"}, ""},
		{"key:/etc/zeroboot/key:0600", initramfs.File{Src: "key", Dst: "/etc/zeroboot/key", Mode: 0o600}, ""},
		{"a", initramfs.File{}, "want SRC:DST[:MODE]"},
		{":/etc/a", initramfs.File{}, "want SRC:DST[:MODE]"},
		{"a:/b:0644:x", initramfs.File{}, "want SRC:DST[:MODE]"},
		{"a:/b:rw", initramfs.File{}, "must be octal permission bits"},
		{"a:/b:4755", initramfs.File{}, "must be octal permission bits"},
	}
	for _, tc := range tests {
		got, err := parseFile(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseFile(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseFile(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestSpecFrom(t *testing.T) {
	s, err := specFrom("bin/init", "6.1.0-56-amd64", "", "", "sfc, ,bnx2", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.KernelModules != "/lib/modules/6.1.0-56-amd64" {
		t.Errorf("KernelModules = %q", s.KernelModules)
	}
	want := append(append([]string(nil), initramfs.DefaultModules...), "sfc", "bnx2")
	if !reflect.DeepEqual(s.Modules, want) {
		t.Errorf("Modules = %v, want %v", s.Modules, want)
	}
	s, err = specFrom("bin/init", "", "/m/6.6", "virtio_net,e1000", "", false, nil)
	if err != nil || !reflect.DeepEqual(s.Modules, []string{"virtio_net", "e1000"}) || s.KernelModules != "/m/6.6" {
		t.Errorf("specFrom with -modules = %+v, %v", s, err)
	}
	for _, bad := range []struct {
		init, kver, dir string
		noMods          bool
		want            string
	}{
		{"", "6.1", "", false, "-init PATH is required"},
		{"i", "", "", false, "one of -kernel-version"},
		{"i", "6.1", "/m", false, "not both"},
		{"i", "../../etc", "", false, "must be a bare version"},
		{"i", "6.1", "", true, "-no-modules excludes"},
	} {
		if _, err := specFrom(bad.init, bad.kver, bad.dir, "", "", bad.noMods, nil); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("specFrom(%+v) error = %v, want %q", bad, err, bad.want)
		}
	}
}

// TestRunFailureLeavesNoOutput checks that a refused build (here: init is a
// shell script) neither creates OUT nor leaves a temporary file behind.
func TestRunFailureLeavesNoOutput(t *testing.T) {
	dir := t.TempDir()
	initP := filepath.Join(dir, "init")
	os.WriteFile(initP, []byte("#!/bin/sh\n"), 0o755)
	out := filepath.Join(dir, "out.cpio.zst")
	var stdout, stderr bytes.Buffer
	err := run([]string{"-init", initP, "-no-modules", "-o", out}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "not an ELF executable") {
		t.Fatalf("run error = %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after a failed build, want only init", len(entries))
	}
}

func TestRunUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	run([]string{"-help"}, &stdout, &stderr)
	for _, want := range []string{"Examples:", "-kernel-version", "virtio_net"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}
