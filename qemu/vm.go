// Package qemu boots a kernel and a zeroboot initramfs in QEMU for the
// end-to-end tests and the demo, and watches the serial console.
package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HostAddr is the address of the host (its loopback) as seen from a guest on
// QEMU's user network numbered by UserNet.
const (
	UserNet  = "192.0.2.0/24"
	HostAddr = "192.0.2.2"
)

// VM is one QEMU guest with a serial console.
type VM struct {
	Kernel  string // empty: no -kernel, the firmware boots what Extra gives
	Initrd  string
	Append  string // kernel command line; console=ttyS0 is added
	Memory  string // default 1024M
	CPUs    int    // default 2
	UUID    string // SMBIOS product UUID: the node's identity
	NIC     string // default virtio-net-pci
	Monitor string // unix socket path for the QEMU monitor (HMP), optional
	// NICs, when set, replace the default NIC on QEMU's user network: each
	// is a -netdev argument and the -device that uses it.
	NICs    []NIC
	Extra   []string // more QEMU arguments
	Console io.Writer
	// Embedded: Kernel carries its initramfs and command line (make
	// kernel), so QEMU gets no -initrd, and -append only when Append is
	// set: the kernel adds it, as it is, after its own.
	Embedded bool

	cmd     *exec.Cmd
	started time.Time // when QEMU was started: the machine's power-on
	mu      sync.Mutex
	lines   []string
	arrived []time.Time   // when each line arrived
	seen    chan struct{} // closed and replaced whenever a line arrives
	done    chan struct{}
	err     error
}

// NIC is one network card: its backend (-netdev) and device (-device).
type NIC struct{ Netdev, Device string }

// Accel is the accelerator: TCG by default because KVM hangs on our CI
// machines; ZEROBOOT_QEMU_ACCEL=kvm chooses KVM where it works.
func Accel() string {
	if a := os.Getenv("ZEROBOOT_QEMU_ACCEL"); a != "" {
		return a
	}
	return "tcg"
}

// Kernel returns the newest installed Debian kernel and its release.
func Kernel() (path, release string, err error) {
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(ks) == 0 {
		return "", "", errors.New("no kernel in /boot: run make deps (installs linux-image-amd64)")
	}
	sort.Strings(ks)
	path = ks[len(ks)-1]
	return path, strings.TrimPrefix(filepath.Base(path), "vmlinuz-"), nil
}

// Fresh returns a VM of the same configuration that has not run, to boot
// the same machine again.
func (v *VM) Fresh() *VM {
	return &VM{Kernel: v.Kernel, Initrd: v.Initrd, Append: v.Append, Memory: v.Memory, CPUs: v.CPUs,
		UUID: v.UUID, NIC: v.NIC, Monitor: v.Monitor, NICs: v.NICs, Extra: v.Extra, Embedded: v.Embedded}
}

// Args gives the QEMU command line.
func (v *VM) Args() []string {
	mem, cpus, nic := v.Memory, v.CPUs, v.NIC
	if mem == "" {
		mem = "1024M"
	}
	if cpus == 0 {
		cpus = 2
	}
	if nic == "" {
		nic = "virtio-net-pci"
	}
	args := []string{
		"-accel", Accel(), "-m", mem, "-smp", fmt.Sprint(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		// A hardware RNG, as servers have: without one the kernel's CRNG
		// can take minutes to seed under TCG and TLS waits for it.
		"-device", "virtio-rng-pci",
	}
	// Without a kernel the firmware boots from a disk in Extra (a UKI
	// carries its own command line).
	switch {
	case v.Kernel != "" && v.Embedded:
		args = append(args, "-kernel", v.Kernel)
		if v.Append != "" {
			args = append(args, "-append", v.Append)
		}
	case v.Kernel != "":
		args = append(args, "-kernel", v.Kernel, "-initrd", v.Initrd,
			"-append", strings.TrimSpace("console=ttyS0 panic=-1 "+v.Append))
	}
	nics := v.NICs
	if nics == nil {
		nics = []NIC{{Netdev: "user,id=n0,net=" + UserNet, Device: nic + ",netdev=n0"}}
	}
	for _, n := range nics {
		args = append(args, "-netdev", n.Netdev, "-device", n.Device)
	}
	if v.UUID != "" {
		args = append(args, "-uuid", v.UUID)
	}
	if v.Monitor != "" {
		args = append(args, "-monitor", "unix:"+v.Monitor+",server,nowait")
	}
	return append(args, v.Extra...)
}

// Start launches QEMU; its serial console is collected line by line.
func (v *VM) Start() error {
	v.cmd = exec.Command("qemu-system-x86_64", v.Args()...)
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	v.cmd.Stderr = v.cmd.Stdout
	v.seen, v.done = make(chan struct{}), make(chan struct{})
	v.started = time.Now()
	if err := v.cmd.Start(); err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	go v.read(out)
	return nil
}

func (v *VM) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if v.Console != nil {
			fmt.Fprintln(v.Console, line)
		}
		v.mu.Lock()
		v.lines = append(v.lines, line)
		v.arrived = append(v.arrived, time.Now())
		close(v.seen)
		v.seen = make(chan struct{})
		v.mu.Unlock()
	}
	v.err = v.cmd.Wait()
	close(v.done)
}

