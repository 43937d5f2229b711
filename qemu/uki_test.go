package qemu

import (
	"context"
	"debug/pe"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/internal/testenv"
)

// The Secure Boot firmware and Debian's snakeoil key enrolled in its
// variables (ovmf), and the systemd EFI stub (systemd-boot-efi).
const (
	ovmfCode     = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	ovmfVars     = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
	snakeoilKey  = "/usr/share/ovmf/PkKek-1-snakeoil.key"
	snakeoilCert = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
	efiStub      = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
)

// OVMF's boot manager when the image's signature does not verify.
var reDenied = regexp.MustCompile(`BdsDxe: failed to (load|start) Boot[0-9A-F]{4} .*: (Access Denied|Security Violation)`)

// TestUKISecureBoot builds a UKI (kernel, the grid's initramfs, a command
// line naming the registry, os-release) with cmd/mkuki, signs it with the
// snakeoil key and boots it from an ESP under OVMF with Secure Boot
// enforced: the signed image reaches Core-0 ready; the unsigned one, and
// the signed one with a byte of its .initrd changed, are refused by the
// firmware.
func TestUKISecureBoot(t *testing.T) {
	needVM(t)
	needUKITools(t, "mformat", "mmd", "mcopy")

	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	g.serve()
	cmdline := fmt.Sprintf("console=ttyS0 panic=-1 zeroboot.registry=%s zeroboot.farm=demo", g.registry())
	build := ukiBuilder(t, g, cmdline)
	initrd := filepath.Join(g.dir, "initramfs.cpio.zst")
	unsigned := build("unsigned.efi", false)
	signed := build("zeroboot.efi", true)
	tampered := filepath.Join(g.dir, "tampered.efi")
	tamperSection(t, signed, tampered, ".initrd")
	if fi, err := os.Stat(signed); err == nil {
		t.Logf("figure: signed UKI %.2f MiB (initramfs %.2f MiB)", float64(fi.Size())/(1<<20), sizeMiB(initrd))
	}

	t.Run("unsigned refused", func(t *testing.T) { ukiRefused(t, g, unsigned) })
	t.Run("tampered initrd refused", func(t *testing.T) { ukiRefused(t, g, tampered) })
	t.Run("signed boots to ready", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		start := time.Now()
		vm := startUKI(t, g, signed, "signed", "5a1c0b0e-0000-4000-8000-0000000000e1")
		_, at, _ := untilReady(t, ctx, g, vm)
		took := at.Sub(start)
		for _, want := range []string{`Secure boot enabled`, `Command line: ` + regexp.QuoteMeta(cmdline)} {
			if vm.Count(regexp.MustCompile(want)) == 0 {
				t.Errorf("console never showed %q", want)
			}
		}
		t.Logf("figure: signed UKI under Secure Boot (OVMF, %s): QEMU start to core0 ready %.1f s", Accel(), took.Seconds())
		if l := matching(vm, regexp.MustCompile(`core0 started \(pid \d+\) (\d+) ms after PID 1 started`)); len(l) > 0 {
			t.Logf("figure: %s", l[0])
		}
		// PID 1 says so from systemd-stub's StubInfo variable, with
		// efivarfs loaded and mounted after its mount step (Debian's
		// kernel has it as a module).
		if l := matching(vm, regexp.MustCompile(`booted from a unified kernel image stub="systemd-stub `)); len(l) > 0 {
			t.Logf("figure: %s", l[0])
		} else {
			t.Errorf("PID 1 did not report the UKI boot from StubInfo")
		}
	})
}

// ukiBuilder builds cmd/mkuki and returns what makes a UKI of the kernel,
// g's initramfs and cmdline into g's directory as out, signed with
// Debian's snakeoil key (enrolled in ovmfVars) when sign is true.
func ukiBuilder(t *testing.T, g *grid, cmdline string) (build func(out string, sign bool) string) {
	t.Helper()
	initrd := g.initramfs(kver)
	mkuki := filepath.Join(g.dir, "mkuki")
	if out, err := exec.Command("go", "build", "-o", mkuki, "../cmd/mkuki").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/mkuki: %v\n%s", err, out)
	}
	key := filepath.Join(g.dir, "db.key")
	if out, err := exec.Command("openssl", "pkey", "-in", snakeoilKey, "-passin", "pass:snakeoil", "-out", key).CombinedOutput(); err != nil {
		t.Fatalf("decrypt %s: %v\n%s", snakeoilKey, err, out)
	}
	osrel := filepath.Join(g.dir, "os-release")
	if err := os.WriteFile(osrel, []byte("NAME=zeroboot\nID=zeroboot\nPRETTY_NAME=\"zeroboot test node\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(out string, sign bool) string {
		t.Helper()
		p := filepath.Join(g.dir, out)
		args := []string{"-kernel", kernel, "-initrd", initrd, "-cmdline", cmdline,
			"-os-release", osrel, "-stub", efiStub, "-out", p}
		if sign {
			args = append(args, "-sign-key", key, "-sign-cert", snakeoilCert)
		}
		if b, err := exec.Command(mkuki, args...).CombinedOutput(); err != nil {
			t.Fatalf("mkuki %v: %v\n%s", args, err, b)
		}
		return p
	}
}

