// Command mkuki builds a Unified Kernel Image: the systemd EFI stub with the
// kernel, initramfs, kernel command line and os-release added as PE
// sections, as ukify does, using objcopy; optionally signed for Secure Boot
// with sbsign.
//
//	mkuki -kernel vmlinuz -initrd initramfs.cpio.zst -cmdline "..." \
//	      -os-release os-release -out zeroboot.efi \
//	      [-stub /usr/lib/systemd/boot/efi/linuxx64.efi.stub] \
//	      [-sign-key db.key -sign-cert db.pem]
//
// The sections follow the stub's last one, each at the next aligned virtual
// address, in the order .osrel, .cmdline, .linux, .initrd.
package main

import (
	"crypto"
	"crypto/x509"
	"debug/pe"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/zeroboot/zeroboot/internal/buildtool"
)

// DefaultStub is where Debian's systemd-boot-efi puts the x86-64 stub.
const DefaultStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

func main() {
	var o options
	flag.StringVar(&o.kernel, "kernel", "", "kernel image (bzImage)")
	flag.StringVar(&o.initrd, "initrd", "", "initramfs")
	flag.StringVar(&o.cmdline, "cmdline", "", "kernel command line, stored in .cmdline")
	flag.StringVar(&o.osRelease, "os-release", "", "os-release file, stored in .osrel (default: a zeroboot one)")
	flag.StringVar(&o.stub, "stub", DefaultStub, "systemd EFI stub (systemd-boot-efi)")
	flag.StringVar(&o.out, "out", "", "output UKI")
	flag.StringVar(&o.key, "sign-key", "", "PEM private key (unencrypted) to sign with sbsign")
	flag.StringVar(&o.cert, "sign-cert", "", "PEM certificate matching -sign-key")
	flag.Parse()
	if err := o.build(); err != nil {
		fmt.Fprintln(os.Stderr, "mkuki:", err)
		os.Exit(1)
	}
}

// defaultOSRelease names the image for boot menus (systemd-boot, bootctl).
const defaultOSRelease = "NAME=zeroboot\nID=zeroboot\nPRETTY_NAME=\"zeroboot node\"\n"

type options struct {
	kernel, initrd, cmdline, osRelease, stub, out, key, cert string
}

type section struct{ name, file string }

func (o *options) build() error {
	if o.kernel == "" || o.initrd == "" || o.out == "" {
		return errors.New("-kernel, -initrd and -out are required")
	}
	if (o.key == "") != (o.cert == "") {
		return errors.New("-sign-key and -sign-cert go together")
	}
	if err := buildtool.Check(buildtool.In("-kernel", o.kernel), buildtool.In("-initrd", o.initrd), buildtool.In("-stub", o.stub),
		buildtool.In("-os-release", o.osRelease), buildtool.In("-sign-key", o.key), buildtool.In("-sign-cert", o.cert)); err != nil {
		return err
	}
	objcopy, err := buildtool.Find("objcopy", "binutils")
	if err != nil {
		return err
	}
	var sbsign string
	if o.key != "" {
		if sbsign, err = buildtool.Find("sbsign", "sbsigntool"); err != nil {
			return err
		}
		if err := keyMatchesCert(o.key, o.cert); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(o.out), ".mkuki-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cmdline := filepath.Join(tmp, "cmdline")
	if err := os.WriteFile(cmdline, []byte(o.cmdline+"\x00"), 0o644); err != nil {
		return err
	}
	if o.osRelease == "" {
		o.osRelease = filepath.Join(tmp, "os-release")
		if err := os.WriteFile(o.osRelease, []byte(defaultOSRelease), 0o644); err != nil {
			return err
		}
	}
	secs := append([]section{{".osrel", o.osRelease}}, section{".cmdline", cmdline}, section{".linux", o.kernel}, section{".initrd", o.initrd})
	args, err := layout(o.stub, secs)
	if err != nil {
		return err
	}
	unsigned := filepath.Join(tmp, "uki.efi")
	args = append(args, o.stub, unsigned)
	if out, err := exec.Command(objcopy, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("objcopy: %v\n%s", err, out)
	}
	result := unsigned
	if sbsign != "" {
		result = filepath.Join(tmp, "uki.signed.efi")
		if out, err := exec.Command(sbsign, "--key", o.key, "--cert", o.cert, "--output", result, unsigned).CombinedOutput(); err != nil {
			return fmt.Errorf("sbsign: %v\n%s", err, out)
		}
	}
	return os.Rename(result, o.out)
}

// layout returns objcopy's arguments adding secs after the stub's last
// section, each at the next virtual address aligned to the stub's section
// alignment (at least a page), as ukify computes them.
func layout(stub string, secs []section) ([]string, error) {
	f, err := pe.Open(stub)
	if err != nil {
		return nil, fmt.Errorf("stub %s: %w", stub, err)
	}
	defer f.Close()
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		return nil, fmt.Errorf("stub %s: not a PE32+ image", stub)
	}
	if len(f.Sections) == 0 {
		return nil, fmt.Errorf("stub %s: no sections", stub)
	}
	for _, s := range f.Sections {
		for _, n := range secs {
			if s.Name == n.name {
				return nil, fmt.Errorf("stub %s already has a %s section", stub, n.name)
			}
		}
	}
	align := uint64(oh.SectionAlignment)
	if align < 4096 {
		align = 4096
	}
	var end uint64
	for _, s := range f.Sections {
		if e := uint64(s.VirtualAddress) + uint64(max(s.VirtualSize, s.Size)); e > end {
			end = e
		}
	}
	var args []string
	vma := alignUp(end, align)
	for _, s := range secs {
		fi, err := os.Stat(s.file)
		if err != nil {
			return nil, err
		}
		args = append(args,
			"--add-section", s.name+"="+s.file,
			"--change-section-vma", fmt.Sprintf("%s=0x%x", s.name, oh.ImageBase+vma))
		vma = alignUp(vma+uint64(fi.Size()), align)
	}
	return args, nil
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) / a * a }

// keyMatchesCert checks that the private key is the one the certificate
// certifies, so a mismatch is named here and not by the firmware.
func keyMatchesCert(keyFile, certFile string) error {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(cb)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return fmt.Errorf("-sign-cert %s: no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("-sign-cert %s: %w", certFile, err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	kblk, _ := pem.Decode(kb)
	if kblk == nil {
		return fmt.Errorf("-sign-key %s: no PEM key", keyFile)
	}
	var key any
	switch kblk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(kblk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kblk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kblk.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return fmt.Errorf("-sign-key %s: encrypted; decrypt it first (openssl pkey -in %s -out KEY)", keyFile, keyFile)
	default:
		return fmt.Errorf("-sign-key %s: unsupported PEM block %q", keyFile, kblk.Type)
	}
	if err != nil {
		return fmt.Errorf("-sign-key %s: %w", keyFile, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return fmt.Errorf("-sign-key %s: not a signing key", keyFile)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("-sign-key %s does not match -sign-cert %s (%s)", keyFile, certFile, cert.Subject)
	}
	return nil
}
