package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultGrubDir is where Debian's grub-efi-amd64-bin puts GRUB's EFI
// modules.
const DefaultGrubDir = "/usr/lib/grub/x86_64-efi"

// volumeLabel names the ISO 9660 file system; GRUB finds the kernel by it,
// on a CD and on a stick alike.
const volumeLabel = "ZEROBOOT"

// grubModules are what the embedded configuration needs: find the ISO
// 9660 file system (on a CD, or a disk written with dd), read it, load
// Linux with its initrd, and talk on the serial line and the screen.
var grubModules = []string{"iso9660", "part_gpt", "part_msdos", "search", "search_label",
	"linux", "serial", "terminal", "efi_gop", "efi_uga", "echo", "boot"}

// grubCfg is the embedded configuration: no menu, no wait. GRUB's rescue
// parser runs it, so it is commands only.
func grubCfg(cmdline string, initrd bool) string {
	cfg := "serial --unit=0 --speed=115200\nterminal_output serial console\nterminal_input serial console\n" +
		"search --no-floppy --set=root --label " + volumeLabel + "\n" +
		"linux /boot/vmlinuz " + cmdline + "\n"
	if initrd {
		cfg += "initrd /boot/initrd\n"
	}
	return cfg + "boot\n"
}

// checkGrubCmdline refuses what GRUB's parser would read as more than
// words: quotes, variables, escapes, separators and braces.
func checkGrubCmdline(cmdline string) error {
	if i := strings.IndexAny(cmdline, "\"'$\\;{}#|&<>`"); i >= 0 {
		return fmt.Errorf("-cmdline: %q at byte %d: GRUB (the UEFI side, -efi grub) would not pass it on as it is; give -efi uki or -uki FILE for such a command line", cmdline[i], i)
	}
	return nil
}

// grubImage writes a standalone GRUB EFI application to out, its
// configuration built in, so the ESP holds one file and the kernel and
// initramfs are read from the ISO 9660 file system, stored once.
func grubImage(mkimage, dir, cmdline string, initrd bool, out string) error {
	cfg := out + ".cfg"
	if err := os.WriteFile(cfg, []byte(grubCfg(cmdline, initrd)), 0o644); err != nil {
		return err
	}
	defer os.Remove(cfg)
	args := append([]string{"-O", "x86_64-efi", "-d", dir, "-p", "/EFI/BOOT", "-c", cfg, "-o", out}, grubModules...)
	if b, err := exec.Command(mkimage, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", filepath.Base(mkimage), err, b)
	}
	return nil
}
