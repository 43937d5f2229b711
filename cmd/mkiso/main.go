// Command mkiso builds one hybrid image that boots a zeroboot node from a
// CD or, written with dd, from a USB stick, with BIOS and with UEFI:
//
//	mkiso -kernel vmlinuz -initrd initramfs.cpio.zst -cmdline "..." -out zeroboot.iso \
//	      [-efi grub [-grub-dir DIR] | -efi uki [-mkuki bin/mkuki] [-stub linuxx64.efi.stub] | -uki zeroboot.efi] \
//	      [-isolinux /usr/lib/ISOLINUX] [-syslinux-modules /usr/lib/syslinux/modules/bios]
//
// BIOS boots isolinux (El Torito, and the isohybrid MBR isohdpfx.bin on a
// disk), which loads the kernel and initramfs with the command line. UEFI
// boots EFI/BOOT/BOOTX64.EFI from a FAT image (El Torito EFI entry, and a
// GPT/MBR partition on a disk). That is, by default (-efi grub), GRUB with
// its configuration built in, which finds the image by its label and
// loads the same kernel and initramfs from it: they are stored once. With
// -efi uki it is a Unified Kernel Image carrying a second copy of both,
// made by mkuki; -uki gives one (a signed UKI, for Secure Boot).
// The image is written by xorriso; the FAT image by mtools.
//
// A kernel that carries its initramfs and command line (make kernel's one
// file) needs no -initrd: isolinux loads it alone, and -uki names the EFI
// application, the same file, whose EFI stub boots it:
//
//	mkiso -kernel out/kernel -uki out/kernel -out zeroboot.iso
//
// The image then holds the one file twice (BIOS and UEFI), not a kernel,
// an initramfs and a UKI of both.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/zeroboot/zeroboot/internal/buildtool"
)

// Where Debian's isolinux and syslinux-common put their files.
const (
	DefaultIsolinux = "/usr/lib/ISOLINUX"
	DefaultModules  = "/usr/lib/syslinux/modules/bios"
	DefaultStub     = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
)

func main() {
	var o options
	flag.StringVar(&o.kernel, "kernel", "", "kernel image (bzImage)")
	flag.StringVar(&o.initrd, "initrd", "", "initramfs (none: the kernel carries its own, and -uki is required)")
	flag.StringVar(&o.cmdline, "cmdline", "", "kernel command line, fixed in the image (BIOS and UEFI)")
	flag.StringVar(&o.out, "out", "", "output image (ISO 9660, hybrid)")
	flag.StringVar(&o.uki, "uki", "", "EFI application for EFI/BOOT/BOOTX64.EFI (default: a UKI built with -mkuki)")
	flag.StringVar(&o.efi, "efi", "grub", "UEFI side when -uki is not given: grub (reads the kernel and initramfs from the image) or uki (a second copy in a UKI, by mkuki)")
	flag.StringVar(&o.grubDir, "grub-dir", DefaultGrubDir, "GRUB's x86_64-efi modules (grub-efi-amd64-bin), for -efi grub")
	flag.StringVar(&o.mkuki, "mkuki", "", "mkuki binary (default: next to mkiso, else in PATH)")
	flag.StringVar(&o.stub, "stub", DefaultStub, "systemd EFI stub, passed to mkuki")
	flag.StringVar(&o.isolinux, "isolinux", DefaultIsolinux, "directory with isolinux.bin and isohdpfx.bin (isolinux)")
	flag.StringVar(&o.modules, "syslinux-modules", DefaultModules, "directory with ldlinux.c32 (syslinux-common)")
	flag.Parse()
	if err := o.build(); err != nil {
		fmt.Fprintln(os.Stderr, "mkiso:", err)
		os.Exit(1)
	}
}

type options struct {
	kernel, initrd, cmdline, out, uki, efi, grubDir, mkuki, stub, isolinux, modules string
}

// tools are the programs mkiso runs, found in PATH.
type tools struct{ xorriso, mformat, mmd, mcopy, mkuki, grubMkimage string }

