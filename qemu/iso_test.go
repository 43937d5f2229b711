package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/internal/testenv"
)

// The firmware without Secure Boot (ovmf), and what BIOS boots (isolinux,
// syslinux-common).
const (
	ovmfCodePlain = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVarsPlain = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	isolinuxBin   = "/usr/lib/ISOLINUX/isolinux.bin"
	isohdpfx      = "/usr/lib/ISOLINUX/isohdpfx.bin"
	ldlinuxC32    = "/usr/lib/syslinux/modules/bios/ldlinux.c32"
	grubEFIModule = "/usr/lib/grub/x86_64-efi/linux.mod"
)

// TestISOHybrid builds one image with cmd/mkiso (kernel, the grid's
// initramfs, a command line naming the registry) and boots that same file
// four ways: from a CD and from a USB stick, each with BIOS (SeaBIOS,
// isolinux) and with UEFI (OVMF, no Secure Boot, GRUB at
// EFI/BOOT/BOOTX64.EFI reading the same kernel and initramfs). Each reaches Core-0 ready and the registry
// records the node ready.
func TestISOHybrid(t *testing.T) {
	needVM(t)
	for _, f := range []string{ovmfCodePlain, ovmfVarsPlain, grubEFIModule, isolinuxBin, isohdpfx, ldlinuxC32} {
		_, err := os.Stat(f)
		testenv.Need(t, err == nil, "%s missing (make deps installs ovmf, grub-efi-amd64-bin, isolinux, syslinux-common): %v", f, err)
	}
	for _, tool := range []string{"xorriso", "grub-mkimage", "mformat", "mmd", "mcopy"} {
		testenv.NeedTool(t, tool)
	}

	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	g.serve()
	initrd := g.initramfs(kver)
	for _, c := range []string{"mkuki", "mkiso"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(g.dir, c), "../cmd/"+c).CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/%s: %v\n%s", c, err, out)
		}
	}
	iso := filepath.Join(g.dir, "zeroboot.iso")
	cmdline := fmt.Sprintf("console=ttyS0 panic=-1 zeroboot.registry=%s zeroboot.farm=demo", g.registry())
	start := time.Now()
	if out, err := exec.Command(filepath.Join(g.dir, "mkiso"), "-kernel", kernel, "-initrd", initrd,
		"-cmdline", cmdline, "-out", iso).CombinedOutput(); err != nil {
		t.Fatalf("mkiso: %v\n%s", err, out)
	}
	t.Logf("figure: hybrid ISO %.2f MiB (kernel %.2f MiB, initramfs %.2f MiB, stored once: GRUB reads them for UEFI), built in %.1f s",
		sizeMiB(iso), sizeMiB(kernel), sizeMiB(initrd), time.Since(start).Seconds())
	// GRUB and the boot files take a few MiB; a second copy of the kernel
	// and initramfs would take their whole size again.
	if extra := sizeMiB(iso) - sizeMiB(kernel) - sizeMiB(initrd); extra > 6 {
		t.Errorf("image is %.1f MiB more than its kernel and initramfs: are they stored twice?", extra)
	}

	cd := []string{"-drive", "if=none,id=cd,media=cdrom,readonly=on,format=raw,file=" + iso,
		"-device", "ide-cd,drive=cd,bootindex=0"}
	// The stick is a copy, as dd would write it; QEMU opens it read-write.
	stick := filepath.Join(g.dir, "stick.img")
	if err := copyFile(iso, stick); err != nil {
		t.Fatal(err)
	}
	usb := []string{"-drive", "if=none,id=stick,format=raw,file=" + stick,
		"-device", "qemu-xhci", "-device", "usb-storage,drive=stick,bootindex=0"}
	for i, c := range []struct {
		name string
		uefi bool
		disk []string
	}{
		{"BIOS CD", false, cd},
		{"UEFI CD", true, cd},
		{"BIOS USB", false, usb},
		{"UEFI USB", true, usb},
	} {
		t.Run(c.name, func(t *testing.T) {
			isoBoot(t, g, c.name, fmt.Sprintf("5a1c0b0e-0000-4000-8000-0000000000f%d", i), cmdline, c.uefi, c.disk)
		})
	}
}

// isoBoot boots the image attached by disk, with SeaBIOS or OVMF, and
// waits for Core-0 ready on the console and in the registry.
func isoBoot(t *testing.T, g *grid, name, uuid, cmdline string, uefi bool, disk []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	extra := []string{"-machine", "q35"}
	if uefi {
		vars := filepath.Join(dir, "OVMF_VARS.fd")
		if err := copyFile(ovmfVarsPlain, vars); err != nil {
			t.Fatal(err)
		}
		extra = append(extra,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCodePlain,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	vm := &VM{
		UUID: uuid,
		// No iPXE ROM: the image is the only thing to boot.
		NIC:   "virtio-net-pci,romfile=",
		Extra: append(extra, disk...),
	}
	start := time.Now()
	runVM(t, g, vm, filepath.Base(dir)+".console.log")
	_, at, _ := untilReady(t, ctx, g, vm)
	took := at.Sub(start)
	// The firmware that booted it: OVMF hands the kernel an EFI system
	// table; SeaBIOS runs isolinux, which prints its banner on the serial
	// line (SERIAL in isolinux.cfg).
	want, unwanted := `ISOLINUX \d`, `efi: EFI v`
	if uefi {
		want, unwanted = unwanted, want
	}
	for _, w := range []string{want, `[Cc]ommand line: .*` + regexp.QuoteMeta(cmdline)} {
		if vm.Count(regexp.MustCompile(w)) == 0 {
			t.Errorf("console never showed %q", w)
		}
	}
	if vm.Count(regexp.MustCompile(unwanted)) != 0 {
		t.Errorf("console showed %q", unwanted)
	}
	t.Logf("figure: ISO, %s (%s): QEMU start to core0 ready %.1f s", name, Accel(), took.Seconds())
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
