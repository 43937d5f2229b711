// Package netup brings a node's network up at boot, both families: loopback,
// renamed links (ifname=), bonds and VLANs built before first contact, then
// on every link to configure, in parallel, each source the configuration
// names: DHCPv4, IPv6 from router advertisements (SLAAC, with DHCPv6 when
// the RA asks for it), DHCPv6 alone, or static addresses. Each source that
// configures its family is probed (for PID 1: does it reach a registry?) and
// the first (link, family) that passes wins the default route; the others
// stay configured behind it. Every address is kept alive (renewals, RAs) as
// long as the context Up was given, so Core-0 inherits a working network.
// See docs/network.md.
package netup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"github.com/zeroboot/zeroboot/pkg/netconf"
	"github.com/zeroboot/zeroboot/pkg/panics"
	"golang.org/x/sys/unix"
)

// Config says how to bring the network up. The zero value is usable: every
// Ethernet link gets DHCPv4 and IPv6 autoconfiguration.
type Config struct {
	Log *slog.Logger
	// Net is the configuration from the command line (ip=, vlan=, bond=,
	// ifname=, nameserver=); the zero value means Auto on every link.
	Net netconf.Config
	// LinkTimeout bounds the wait for carrier on each link (default 10 s).
	LinkTimeout time.Duration
	// DHCPTimeout bounds one DHCPv4 or DHCPv6 attempt, and one wait for a
	// router advertisement (default 5 s). Packets are resent within it.
	DHCPTimeout time.Duration
	// Retries is the number of further attempts after a failed one on each
	// link: 0 means the default (2), negative means none.
	Retries int
	// DADTimeout bounds the wait for a SLAAC address once its prefix is
	// advertised (default 3 s). With optimistic DAD, which netup turns on,
	// the address is usable at once; the wait covers kernels without it.
	DADTimeout time.Duration
	// DisableRapidCommit leaves out the Rapid Commit option (RFC 4039,
	// RFC 8415 18.2.1) in DHCPv4 DISCOVER and DHCPv6 SOLICIT.
	DisableRapidCommit bool
	// ResolvConf is where DNS servers are written (default /etc/resolv.conf).
	ResolvConf string
	// ProcSys is the root of the sysctl tree (default /proc/sys) and Sysfs
	// that of sysfs (default /sys); bond options are written there.
	ProcSys, Sysfs string
	// LoadModule loads a kernel module by name (8021q, bonding) before a
	// VLAN or bond is built; nil means the kernel must have them built in.
	LoadModule func(name string) error
	// Filter selects links among the Ethernet ones by name; nil keeps all.
	Filter func(name string) bool
	// Handle is the netlink handle to configure through; nil means the
	// namespace of the calling process.
	Handle *netlink.Handle
	// Enter runs fn with the calling OS thread in the namespace being
	// configured: sockets and /proc/sys files belong to the namespace of
	// the thread that opens them. nil runs fn as it is (PID 1's case).
	Enter func(fn func() error) error
	// Probe, when set, decides which configuration wins: each applied
	// source (a link and a family) is probed and Up returns the first one
	// whose probe succeeds. Until then its default route has a metric worse
	// than any winner's (1000+), and one that fails its probe keeps it, so
	// a link that cannot reach what the node needs never captures its
	// traffic. The probe must prove the path of r.Link in r.Family itself
	// (DialProbe binds to the link), honour ctx, and be safe to call from
	// several goroutines. nil: the first applied source wins.
	Probe func(ctx context.Context, r *Result) error
	// ProbeTimeout bounds one call of Probe (default 5 s).
	ProbeTimeout time.Duration
	// ProbeRetries is the number of further probes after a failed one on
	// each link: 0 means the default (2), negative means none.
	ProbeRetries int

	// renewAfter overrides the renewal time of a lease (tests).
	renewAfter func(*lease) time.Duration
}

// Family is an address family.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string { return fmt.Sprintf("IPv%d", int(f)) }

