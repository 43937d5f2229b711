// Package boottime works out how long a boot spent before PID 1: in the
// firmware (and boot loader) and in the kernel, from what the machine
// tells us at PID 1's entry. The kernel's share is its own clock
// (CLOCK_BOOTTIME starts near the kernel's entry); the firmware's comes,
// where there is one, from systemd-boot's EFI variables, the ACPI FPDT
// record the kernel exports, or the x86 TSC, which counts from reset.
// Every figure comes from firmware or hardware we do not control, so each
// is bounded: a share outside (0, Max] is unknown, not shown.
package boottime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"golang.org/x/sys/unix"

	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

// Max bounds every share: a firmware that says it took more than an hour,
// or a TSC that was not reset (kexec, a firmware that writes it), is not
// believed.
const Max = time.Hour

// The sources of a share, as shown beside it.
const (
	SourceEFI    = "EFI"  // systemd-boot's LoaderTimeInitUSec, LoaderTimeExecUSec
	SourceFPDT   = "FPDT" // ACPI's Firmware Performance Data Table, via the kernel
	SourceTSC    = "TSC"  // the time stamp counter and the kernel's TSC frequency
	SourceKernel = "CLOCK_BOOTTIME"
)

// LoaderGUID is the vendor GUID of the Boot Loader Interface's variables.
const LoaderGUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// Clocks are the readings taken at PID 1's entry, as close together as
// can be.
type Clocks struct {
	Uptime time.Duration // CLOCK_BOOTTIME
	TSC    uint64        // 0 where there is no TSC
}

// Now reads the clocks. CLOCK_BOOTTIME cannot fail on Linux; should it,
// Uptime is 0, which Shares treats as unknown.
func Now() Clocks {
	var c Clocks
	if haveTSC {
		c.TSC = rdtsc()
	}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
		c.Uptime = time.Duration(ts.Nano())
	}
	return c
}

// Sources are where the firmware's share is looked for; tests point them
// at fake trees.
type Sources struct {
	EFIVars string // efivarfs: /sys/firmware/efi/efivars
	FPDT    string // the kernel's FPDT record: /sys/firmware/acpi/fpdt/boot
	// KernelLog is the kernel's log buffer (syslog(2)), where the TSC's
	// frequency is.
	KernelLog func() ([]byte, error)
}

// System are the running kernel's.
var System = Sources{
	EFIVars:   "/sys/firmware/efi/efivars",
	FPDT:      "/sys/firmware/acpi/fpdt/boot",
	KernelLog: readKernelLog,
}

// Share is one part of the boot before PID 1.
type Share struct {
	Took   time.Duration
	Source string
}

// Known is whether the share was measured.
func (s Share) Known() bool { return s.Took > 0 }

// Shares is the boot up to PID 1's entry. Loader is known only when a
// boot loader said so (SourceEFI); otherwise the firmware's share holds
// the loader's, and with the TSC also the kernel's own start before its
// clock runs.
type Shares struct {
	Firmware, Loader, Kernel Share
	// Why says why the firmware's share is unknown: every source tried.
	Why string
}

// Shares works out the shares from the clocks PID 1 read at its entry.
func (s Sources) Shares(c Clocks) Shares {
	var sh Shares
	if c.Uptime > 0 && c.Uptime <= Max {
		sh.Kernel = Share{c.Uptime, SourceKernel}
	}
	fw, ld, err := s.efiLoader()
	if err == nil {
		sh.Firmware, sh.Loader = Share{fw, SourceEFI}, Share{ld, SourceEFI}
		return sh
	}
	why := []string{err.Error()}
	if fw, err = s.fpdt(); err == nil {
		sh.Firmware = Share{fw, SourceFPDT}
		return sh
	}
	why = append(why, err.Error())
	if fw, err = s.tsc(c); err == nil {
		sh.Firmware = Share{fw, SourceTSC}
		return sh
	}
	// The reasons quote files the firmware wrote.
	sh.Why = console.Sanitize(strings.Join(append(why, err.Error()), "; "), 512)
	return sh
}

