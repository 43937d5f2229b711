package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/zeroboot/zeroboot/pkg/boottime"
	"github.com/zeroboot/zeroboot/pkg/coldplug"
	"github.com/zeroboot/zeroboot/pkg/mounts"
)

// PID 1 puts the shares first on its timeline and says them, with their
// source, on the console; a firmware that tells nothing leaves the
// kernel's share alone.
func TestBootShares(t *testing.T) {
	kmsg := []byte("<6>[    0.000000] tsc: Detected 2000.000 MHz processor\n")
	dir := t.TempDir()
	fpdt := filepath.Join(dir, "fpdt")
	if err := os.Mkdir(fpdt, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		clocks boottime.Clocks
		steps  []string
		log    string
	}{
		// 6e9 ticks at 2 GHz: 3 s since reset, 1.25 s of it the kernel's.
		{"TSC", boottime.Clocks{Uptime: 1250 * time.Millisecond, TSC: 6e9},
			[]string{"firmware (TSC)", "kernel", "mount"}, "firmware 1.750 s (TSC), kernel 1.250 s (CLOCK_BOOTTIME)"},
		{"no TSC", boottime.Clocks{Uptime: 1250 * time.Millisecond},
			[]string{"kernel", "mount"}, "firmware unknown (EFI: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, _, _ := testNode(t)
			var out bytes.Buffer
			n.log = slog.New(slog.NewTextHandler(&out, nil))
			n.run(step{"mount", func(context.Context) error { return nil }})
			n.bootSharesFrom(boottime.Sources{EFIVars: filepath.Join(dir, "efivars"), FPDT: fpdt,
				KernelLog: func() ([]byte, error) { return kmsg, nil }}, c.clocks)
			var names []string
			for _, s := range n.tl.Steps() {
				names = append(names, s.Name)
			}
			if strings.Join(names, ",") != strings.Join(c.steps, ",") {
				t.Errorf("timeline %v, want %v", names, c.steps)
			}
			if !strings.Contains(out.String(), "boot time before PID 1: "+c.log) {
				t.Errorf("log %q lacks %q", out.String(), c.log)
			}
		})
	}
}

// efivars loads and mounts efivarfs only on an EFI machine where the mount
// step left it unmounted, then names the boot loader's variables.
func TestEFIVars(t *testing.T) {
	stub := append([]byte{6, 0, 0, 0}, utf16le("systemd-stub 252.39-1~deb12u2\x00")...)
	for _, c := range []struct {
		name              string
		efi, mounted      bool
		loadErr           error
		wantLoad, wantLog string // wantLog "" means no log line at all
	}{
		{"not EFI", false, false, nil, "", ""},
		{"mounted at the mount step", true, true, nil, "", ""},
		{"module loaded and mounted", true, false, nil, "efivarfs", "EFI boot loader variables: LoaderFirmwareType StubInfo"},
		{"built in but not mounted", true, false, coldplug.ErrNotShipped, "efivarfs", "EFI boot loader variables: LoaderFirmwareType StubInfo"},
		{"module fails", true, false, errors.New("exec format error"), "efivarfs", "efivarfs not loaded: EFI variables unread"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			vars := filepath.Join(root, efivarsDir)
			if c.efi {
				if err := os.MkdirAll(vars, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			fill := func() {
				for name, b := range map[string][]byte{"StubInfo-" + boottime.LoaderGUID: stub,
					"LoaderFirmwareType-" + boottime.LoaderGUID: {6, 0, 0, 0}, "Boot0000-8be4df61-93ca-11d2-aa0d-00e098032b8c": {7, 0, 0, 0}} {
					if err := os.WriteFile(filepath.Join(vars, name), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			if c.mounted {
				fill()
			}
			var loaded string
			var mountedAt []string
			m := mounts.Mounter{
				Mount: func(source, target, fstype string, flags uintptr, data string) error {
					mountedAt = append(mountedAt, target)
					fill()
					return nil
				},
				MkdirAll:    func(string, os.FileMode) error { return nil },
				Stat:        func(p string) (os.FileInfo, error) { return os.Stat(filepath.Join(root, p)) },
				Filesystems: func() (map[string]bool, error) { return map[string]bool{"efivarfs": true}, nil },
			}
			n, _, _ := testNode(t)
			var out bytes.Buffer
			n.log = slog.New(slog.NewTextHandler(&out, nil))
			n.efivars(root, func(mod string) error { loaded = mod; return c.loadErr }, m)
			if loaded != c.wantLoad {
				t.Errorf("loaded %q, want %q", loaded, c.wantLoad)
			}
			if c.wantLog == "" && out.Len() > 0 || !strings.Contains(out.String(), c.wantLog) {
				t.Errorf("log %q, want %q", out.String(), c.wantLog)
			}
			if strings.Contains(c.wantLog, "variables:") {
				if len(mountedAt) != 1 || mountedAt[0] != efivarsDir {
					t.Errorf("mounted at %v, want %s", mountedAt, efivarsDir)
				}
				if !strings.Contains(out.String(), "booted from a unified kernel image") {
					t.Errorf("StubInfo not reported: %s", out.String())
				}
			}
		})
	}
}

func utf16le(s string) []byte {
	var b []byte
	for _, c := range utf16.Encode([]rune(s)) {
		b = append(b, byte(c), byte(c>>8))
	}
	return b
}