// needUKITools fails or skips t unless the Secure Boot firmware, its
// snakeoil key, the systemd EFI stub and the signing tools are there.
func needUKITools(t *testing.T, tools ...string) {
	t.Helper()
	for _, f := range []string{ovmfCode, ovmfVars, snakeoilKey, snakeoilCert} {
		_, err := os.Stat(f)
		testenv.Need(t, err == nil, "%s missing (make deps installs ovmf): %v", f, err)
	}
	_, err := os.Stat(efiStub)
	testenv.Need(t, err == nil, "%s missing (make deps installs systemd-boot-efi): %v", efiStub, err)
	for _, tool := range append([]string{"sbsign", "objcopy", "openssl"}, tools...) {
		testenv.NeedTool(t, tool)
	}
}

// ovmfSecureBoot is the QEMU arguments of OVMF with Secure Boot enforced
// and Debian's snakeoil key enrolled, its variables a copy in dir.
func ovmfSecureBoot(t *testing.T, dir string) []string {
	t.Helper()
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	if err := copyFile(ovmfVars, vars); err != nil {
		t.Fatal(err)
	}
	return []string{
		"-machine", "q35,smm=on",
		"-global", "driver=cfi.pflash01,property=secure,value=on",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
	}
}

func sizeMiB(p string) float64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return float64(fi.Size()) / (1 << 20)
}

// ukiRefused boots uki and waits for the firmware to refuse it; the
// kernel must never start.
func ukiRefused(t *testing.T, g *grid, uki string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	vm := startUKI(t, g, uki, filepath.Base(uki), "5a1c0b0e-0000-4000-8000-0000000000e2")
	line, err := vm.WaitFor(ctx, reDenied)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("figure: %s refused %.1f s after QEMU start: %s", filepath.Base(uki), time.Since(start).Seconds(), line)
	if c := vm.Count(regexp.MustCompile(`Linux version|EFI stub:`)); c != 0 {
		t.Fatalf("the kernel of a refused UKI started:\n%s", vm.Tail(30))
	}
}

// startUKI boots uki from a FAT ESP (EFI/BOOT/BOOTX64.EFI) under OVMF with
// Secure Boot enforced, on QEMU's user network; it is stopped when the
// test ends.
func startUKI(t *testing.T, g *grid, uki, name, uuid string) *VM {
	t.Helper()
	dir := t.TempDir()
	esp := filepath.Join(dir, "esp.img")
	fi, err := os.Stat(uki)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(esp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(esp, fi.Size()+40<<20); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"mformat", "-i", esp, "-F", "::"},
		{"mmd", "-i", esp, "::/EFI", "::/EFI/BOOT"},
		{"mcopy", "-i", esp, uki, "::/EFI/BOOT/BOOTX64.EFI"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	vm := &VM{
		UUID: uuid,
		// No iPXE ROM: the ESP is the only thing to boot.
		NIC: "virtio-net-pci,romfile=",
		Extra: append(ovmfSecureBoot(t, dir),
			"-drive", "if=none,format=raw,id=esp,file="+esp,
			"-device", "virtio-blk-pci,drive=esp,bootindex=0"),
	}
	runVM(t, g, vm, name+".console.log")
	return vm
}

// tamperSection copies the PE image in to out with one byte in the middle
// of section name flipped; the signature is left as it was.
func tamperSection(t *testing.T, in, out, name string) {
	t.Helper()
	f, err := pe.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section(name)
	f.Close()
	if s == nil || s.Size == 0 {
		t.Fatalf("%s has no %s section", in, name)
	}
	b, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	b[s.Offset+min(s.Size, s.VirtualSize)/2] ^= 0x01
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
