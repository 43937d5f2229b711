package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf16"

	"golang.org/x/sys/unix"

	"github.com/zeroboot/zeroboot/pkg/cgroup"
	"github.com/zeroboot/zeroboot/pkg/clock"
	"github.com/zeroboot/zeroboot/pkg/cmdline"
	"github.com/zeroboot/zeroboot/pkg/coldplug"
	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/mounts"
	"github.com/zeroboot/zeroboot/pkg/netconf"
	"github.com/zeroboot/zeroboot/pkg/netup"
	"github.com/zeroboot/zeroboot/pkg/ntp"
	"github.com/zeroboot/zeroboot/pkg/prove"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/supervise"
	"github.com/zeroboot/zeroboot/pkg/tpm"
	"github.com/zeroboot/zeroboot/pkg/trust"
)

func (n *node) mount(context.Context) error {
	// The reaper must exist before the first child (module loading, Core-0
	// and every orphan of the node are children of PID 1), and signals
	// must work even if the mounts fail.
	n.reaper = supervise.NewReaper(n.log)
	n.handleSignals()
	skipped, err := mounts.DefaultMounter().All(mounts.Early())
	if len(skipped) > 0 {
		n.log.Debug("optional mounts skipped", "mounts", strings.Join(skipped, " "))
	}
	if err != nil {
		// A kernel without a required filesystem stays without it, and
		// retrying would stack the mounts that did work.
		return permanent{fmt.Errorf("%w (see kernel-config/stateless-node.config)", err)}
	}
	if kmsg, kerr := console.OpenKmsg(); kerr == nil {
		h := console.NewHandler(n.out, kmsg, n.tl.Start(), n.level)
		// Leave lines to the kernel's echo only if it keeps them all.
		if console.KmsgUnlimited("/proc/sys/kernel/printk_devkmsg") {
			if lvl, err := console.KernelConsoleLevel("/proc/sys/kernel/printk"); err == nil {
				h.KernelEchoesBelow(lvl)
			}
		}
		n.logs.set(h)
	}
	// Only where efivarfs is mounted (Debian builds it as a module, which
	// nothing has loaded at this point).
	if stub, ok := efiStubInfo(stubInfoVar); ok {
		n.log.Info("booted from a unified kernel image", "stub", stub)
	}
	return nil
}

// stubInfoVar is the EFI variable systemd-stub sets when it boots a UKI.
const stubInfoVar = "/sys/firmware/efi/efivars/StubInfo-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

// efiStubInfo reads the stub's variable from efivarfs: 4 bytes of
// attributes, then the stub's name and version in UTF-16LE.
func efiStubInfo(path string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4 {
		return "", false
	}
	var u []uint16
	for i := 4; i+1 < len(b); i += 2 {
		c := uint16(b[i]) | uint16(b[i+1])<<8
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u)), true
}

func (n *node) cmdline(context.Context) error {
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read /proc/cmdline: %w", err)
	}
	n.rawCmd = strings.TrimSpace(string(raw))
	cfg, problems := cmdline.Parse(string(raw))
	var errs []string
	for _, p := range problems {
		if p.Severity == cmdline.Error {
			n.log.Error("kernel command line", "problem", p.String())
			errs = append(errs, p.String())
		} else {
			n.log.Warn("kernel command line", "problem", p.String())
		}
	}
	// /dev/console is the last console= only; the banner and the timeline
	// go to every console the operator named (VGA and serial alike).
	ws, cerrs := console.OpenDevices(console.Devices(cfg.Consoles))
	n.out.Add(ws...)
	for _, e := range cerrs {
		n.log.Warn("console not opened", "err", e)
	}
	if cfg.Debug {
		n.level.Set(-4) // slog.LevelDebug
	}
	n.cfg = cfg
	if len(errs) > 0 {
		return permanent{fmt.Errorf("kernel command line: %s", strings.Join(errs, "; "))}
	}
	return nil
}

