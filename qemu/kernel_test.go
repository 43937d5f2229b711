//go:build zeroboot_kernel

// Our own kernel (make kernel) builds for minutes on a fresh machine, so
// its test runs only under this tag: make kernel-test, after make test in
// .ci/run.

package qemu

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/internal/testenv"
	kernelconfig "github.com/zeroboot/zeroboot/kernel-config"
	"github.com/zeroboot/zeroboot/qemu/vswitch"
)

// builtIn are the options issue 9 asks our kernel to have built in: the
// NICs of a stateless node, VLANs and bonds, the TPM, the EFI stub and a
// zstd initramfs.
var builtIn = []string{
	"VIRTIO_PCI", "VIRTIO_NET", "VIRTIO_BLK", "HW_RANDOM_VIRTIO",
	"E1000", "E1000E", "IGB", "IXGBE", "I40E", "MLX5_CORE", "MLX5_CORE_EN", "R8169", "TIGON3", "BNX2X",
	"VLAN_8021Q", "BONDING", "TCG_TIS", "TCG_CRB", "EFI_STUB", "BLK_DEV_INITRD", "RD_ZSTD",
}

// TestOwnKernel builds our kernel with scripts/kernel.sh (what make kernel
// runs) in the kept build tree, with the test grid's initramfs (no
// modules) embedded and a command line naming the test registry built in,
// and boots it under QEMU with -kernel alone to Core-0 ready, and from an
// ESP under OVMF as the EFI application itself, and with a TPM to an
// attested TPM identity. Then the same
// grid boots Debian's kernel with its modules, for the modules step side
// by side, and a second build with only the initramfs changed shows that a
// re-link compiles nothing but the initramfs and the image.
func TestOwnKernel(t *testing.T) {
	needVM(t)
	source, build := kernelTree(t)

	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	g.serve()
	initrd := embeddedInitramfs(t, g, "embedded.cpio.zst")
	cmdline := fmt.Sprintf("console=ttyS0 panic=-1 zeroboot.registry=%s zeroboot.farm=demo", g.registry())
	bz := filepath.Join(g.dir, "bzImage")
	_, err := os.Stat(filepath.Join(build, "obj", "vmlinux"))
	kind := map[bool]string{true: "incremental, build tree kept", false: "full, fresh build tree"}[err == nil]
	took := buildKernel(t, build, source, initrd, cmdline, bz)
	t.Logf("figure: kernel build (%s) %.1f s; bzImage %.2f MiB with the initramfs (%.2f MiB) in it",
		kind, took.Seconds(), sizeMiB(bz), sizeMiB(initrd))
	checkConfig(t, filepath.Join(build, "obj", ".config"), cmdline)

	var own, debian float64
	t.Run("boots to ready with -kernel alone", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		vm := &VM{Kernel: bz, Embedded: true, UUID: "5a1c0b0e-0000-4000-8000-0000000000f1"}
		start := time.Now()
		runVM(t, g, vm, "own-kernel.console.log")
		if args := strings.Join(vm.Args(), " "); strings.Contains(args, "-initrd") || strings.Contains(args, "-append") {
			t.Fatalf("QEMU was given more than the kernel: %s", args)
		}
		_, at, n := untilReady(t, ctx, g, vm)
		ready := at.Sub(start)
		for _, want := range []string{
			`Linux version 6\.1\.\S+-zeroboot `,
			`Kernel command line: ` + regexp.QuoteMeta(cmdline),
			`no modules for kernel \S+-zeroboot in the initramfs`,
			`network: 192\.0\.2\.`,
		} {
			if vm.Count(regexp.MustCompile(want)) == 0 {
				t.Errorf("console never showed %q", want)
			}
		}
		if l := matching(vm, regexp.MustCompile(`modules: .* loaded`)); len(l) > 0 {
			t.Errorf("PID 1 loaded modules into a kernel without any: %s", l[0])
		}
		own = stepMS(t, n, "modules")
		t.Logf("figure: own kernel under %s: QEMU start to core0 ready %.1f s, PID 1 modules step %.1f ms", Accel(), ready.Seconds(), own)
		if l := matching(vm, regexp.MustCompile(`core0 started \(pid \d+\) (\d+) ms after PID 1 started`)); len(l) > 0 {
			t.Logf("figure: %s", l[0])
		}
	})

	t.Run("UEFI boots it as an EFI application", func(t *testing.T) {
		for _, f := range []string{ovmfCodePlain, ovmfVarsPlain} {
			_, err := os.Stat(f)
			testenv.Need(t, err == nil, "%s missing (make deps installs ovmf): %v", f, err)
		}
		for _, tool := range []string{"mformat", "mmd", "mcopy"} {
			testenv.NeedTool(t, tool)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		dir := t.TempDir()
		esp, vars := filepath.Join(dir, "esp.img"), filepath.Join(dir, "OVMF_VARS.fd")
		if err := os.WriteFile(esp, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(esp, 64<<20); err != nil {
			t.Fatal(err)
		}
		// The bzImage itself is the boot application: no boot loader, no
		// initrd, no command line from the firmware.
		for _, c := range [][]string{
			{"mformat", "-i", esp, "-F", "::"},
			{"mmd", "-i", esp, "::/EFI", "::/EFI/BOOT"},
			{"mcopy", "-i", esp, bz, "::/EFI/BOOT/BOOTX64.EFI"},
		} {
			if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", c, err, out)
			}
		}
		if err := copyFile(ovmfVarsPlain, vars); err != nil {
			t.Fatal(err)
		}
		vm := &VM{
			UUID: "5a1c0b0e-0000-4000-8000-0000000000f3",
			// No iPXE ROM: the ESP is the only thing to boot.
			NIC: "virtio-net-pci,romfile=",
			Extra: []string{"-machine", "q35",
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + ovmfCodePlain,
				"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
				"-drive", "if=none,format=raw,id=esp,file=" + esp,
				"-device", "virtio-blk-pci,drive=esp,bootindex=0"},
		}
		start := time.Now()
		runVM(t, g, vm, "own-kernel-uefi.console.log")
		_, at, _ := untilReady(t, ctx, g, vm)
		ready := at.Sub(start)
		for _, want := range []string{`efi: EFI v`, `Linux version 6\.1\.\S+-zeroboot `, `Kernel command line: ` + regexp.QuoteMeta(cmdline)} {
			if vm.Count(regexp.MustCompile(want)) == 0 {
				t.Errorf("console never showed %q", want)
			}
		}
		t.Logf("figure: own kernel as BOOTX64.EFI under OVMF (%s): QEMU start to core0 ready %.1f s", Accel(), ready.Seconds())
	})

	// No comma in the name: QEMU reads one in a -drive file= path as
	// the end of the option.
	t.Run("ISO of the one file", func(t *testing.T) {
		for _, f := range []string{ovmfCodePlain, ovmfVarsPlain, isolinuxBin, isohdpfx, ldlinuxC32} {
			_, err := os.Stat(f)
			testenv.Need(t, err == nil, "%s missing (make deps installs ovmf, isolinux, syslinux-common): %v", f, err)
		}
		testenv.NeedTool(t, "xorriso")
		mkiso := filepath.Join(g.dir, "mkiso")
		if out, err := exec.Command("go", "build", "-o", mkiso, "../cmd/mkiso").CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/mkiso: %v\n%s", err, out)
		}
		// The command line is built in: isolinux appends nothing, and
		// the EFI application is the kernel itself.
		iso := filepath.Join(g.dir, "own-kernel.iso")
		if out, err := exec.Command(mkiso, "-kernel", bz, "-uki", bz, "-out", iso).CombinedOutput(); err != nil {
			t.Fatalf("mkiso: %v\n%s", err, out)
		}
		t.Logf("figure: hybrid ISO of our one-file kernel %.2f MiB (the %.2f MiB kernel twice: isolinux and EFI/BOOT/BOOTX64.EFI)", sizeMiB(iso), sizeMiB(bz))
		cd := []string{"-drive", "if=none,id=cd,media=cdrom,readonly=on,format=raw,file=" + iso,
			"-device", "ide-cd,drive=cd,bootindex=0"}
		for i, c := range []struct {
			name string
			uefi bool
		}{{"BIOS CD", false}, {"UEFI CD", true}} {
			t.Run(c.name, func(t *testing.T) {
				isoBoot(t, g, "own kernel, "+c.name, fmt.Sprintf("5a1c0b0e-0000-4000-8000-0000000000e%d", i), cmdline, c.uefi, cd)
			})
		}
	})

	t.Run("TPM identity with the built-in TPM driver", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		vm := &VM{Kernel: bz, Embedded: true, UUID: "5a1c0b0e-0000-4000-8000-0000000000f4",
			Extra: testenv.SwtpmForQEMU(t, filepath.Join(g.dir, "tpm"))}
		runVM(t, g, vm, "own-kernel-tpm.console.log")
		id, _, _ := untilReady(t, ctx, g, vm)
		if kind, state, detail := attestation(t, g, id); kind != "tpm" || state != "attested" {
			t.Errorf("identity %q, attestation %q (%s), want tpm, attested", kind, state, detail)
		}
	})

	t.Run("Debian kernel with modules, same grid", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		start := time.Now()
		vm, id := boot(t, ctx, g, "5a1c0b0e-0000-4000-8000-0000000000f2", g.registry())
		if _, err := vm.WaitFor(ctx, reReady); err != nil {
			t.Fatal(err)
		}
		ready := time.Since(start)
		n, err := g.waitNode(ctx, id, "ready")
		if err != nil {
			t.Fatal(err)
		}
		debian = stepMS(t, n, "modules")
		t.Logf("figure: Debian kernel %s under %s: QEMU start to core0 ready %.1f s, PID 1 modules step %.1f ms", kver, Accel(), ready.Seconds(), debian)
	})
	if own > 0 && debian > 0 {
		t.Logf("figure: modules step, own kernel %.1f ms vs Debian's with modules %.1f ms", own, debian)
	}

	t.Run("re-link with a new initramfs", func(t *testing.T) {
		marker := filepath.Join(g.dir, "marker")
		if err := os.WriteFile(marker, []byte(t.Name()+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		initrd2 := embeddedInitramfs(t, g, "embedded2.cpio.zst", "-file", marker+":/etc/zeroboot/marker")
		bz2 := filepath.Join(g.dir, "bzImage2")
		before := time.Now()
		took := buildKernel(t, build, source, initrd2, cmdline, bz2)
		t.Logf("figure: kernel re-link with a new initramfs %.1f s", took.Seconds())
		a, _ := os.ReadFile(bz)
		b, _ := os.ReadFile(bz2)
		if len(b) == 0 || bytes.Equal(a, b) {
			t.Fatalf("the re-linked kernel (%d bytes) is the first one: the new initramfs is not in it", len(b))
		}
		rebuilt := newerObjects(t, filepath.Join(build, "obj"), before)
		if !slices.Contains(rebuilt, "usr/initramfs_data.o") {
			t.Errorf("usr/initramfs_data.o was not rebuilt; rebuilt: %v", rebuilt)
		}
		// Only the initramfs, the link and the boot image's wrapper may
		// be compiled again.
		for _, o := range rebuilt {
			if !strings.HasPrefix(o, "usr/") && !strings.HasPrefix(o, "arch/x86/boot/") && o != "vmlinux.o" && !strings.HasPrefix(o, ".tmp_vmlinux") {
				t.Errorf("a re-link for a new initramfs recompiled %s (rebuilt: %v)", o, rebuilt)
			}
		}
	})
}

// kernelTree is the kernel source and the kept build tree make kernel-test
// names (KERNEL_SOURCE, KERNEL_BUILD), with the build tools checked.
func kernelTree(t *testing.T) (source, build string) {
	t.Helper()
	for _, tool := range []string{"gcc", "make", "bc", "bison", "flex", "perl", "xz"} {
		testenv.NeedTool(t, tool)
	}
	source = envOr("KERNEL_SOURCE", "/usr/src/linux-source-6.1.tar.xz")
	_, err := os.Stat(source)
	testenv.Need(t, err == nil, "%s missing (make deps installs linux-source-6.1): %v", source, err)
	build, err = filepath.Abs(envOr("KERNEL_BUILD", "../out/_kernel"))
	if err != nil {
		t.Fatal(err)
	}
	return source, build
}

// TestOwnKernelVLANOnBond boots our kernel built with only the console in
// its command line; the boot loader's line (-append) names the registry
// and asks for a VLAN on an LACP bond: the built-in 8021q and bonding
// carry the node to ready, with nothing loaded.
func TestOwnKernelVLANOnBond(t *testing.T) {
	needVM(t)
	source, build := kernelTree(t)
	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	g.serve()
	s := newSite(t)
	s.addr(siteV4 + "/24")
	s.dnsmasq("--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,1h", "--dhcp-option=option:router,"+siteV4, "--dhcp-rapid-commit")
	s.relay(siteV4, g)

	bz := filepath.Join(g.dir, "bzImage")
	took := buildKernel(t, build, source, embeddedInitramfs(t, g, "embedded.cpio.zst"), "console=ttyS0 panic=-1", bz)
	t.Logf("figure: kernel build for a console-only command line %.1f s", took.Seconds())

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	appended := "bond=bond0:eth0,eth1:mode=802.3ad,miimon=100,lacp_rate=fast vlan=bond0.10:bond0 ip=bond0.10:dhcp " +
		"zeroboot.registry=" + registryURL(siteV4) + " zeroboot.farm=demo"
	mode := vswitch.LACP("bond0").Tagged(10)
	vm := &VM{Kernel: bz, Embedded: true, UUID: "5a1c0b0e-0000-4000-8000-0000000000f5", Append: appended,
		NICs: []NIC{s.nic("nic1", 1, mode), s.nic("nic2", 2, mode)}}
	runVM(t, g, vm, "own-kernel-vlan-bond.console.log")
	untilReady(t, ctx, g, vm)
	wantNetwork(t, vm, "bond0.10", "IPv4", "dhcp4")
	if up := s.sw.Negotiated("bond0"); len(up) != 2 {
		t.Errorf("negotiated members %v, want both", up)
	}
	if vm.Count(regexp.MustCompile(`Kernel command line: console=ttyS0 panic=-1 `+regexp.QuoteMeta(appended))) == 0 {
		t.Errorf("the kernel's command line is not its own followed by the boot loader's: %v", matching(vm, regexp.MustCompile(`Kernel command line:`)))
	}
	if l := matching(vm, regexp.MustCompile(`load kernel module`)); len(l) > 0 {
		t.Errorf("PID 1 tried to load a module: %s", l[0])
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// embeddedInitramfs builds g's initramfs without modules, as make kernel
// does: every driver is in the kernel.
func embeddedInitramfs(t *testing.T, g *grid, name string, extra ...string) string {
	t.Helper()
	out := filepath.Join(g.dir, name)
	args := append([]string{"-init", bins.init, "-no-modules",
		"-file", filepath.Join(g.data, "tuf", "root", "1.root.json") + ":/etc/zeroboot/root.json",
		"-file", filepath.Join(g.data, "tuf", "channels.json") + ":/etc/zeroboot/channels.json",
		"-file", filepath.Join(g.data, "tls", "ca.pem") + ":/etc/zeroboot/ca.pem",
		"-o", out}, extra...)
	if b, err := exec.Command(bins.mkinitramfs, args...).CombinedOutput(); err != nil {
		t.Fatalf("mkinitramfs %v: %v\n%s", args, err, b)
	}
	return out
}

// buildKernel runs scripts/kernel.sh into out and returns how long it took.
func buildKernel(t *testing.T, build, source, initrd, cmdline, out string) time.Duration {
	t.Helper()
	cmd := exec.Command("../scripts/kernel.sh")
	cmd.Env = append(os.Environ(), "KERNEL_BUILD="+build, "KERNEL_SOURCE="+source,
		"INITRAMFS="+initrd, "CMDLINE="+cmdline, "OUT="+out)
	start := time.Now()
	b, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("scripts/kernel.sh: %v\n%s", err, b)
	}
	t.Logf("scripts/kernel.sh:\n%s", b)
	return took
}

// checkConfig reads the built kernel's .config: every option of builtIn
// is =y, modules are off, and the initramfs and command line are the
// ones asked for.
func checkConfig(t *testing.T, path, cmdline string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := kernelconfig.Parse(f, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range builtIn {
		if got := c[name].Value; got != "y" {
			t.Errorf("%s: CONFIG_%s=%q, want y (built in)", path, name, got)
		}
	}
	for name, want := range map[string]string{"MODULES": "n", "CMDLINE_BOOL": "y", "CMDLINE": `"` + cmdline + `"`} {
		got := c[name].Value
		if got == "" {
			got = "n" // not in .config: its dependencies are off
		}
		if got != want {
			t.Errorf("%s: CONFIG_%s=%q, want %q", path, name, got, want)
		}
	}
	if got := c["INITRAMFS_SOURCE"].Value; !strings.HasSuffix(got, `.cpio.zst"`) {
		t.Errorf("%s: CONFIG_INITRAMFS_SOURCE=%s, want our .cpio.zst", path, got)
	}
}

// stepMS is the duration of the named step in the node's boot timeline as
// the registry recorded it.
func stepMS(t *testing.T, n map[string]any, name string) float64 {
	t.Helper()
	tl, _ := n["timeline"].([]any)
	for _, s := range tl {
		m, ok := s.(map[string]any)
		if !ok || m["name"] != name {
			continue
		}
		start, _ := m["start_ms"].(float64)
		end, _ := m["end_ms"].(float64)
		if end == 0 {
			break
		}
		return end - start
	}
	t.Errorf("registry timeline has no finished %q step: %v", name, tl)
	return 0
}

// newerObjects lists the object files under dir (relative, sorted) written
// after t0.
func newerObjects(t *testing.T, dir string, t0 time.Time) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".o") {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.ModTime().After(t0) {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	sort.Strings(out)
	return out
}
