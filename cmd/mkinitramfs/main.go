// Command mkinitramfs builds a zeroboot node initramfs: a reproducible,
// zstd-compressed newc cpio with the static PID 1, the network drivers of a
// kernel with their dependencies, and the trust files.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/initramfs"
)

const usage = `usage: mkinitramfs -init PATH (-kernel-version V | -modules-dir DIR) [-file SRC:DST[:MODE]]... [-extra-modules a,b] [-firmware DIR] -o OUT

Builds a zstd-compressed newc cpio. The same inputs always give the same bytes.
With -firmware DIR (laid out as /lib/firmware, e.g. a linux-firmware
checkout), the firmware files the included modules name (modinfo firmware=)
are copied into /lib/firmware; named files DIR lacks are listed as warnings.

Examples:
  # the demo image for the installed Debian kernel
  mkinitramfs -init bin/init -kernel-version 6.1.0-56-amd64 \
      -file grid/tuf/root/1.root.json:/etc/zeroboot/root.json -file grid/tuf/channels.json:/etc/zeroboot/channels.json \
      -file demo/ca.pem:/etc/zeroboot/ca.pem -o bin/initramfs.cpio.zst

  # a kernel tree elsewhere, with one more driver and a private key file
  mkinitramfs -init bin/init -modules-dir /srv/kernels/6.6/lib/modules/6.6.0 \
      -extra-modules sfc -file key:/etc/zeroboot/key:0600 -o out.cpio.zst

  # with the firmware the NIC drivers need (bnx2x, ice, some r8169)
  mkinitramfs -init bin/init -kernel-version 6.1.0-56-amd64 -extra-modules bnx2x,ice \
      -firmware /srv/linux-firmware -o out.cpio.zst

Default modules (with their dependencies): %s
Required (build fails without them): %s

Flags:
`

// fileFlags collects repeated -file SRC:DST[:MODE] values.
type fileFlags []initramfs.File

func (f *fileFlags) String() string { return fmt.Sprint(*f) }

func (f *fileFlags) Set(v string) error {
	file, err := parseFile(v)
	if err != nil {
		return err
	}
	*f = append(*f, file)
	return nil
}

func parseFile(v string) (initramfs.File, error) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return initramfs.File{}, fmt.Errorf("-file %q: want SRC:DST[:MODE]", v)
	}
	file := initramfs.File{Src: parts[0], Dst: parts[1]}
	if len(parts) == 3 {
		m, err := strconv.ParseUint(parts[2], 8, 32)
		if err != nil || m > 0o777 {
			return initramfs.File{}, fmt.Errorf("-file %q: mode %q must be octal permission bits such as 0600", v, parts[2])
		}
		file.Mode = os.FileMode(m)
	}
	return file, nil
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mkinitramfs:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkinitramfs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		files   fileFlags
		initP   = fs.String("init", "", "static executable to install as /init")
		kver    = fs.String("kernel-version", "", "kernel version; modules from /lib/modules/VERSION")
		modDir  = fs.String("modules-dir", "", "kernel module directory (instead of -kernel-version)")
		extra   = fs.String("extra-modules", "", "comma-separated modules to add to the default list")
		out     = fs.String("o", "", "output file")
		noMods  = fs.Bool("no-modules", false, "add no modules (a kernel with every driver built in)")
		modList = fs.String("modules", "", "comma-separated modules replacing the default list")
		fwDir   = fs.String("firmware", "", "firmware directory (as /lib/firmware): copy the files the included modules name")
	)
	fs.Var(&files, "file", "SRC:DST[:MODE] extra file (repeatable); MODE octal, default 0644")
	fs.Usage = func() {
		fmt.Fprintf(stderr, usage, strings.Join(initramfs.DefaultModules, ", "), strings.Join(initramfs.RequiredModules, ", "))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	spec, err := specFrom(*initP, *kver, *modDir, *modList, *extra, *noMods, files)
	if err != nil {
		return err
	}
	if *fwDir != "" && *noMods {
		return fmt.Errorf("-firmware needs modules: with -no-modules no module names any")
	}
	spec.Firmware = *fwDir
	if *out == "" {
		return fmt.Errorf("-o OUT is required")
	}
	start := time.Now()
	rep, err := buildFile(spec, *out)
	if err != nil {
		return err
	}
	printReport(stdout, *out, rep, time.Since(start))
	return nil
}

func specFrom(initP, kver, modDir, modList, extra string, noMods bool, files []initramfs.File) (initramfs.Spec, error) {
	spec := initramfs.Spec{Init: initP, Files: files}
	if initP == "" {
		return spec, fmt.Errorf("-init PATH is required")
	}
	switch {
	case noMods && (kver != "" || modDir != ""):
		return spec, fmt.Errorf("-no-modules excludes -kernel-version and -modules-dir")
	case noMods:
	case kver != "" && modDir != "":
		return spec, fmt.Errorf("give -kernel-version or -modules-dir, not both")
	case kver != "":
		if strings.ContainsRune(kver, '/') {
			return spec, fmt.Errorf("-kernel-version %q: must be a bare version such as 6.1.0-56-amd64", kver)
		}
		spec.KernelModules = filepath.Join("/lib/modules", kver)
	case modDir != "":
		spec.KernelModules = modDir
	default:
		return spec, fmt.Errorf("one of -kernel-version, -modules-dir or -no-modules is required")
	}
	spec.Modules = append([]string(nil), initramfs.DefaultModules...)
	if modList != "" {
		spec.Modules = splitList(modList)
	}
	spec.Modules = append(spec.Modules, splitList(extra)...)
	return spec, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// buildFile writes to a temporary file and renames it, so a failed build
// never leaves a truncated image where a boot script would pick it up.
func buildFile(spec initramfs.Spec, out string) (initramfs.Report, error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".mkinitramfs-*")
	if err != nil {
		return initramfs.Report{}, fmt.Errorf("create %s: %w", out, err)
	}
	defer os.Remove(tmp.Name())
	rep, err := initramfs.Build(spec, tmp)
	if err != nil {
		tmp.Close()
		return rep, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return rep, fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return rep, fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return rep, fmt.Errorf("rename to %s: %w", out, err)
	}
	return rep, nil
}

func printReport(w io.Writer, out string, r initramfs.Report, took time.Duration) {
	fmt.Fprintf(w, "%s: %d entries, cpio %s, zstd %s (%.1f%%), built in %s\n", out, r.Files,
		size(r.UncompressedBytes), size(r.CompressedBytes),
		100*float64(r.CompressedBytes)/float64(max(r.UncompressedBytes, 1)), took.Round(time.Millisecond))
	fmt.Fprintf(w, "modules (%d): %s\n", len(r.Modules), strings.Join(r.Modules, " "))
	if len(r.Builtin) > 0 {
		fmt.Fprintf(w, "built into the kernel: %s\n", strings.Join(r.Builtin, " "))
	}
	if len(r.Missing) > 0 {
		fmt.Fprintf(w, "warning: not in this kernel: %s\n", strings.Join(r.Missing, " "))
	}
	if len(r.Firmware) > 0 {
		fmt.Fprintf(w, "firmware (%d): %s\n", len(r.Firmware), strings.Join(r.Firmware, " "))
	}
	for _, m := range r.FirmwareMissing {
		fmt.Fprintf(w, "warning: firmware not in the firmware directory: %s\n", m)
	}
}

func size(n int64) string {
	return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
}
