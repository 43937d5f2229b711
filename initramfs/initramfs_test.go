package initramfs

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// writeELF writes a minimal ELF64 executable with a PT_LOAD program header
// and, when interp is set, a PT_INTERP one, which is what marks a dynamically
// linked program.
func writeELF(t testing.TB, p string, typ elf.Type, interp bool) {
	t.Helper()
	var b bytes.Buffer
	le := binary.LittleEndian
	phnum := uint16(1)
	if interp {
		phnum = 2
	}
	hdr := elf.Header64{
		Type: uint16(typ), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Entry: 0x400000, Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: phnum,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.Write(&b, le, hdr)
	binary.Write(&b, le, elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Vaddr: 0x400000, Filesz: 200, Memsz: 200, Align: 0x1000})
	if interp {
		binary.Write(&b, le, elf.Prog64{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Off: 176, Filesz: 24, Memsz: 24, Align: 1})
	}
	for b.Len() < 200 {
		b.WriteByte(0)
	}
	copy(b.Bytes()[176:], "/lib64/ld-linux-x86-64.so.2")
	if err := os.WriteFile(p, b.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
}

// fakeModules lays out a module tree:
//
//	top (a-b.ko) -> mid -> leaf; top -> leaf; other -> leaf; lone; unused
//	virtio_net, virtio_pci, e1000 (the required ones); builtin: packet/af_packet
func fakeModules(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "6.1.0-test")
	mods := map[string]string{
		"kernel/drivers/net/a-b.ko":           "top module",
		"kernel/lib/mid.ko":                   "mid module",
		"kernel/lib/leaf.ko":                  "leaf module",
		"kernel/drivers/net/other.ko":         "other module",
		"kernel/drivers/net/lone.ko":          "lone module",
		"kernel/drivers/net/unused.ko":        "unused module",
		"kernel/drivers/net/virtio_net.ko":    "virtio net",
		"kernel/drivers/virtio/virtio_pci.ko": "virtio pci",
		"kernel/drivers/net/e1000.ko":         "e1000",
	}
	for rel, body := range mods {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"modules.dep": `kernel/drivers/net/a-b.ko: kernel/lib/mid.ko kernel/lib/leaf.ko
kernel/lib/mid.ko: kernel/lib/leaf.ko
kernel/lib/leaf.ko:
kernel/drivers/net/other.ko: kernel/lib/leaf.ko
kernel/drivers/net/lone.ko:
kernel/drivers/net/unused.ko:
kernel/drivers/net/virtio_net.ko:
kernel/drivers/virtio/virtio_pci.ko:
kernel/drivers/net/e1000.ko:
`,
		"modules.alias": `# Aliases extracted from modules themselves.
alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_net
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias pci:v0000AAAAd*sv*sd*bc*sc*i* a_b
alias pci:v0000BBBBd*sv*sd*bc*sc*i* unused
alias fs-leaf leaf
`,
		"modules.builtin": "kernel/net/packet/af_packet.ko\nkernel/fs/ext4/ext4.ko\n",
		"modules.order":   "kernel/lib/leaf.ko\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func testSpec(t *testing.T) Spec {
	t.Helper()
	tmp := t.TempDir()
	initP := filepath.Join(tmp, "init")
	writeELF(t, initP, elf.ET_EXEC, false)
	ca := filepath.Join(tmp, "ca.pem")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Spec{
		Init:          initP,
		KernelModules: fakeModules(t),
		Modules:       []string{"a_b", "lone", "virtio-net", "virtio_pci", "e1000", "af_packet", "nosuchdriver"},
		Files:         []File{{Src: ca, Dst: "/etc/zeroboot/ca.pem"}, {Src: ca, Dst: "/etc/zeroboot/secret", Mode: 0o600}},
	}
}

type member struct {
	mode           uint64
	data           string
	ino            uint64
	rmajor, rminor uint64
}

// decode reads an image back with a streaming zstd decoder and u-root's
// cpio reader, checking the invariants every record must keep.
func decode(t *testing.T, img []byte) (map[string]member, []string) {
	t.Helper()
	zr, err := zstd.NewReader(bytes.NewReader(img), zstd.WithDecoderMaxWindow(WindowSize))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("zstd decode: %v", err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("cpio decode: %v", err)
	}
	got := map[string]member{}
	var order []string
	inos := map[uint64]string{}
	for _, r := range recs {
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 {
			t.Errorf("%s: mtime %d uid %d gid %d, want all 0", r.Name, r.MTime, r.UID, r.GID)
		}
		if other, dup := inos[r.Ino]; dup || r.Ino == 0 {
			t.Errorf("%s: inode %d not unique (also %q)", r.Name, r.Ino, other)
		}
		inos[r.Ino] = r.Name
		data, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			t.Fatal(err)
		}
		got[r.Name] = member{mode: r.Mode, data: string(data), ino: r.Ino, rmajor: r.Rmajor, rminor: r.Rminor}
		order = append(order, r.Name)
	}
	return got, order
}