func (n *node) modules(ctx context.Context) error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	kernel := unix.ByteSliceToString(uts.Release[:])
	f, err := os.Open(filepath.Join(modulesBase, kernel, "modules.alias"))
	if errors.Is(err, os.ErrNotExist) {
		// A kernel built with its drivers in (embedded in the operator's
		// own build) needs no modules; a wrong kernel/initramfs pair shows
		// up here and later as "no link".
		n.log.Warn(fmt.Sprintf("no modules for kernel %s in the initramfs; drivers must be built in", kernel))
		n.builtinDrivers = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("modules for kernel %s: %w", kernel, err)
	}
	aliases, err := coldplug.ParseAliases(f)
	f.Close()
	if err != nil {
		return err
	}
	cp := coldplug.Coldplug{Aliases: aliases, Load: coldplug.KmoduleLoader("/"), Log: n.log}
	res, err := cp.Run(ctx)
	if err != nil {
		return err
	}
	n.log.Info(fmt.Sprintf("modules: %d devices, loaded %s in %d rounds", res.Modaliases, strings.Join(res.Loaded, " "), res.Rounds))
	for m, e := range res.Failed {
		n.log.Warn("module failed to load", "module", m, "err", e)
	}
	return nil
}

// entropy waits for the kernel's random number generator. DHCP transaction
// IDs, TLS and everything in crypto/rand block until it is seeded; on a
// machine without a hardware RNG that can take minutes, so say why the boot
// stalls instead of hanging silently.
func (n *node) entropy(context.Context) error {
	buf := make([]byte, 1)
	if _, err := unix.Getrandom(buf, unix.GRND_NONBLOCK); err == nil {
		return nil
	}
	n.log.Warn("waiting for the kernel's random number generator to be seeded; a hardware RNG (RDRAND, virtio-rng, TPM) makes this instant")
	start := time.Now()
	if _, err := unix.Getrandom(buf, 0); err != nil {
		return fmt.Errorf("getrandom: %w", err)
	}
	n.log.Info("random number generator seeded", "waited", time.Since(start).Round(time.Millisecond))
	return nil
}

func (n *node) network(ctx context.Context) error {
	// The first link and family to reach a registry wins the default
	// route; a link into a dead network does not.
	cfg := netup.Config{Log: n.log, Net: n.cfg.Net, Probe: n.registryProbe()}
	// Without modules there is nothing to load: a kernel lacking 8021q
	// or bonding says so when the link is added.
	if !n.builtinDrivers {
		cfg.LoadModule = coldplug.KmoduleLoader("/")
	}
	res, err := netup.Up(ctx, cfg)
	if err != nil {
		return err
	}
	if len(n.cfg.Registries) == 0 && res.Registry != "" {
		urls, _ := cmdline.ParseRegistries(res.Registry) // the probe has checked them
		n.cfg.Registries = urls
		n.log.Info(fmt.Sprintf("registry from DHCP (%s on %s): %s", res.Source, res.Link, res.Registry))
	}
	n.net = networkChoice(res)
	if h := hostname(n.cfg.Net); h != "" {
		if err := unix.Sethostname([]byte(h)); err != nil {
			return fmt.Errorf("set host name %s from ip=: %w", h, err)
		}
		n.log.Info("host name " + h + " (from ip=)")
	}
	n.log.Info(fmt.Sprintf("network: %s on %s (%s %s) via %s in %s: %s", res.Addr.String(), res.Link, res.Family, res.Source,
		res.Router, res.Took.Round(time.Millisecond), res.Why))
	for _, o := range res.Others {
		n.log.Info("network: also " + o)
	}
	n.dhcpNTP = nil
	for _, ip := range res.NTP {
		n.dhcpNTP = append(n.dhcpNTP, net.JoinHostPort(ip.String(), "123"))
	}
	return nil
}

// hostname is the HOSTNAME field of the ip= entries (netconf refuses two
// different ones).
func hostname(c netconf.Config) string {
	for _, ip := range c.IPs {
		if ip.Hostname != "" {
			return ip.Hostname
		}
	}
	return ""
}

