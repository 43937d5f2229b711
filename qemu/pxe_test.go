package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/internal/testenv"
)

// ipxeROMs are where Debian's ipxe-qemu (a dependency of qemu-system-x86)
// puts the virtio NIC's option ROM, and where upstream QEMU looks. The
// efi- file holds both images: legacy PXE for SeaBIOS and EFI for OVMF.
var ipxeROMs = []string{"/usr/lib/ipxe/qemu/efi-virtio.rom", "/usr/share/qemu/efi-virtio.rom"}

// TestPXE boots a node from the network as an operator's DHCP server
// would have it: the NIC's iPXE ROM gets an address and a boot file name
// from QEMU's user network (its DHCP and TFTP server), fetches by TFTP a
// two-line script that chains to zgrid's /boot/ipxe over plain HTTP on the
// host, and boots the kernel and initramfs zgrid serves with the command
// line of the script zgrid made for it. Once with SeaBIOS (the ROM's PXE
// image), once with OVMF (its EFI image). zgrid's --boot-map puts the BIOS
// machine in its farm by MAC and the UEFI one by SMBIOS UUID, so each boot
// also shows that iPXE's ${net0/mac} and ${uuid} reach zgrid as the
// registry knows the machine.
func TestPXE(t *testing.T) {
	needVM(t)
	rom := ""
	for _, r := range ipxeROMs {
		if _, err := os.Stat(r); err == nil {
			rom = r
			break
		}
	}
	testenv.Need(t, rom != "", "no iPXE ROM for virtio-net in %v (Debian: ipxe-qemu, which qemu-system-x86 depends on)", ipxeROMs)
	for _, f := range []string{ovmfCodePlain, ovmfVarsPlain} {
		_, err := os.Stat(f)
		testenv.Need(t, err == nil, "%s missing (make deps installs ovmf): %v", f, err)
	}

	cases := []struct {
		name, mac, uuid, farm, mapKey string
		uefi                          bool
	}{
		{"BIOS", "52:54:00:00:00:e1", "5a1c0b0e-0000-4000-8000-0000000000e1", "pxe-bios", "52:54:00:00:00:e1", false},
		{"UEFI", "52:54:00:00:00:e2", "5a1c0b0e-0000-4000-8000-0000000000e2", "pxe-uefi", "5a1c0b0e-0000-4000-8000-0000000000e2", true},
	}
	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	bootDir := filepath.Join(g.dir, "pxe")
	if err := os.Mkdir(bootDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{kernel: "vmlinuz", g.initramfs(kver): "initramfs.cpio.zst"} {
		if err := copyFile(src, filepath.Join(bootDir, dst)); err != nil {
			t.Fatal(err)
		}
	}
	var m strings.Builder
	for _, c := range cases {
		fmt.Fprintf(&m, "%s %s\n", c.mapKey, c.farm)
	}
	mapFile := filepath.Join(g.dir, "pxe.map")
	if err := os.WriteFile(mapFile, []byte(m.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	bootPort := freePort(t)
	// The serial line only: the last console= is /dev/console, which
	// Core-0's output goes to, and the test reads the serial line.
	g.serveArgs = []string{"--boot-dir", bootDir, "--boot-listen", fmt.Sprintf("127.0.0.1:%d", bootPort), "--boot-map", mapFile,
		"--boot-console", "console=ttyS0"}
	g.serve()
	for _, c := range cases {
		g.run("farm", "create", c.farm, "--channel", "stable", "--data", g.data, "--server", g.url(""))
	}

	// What an operator's DHCP server hands to iPXE; here QEMU's TFTP
	// server holds it. iPXE has already configured net0 when it runs it.
	tftp := filepath.Join(g.dir, "tftp")
	chain := fmt.Sprintf("#!ipxe\nchain http://%s:%d/boot/ipxe?mac=${net0/mac}&uuid=${uuid}\n", HostAddr, bootPort)
	if err := os.MkdirAll(tftp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tftp, "chain.ipxe"), []byte(chain), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pxeBoot(t, g, rom, tftp, c.mac, c.uuid, c.farm, c.uefi)
		})
	}
}

// pxeBoot powers on a machine with only its NIC to boot from, and waits
// for Core-0 ready on the console and in the registry, in farm.
func pxeBoot(t *testing.T, g *grid, rom, tftp, mac, uuid, farm string, uefi bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
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
		NICs: []NIC{{
			Netdev: fmt.Sprintf("user,id=n0,net=%s,tftp=%s,bootfile=chain.ipxe", UserNet, tftp),
			// Modern only (1af4:1041): SeaBIOS runs a ROM only for the
			// device its PCI header names, and the ROM's names 1041,
			// not the transitional 1000 q35 gives by default.
			Device: fmt.Sprintf("virtio-net-pci,netdev=n0,mac=%s,romfile=%s,bootindex=0,disable-legacy=on", mac, rom),
		}},
		Extra: extra,
	}
	start := time.Now()
	runVM(t, g, vm, filepath.Base(dir)+".console.log")
	line, err := vm.WaitFor(ctx, reIdentity)
	if err != nil {
		t.Fatal(err)
	}
	id := reIdentity.FindStringSubmatch(line)[1]
	kernelAt := time.Since(start)
	if _, err := vm.WaitFor(ctx, reReady); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	n, err := g.waitNode(ctx, id, "ready")
	if err != nil {
		t.Fatal(err)
	}
	if n["farm"] != farm {
		t.Errorf("node %s in farm %v, want %s (zgrid's --boot-map)", id, n["farm"], farm)
	}
	// The kernel ran with the command line of zgrid's script: the
	// registry at the host the machine reached, on the API's port.
	cmdline := fmt.Sprintf(`Command line: .*initrd=initramfs.cpio.zst console=ttyS0 panic=-1 zeroboot.registry=%s zeroboot.farm=%s`,
		regexp.QuoteMeta(g.registry()), farm)
	checks := []string{cmdline}
	if uefi {
		checks = append(checks, `efi: EFI v`, `iPXE`)
	}
	for _, w := range checks {
		if vm.Count(regexp.MustCompile(w)) == 0 {
			t.Errorf("console never showed %q", w)
		}
	}
	if vm.Count(regexp.MustCompile(`efi: EFI v`)) != 0 && !uefi {
		t.Errorf("a BIOS boot shows an EFI system table")
	}
	logLine := fmt.Sprintf(`ipxe script.* mac=%s uuid=%s farm=%s from="map \(%s\)"`, mac, uuid, farm, map[bool]string{false: "mac", true: "uuid"}[uefi])
	if !regexp.MustCompile(logLine).MatchString(g.log.String()) {
		t.Errorf("server log has no line matching %q", logLine)
	}
	fw := map[bool]string{false: "SeaBIOS", true: "OVMF"}[uefi]
	t.Logf("figure: PXE, %s (%s, iPXE ROM, TFTP then HTTP): power-on to kernel's identity step %.1f s, to core0 ready %.1f s", fw, Accel(), kernelAt.Seconds(), took.Seconds())
}
