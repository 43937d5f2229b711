package boottime

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/zeroboot/zeroboot/pkg/timeline"
)

// efiVar is an efivarfs file: attributes, then s in UTF-16 with its NUL.
func efiVar(s string) []byte {
	b := []byte{0x06, 0, 0, 0}
	for _, c := range utf16.Encode([]rune(s + "\x00")) {
		b = append(b, byte(c), byte(c>>8))
	}
	return b
}

const kmsg = "<6>[    0.000000] tsc: Fast TSC calibration using PIT\n" +
	"<6>[    0.000000] tsc: Detected 2999.998 MHz processor\n"

// fake is a machine: files under efivars and fpdt, a kernel log.
type fake struct {
	efi  map[string][]byte // name without the GUID
	fpdt map[string]string
	log  string
	err  error // of the kernel log
}

func (f fake) sources(t *testing.T) Sources {
	dir := t.TempDir()
	s := Sources{EFIVars: filepath.Join(dir, "efivars"), FPDT: filepath.Join(dir, "fpdt"),
		KernelLog: func() ([]byte, error) { return []byte(f.log), f.err }}
	for _, d := range []string{s.EFIVars, s.FPDT} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range f.efi {
		if err := os.WriteFile(filepath.Join(s.EFIVars, name+"-"+LoaderGUID), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, v := range f.fpdt {
		if err := os.WriteFile(filepath.Join(s.FPDT, name), []byte(v), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestShares(t *testing.T) {
	const mhz = 2999.998
	// TSC ticks at mhz for d.
	ticks := func(d time.Duration) uint64 { return uint64(d.Seconds() * mhz * 1e6) }
	up := 1500 * time.Millisecond
	for _, c := range []struct {
		name     string
		m        fake
		clocks   Clocks
		firmware Share
		loader   Share
		why      string // in Why when the firmware is unknown
	}{
		{"TSC", fake{log: kmsg}, Clocks{up, ticks(5 * time.Second)}, Share{5*time.Second - up, SourceTSC}, Share{}, ""},
		{"refined TSC frequency wins", fake{log: kmsg + "<6>[    1.2] tsc: Refined TSC clocksource calibration: 1000.000 MHz\n"},
			Clocks{up, 5e9}, Share{5*time.Second - up, SourceTSC}, Share{}, ""},
		{"EFI loader first", fake{log: kmsg, fpdt: map[string]string{"exitbootservice_exit_ns": "900000000\n"},
			efi: map[string][]byte{"LoaderTimeInitUSec": efiVar("1800000"), "LoaderTimeExecUSec": efiVar("2100000")}},
			Clocks{up, ticks(5 * time.Second)}, Share{1800 * time.Millisecond, SourceEFI}, Share{300 * time.Millisecond, SourceEFI}, ""},
		{"FPDT before TSC", fake{log: kmsg, fpdt: map[string]string{"exitbootservice_exit_ns": "900000000\n"}},
			Clocks{up, ticks(5 * time.Second)}, Share{900 * time.Millisecond, SourceFPDT}, Share{}, ""},
		{"EFI exec before init: next source", fake{log: kmsg,
			efi: map[string][]byte{"LoaderTimeInitUSec": efiVar("2100000"), "LoaderTimeExecUSec": efiVar("1800000")}},
			Clocks{up, ticks(5 * time.Second)}, Share{5*time.Second - up, SourceTSC}, Share{}, ""},
		{"no TSC", fake{log: kmsg}, Clocks{up, 0}, Share{}, Share{}, "TSC: none"},
		{"no frequency", fake{log: "<6>[ 0.0] Linux version 6.1\n"}, Clocks{up, 5e9}, Share{}, Share{}, "no \"tsc: Detected"},
		{"kernel log unreadable", fake{err: errors.New("operation not permitted")}, Clocks{up, 5e9}, Share{}, Share{}, "operation not permitted"},
		{"absurd frequency", fake{log: "tsc: Detected 0.001 MHz processor\n"}, Clocks{up, 5e9}, Share{}, Share{}, "out of range"},
		// A TSC not reset since the last boot (kexec) or written by the
		// firmware: less than the uptime, or years.
		{"TSC behind the uptime", fake{log: kmsg}, Clocks{up, ticks(time.Second)}, Share{}, Share{}, "outside"},
		{"TSC from last year", fake{log: kmsg}, Clocks{up, ticks(24 * 365 * time.Hour)}, Share{}, Share{}, "outside"},
		{"FPDT lies", fake{fpdt: map[string]string{"exitbootservice_exit_ns": "18446744073709551615"}}, Clocks{up, 0}, Share{}, Share{}, "FPDT"},
		{"FPDT zero", fake{fpdt: map[string]string{"exitbootservice_exit_ns": "0"}}, Clocks{up, 0}, Share{}, Share{}, "outside"},
		{"EFI huge", fake{efi: map[string][]byte{"LoaderTimeInitUSec": efiVar("99999999999999"), "LoaderTimeExecUSec": efiVar("99999999999999")}},
			Clocks{up, 0}, Share{}, Share{}, "more than"},
		{"EFI not a number, escapes quoted safely", fake{efi: map[string][]byte{"LoaderTimeInitUSec": efiVar("12\x1b[2J"), "LoaderTimeExecUSec": efiVar("1")}},
			Clocks{up, 0}, Share{}, Share{}, `"12\x1b[2J" is not microseconds`},
		{"EFI truncated", fake{efi: map[string][]byte{"LoaderTimeInitUSec": {6, 0, 0}, "LoaderTimeExecUSec": efiVar("1")}},
			Clocks{up, 0}, Share{}, Share{}, "want attributes and UTF-16"},
		{"EFI oversized", fake{efi: map[string][]byte{"LoaderTimeInitUSec": efiVar(strings.Repeat("1", 200)), "LoaderTimeExecUSec": efiVar("1")}},
			Clocks{up, 0}, Share{}, Share{}, "more than 52 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sh := c.m.sources(t).Shares(c.clocks)
			if sh.Kernel != (Share{up, SourceKernel}) {
				t.Errorf("kernel %+v, want %v from %s", sh.Kernel, up, SourceKernel)
			}
			// The TSC's figures go through a float: a microsecond is close.
			if d := sh.Firmware.Took - c.firmware.Took; d > time.Microsecond || d < -time.Microsecond || sh.Firmware.Source != c.firmware.Source {
				t.Errorf("firmware %+v, want %+v", sh.Firmware, c.firmware)
			}
			if sh.Loader != c.loader {
				t.Errorf("loader %+v, want %+v", sh.Loader, c.loader)
			}
			if !strings.Contains(sh.Why, c.why) || (c.why == "") != (sh.Why == "") {
				t.Errorf("why %q, want %q", sh.Why, c.why)
			}
			if strings.ContainsRune(sh.Why, 0x1b) {
				t.Errorf("why carries an escape: %q", sh.Why)
			}
		})
	}
}

func TestSharesKernelBounded(t *testing.T) {
	for _, up := range []time.Duration{0, -time.Second, 2 * Max} {
		sh := fake{log: kmsg}.sources(t).Shares(Clocks{up, 5e9})
		if sh.Kernel.Known() || sh.Firmware.Known() || sh.Steps() != nil {
			t.Errorf("uptime %v: %+v, steps %v; want nothing known", up, sh, sh.Steps())
		}
	}
}

func TestStepsAndString(t *testing.T) {
	for _, c := range []struct {
		name  string
		sh    Shares
		steps []timeline.Step
		str   string
	}{
		{"TSC", Shares{Firmware: Share{1800 * time.Millisecond, SourceTSC}, Kernel: Share{1200 * time.Millisecond, SourceKernel}},
			[]timeline.Step{{Name: "firmware (TSC)", StartMS: -3000, EndMS: -1200}, {Name: "kernel", StartMS: -1200, EndMS: 0}},
			"firmware 1.800 s (TSC), kernel 1.200 s (CLOCK_BOOTTIME)"},
		{"EFI loader", Shares{Firmware: Share{time.Second, SourceEFI}, Loader: Share{250 * time.Millisecond, SourceEFI}, Kernel: Share{500 * time.Millisecond, SourceKernel}},
			[]timeline.Step{{Name: "firmware (EFI)", StartMS: -1750, EndMS: -750}, {Name: "loader (EFI)", StartMS: -750, EndMS: -500}, {Name: "kernel", StartMS: -500, EndMS: 0}},
			"firmware 1.000 s (EFI), loader 0.250 s (EFI), kernel 0.500 s (CLOCK_BOOTTIME)"},
		{"firmware unknown", Shares{Kernel: Share{500 * time.Millisecond, SourceKernel}, Why: "TSC: none"},
			[]timeline.Step{{Name: "kernel", StartMS: -500, EndMS: 0}},
			"firmware unknown (TSC: none), kernel 0.500 s (CLOCK_BOOTTIME)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			steps := c.sh.Steps()
			if len(steps) != len(c.steps) {
				t.Fatalf("steps %v, want %v", steps, c.steps)
			}
			for i := range steps {
				if steps[i] != c.steps[i] {
					t.Errorf("step %d %+v, want %+v", i, steps[i], c.steps[i])
				}
			}
			// What PID 1 does with them.
			if err := timeline.New(time.Now()).Before(steps...); err != nil {
				t.Errorf("timeline refuses the steps: %v", err)
			}
			if s := c.sh.String(); s != c.str {
				t.Errorf("String %q, want %q", s, c.str)
			}
		})
	}
}

// Now reads this machine's clocks: the uptime is the host's, and a TSC
// where there is one.
func TestNow(t *testing.T) {
	c := Now()
	if c.Uptime <= 0 {
		t.Errorf("CLOCK_BOOTTIME %v", c.Uptime)
	}
	if haveTSC && c.TSC == 0 {
		t.Errorf("rdtsc read 0")
	}
	if d := Now(); haveTSC && d.TSC <= c.TSC {
		t.Errorf("TSC did not advance: %d then %d", c.TSC, d.TSC)
	}
}