// efiLoader reads systemd-boot's variables: microseconds from reset to
// the loader's start and to its starting the kernel.
func (s Sources) efiLoader() (firmware, loader time.Duration, err error) {
	init, err := efiUSec(filepath.Join(s.EFIVars, "LoaderTimeInitUSec-"+LoaderGUID))
	if err != nil {
		return 0, 0, err
	}
	exec, err := efiUSec(filepath.Join(s.EFIVars, "LoaderTimeExecUSec-"+LoaderGUID))
	if err != nil {
		return 0, 0, err
	}
	if err := bounded("LoaderTimeInitUSec", init); err != nil {
		return 0, 0, err
	}
	if exec < init || exec-init > Max {
		return 0, 0, fmt.Errorf("EFI: LoaderTimeExecUSec %v before LoaderTimeInitUSec %v or too far after", exec, init)
	}
	return init, exec - init, nil
}

// efiUSec reads a Boot Loader Interface time: efivarfs's 4 bytes of
// attributes, then a decimal number in NUL-terminated UTF-16.
func efiUSec(path string) (time.Duration, error) {
	b, err := readSmall(path, 4+2*24)
	if err != nil {
		return 0, fmt.Errorf("EFI: %w", err)
	}
	if len(b) < 6 || len(b)%2 != 0 {
		return 0, fmt.Errorf("EFI: %s: %d bytes, want attributes and UTF-16", filepath.Base(path), len(b))
	}
	u := make([]uint16, 0, (len(b)-4)/2)
	for i := 4; i < len(b); i += 2 {
		u = append(u, uint16(b[i])|uint16(b[i+1])<<8)
	}
	str, _, _ := strings.Cut(string(utf16.Decode(u)), "\x00")
	n, err := strconv.ParseUint(str, 10, 63)
	if err != nil {
		return 0, fmt.Errorf("EFI: %s: %q is not microseconds", filepath.Base(path), str)
	}
	if n > uint64(Max/time.Microsecond) {
		return 0, fmt.Errorf("EFI: %s: %d µs, more than %v", filepath.Base(path), n, Max)
	}
	return time.Duration(n) * time.Microsecond, nil
}