// ErrLivelock is wrapped by WaitFor's error when the guest kernel says
// a CPU has been stuck in the kernel for LivelockAfter or more: under TCG
// on a starved host a vCPU can spend all its time in interrupts. The
// guest will not recover, so there is no point waiting out the context.
var ErrLivelock = errors.New("guest kernel livelocked")

// LivelockAfter is how long a soft lockup lasts before WaitFor gives up.
// Shorter ones happen on a loaded host and pass.
const LivelockAfter = 60 * time.Second

var reSoftLockup = regexp.MustCompile(`watchdog: BUG: soft lockup - CPU#\d+ stuck for (\d+)s!`)

// livelocked reports whether a console line says a CPU has been stuck
// for LivelockAfter or more.
func livelocked(line string) bool {
	m := reSoftLockup.FindStringSubmatch(line)
	if m == nil {
		return false
	}
	s, err := strconv.Atoi(m[1])
	return err == nil && time.Duration(s)*time.Second >= LivelockAfter
}

// WaitFor waits until a console line matches re, and returns it. It fails
// when ctx ends, QEMU exits or the guest kernel livelocks first
// (ErrLivelock); the error carries the console's tail.
func (v *VM) WaitFor(ctx context.Context, re *regexp.Regexp) (string, error) {
	for i := 0; ; {
		v.mu.Lock()
		for ; i < len(v.lines); i++ {
			if re.MatchString(v.lines[i]) {
				l := v.lines[i]
				v.mu.Unlock()
				return l, nil
			}
			if livelocked(v.lines[i]) {
				l := v.lines[i]
				v.mu.Unlock()
				return "", fmt.Errorf("waiting for %q: %w (%s); console tail:\n%s", re, ErrLivelock, l, v.Tail(40))
			}
		}
		seen := v.seen
		v.mu.Unlock()
		select {
		case <-seen:
		case <-v.done:
			if v.Count(re) > 0 {
				continue
			}
			return "", fmt.Errorf("qemu exited (%v) before %q; console tail:\n%s", v.err, re, v.Tail(40))
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %q: %w; console tail:\n%s", re, ctx.Err(), v.Tail(40))
		}
	}
}

// Count is how many console lines so far match re.
func (v *VM) Count(re *regexp.Regexp) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, l := range v.lines {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}

// Lines returns a copy of the console so far.
func (v *VM) Lines() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.lines...)
}

// Timed returns a copy of the console so far with each line's time of
// arrival, measured from QEMU's start.
func (v *VM) Timed() ([]string, []time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	at := make([]time.Duration, len(v.arrived))
	for i, t := range v.arrived {
		at[i] = t.Sub(v.started)
	}
	return append([]string(nil), v.lines...), at
}

// Tail returns the last n console lines.
func (v *VM) Tail(n int) string {
	l := v.Lines()
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// HMP sends one human monitor command, e.g. "sendkey ctrl-alt-delete".
func (v *VM) HMP(cmd string) error {
	if v.Monitor == "" {
		return errors.New("qemu: no monitor socket configured")
	}
	c, err := net.Dial("unix", v.Monitor)
	if err != nil {
		return fmt.Errorf("qemu monitor: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", cmd); err != nil {
		return fmt.Errorf("qemu monitor %q: %w", cmd, err)
	}
	// The monitor echoes the command once it has run it.
	buf := make([]byte, 4096)
	var seen strings.Builder
	for !strings.Contains(seen.String(), cmd) {
		n, err := c.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			return fmt.Errorf("qemu monitor %q: %w (got %q)", cmd, err, seen.String())
		}
	}
	return nil
}

// Wait waits until QEMU exits, or ctx ends.
func (v *VM) Wait(ctx context.Context) error {
	select {
	case <-v.done:
		return v.err
	case <-ctx.Done():
		return fmt.Errorf("qemu still running: %w; console tail:\n%s", ctx.Err(), v.Tail(40))
	}
}

// Stop kills QEMU and waits for it.
func (v *VM) Stop() {
	if v.cmd == nil || v.cmd.Process == nil {
		return
	}
	v.cmd.Process.Kill()
	select {
	case <-v.done:
	case <-time.After(10 * time.Second):
	}
}