// networkChoice is what the status reports say of the network, each text
// clipped to the registry's limits: one long error from a rogue DHCP
// server on another link must not get every report refused.
func networkChoice(res *netup.Result) *registry.NetworkChoice {
	clip := func(s string) string { return console.Sanitize(s, registry.MaxNetworkText-len("...")) }
	c := &registry.NetworkChoice{
		Link: clip(res.Link), Family: res.Family.String(), Source: clip(res.Source), Addr: res.Addr.String(), Why: clip(res.Why),
	}
	if res.Router != nil {
		c.Router = res.Router.String()
	}
	for _, o := range res.Others[:min(len(res.Others), registry.MaxNetworkOthers)] {
		c.Others = append(c.Others, clip(o))
	}
	return c
}

// registryProbe reaches a registry of the command line; without one, a
// registry the source's own DHCP answer names (user class zeroboot): a
// URL from DHCP gets no more trust than one typed, only https, and the
// pinned CA decides. In rescue mode without a registry nothing is probed:
// the node only needs an address.
func (n *node) registryProbe() func(context.Context, *netup.Result) error {
	const timeout = 3 * time.Second
	if addrs := registryAddrs(n.cfg.Registries); len(addrs) > 0 {
		return netup.DialProbe(addrs, timeout)
	}
	if n.cfg.Rescue {
		return nil
	}
	return func(ctx context.Context, r *netup.Result) error {
		if r.Registry == "" {
			return errors.New("no registry: none on the command line (zeroboot.registry) and none in this DHCP answer (DHCPv4 option 67 or DHCPv6 option 59 for user class " + netup.UserClass + ")")
		}
		urls, problems := cmdline.ParseRegistries(r.Registry)
		if len(urls) == 0 {
			return fmt.Errorf("registry list from DHCP %q: %v", r.Registry, problems)
		}
		return netup.DialProbe(registryAddrs(urls), timeout)(ctx, r)
	}
}

// registryAddrs gives each registry's host:port for the network probe; the
// command line only admits https, so a URL without a port means 443.
func registryAddrs(urls []*url.URL) []string {
	addrs := make([]string, 0, len(urls))
	for _, u := range urls {
		port := u.Port()
		if port == "" {
			port = "443"
		}
		addrs = append(addrs, net.JoinHostPort(u.Hostname(), port))
	}
	return addrs
}

func (n *node) time(ctx context.Context) error {
	changed, err := n.clock.EnsureNotBefore()
	if err != nil {
		return err
	}
	if changed {
		n.log.Warn("clock was earlier than the image build time; set to build time", "now", n.clock.Now().UTC())
	}
	servers, from := n.cfg.NTP, "zeroboot.ntp"
	if len(servers) == 0 {
		servers, from = n.dhcpNTP, "DHCP"
	}
	if len(servers) == 0 {
		n.log.Info("ntp: no servers (zeroboot.ntp, DHCP); the registry's Date corrects the clock")
		return nil
	}
	// NTP never fails the step: it is unauthenticated, and the registry's
	// signed Date is the fallback.
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	res, err := ntp.Query(qctx, ntp.Config{Servers: servers, Log: n.log})
	if err != nil {
		n.log.Warn(fmt.Sprintf("ntp (from %s): clock not checked: %v", from, err))
		return nil
	}
	if _, err := n.clock.FromNTP(res); err != nil {
		n.log.Warn("ntp: " + err.Error())
	}
	return nil
}

// identity names the node: from the TPM's identity key where there is a
// TPM, else from DMI, else (for farms that allow it) an ephemeral ID. It
// then measures the trust root and command line, before anything fetched
// is used.
func (n *node) identity(context.Context) error {
	c := prove.Choose(func() (*prove.Prover, error) { return openProver(n.log) }, identity.Reader{}.Read)
	n.ident, n.kind, n.prover, n.tpmErr = c.Ident, c.Kind, c.TPM, c.TPMErr
	if c.TPM != nil {
		n.log.Info(c.Says)
		n.measured = c.TPM.Log
	} else {
		n.log.Warn(c.Says)
		n.measured = &measure.Measurer{}
	}
	return n.measureBoot()
}