func (f Family) netlink() int {
	if f == IPv6 {
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_V4
}

// Result describes the configuration that won: the first applied, or with
// Config.Probe the first that passed the probe.
type Result struct {
	Link   string
	Family Family
	Source string // dhcp4, slaac, dhcp6, slaac+dhcp6, static
	Addr   net.IPNet
	Router net.IP // nil when there is none
	DNS    []net.IP
	NTP    []net.IP // NTP servers from DHCPv4 option 42 or DHCPv6 option 56
	// Registry is the registry list a DHCP server gave a node of user
	// class UserClass (DHCPv4 option 67, DHCPv6 option 59), as text: the
	// caller parses it with the command line's grammar.
	Registry    string
	Server      net.IP        // DHCP server identifier (DHCPv4), RA or DHCPv6 source
	Lease       time.Duration // 0 means infinite or not leased
	RapidCommit bool          // the lease came from a two-message exchange
	Took        time.Duration // since Up was called
	// Why says why this one won, and Others what the other sources had
	// come to by then (failed, or still trying): for the log and the boot
	// report.
	Why    string
	Others []string
}

// UserClass is what a node says it is in DHCPv4 option 77 and DHCPv6
// option 15, so a server can give zeroboot nodes their registry.
const UserClass = "zeroboot"

// maxRegistryText bounds the registry list a DHCP answer may carry.
const maxRegistryText = 1024

// registryText keeps a registry list from DHCP only when it is printable
// ASCII and not too long: it is parsed, logged and shown on the console.
func registryText(s string) string {
	s = strings.TrimRight(s, "\x00")
	if len(s) > maxRegistryText {
		return ""
	}
	for _, c := range []byte(s) {
		if c < 0x21 || c > 0x7e {
			return ""
		}
	}
	return s
}

// LinkError says why one source on one link gave nothing usable.
type LinkError struct {
	Link   string
	Source string // the method: dhcp4, auto6, dhcp6, static; "" for the link itself
	Err    error
}

func (e *LinkError) Error() string {
	if e.Source == "" {
		return e.Link + ": " + e.Err.Error()
	}
	return e.Link + " " + e.Source + ": " + e.Err.Error()
}
func (e *LinkError) Unwrap() error { return e.Err }

// ErrNoCarrier is wrapped by a link's error when it never had carrier.
var ErrNoCarrier = errors.New("no carrier")

// ErrProbeFailed is wrapped by a link's error when it was configured but
// failed Config.Probe on every attempt.
var ErrProbeFailed = errors.New("probe failed")

const (
	defaultLinkTimeout = 10 * time.Second
	defaultDHCPTimeout = 5 * time.Second
	defaultDADTimeout  = 3 * time.Second
	defaultRetries     = 2
	defaultResolvConf  = "/etc/resolv.conf"
	// baseMetric is the default route metric of the first source
	// configured (with a probe: the first that passed it); later ones get
	// baseMetric+n. Each family has its own routing table and its own count.
	baseMetric = 100
	// unprovenMetric is where a source waiting for or failing its probe
	// starts: worse than any winner as long as fewer than 900 links pass.
	unprovenMetric      = 1000
	defaultProbeTimeout = 5 * time.Second
	defaultProbeRetries = 2
	carrierPoll         = 10 * time.Millisecond
	packetResend        = time.Second
)

func (c Config) withDefaults() Config {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.LinkTimeout <= 0 {
		c.LinkTimeout = defaultLinkTimeout
	}
	if c.DHCPTimeout <= 0 {
		c.DHCPTimeout = defaultDHCPTimeout
	}
	if c.DADTimeout <= 0 {
		c.DADTimeout = defaultDADTimeout
	}
	c.Retries = orDefault(c.Retries, defaultRetries)
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = defaultProbeTimeout
	}
	c.ProbeRetries = orDefault(c.ProbeRetries, defaultProbeRetries)
	if c.ResolvConf == "" {
		c.ResolvConf = defaultResolvConf
	}
	if c.ProcSys == "" {
		c.ProcSys = "/proc/sys"
	}
	if c.Sysfs == "" {
		c.Sysfs = "/sys"
	}
	if c.Handle == nil {
		c.Handle = &netlink.Handle{} // the zero handle works in the current namespace
	}
	if c.Enter == nil {
		c.Enter = func(fn func() error) error { return fn() }
	}
	return c
}

// orDefault reads a retry count: 0 means def, negative means none.
func orDefault(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// Up brings lo and the configured links up and returns once the first
// source is applied, or with Config.Probe once the first applied source
// passes the probe. The other sources keep trying, and every address is
// kept (DHCP renewals, router advertisements) in the background until ctx
// ends: pass a context that lives as long as the node should keep its
// addresses. When Up fails it stops its background work (leases already
// applied stay until they expire), so it may simply be called again:
// addresses and routes are replaced, not added twice. After a success,
// cancel the previous ctx before calling Up again, or two loops renew the
// same lease.
func Up(ctx context.Context, cfg Config) (*Result, error) {
	c := cfg.withDefaults()
	start := time.Now()
	if err := loopbackUp(c.Handle); err != nil {
		return nil, err
	}
	if err := c.buildLinks(); err != nil {
		return nil, err
	}
	plans, err := c.plan()
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	st := &state{cfg: c, start: start, metrics: map[routeKey]int{}, proven: map[Family]int{}, unproven: map[Family]int{}, stop: stop}
	var sources []*source
	for _, p := range plans {
		lk := st.newLink(p)
		for _, m := range p.methods {
			sources = append(sources, &source{link: lk, method: m})
		}
	}
	outcomes := make(chan outcome, len(sources))
	var running sync.WaitGroup
	for _, src := range sources {
		running.Add(1)
		go func() {
			defer running.Done()
			// Each source reports once: a panic after its outcome (while
			// renewing) must not count as another's.
			var once sync.Once
			reported := false
			report := func(o outcome) {
				once.Do(func() { reported = true; src.setStatus(o); outcomes <- o })
			}
			// A panic on hostile DHCP or RA input fails this source, not
			// PID 1. After its outcome (while keeping the address alive)
			// it can only be logged: the address now lapses.
			err := panics.Catch(func() error { st.run(ctx, src, report); return nil })()
			if err != nil && reported {
				st.cfg.Log.Error("address no longer kept alive: its source panicked", "link", src.link.name, "source", src.method, "err", err)
			} else if err != nil {
				report(outcome{err: src.fail(err)})
			}
		}()
	}
	var failed []*LinkError
	for range sources {
		o := <-outcomes
		if o.err == nil {
			o.res.Others = others(sources, o.res)
			return o.res, nil
		}
		failed = append(failed, o.err)
	}
	// Sources that failed their probe are still being renewed: stop them,
	// and wait, or the next call would race a renewal on the same links.
	st.stop()
	running.Wait()
	return nil, upError(failed)
}

// others describes every source but the winner, for the boot report.
func others(sources []*source, won *Result) []string {
	var out []string
	for _, s := range sources {
		if s.link.name == won.Link && s.method.family(s.link.ip) == won.Family {
			continue
		}
		out = append(out, s.status())
	}
	return out
}

func loopbackUp(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find link lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set link lo up: %w", err)
	}
	return nil
}

