package initramfs

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// firmwareDir is where the kernel's firmware loader looks in the image.
const firmwareDir = "lib/firmware"

// addFirmware copies into the image the firmware files the included
// modules name (their modinfo "firmware=" entries) from spec.Firmware, laid
// out as /lib/firmware (linux-firmware's tree). A named file the directory
// lacks is reported, not an error: many drivers name firmware for chips a
// machine does not have.
func addFirmware(im image, spec Spec, files []string, rep *Report) error {
	dir := filepath.Clean(spec.Firmware)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("firmware directory %s: not a directory (%v)", dir, err)
	}
	seen := map[string]bool{}
	for _, rel := range files {
		mod := filepath.Join(filepath.Clean(spec.KernelModules), filepath.FromSlash(rel))
		names, err := moduleFirmware(mod)
		if err != nil {
			return err
		}
		for _, name := range names {
			if seen[name] {
				continue
			}
			seen[name] = true
			src := filepath.Join(dir, filepath.FromSlash(name))
			if fi, err := os.Stat(src); err != nil || !fi.Mode().IsRegular() {
				rep.FirmwareMissing = append(rep.FirmwareMissing, modName(rel)+": "+name)
				continue
			}
			if err := im.add(path.Join(firmwareDir, name), entry{mode: modeReg | 0o644, src: src}); err != nil {
				return err
			}
			rep.Firmware = append(rep.Firmware, name)
		}
	}
	sort.Strings(rep.Firmware)
	sort.Strings(rep.FirmwareMissing)
	return nil
}

// moduleFirmware reads the firmware file names a module declares in its
// .modinfo section. A compressed module (.ko.xz, .ko.zst) is refused by
// name: its firmware cannot be known without decompressing it.
func moduleFirmware(p string) ([]string, error) {
	if !strings.HasSuffix(p, ".ko") {
		return nil, fmt.Errorf("module %s: compressed; firmware needs uncompressed modules to read their modinfo", p)
	}
	f, err := elf.Open(p)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", p, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: .modinfo: %w", p, err)
	}
	var names []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		name, ok := bytes.CutPrefix(kv, []byte("firmware="))
		if !ok {
			continue
		}
		if err := checkFirmwareName(string(name)); err != nil {
			return nil, fmt.Errorf("module %s: %w", p, err)
		}
		names = append(names, string(name))
	}
	return names, nil
}

// checkFirmwareName keeps a name from a module inside /lib/firmware.
func checkFirmwareName(n string) error {
	if n == "" || path.IsAbs(n) || path.Clean(n) != n || n == ".." || strings.HasPrefix(n, "../") {
		return errors.New("firmware name " + fmt.Sprintf("%q", n) + ": must be relative and inside the firmware directory")
	}
	return nil
}