// openProver opens the TPM, if any, for the boot's identity and
// measurements.
func openProver(log *slog.Logger) (*prove.Prover, error) {
	t, err := tpm.Open("")
	if err != nil {
		return nil, err
	}
	return &prove.Prover{
		TPM:         t,
		Log:         &measure.Measurer{Extend: t.Extend},
		FirmwareLog: func() ([]byte, error) { return tpm.FirmwareLog("") },
		Report:      func(msg string) { log.Info(msg) },
	}, nil
}

// measureBoot records what the node trusts and how it was told to boot. A
// failing extend fails the step: a TPM node whose log does not match its
// PCR would not be attested, and it says so here rather than later.
func (n *node) measureBoot() error {
	root, err := os.ReadFile(rootPath)
	if err != nil {
		return permanent{fmt.Errorf("TUF root: %w", err)}
	}
	if err := n.measured.Measure(measure.TypeTrustRoot, measure.TrustRootValue(root)); err != nil {
		return err
	}
	return n.measured.Measure(measure.TypeCmdline, n.rawCmd)
}

// rescueIfAsked stops here when the command line says zeroboot.rescue: the
// node is up on the network with its identity shown, and fetches nothing.
func (n *node) rescueIfAsked() {
	if !n.cfg.Rescue {
		return
	}
	n.setFailed("rescue requested on the kernel command line (zeroboot.rescue)")
	n.log.Warn("zeroboot.rescue: stopping before the registry; nothing is fetched or run. Remove the parameter and reboot to boot normally.")
	n.halt()
}

func (n *node) registry(ctx context.Context) error {
	// Nothing of an earlier attempt's release may be reported or used.
	n.rel = nil
	if err := n.connect(); err != nil {
		return permanent{err}
	}
	tn, rootVersion, err := loadTrust()
	if err != nil {
		return permanent{err}
	}
	req := registry.BootRequest{
		Protocol:       registry.Protocol,
		NodeID:         n.ident.NodeID,
		Farm:           n.cfg.Farm,
		Profile:        n.ident.Profile,
		Agent:          "zeroboot-init",
		RootVersion:    rootVersion,
		Channel:        n.cfg.Channel,
		IdentityKind:   n.kind,
		IdentitySource: n.ident.Source,
		TPMError:       console.Sanitize(n.tpmErr, registry.MaxTPMErrText),
	}
	var resp *registry.BootResponse
	if n.prover != nil {
		resp, err = n.prover.Boot(ctx, n.client, req)
		n.log.Info(fmt.Sprintf("tpm: %d quotes, %d ms in the TPM", n.prover.Quotes, n.prover.TPMTime.Milliseconds()))
	} else {
		resp, err = n.client.Boot(ctx, req, nil)
	}
	if err != nil {
		return err
	}
	// The token of this answer speaks for this boot from now on, also when
	// the release it came with is refused below.
	n.boot = resp
	channel, err := tn.Channels.Pick(n.cfg.Channel, resp.Channel)
	if err != nil {
		return fmt.Errorf("release from registry refused: %w", err)
	}
	v, err := n.verifyAt(tn, channel, resp)
	if err != nil {
		return fmt.Errorf("release from registry refused: %w", err)
	}
	rel := v.Release
	if v.RootsWalked > 0 {
		n.log.Info(fmt.Sprintf("trust: root rotated from version %d to %d (signed by the root keys)", rootVersion, v.RootVersion))
	}
	if len(resp.Stores) == 0 {
		return errors.New("registry named no store URLs")
	}
	if err := n.measured.Measure(measure.TypeRelease, measure.ReleaseValue(rel.Channel, rel.Version)); err != nil {
		return err
	}
	n.rel = rel
	n.log.Info(fmt.Sprintf("release: %s v%d, %d components, expires %s; root v%d; freshness until %s", rel.Channel, rel.Version, len(rel.Components),
		rel.Expires.UTC().Format(time.RFC3339), v.RootVersion, v.Freshness.UTC().Format(time.RFC3339)))
	n.takeFallback(tn, channel, resp.Fallback)
	n.report("booting", "")
	return nil
}

