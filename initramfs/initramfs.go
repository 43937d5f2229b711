// Package initramfs builds a node's initramfs: a newc cpio archive holding
// the static /init (PID 1), the kernel modules needed to reach the network
// with their modules.dep and modules.alias, and the trust material (release
// keys, registry CA), compressed with zstd.
//
// The output is reproducible: the same inputs give the same bytes, so an
// image can be rebuilt and compared, and its digest pinned.
package initramfs

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// WindowSize is the zstd window. The kernel's initramfs decompressor
// allocates the whole window up front during early boot; 8 MiB is what
// `zstd -19` uses and what kernels are built and tested with.
const WindowSize = 8 << 20

// File is an extra file placed in the image, such as the release trust file
// or the registry CA.
type File struct {
	Src  string      // path on the build machine
	Dst  string      // absolute path in the image
	Mode os.FileMode // permission bits; 0 means 0644
}

// Spec says what goes into the image.
type Spec struct {
	// Init is the static executable that becomes /init (PID 1).
	Init string
	// KernelModules is a kernel's module directory, such as
	// /lib/modules/6.1.0-56-amd64; its base name is the kernel version.
	// Empty means a kernel with every driver built in: no modules are added.
	KernelModules string
	// Modules are module names to include with their dependencies; nil
	// means DefaultModules.
	Modules []string
	// Required are names whose absence is an error rather than a warning;
	// nil means RequiredModules.
	Required []string
	// Files are extra files.
	Files []File
	// Firmware is a firmware directory laid out as /lib/firmware
	// (linux-firmware): the files the included modules name are copied
	// into the image's /lib/firmware. Empty adds none.
	Firmware string
}

// Report describes a built image.
type Report struct {
	Files             int      // archive entries (directories, devices and files)
	Modules           []string // module names included, dependencies too
	Builtin           []string // requested names built into the kernel
	Missing           []string // requested names the kernel has neither as module nor built in
	Firmware          []string // firmware files included, relative to /lib/firmware
	FirmwareMissing   []string // "module: file" named by a module, not in Spec.Firmware
	UncompressedBytes int64    // size of the cpio archive
	CompressedBytes   int64    // size written to the output
}

// Linux file type bits as stored in cpio headers.
const (
	modeDir = cpio.S_IFDIR
	modeReg = cpio.S_IFREG
	modeChr = cpio.S_IFCHR
)

// entry is one archive member before it is written.
type entry struct {
	mode           uint64 // type and permission bits
	src            string // file to copy, for regular files read from disk
	data           []byte // contents, for generated regular files
	rmajor, rminor uint64
}

// image is the set of entries keyed by path relative to / ("init",
// "lib/modules/...").
type image map[string]entry

func (im image) add(p string, e entry) error {
	if old, ok := im[p]; ok {
		if old.mode&cpio.S_IFMT == modeDir && e.mode&cpio.S_IFMT == modeDir {
			return nil
		}
		return fmt.Errorf("add /%s: path already in the image", p)
	}
	im[p] = e
	return nil
}

// base is what every image holds so that the kernel can open the console
// before PID 1 mounts devtmpfs, and PID 1 has mount points.
func base() image {
	im := image{}
	for _, d := range []string{"dev", "proc", "sys", "run", "etc", "lib", "lib/modules"} {
		im[d] = entry{mode: modeDir | 0o755}
	}
	im["tmp"] = entry{mode: modeDir | 0o1777}
	im["dev/console"] = entry{mode: modeChr | 0o600, rmajor: 5, rminor: 1}
	im["dev/null"] = entry{mode: modeChr | 0o666, rmajor: 1, rminor: 3}
	return im
}

// Build writes the image for spec to w.
func Build(spec Spec, w io.Writer) (Report, error) {
	var rep Report
	im, err := collect(spec, &rep)
	if err != nil {
		return rep, err
	}
	return rep, write(im, w, &rep)
}

func collect(spec Spec, rep *Report) (image, error) {
	if spec.Init == "" {
		return nil, errors.New("initramfs: no init given")
	}
	if err := CheckStatic(spec.Init); err != nil {
		return nil, err
	}
	if spec.Firmware != "" && spec.KernelModules == "" {
		return nil, errors.New("initramfs: firmware needs kernel modules: no module names any")
	}
	im := base()
	im["init"] = entry{mode: modeReg | 0o755, src: spec.Init}
	if spec.KernelModules != "" {
		if err := addModules(im, spec, rep); err != nil {
			return nil, err
		}
	}
	for _, f := range spec.Files {
		if err := addFile(im, f); err != nil {
			return nil, err
		}
	}
	if err := addParents(im); err != nil {
		return nil, err
	}
	return im, nil
}

// CheckStatic refuses an init that is not an ELF executable or that needs a
// dynamic loader: the initramfs carries no libc, so a dynamic /init would
// make the kernel panic with "No working init found".
func CheckStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("init %s: not an ELF executable: %w", p, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("init %s: ELF type %v is not an executable", p, f.Type)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("init %s: init must be static (CGO_ENABLED=0): it asks for a dynamic loader", p)
		}
	}
	return nil
}