func (o *options) build() error {
	if o.kernel == "" || o.out == "" {
		return errors.New("-kernel and -out are required")
	}
	if o.initrd == "" && o.uki == "" {
		return errors.New("-initrd is required, unless the kernel carries its initramfs and -uki names its EFI application (mkiso -kernel out/kernel -uki out/kernel)")
	}
	if strings.ContainsAny(o.cmdline, "\n\r") {
		return errors.New("-cmdline: one line only")
	}
	isolinuxBin := filepath.Join(o.isolinux, "isolinux.bin")
	mbr := filepath.Join(o.isolinux, "isohdpfx.bin")
	ldlinux := filepath.Join(o.modules, "ldlinux.c32")
	var efiIn buildtool.Input
	switch {
	case o.uki != "":
		efiIn = buildtool.In("-uki", o.uki)
	case o.efi == "uki":
		efiIn = buildtool.In("-stub (install systemd-boot-efi)", o.stub)
	case o.efi == "grub" || o.efi == "":
		o.efi = "grub"
		if o.grubDir == "" {
			o.grubDir = DefaultGrubDir
		}
		if err := checkGrubCmdline(o.cmdline); err != nil {
			return err
		}
		efiIn = buildtool.In("-grub-dir (install grub-efi-amd64-bin)", filepath.Join(o.grubDir, "linux.mod"))
	default:
		return fmt.Errorf("-efi %q: want grub or uki", o.efi)
	}
	ins := []buildtool.Input{buildtool.In("-kernel", o.kernel)}
	if o.initrd != "" {
		ins = append(ins, buildtool.In("-initrd", o.initrd))
	}
	if err := buildtool.Check(append(ins,
		buildtool.In("isolinux.bin (install isolinux)", isolinuxBin),
		buildtool.In("isohdpfx.bin (install isolinux)", mbr),
		buildtool.In("ldlinux.c32 (install syslinux-common)", ldlinux), efiIn)...); err != nil {
		return err
	}
	var tl tools
	var err error
	for _, t := range []struct {
		name, pkg string
		p         *string
	}{{"xorriso", "xorriso", &tl.xorriso}, {"mformat", "mtools", &tl.mformat}, {"mmd", "mtools", &tl.mmd}, {"mcopy", "mtools", &tl.mcopy}} {
		if *t.p, err = buildtool.Find(t.name, t.pkg); err != nil {
			return err
		}
	}
	switch {
	case o.uki != "":
	case o.efi == "uki":
		if tl.mkuki, err = findMkuki(o.mkuki); err != nil {
			return err
		}
	default:
		if tl.grubMkimage, err = buildtool.Find("grub-mkimage", "grub-common"); err != nil {
			return err
		}
	}

	tmp, err := os.MkdirTemp(filepath.Dir(o.out), ".mkiso-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	for _, d := range []string{"isolinux", "boot"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	files := []struct{ src, dst string }{
		{isolinuxBin, "isolinux/isolinux.bin"},
		{ldlinux, "isolinux/ldlinux.c32"},
		{o.kernel, "boot/vmlinuz"},
	}
	if o.initrd != "" {
		files = append(files, struct{ src, dst string }{o.initrd, "boot/initrd"})
	}
	for _, c := range files {
		if err := copyFile(c.src, filepath.Join(root, c.dst)); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "isolinux", "isolinux.cfg"), []byte(isolinuxCfg(o.cmdline, o.initrd != "")), 0o644); err != nil {
		return err
	}

	efi := o.uki
	switch {
	case efi != "":
	case o.efi == "uki":
		efi = filepath.Join(tmp, "zeroboot.efi")
		args := []string{"-kernel", o.kernel, "-initrd", o.initrd, "-cmdline", o.cmdline, "-stub", o.stub, "-out", efi}
		if out, err := exec.Command(tl.mkuki, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", tl.mkuki, err, out)
		}
	default:
		efi = filepath.Join(tmp, "grubx64.efi")
		if err := grubImage(tl.grubMkimage, o.grubDir, o.cmdline, o.initrd != "", efi); err != nil {
			return err
		}
	}
	if err := espImage(tl, efi, filepath.Join(root, "boot", "efiboot.img")); err != nil {
		return err
	}

	iso := filepath.Join(tmp, "zeroboot.iso")
	args := []string{"-as", "mkisofs", "-o", iso, "-quiet",
		"-R", "-J", "-V", volumeLabel,
		"-isohybrid-mbr", mbr,
		"-c", "isolinux/boot.cat",
		"-b", "isolinux/isolinux.bin", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
		"-eltorito-alt-boot",
		"-e", "boot/efiboot.img", "-no-emul-boot", "-isohybrid-gpt-basdat",
		root}
	if out, err := exec.Command(tl.xorriso, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("xorriso: %v\n%s", err, out)
	}
	return os.Rename(iso, o.out)
}

// isolinuxCfg boots the kernel at once, its messages on the serial line
// and the screen; without initrd the kernel carries its own.
func isolinuxCfg(cmdline string, initrd bool) string {
	cfg := "SERIAL 0 115200\nDEFAULT zeroboot\nPROMPT 0\nTIMEOUT 0\nLABEL zeroboot\n  KERNEL /boot/vmlinuz\n"
	if initrd {
		cfg += "  INITRD /boot/initrd\n"
	}
	return cfg + "  APPEND " + cmdline + "\n"
}

// espImage writes a FAT image holding efi as EFI/BOOT/BOOTX64.EFI, sized
// to it with room for the file system.
func espImage(tl tools, efi, img string) error {
	fi, err := os.Stat(efi)
	if err != nil {
		return err
	}
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	f.Close()
	// FAT overhead plus a margin, rounded to a MiB.
	size := (fi.Size() + fi.Size()/16 + 2<<20 + 1<<20 - 1) &^ (1<<20 - 1)
	if err := os.Truncate(img, size); err != nil {
		return err
	}
	for _, c := range [][]string{
		{tl.mformat, "-i", img, "-v", "ZEROBOOTEFI", "::"},
		{tl.mmd, "-i", img, "::/EFI", "::/EFI/BOOT"},
		{tl.mcopy, "-i", img, efi, "::/EFI/BOOT/BOOTX64.EFI"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", filepath.Base(c[0]), err, out)
		}
	}
	return nil
}

// findMkuki returns the mkuki binary: the one given, else the one next to
// this executable (bin/), else mkuki in PATH.
func findMkuki(given string) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Errorf("-mkuki %s: %w", given, err)
		}
		return given, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "mkuki")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("mkuki")
	if err != nil {
		return "", fmt.Errorf("mkuki not found next to mkiso or in PATH (go build ./cmd/mkuki, or give -mkuki or -uki): %w", err)
	}
	return p, nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