// connect builds the registry client once; its TLS trusts only the CA in
// the initramfs and judges certificates by the corrected clock.
func (n *node) connect() error {
	if n.client != nil {
		return nil
	}
	ca, err := os.ReadFile(caPath)
	if err != nil {
		return fmt.Errorf("registry CA: %w", err)
	}
	hc, err := registry.NewHTTPClient(ca, n.clock.Trusted)
	if err != nil {
		return err
	}
	urls := make([]string, len(n.cfg.Registries))
	for i, u := range n.cfg.Registries {
		urls[i] = u.String()
	}
	n.client = &registry.Client{
		URLs:    urls,
		HTTP:    hc,
		Backoff: n.retry,
		Report: func(attempt int, url string, err error, wait time.Duration) {
			again := fmt.Sprintf("(attempt %d); retrying in %s", attempt, wait.Round(100*time.Millisecond))
			var se *registry.StatusError
			if errors.As(err, &se) {
				// It answered: say what it said, first, not as a detail.
				n.log.Warn(fmt.Sprintf("registry %s refused the boot (HTTP %d): %s %s", url, se.Code, se.Msg, again))
				return
			}
			n.log.Warn(fmt.Sprintf("registry %s unreachable %s", url, again), "err", err)
		},
	}
	return nil
}

// verifyAt verifies the answer at the registry's Date when that is ahead
// of the clock, and moves the clock there only if the registry's signed
// freshness holds at that time. A replica that lies about the time without
// the online key can then not move the clock at all (its timestamps have
// expired by the time it claims), so failing over to an honest registry
// keeps working; pkg/clock bounds the rest (the certificate chain, a year
// past the build time).
func (n *node) verifyAt(tn *trust.Node, channel string, resp *registry.BootResponse) (*trust.Verified, error) {
	tn.Now = n.clock.Trusted()
	ahead := resp.Date.After(tn.Now.Add(clock.MaxSkew))
	if !ahead {
		return tn.Verify(channel, resp.TUF)
	}
	now := tn.Now
	tn.Now = resp.Date
	v, err := tn.Verify(channel, resp.TUF)
	if err != nil {
		n.log.Warn(fmt.Sprintf("clock not set from registry %s: its Date %s is %s ahead of the clock and its own signed metadata does not hold then",
			resp.Registry, resp.Date.UTC().Format(time.RFC3339), resp.Date.Sub(now).Round(time.Second)))
		return nil, err
	}
	source := "Date header of registry " + resp.Registry + ", within its signed freshness (until " + v.Freshness.UTC().Format(time.RFC3339) + ")"
	if _, err := n.clock.FromServer(source, resp.Date, resp.ChainEnd); err != nil {
		n.log.Warn("setting the clock from the registry", "err", err)
	}
	return v, nil
}

// loadTrust reads the root and channels built into the initramfs.
func loadTrust() (*trust.Node, int64, error) {
	root, err := os.ReadFile(rootPath)
	if err != nil {
		return nil, 0, fmt.Errorf("TUF root: %w", err)
	}
	final, err := trust.Chain([][]byte{root}, time.Time{})
	if err != nil {
		return nil, 0, fmt.Errorf("TUF root %s: %w", rootPath, err)
	}
	cb, err := os.ReadFile(channelsPath)
	if err != nil {
		return nil, 0, fmt.Errorf("channels: %w", err)
	}
	chans, err := trust.ParseChannels(cb)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", channelsPath, err)
	}
	return &trust.Node{Root: root, Channels: chans}, final.Signed.Version, nil
}