func addModules(im image, spec Spec, rep *Report) error {
	dir := filepath.Clean(spec.KernelModules)
	kver := filepath.Base(dir)
	tree, err := readDepTree(dir)
	if err != nil {
		return fmt.Errorf("kernel modules %s: %w", dir, err)
	}
	names := spec.Modules
	if names == nil {
		names = DefaultModules
	}
	res, err := tree.resolve(names)
	if err != nil {
		return fmt.Errorf("kernel modules %s: %w", dir, err)
	}
	rep.Builtin, rep.Missing = res.builtin, res.missing
	if err := checkRequired(spec.Required, res.missing, dir); err != nil {
		return err
	}
	prefix := path.Join("lib/modules", kver)
	included, loadedNames := map[string]bool{}, map[string]bool{}
	for _, rel := range res.files {
		included[rel], loadedNames[modName(rel)] = true, true
		rep.Modules = append(rep.Modules, modName(rel))
		if err := im.add(path.Join(prefix, rel), entry{mode: modeReg | 0o644, src: filepath.Join(dir, filepath.FromSlash(rel))}); err != nil {
			return err
		}
	}
	sort.Strings(rep.Modules)
	if spec.Firmware != "" {
		if err := addFirmware(im, spec, res.files, rep); err != nil {
			return err
		}
	}
	alias, err := filteredAlias(dir, loadedNames)
	if err != nil {
		return fmt.Errorf("kernel modules %s: %w", dir, err)
	}
	gen := map[string][]byte{"modules.dep": tree.filteredDep(included), "modules.alias": alias}
	for name, data := range gen {
		if err := im.add(path.Join(prefix, name), entry{mode: modeReg | 0o644, data: data}); err != nil {
			return err
		}
	}
	// Copied whole: kmodule reads modules.builtin to know what needs no
	// loading, and modules.builtin.modinfo / modules.order keep modinfo and
	// load order tools working. They are small.
	for _, name := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		src := filepath.Join(dir, name)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		if err := im.add(path.Join(prefix, name), entry{mode: modeReg | 0o644, src: src}); err != nil {
			return err
		}
	}
	return nil
}

func checkRequired(required, missing []string, dir string) error {
	if required == nil {
		required = RequiredModules
	}
	var bad []string
	for _, r := range required {
		if i := sort.SearchStrings(missing, modName(r)); i < len(missing) && missing[i] == modName(r) {
			bad = append(bad, modName(r))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("kernel modules %s: required driver(s) %s neither a module nor built in", dir, strings.Join(bad, ", "))
	}
	return nil
}

func addFile(im image, f File) error {
	if !path.IsAbs(f.Dst) || path.Clean(f.Dst) != f.Dst || f.Dst == "/" {
		return fmt.Errorf("file %s: destination %q must be an absolute clean path below /", f.Src, f.Dst)
	}
	if f.Mode&^os.FileMode(0o777) != 0 {
		return fmt.Errorf("file %s: mode %v: only permission bits (0-0777) are allowed", f.Src, f.Mode)
	}
	fi, err := os.Stat(f.Src)
	if err != nil {
		return fmt.Errorf("file %s: %w", f.Src, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("file %s: not a regular file", f.Src)
	}
	mode := f.Mode
	if mode == 0 {
		mode = 0o644
	}
	return im.add(f.Dst[1:], entry{mode: modeReg | uint64(mode), src: f.Src})
}

// addParents creates every missing parent directory: the kernel's unpacker
// does not create intermediate directories and silently drops a file whose
// parent is absent.
func addParents(im image) error {
	for p := range im {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			e, ok := im[d]
			if !ok {
				im[d] = entry{mode: modeDir | 0o755}
				continue
			}
			if e.mode&cpio.S_IFMT != modeDir {
				return fmt.Errorf("add /%s: parent /%s is not a directory", p, d)
			}
		}
	}
	return nil
}

// countWriter counts bytes passed through.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// write emits entries sorted by path (a parent sorts before its children),
// with inode numbers from that order and no times or owners, so the bytes
// depend only on the contents.
func write(im image, w io.Writer, rep *Report) error {
	paths := make([]string, 0, len(im))
	for p := range im {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	out := &countWriter{w: w}
	// One encoder goroutine: the stream is deterministic either way, but
	// the build machines are shared.
	zw, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithWindowSize(WindowSize), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return fmt.Errorf("zstd: %w", err)
	}
	raw := &countWriter{w: zw}
	cw := cpio.Newc.Writer(raw)
	for i, p := range paths {
		if err := writeEntry(cw, p, im[p], uint64(i+1)); err != nil {
			zw.Close()
			return err
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		zw.Close()
		return fmt.Errorf("write cpio trailer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("zstd: %w", err)
	}
	rep.Files = len(paths)
	rep.UncompressedBytes, rep.CompressedBytes = raw.n, out.n
	return nil
}

func writeEntry(cw cpio.RecordWriter, p string, e entry, ino uint64) error {
	info := cpio.Info{Name: p, Mode: e.mode, Ino: ino, NLink: 1, Rmajor: e.rmajor, Rminor: e.rminor}
	if e.mode&cpio.S_IFMT == modeDir {
		info.NLink = 2
	}
	var rec cpio.Record
	switch {
	case e.src != "":
		f, err := os.Open(e.src)
		if err != nil {
			return fmt.Errorf("add /%s: %w", p, err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("add /%s: %w", p, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("add /%s: %s is not a regular file", p, e.src)
		}
		if fi.Size() > 1<<32-1 {
			return fmt.Errorf("add /%s: %s is larger than newc's 4 GiB limit", p, e.src)
		}
		info.FileSize = uint64(fi.Size())
		rec = cpio.Record{ReaderAt: f, Info: info}
	case e.mode&cpio.S_IFMT == modeReg:
		rec = cpio.StaticRecord(e.data, info)
	default:
		rec = cpio.Record{Info: info}
	}
	if err := cw.WriteRecord(rec); err != nil {
		return fmt.Errorf("write /%s: %w", p, err)
	}
	return nil
}
