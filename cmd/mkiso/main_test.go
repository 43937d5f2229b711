package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/internal/testenv"
)

func TestBuildNamesMissingFile(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	o := options{kernel: kernel, initrd: initrd, isolinux: DefaultIsolinux, modules: DefaultModules, stub: DefaultStub, out: filepath.Join(dir, "out.iso")}
	if err := o.build(); err == nil || !strings.Contains(err.Error(), "-kernel "+kernel) {
		t.Fatalf("missing kernel: %v", err)
	}
	for _, f := range []string{kernel, initrd} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o.isolinux = filepath.Join(dir, "no-isolinux")
	if err := o.build(); err == nil || !strings.Contains(err.Error(), "isolinux.bin (install isolinux) "+o.isolinux) {
		t.Fatalf("missing isolinux.bin: %v", err)
	}
	o.isolinux, o.modules = DefaultIsolinux, filepath.Join(dir, "no-modules")
	if _, err := os.Stat(filepath.Join(DefaultIsolinux, "isolinux.bin")); err == nil {
		if err := o.build(); err == nil || !strings.Contains(err.Error(), "ldlinux.c32 (install syslinux-common)") {
			t.Fatalf("missing ldlinux.c32: %v", err)
		}
	}
	if _, err := os.Stat(o.out); err == nil {
		t.Fatal("output left behind")
	}
}

// A failing step (here mkuki, given a kernel that is not one) leaves
// nothing at -out and no temporary directory beside it.
func TestFailureLeavesNothing(t *testing.T) {
	for _, f := range []string{filepath.Join(DefaultIsolinux, "isolinux.bin"), filepath.Join(DefaultModules, "ldlinux.c32"), DefaultStub} {
		_, err := os.Stat(f)
		testenv.Need(t, err == nil, "%s (isolinux, syslinux-common, systemd-boot-efi; make deps): %v", f, err)
	}
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	os.WriteFile(kernel, []byte("x"), 0o644)
	os.WriteFile(initrd, []byte("x"), 0o644)
	fake := filepath.Join(dir, "mkuki")
	os.WriteFile(fake, []byte("#!/bin/sh\necho mkuki failed >&2\nexit 1\n"), 0o755)
	o := options{kernel: kernel, initrd: initrd, efi: "uki", isolinux: DefaultIsolinux, modules: DefaultModules, stub: DefaultStub, mkuki: fake, out: filepath.Join(dir, "out.iso")}
	if err := o.build(); err == nil || !strings.Contains(err.Error(), "mkuki failed") {
		t.Fatalf("mkuki failure: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() == "out.iso" || strings.HasPrefix(e.Name(), ".mkiso-") {
			t.Fatalf("%s left behind", e.Name())
		}
	}
}

func TestIsolinuxCfg(t *testing.T) {
	got := isolinuxCfg("console=ttyS0 zeroboot.registry=https://r:8443", true)
	for _, want := range []string{"DEFAULT zeroboot\n", "TIMEOUT 0\n", "KERNEL /boot/vmlinuz\n", "INITRD /boot/initrd\n", "APPEND console=ttyS0 zeroboot.registry=https://r:8443\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("isolinux.cfg lacks %q:\n%s", want, got)
		}
	}
	// A kernel that carries its initramfs is loaded alone.
	if got := isolinuxCfg("console=ttyS0", false); strings.Contains(got, "INITRD") || !strings.Contains(got, "KERNEL /boot/vmlinuz\n") {
		t.Errorf("isolinux.cfg without an initrd:\n%s", got)
	}
	o := options{kernel: "k", initrd: "i", out: "o", cmdline: "a\nb"}
	if err := o.build(); err == nil {
		t.Fatal("a command line with a newline accepted")
	}
	o = options{kernel: "k", out: "o"}
	if err := o.build(); err == nil || !strings.Contains(err.Error(), "-initrd is required, unless") {
		t.Fatalf("no -initrd and no -uki: %v", err)
	}
}

// GRUB's embedded configuration finds the image by its label and boots
// the kernel and initramfs stored in it; a command line its parser would
// change is refused, naming the character.
func TestGrubCfg(t *testing.T) {
	got := grubCfg("console=ttyS0 zeroboot.registry=https://r:8443", true)
	for _, want := range []string{"search --no-floppy --set=root --label ZEROBOOT\n", "linux /boot/vmlinuz console=ttyS0 zeroboot.registry=https://r:8443\n", "initrd /boot/initrd\n", "boot\n", "serial --unit=0"} {
		if !strings.Contains(got, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(grubCfg("x", false), "initrd") {
		t.Error("grub.cfg loads an initrd the kernel does not need")
	}
	for _, tc := range []struct {
		cmdline string
		ok      bool
	}{
		{"console=ttyS0 panic=-1 zeroboot.registry=https://[2001:db8::1]:8443,https://r.example:8443 zeroboot.farm=a-b_c", true},
		{"zeroboot.farm=$root", false},
		{`zeroboot.farm="x"`, false},
		{"a; reboot", false},
	} {
		if err := checkGrubCmdline(tc.cmdline); (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.cmdline, err)
		}
	}
	o := options{kernel: "k", initrd: "i", out: "o", efi: "grub", cmdline: "x=$y"}
	if err := o.build(); err == nil || !strings.Contains(err.Error(), `'$'`) {
		t.Errorf("-efi grub with a $ in the command line: %v", err)
	}
	o = options{kernel: "k", initrd: "i", out: "o", efi: "pxe"}
	if err := o.build(); err == nil || !strings.Contains(err.Error(), "want grub or uki") {
		t.Errorf("-efi pxe: %v", err)
	}
}