// logMemory returns the boot's buffers to the kernel and shows what PID 1
// keeps for the life of the node.
func (n *node) logMemory() {
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n.log.Info("PID 1 memory after hand-off: " + strings.Join(strings.Fields(l)[1:], " ") + " resident")
		}
	}
}

// supervise runs Core-0 for the life of the node. Run ends only when a
// shutdown stopped Core-0; if the node is still up after the grace period,
// the reboot failed, and Core-0 is supervised again rather than left dead.
func (n *node) supervise(ctx context.Context) {
	first, starts := true, 0 // over every supervisor of this boot
	cg := n.core0Cgroup()
	for {
		sup := n.core0Supervisor(&first, &starts)
		if cg != nil {
			sup.Cgroup = cg
		}
		n.sup.Store(sup)
		run, stop := context.WithCancel(ctx)
		late := n.watchReady(run, stop)
		err := sup.Run(run)
		stop()
		if <-late {
			// The release did not get ready in time: its Core-0 and
			// all it started are gone; the fallback's comes next.
			n.bootFallback()
			first, starts = true, 0
			continue
		}
		if errors.Is(err, supervise.ErrNoRestart) {
			// Core-0 said a restart cannot help: stay up, failed.
			reason := fmt.Sprintf("core0 not restarted: %v", err)
			n.setFailed(reason)
			n.report("failed", reason)
			n.halt()
			return
		}
		n.log.Error("core0 supervision ended", "err", err)
		n.sleep(shutdownGrace)
		n.log.Warn("still running after a shutdown request; supervising core0 again")
	}
}

// core0Cgroup is the cgroup that holds Core-0 and everything it starts,
// so that a Core-0 that dies leaves no service behind for the next one to
// start twice. Without it (a kernel without cgroup v2 or cgroup.kill) a
// restart ends Core-0's process group only, and the console says so.
func (n *node) core0Cgroup() *cgroup.Group {
	g, err := cgroup.Create(cgroupRoot, "core0")
	if err != nil {
		n.log.Warn("core0 not in a cgroup: services it leaves running when it dies are not ended before its restart", "err", err)
		return nil
	}
	return g
}

// shutdownGrace is how long a stopped supervisor waits for the reboot.
const shutdownGrace = 30 * time.Second

func (n *node) core0Supervisor(first *bool, starts *int) *supervise.Supervisor {
	var sup *supervise.Supervisor
	sup = &supervise.Supervisor{
		Name: "core0",
		Command: func() *exec.Cmd {
			cmd := n.core0Command(*starts)
			*starts++
			return cmd
		},
		Reaper: n.reaper,
		Log:    n.log,
		// The hook for reporting the supervision to the registry.
		OnState: func(st supervise.Status) {
			n.log.Debug("core0 supervision", "state", st.State, "restarts", st.Restarts, "last_exit", st.LastExit)
		},
		OnStart: func(pid int) {
			if *first {
				*first = false
				n.tl.Begin("core0-exec")(nil)
				n.log.Info(fmt.Sprintf("core0 started (pid %d) %.0f ms after PID 1 started", pid, float64(time.Since(n.tl.Start()).Microseconds())/1000))
				n.logMemory()
				n.hangAt("supervise")
			}
		},
		OnExit: func(st supervise.ExitStatus, ran, next time.Duration) {
			msg := fmt.Sprintf("core0 exited: %s after %s; restarting in %s", st, ran.Round(time.Millisecond), next.Round(time.Millisecond))
			if s := sup.Status(); s.State == supervise.StateCrashLooping {
				// Said first, so the registry's reason reads as a state.
				msg = fmt.Sprintf("core0 crash-looping (%d restarts): %s", s.Restarts, msg)
			}
			n.log.Warn(msg)
			// The registry sees a crash loop as failed until Core-0
			// reports ready again; never hold the restart for it.
			go n.report("failed", msg)
		},
		OnStop: func(st supervise.ExitStatus, ran time.Duration) {
			n.log.Info(fmt.Sprintf("core0 stopped: %s after %s", st, ran.Round(time.Millisecond)))
		},
	}
	return sup
}