func build(t *testing.T, spec Spec) ([]byte, Report) {
	t.Helper()
	var buf bytes.Buffer
	rep, err := Build(spec, &buf)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return buf.Bytes(), rep
}

func TestBuildContents(t *testing.T) {
	spec := testSpec(t)
	img, rep := build(t, spec)
	got, order := decode(t, img)

	want := map[string]uint64{
		"init":                cpio.S_IFREG | 0o755,
		"dev":                 cpio.S_IFDIR | 0o755,
		"dev/console":         cpio.S_IFCHR | 0o600,
		"dev/null":            cpio.S_IFCHR | 0o666,
		"proc":                cpio.S_IFDIR | 0o755,
		"sys":                 cpio.S_IFDIR | 0o755,
		"run":                 cpio.S_IFDIR | 0o755,
		"tmp":                 cpio.S_IFDIR | 0o1777,
		"etc/zeroboot":        cpio.S_IFDIR | 0o755,
		"etc/zeroboot/ca.pem": cpio.S_IFREG | 0o644,
		"etc/zeroboot/secret": cpio.S_IFREG | 0o600,
		"lib/modules/6.1.0-test/kernel/drivers/net/a-b.ko":           cpio.S_IFREG | 0o644,
		"lib/modules/6.1.0-test/kernel/lib/mid.ko":                   cpio.S_IFREG | 0o644,
		"lib/modules/6.1.0-test/kernel/lib/leaf.ko":                  cpio.S_IFREG | 0o644,
		"lib/modules/6.1.0-test/kernel/drivers/net/lone.ko":          cpio.S_IFREG | 0o644,
		"lib/modules/6.1.0-test/kernel/drivers/virtio/virtio_pci.ko": cpio.S_IFREG | 0o644,
		"lib/modules/6.1.0-test/modules.dep":                         cpio.S_IFREG | 0o644,
		"lib/modules/6.1.0-test/modules.alias":                       cpio.S_IFREG | 0o644,
		"lib/modules/6.1.0-test/modules.builtin":                     cpio.S_IFREG | 0o644,
		"lib/modules/6.1.0-test/modules.order":                       cpio.S_IFREG | 0o644,
	}
	for name, mode := range want {
		m, ok := got[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if m.mode != mode {
			t.Errorf("%s: mode %#o, want %#o", name, m.mode, mode)
		}
	}
	for _, absent := range []string{
		"lib/modules/6.1.0-test/kernel/drivers/net/unused.ko",
		"lib/modules/6.1.0-test/kernel/drivers/net/other.ko",
	} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s included but not requested", absent)
		}
	}
	if c := got["dev/console"]; c.rmajor != 5 || c.rminor != 1 {
		t.Errorf("dev/console is %d:%d, want 5:1", c.rmajor, c.rminor)
	}
	if c := got["dev/null"]; c.rmajor != 1 || c.rminor != 3 {
		t.Errorf("dev/null is %d:%d, want 1:3", c.rmajor, c.rminor)
	}
	initBytes, _ := os.ReadFile(spec.Init)
	if got["init"].data != string(initBytes) {
		t.Error("init contents differ from the source")
	}
	if d := got["lib/modules/6.1.0-test/kernel/lib/mid.ko"].data; d != "mid module" {
		t.Errorf("mid.ko contents %q", d)
	}

	// Every parent precedes its children (the kernel's unpacker needs it).
	seen := map[string]bool{}
	for _, name := range order {
		if dir := filepath.Dir(name); dir != "." && !seen[dir] {
			t.Errorf("%s comes before its directory %s", name, dir)
		}
		seen[name] = true
	}

	wantDep := "kernel/drivers/net/a-b.ko: kernel/lib/mid.ko kernel/lib/leaf.ko\n" +
		"kernel/lib/mid.ko: kernel/lib/leaf.ko\n" +
		"kernel/lib/leaf.ko:\n" +
		"kernel/drivers/net/lone.ko:\n" +
		"kernel/drivers/net/virtio_net.ko:\n" +
		"kernel/drivers/virtio/virtio_pci.ko:\n" +
		"kernel/drivers/net/e1000.ko:\n"
	if d := got["lib/modules/6.1.0-test/modules.dep"].data; d != wantDep {
		t.Errorf("modules.dep:\n%s\nwant:\n%s", d, wantDep)
	}
	wantAlias := "alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_net\n" +
		"alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n" +
		"alias pci:v0000AAAAd*sv*sd*bc*sc*i* a_b\n" +
		"alias fs-leaf leaf\n"
	if d := got["lib/modules/6.1.0-test/modules.alias"].data; d != wantAlias {
		t.Errorf("modules.alias:\n%s\nwant:\n%s", d, wantAlias)
	}

	wantMods := []string{"a_b", "e1000", "leaf", "lone", "mid", "virtio_net", "virtio_pci"}
	if !reflect.DeepEqual(rep.Modules, wantMods) {
		t.Errorf("Report.Modules = %v, want %v", rep.Modules, wantMods)
	}
	if !reflect.DeepEqual(rep.Builtin, []string{"af_packet"}) {
		t.Errorf("Report.Builtin = %v, want [af_packet]", rep.Builtin)
	}
	if !reflect.DeepEqual(rep.Missing, []string{"nosuchdriver"}) {
		t.Errorf("Report.Missing = %v, want [nosuchdriver]", rep.Missing)
	}
	if rep.Files != len(order) {
		t.Errorf("Report.Files = %d, archive has %d entries", rep.Files, len(order))
	}
	if rep.CompressedBytes != int64(len(img)) {
		t.Errorf("Report.CompressedBytes = %d, wrote %d", rep.CompressedBytes, len(img))
	}
	if rep.UncompressedBytes <= rep.CompressedBytes {
		t.Errorf("Report.UncompressedBytes = %d, not above compressed %d", rep.UncompressedBytes, rep.CompressedBytes)
	}
}