// fpdt reads the firmware's own record of the boot (ACPI 6.5, 5.2.24):
// nanoseconds from reset to the end of ExitBootServices, the moment the
// firmware hands the machine to the kernel. Linux exports it with
// CONFIG_ACPI_FPDT (Debian 12's kernel does not).
func (s Sources) fpdt() (time.Duration, error) {
	p := filepath.Join(s.FPDT, "exitbootservice_exit_ns")
	b, err := readSmall(p, 32)
	if err != nil {
		return 0, fmt.Errorf("FPDT: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 63)
	if err != nil {
		return 0, fmt.Errorf("FPDT: %s: %q is not nanoseconds", p, b)
	}
	d := time.Duration(n)
	return d, bounded("FPDT ExitBootServicesExit", d)
}

// tsc is the time from reset to the kernel's clock's start: the TSC read
// at PID 1's entry, in seconds at the kernel's TSC frequency, less the
// kernel's uptime then.
func (s Sources) tsc(c Clocks) (time.Duration, error) {
	if c.TSC == 0 {
		return 0, errors.New("TSC: none")
	}
	if c.Uptime <= 0 {
		return 0, errors.New("TSC: no kernel uptime to subtract")
	}
	if s.KernelLog == nil {
		return 0, errors.New("TSC: no kernel log for its frequency")
	}
	log, err := s.KernelLog()
	if err != nil {
		return 0, fmt.Errorf("TSC: kernel log: %w", err)
	}
	khz, err := TSCkHz(log)
	if err != nil {
		return 0, fmt.Errorf("TSC: %w", err)
	}
	// Seconds, then nanoseconds: c.TSC*1e6 would overflow.
	sinceReset := time.Duration(float64(c.TSC) / (khz * 1e3) * float64(time.Second))
	d := sinceReset - c.Uptime
	return d, bounded("TSC", d)
}

// The kernel's TSC frequency lines (arch/x86/kernel/tsc.c): the early
// estimate, or the refined one a second after the TSC clocksource
// registers, which is better when it is there.
var (
	reTSCRefined  = regexp.MustCompile(`tsc: Refined TSC clocksource calibration: (\d+\.\d+) MHz`)
	reTSCDetected = regexp.MustCompile(`tsc: Detected (\d+\.\d+) MHz (?:processor|TSC)`)
)

// TSCkHz finds the TSC's frequency in a kernel log.
func TSCkHz(log []byte) (float64, error) {
	for _, re := range []*regexp.Regexp{reTSCRefined, reTSCDetected} {
		m := re.FindAllSubmatch(log, -1)
		if len(m) == 0 {
			continue
		}
		mhz, err := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
		// 100 MHz to 20 GHz: anything else is a misreading.
		if err != nil || mhz < 100 || mhz > 20000 {
			return 0, fmt.Errorf("kernel log: TSC frequency %q MHz out of range", m[len(m)-1][1])
		}
		return mhz * 1e3, nil
	}
	return 0, errors.New("kernel log has no \"tsc: Detected ... MHz\" line")
}

func bounded(what string, d time.Duration) error {
	if d <= 0 || d > Max {
		return fmt.Errorf("%s: %v is outside (0, %v]", what, d, Max)
	}
	return nil
}

// readSmall reads at most limit bytes: a variable or sysfs file larger
// than that is not what we are looking for.
func readSmall(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, limit+1)
	n, err := f.Read(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if n > limit {
		return nil, fmt.Errorf("read %s: more than %d bytes", path, limit)
	}
	return b[:n], nil
}

// readKernelLog reads the kernel's log buffer with syslog(2), as dmesg
// does; PID 1 holds CAP_SYSLOG.
func readKernelLog() ([]byte, error) {
	size, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil {
		return nil, fmt.Errorf("syslog size: %w", err)
	}
	b := make([]byte, min(max(size, 1<<14), 16<<20))
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, b)
	if err != nil {
		return nil, fmt.Errorf("syslog read: %w", err)
	}
	return bytes.Clone(b[:n]), nil
}

// Steps are the shares as timeline steps before PID 1's start, in
// milliseconds since it (so negative), ending at 0: "firmware (SOURCE)",
// "loader (EFI)" and "kernel", each only when known. The firmware's source
// is in its name, so every consumer of a timeline shows it.
func (sh Shares) Steps() []timeline.Step {
	var steps []timeline.Step
	end := 0.0
	add := func(name string, d time.Duration) {
		start := end - float64(d.Microseconds())/1000
		steps = append([]timeline.Step{{Name: name, StartMS: start, EndMS: end}}, steps...)
		end = start
	}
	if !sh.Kernel.Known() {
		// Without the kernel's share nothing before it can be placed.
		return nil
	}
	add("kernel", sh.Kernel.Took)
	if sh.Loader.Known() {
		add("loader ("+sh.Loader.Source+")", sh.Loader.Took)
	}
	if sh.Firmware.Known() {
		add("firmware ("+sh.Firmware.Source+")", sh.Firmware.Took)
	}
	return steps
}

// String is the shares for the console: "firmware 1.8 s (TSC), kernel
// 1.2 s (CLOCK_BOOTTIME)", with "unknown" and why where a share is.
func (sh Shares) String() string {
	f := func(name string, s Share, why string) string {
		if !s.Known() {
			if why != "" {
				return name + " unknown (" + why + ")"
			}
			return name + " unknown"
		}
		return fmt.Sprintf("%s %.3f s (%s)", name, s.Took.Seconds(), s.Source)
	}
	parts := []string{f("firmware", sh.Firmware, sh.Why)}
	if sh.Loader.Known() {
		parts = append(parts, f("loader", sh.Loader, ""))
	}
	return strings.Join(append(parts, f("kernel", sh.Kernel, "")), ", ")
}