type outcome struct {
	res *Result
	err *LinkError
}

// state is shared by the goroutines of one Up call.
type state struct {
	cfg   Config
	start time.Time

	stop context.CancelFunc // ends every source's goroutine

	mu       sync.Mutex
	metrics  map[routeKey]int
	proven   map[Family]int // sources given a metric from baseMetric
	unproven map[Family]int // sources given a metric from unprovenMetric
	dns      []linkDNS      // in order of first configuration
}

// routeKey names one source's default route: a family on a link.
type routeKey struct {
	family Family
	index  int
}

type linkDNS struct {
	key     routeKey
	servers []net.IP
	search  []string
}

// waitCarrier polls rather than subscribing: it is simpler, the same in
// every namespace, and 10 ms is well below a link's negotiation time.
func waitCarrier(ctx context.Context, h *netlink.Handle, index int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		l, err := h.LinkByIndex(index)
		if err != nil {
			return fmt.Errorf("read link state: %w", err)
		}
		if canTransmit(h, l) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v (%s)", ErrNoCarrier, timeout, linkState(l.Attrs()))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for carrier (%s): %w", linkState(l.Attrs()), ctx.Err())
		case <-time.After(carrierPoll):
		}
	}
}

// canTransmit says whether a frame sent now leaves the link. Operstate up
// says so, but the kernel sets it from its linkwatch work, which runs at
// most once a second for ordinary events: waiting for it cost most of a
// second per boot. Carrier plus a real queueing discipline says the same
// earlier: until the kernel activates the device (when it is up with
// carrier) its qdisc is "noop", which drops every frame, so a DHCP
// DISCOVER sent then would be lost and cost a resend.
func canTransmit(h *netlink.Handle, l netlink.Link) bool {
	a := l.Attrs()
	if a.OperState == netlink.OperUp {
		return true
	}
	if a.Flags&net.FlagUp == 0 || a.RawFlags&unix.IFF_LOWER_UP == 0 {
		return false
	}
	qs, err := h.QdiscList(l)
	if err != nil {
		return false
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_ROOT {
			return q.Type() != "noop"
		}
	}
	return false
}

func linkState(a *netlink.LinkAttrs) string {
	carrier := "off"
	if a.RawFlags&unix.IFF_LOWER_UP != 0 {
		carrier = "on"
	}
	admin := "down"
	if a.Flags&net.FlagUp != 0 {
		admin = "up"
	}
	return fmt.Sprintf("admin %s, operstate %s, carrier %s", admin, a.OperState, carrier)
}

// upError reports every source's reason, and says first whether no link
// had carrier at all, which points at cabling or drivers rather than DHCP.
func upError(failed []*LinkError) error {
	errs := make([]error, len(failed))
	msgs := make([]string, 0, len(failed))
	noCarrier := true
	for i, f := range failed {
		errs[i] = f
		if m := f.Error(); !slices.Contains(msgs, m) {
			msgs = append(msgs, m)
		}
		if !errors.Is(f, ErrNoCarrier) {
			noCarrier = false
		}
	}
	what := "no address on any link"
	switch {
	case noCarrier:
		what = "no link with carrier"
	case slices.ContainsFunc(errs, func(e error) bool { return errors.Is(e, ErrProbeFailed) }):
		what = "no link passed the probe"
	}
	return &upErr{msg: what + ": " + strings.Join(msgs, "; "), errs: errs}
}

type upErr struct {
	msg  string
	errs []error
}

func (e *upErr) Error() string   { return e.msg }
func (e *upErr) Unwrap() []error { return e.errs }

// defaultSocket opens DHCPv4's raw socket on a link.
func defaultSocket(link string) (net.PacketConn, error) {
	return nclient4.NewRawUDPConn(link, nclient4.ClientPort)
}