func TestBuildReproducible(t *testing.T) {
	spec := testSpec(t)
	a, _ := build(t, spec)
	// Touch every input: new mtimes must not change the output.
	filepath.Walk(spec.KernelModules, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			os.Chtimes(p, fi.ModTime().Add(3600e9), fi.ModTime().Add(3600e9))
		}
		return nil
	})
	// Order of the lists given must not matter either.
	rev := spec
	rev.Modules = append([]string(nil), spec.Modules...)
	for i, j := 0, len(rev.Modules)-1; i < j; i, j = i+1, j-1 {
		rev.Modules[i], rev.Modules[j] = rev.Modules[j], rev.Modules[i]
	}
	rev.Files = []File{spec.Files[1], spec.Files[0]}
	b, _ := build(t, rev)
	if !bytes.Equal(a, b) {
		t.Fatalf("two builds of the same inputs differ (%d vs %d bytes)", len(a), len(b))
	}
	// And a content change must change the output.
	if err := os.WriteFile(filepath.Join(spec.KernelModules, "kernel/lib/leaf.ko"), []byte("leaf module v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := build(t, spec)
	if bytes.Equal(a, c) {
		t.Fatal("changing a module's contents did not change the image")
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(t *testing.T, s *Spec)
		want   string
	}{
		{"no init", func(t *testing.T, s *Spec) { s.Init = "" }, "no init given"},
		{"dynamic init", func(t *testing.T, s *Spec) { writeELF(t, s.Init, elf.ET_EXEC, true) }, "init must be static (CGO_ENABLED=0)"},
		{"script init", func(t *testing.T, s *Spec) { os.WriteFile(s.Init, []byte("#!/bin/sh\n"), 0o755) }, "not an ELF executable"},
		{"object init", func(t *testing.T, s *Spec) { writeELF(t, s.Init, elf.ET_REL, false) }, "is not an executable"},
		{"required missing", func(t *testing.T, s *Spec) {
			os.WriteFile(filepath.Join(s.KernelModules, "modules.dep"), []byte("kernel/lib/leaf.ko:\n"), 0o644)
		}, "required driver(s) virtio_net, virtio_pci, e1000"},
		{"dep not listed", func(t *testing.T, s *Spec) {
			os.WriteFile(filepath.Join(s.KernelModules, "modules.dep"), []byte("kernel/drivers/net/a-b.ko: kernel/lib/gone.ko\n"), 0o644)
			s.Modules, s.Required = []string{"a_b"}, []string{}
		}, "module a_b -> gone needs kernel/lib/gone.ko"},
		{"dep escapes", func(t *testing.T, s *Spec) {
			os.WriteFile(filepath.Join(s.KernelModules, "modules.dep"), []byte("kernel/a.ko: ../../etc/shadow\n"), 0o644)
		}, "must be relative, clean and inside"},
		{"malformed dep", func(t *testing.T, s *Spec) {
			os.WriteFile(filepath.Join(s.KernelModules, "modules.dep"), []byte("no colon here\n"), 0o644)
		}, "line 1: want \"path: deps...\""},
		{"no modules.dep", func(t *testing.T, s *Spec) { os.Remove(filepath.Join(s.KernelModules, "modules.dep")) }, "read modules.dep"},
		{"no modules.alias", func(t *testing.T, s *Spec) { os.Remove(filepath.Join(s.KernelModules, "modules.alias")) }, "read modules.alias"},
		{"malformed alias", func(t *testing.T, s *Spec) {
			os.WriteFile(filepath.Join(s.KernelModules, "modules.alias"), []byte("alias onlytwo\n"), 0o644)
		}, "want \"alias PATTERN MODULE\""},
		{"module file gone", func(t *testing.T, s *Spec) { os.Remove(filepath.Join(s.KernelModules, "kernel/lib/mid.ko")) }, "mid.ko"},
		{"relative dst", func(t *testing.T, s *Spec) { s.Files[0].Dst = "etc/x" }, "must be an absolute clean path"},
		{"unclean dst", func(t *testing.T, s *Spec) { s.Files[0].Dst = "/etc/../x" }, "must be an absolute clean path"},
		{"dst over init", func(t *testing.T, s *Spec) { s.Files[0].Dst = "/init" }, "add /init: path already in the image"},
		{"dst under a file", func(t *testing.T, s *Spec) { s.Files[0].Dst = "/init/x" }, "parent /init is not a directory"},
		{"setuid mode", func(t *testing.T, s *Spec) { s.Files[0].Mode = 0o755 | os.ModeSetuid }, "only permission bits"},
		{"src dir", func(t *testing.T, s *Spec) { s.Files[0].Src = t.TempDir() }, "not a regular file"},
		{"src missing", func(t *testing.T, s *Spec) { s.Files[0].Src = "/nonexistent/ca.pem" }, "/nonexistent/ca.pem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec(t)
			tc.modify(t, &spec)
			_, err := Build(spec, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestBuildWithoutModules(t *testing.T) {
	spec := testSpec(t)
	spec.KernelModules = ""
	img, rep := build(t, spec)
	got, _ := decode(t, img)
	if len(rep.Modules) != 0 {
		t.Errorf("Report.Modules = %v with no module directory", rep.Modules)
	}
	for name := range got {
		if strings.HasPrefix(name, "lib/modules/") {
			t.Errorf("%s in an image built without modules", name)
		}
	}
	if _, ok := got["init"]; !ok {
		t.Error("no /init")
	}
}

func TestStaticPIEAccepted(t *testing.T) {
	p := filepath.Join(t.TempDir(), "init")
	writeELF(t, p, elf.ET_DYN, false)
	if err := CheckStatic(p); err != nil {
		t.Fatalf("static PIE refused: %v", err)
	}
}

func TestModName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/net/virtio-net.ko":      "virtio_net",
		"kernel/drivers/net/mlx5_core.ko.zst":   "mlx5_core",
		"kernel/drivers/i2c/i2c-algo-bit.ko.xz": "i2c_algo_bit",
		"af-packet":                             "af_packet",
	} {
		if got := modName(in); got != want {
			t.Errorf("modName(%q) = %q, want %q", in, got, want)
		}
	}
}
