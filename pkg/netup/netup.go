// Package netup brings a node's network up at boot: loopback and every
// Ethernet link via netlink, DHCPv4 on each link with carrier in parallel,
// and the first lease applied (address, default route, resolv.conf) ends the
// wait; with Config.Probe, the first lease whose link passes the probe (for
// PID 1: reaches a registry) ends it. Links that answer later are configured
// in the background with a higher route metric, so the chosen link stays the
// preferred one.
//
// Room is left for IPv6 (SLAAC/DHCPv6), static ip=, VLANs and NIC selection:
// links are chosen by Config.Filter, and a lease is applied by one function
// that a static configuration can reuse. See docs/network.md.
package netup

import (
	"github.com/zeroboot/zeroboot/pkg/panics"

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
	"golang.org/x/sys/unix"
)

// Config says how to bring the network up. The zero value is usable.
type Config struct {
	Log *slog.Logger
	// LinkTimeout bounds the wait for carrier on each link (default 10 s).
	LinkTimeout time.Duration
	// DHCPTimeout bounds one DHCP attempt (DISCOVER to ACK) on a link
	// (default 5 s). Packets are retransmitted within it.
	DHCPTimeout time.Duration
	// Retries is the number of further attempts after a failed one on each
	// link: 0 means the default (2), negative means none.
	Retries int
	// DisableRapidCommit leaves out the Rapid Commit option (RFC 4039).
	// With it (the default) a server that supports it answers DISCOVER with
	// an ACK directly, saving one round trip; others answer as usual.
	DisableRapidCommit bool
	// ResolvConf is where DNS servers are written (default /etc/resolv.conf).
	ResolvConf string
	// Filter selects links among the Ethernet ones by name; nil keeps all.
	Filter func(name string) bool
	// Handle is the netlink handle to configure through; nil means the
	// namespace of the calling process.
	Handle *netlink.Handle
	// Socket opens the raw DHCP socket on a link. nil means
	// nclient4.NewRawUDPConn, which creates the socket in the network
	// namespace of the calling OS thread: a caller configuring another
	// namespace must create it there (see the tests).
	Socket func(link string) (net.PacketConn, error)
	// Probe, when set, decides which lease wins: each applied lease is
	// probed and Up returns the first one whose probe succeeds. Until then a
	// lease's default route has a metric worse than any winner's (1000+),
	// and a lease that fails its probe keeps it, so a link that cannot
	// reach what the node needs never captures its traffic. The probe must
	// prove the path of r.Link itself (DialProbe binds to the link), honour
	// ctx, and be safe to call from several goroutines. nil: the first
	// applied lease wins.
	Probe func(ctx context.Context, r *Result) error
	// ProbeTimeout bounds one call of Probe (default 5 s).
	ProbeTimeout time.Duration
	// ProbeRetries is the number of further probes after a failed one on
	// each link: 0 means the default (2), negative means none.
	ProbeRetries int

	// renewAfter overrides the renewal time of a lease (tests).
	renewAfter func(*lease) time.Duration
}

// Result describes the lease that won: the first applied, or with
// Config.Probe the first that passed the probe.
type Result struct {
	Link        string
	Addr        net.IPNet
	Router      net.IP // nil when the server gave none
	DNS         []net.IP
	Server      net.IP        // DHCP server identifier
	Lease       time.Duration // 0 means infinite
	RapidCommit bool          // the lease came from a two-message exchange
	Took        time.Duration // since Up was called
}

// LinkError says why one link gave no lease.
type LinkError struct {
	Link string
	Err  error
}

func (e *LinkError) Error() string { return e.Link + ": " + e.Err.Error() }
func (e *LinkError) Unwrap() error { return e.Err }

// ErrNoCarrier is wrapped by a link's error when it never had carrier.
var ErrNoCarrier = errors.New("no carrier")

// ErrProbeFailed is wrapped by a link's error when it got a lease but
// failed Config.Probe on every attempt.
var ErrProbeFailed = errors.New("probe failed")

const (
	defaultLinkTimeout = 10 * time.Second
	defaultDHCPTimeout = 5 * time.Second
	defaultRetries     = 2
	defaultResolvConf  = "/etc/resolv.conf"
	// baseMetric is the default route metric of the first link configured
	// (with a probe: the first that passed it); later links get
	// baseMetric+n.
	baseMetric = 100
	// unprovenMetric is where a link waiting for or failing its probe
	// starts: worse than any winner as long as fewer than 900 links pass.
	unprovenMetric      = 1000
	defaultProbeTimeout = 5 * time.Second
	defaultProbeRetries = 2
	carrierPoll         = 50 * time.Millisecond
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
	switch {
	case c.Retries == 0:
		c.Retries = defaultRetries
	case c.Retries < 0:
		c.Retries = 0
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = defaultProbeTimeout
	}
	switch {
	case c.ProbeRetries == 0:
		c.ProbeRetries = defaultProbeRetries
	case c.ProbeRetries < 0:
		c.ProbeRetries = 0
	}
	if c.ResolvConf == "" {
		c.ResolvConf = defaultResolvConf
	}
	if c.Handle == nil {
		c.Handle = &netlink.Handle{} // the zero handle works in the current namespace
	}
	if c.Socket == nil {
		c.Socket = func(link string) (net.PacketConn, error) {
			return nclient4.NewRawUDPConn(link, nclient4.ClientPort)
		}
	}
	return c
}

// Up brings lo and the selected Ethernet links up and returns once the first
// DHCPv4 lease is applied, or with Config.Probe once the first applied lease
// passes the probe. The other links keep trying, and every applied lease is
// renewed, in the background until ctx ends: pass a context that lives as
// long as the node should keep its addresses. When Up fails it stops its
// background work (leases already applied stay until they expire), so it
// may simply be called again: addresses and routes are replaced, not added
// twice. After a success, cancel the previous ctx before calling Up again,
// or two loops renew the same lease.
func Up(ctx context.Context, cfg Config) (*Result, error) {
	c := cfg.withDefaults()
	start := time.Now()
	if err := loopbackUp(c.Handle); err != nil {
		return nil, err
	}
	links, err := selectLinks(c.Handle, c.Filter)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	st := &state{cfg: c, start: start, metrics: map[int]int{}, stop: stop}
	outcomes := make(chan outcome, len(links))
	var running sync.WaitGroup
	for _, l := range links {
		running.Add(1)
		go func() {
			defer running.Done()
			// Each link reports once: a panic after its outcome (while
			// renewing) must not count as another link's.
			var once sync.Once
			report := func(o outcome) { once.Do(func() { outcomes <- o }) }
			// A panic on hostile DHCP input fails this link, not PID 1.
			err := panics.Catch(func() error { st.runLink(ctx, l, report); return nil })()
			if err != nil {
				report(outcome{err: &LinkError{Link: l.Attrs().Name, Err: err}})
			}
		}()
	}
	var failed []*LinkError
	for range links {
		o := <-outcomes
		if o.err == nil {
			return o.res, nil
		}
		failed = append(failed, o.err)
	}
	// Leases that failed their probe are still being renewed: stop them,
	// and wait, or the next call would race a renewal on the same links.
	st.stop()
	running.Wait()
	return nil, upError(failed)
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

// selectLinks returns the Ethernet links to configure, in ifindex order.
func selectLinks(h *netlink.Handle, filter func(string) bool) ([]netlink.Link, error) {
	all, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var keep []netlink.Link
	var seen []string
	for _, l := range all {
		a := l.Attrs()
		seen = append(seen, a.Name+"("+l.Type()+")")
		if isEthernet(l) && (filter == nil || filter(a.Name)) {
			keep = append(keep, l)
		}
	}
	if len(keep) == 0 {
		return nil, fmt.Errorf("no Ethernet link to configure among %s", strings.Join(seen, ", "))
	}
	return keep, nil
}

// isEthernet keeps physical NICs and veths with a MAC address. Bridges,
// bonds, VLANs, tunnels and links enslaved to a master are left alone: a
// later configuration step that builds them will select them explicitly.
func isEthernet(l netlink.Link) bool {
	a := l.Attrs()
	switch l.Type() {
	case "device", "veth":
	default:
		return false
	}
	return a.Flags&net.FlagLoopback == 0 &&
		a.EncapType == "ether" &&
		len(a.HardwareAddr) == 6 &&
		a.MasterIndex == 0
}

type outcome struct {
	res *Result
	err *LinkError
}

// state is shared by the goroutines of one Up call.
type state struct {
	cfg   Config
	start time.Time

	stop context.CancelFunc // ends every link's goroutine

	mu       sync.Mutex
	metrics  map[int]int // ifindex -> route metric
	proven   int         // links given a metric from baseMetric
	unproven int         // links given a metric from unprovenMetric
	dns      []linkDNS   // in order of first lease
}

type linkDNS struct {
	index   int
	servers []net.IP
	search  []string
}

// runLink takes one link from down to configured (and probed, if asked),
// reports the outcome once, then keeps the lease renewed until ctx ends.
func (s *state) runLink(ctx context.Context, l netlink.Link, report func(outcome)) {
	name := l.Attrs().Name
	fail := func(err error) {
		s.cfg.Log.Warn("link not configured", "link", name, "err", err)
		report(outcome{err: &LinkError{Link: name, Err: err}})
	}
	if err := s.cfg.Handle.LinkSetUp(l); err != nil {
		fail(fmt.Errorf("set up: %w", err))
		return
	}
	if err := waitCarrier(ctx, s.cfg.Handle, l.Attrs().Index, s.cfg.LinkTimeout); err != nil {
		fail(err)
		return
	}
	s.cfg.Log.Debug("carrier", "link", name, "after", time.Since(s.start))
	d, err := s.newDHCP(name, l.Attrs().HardwareAddr)
	if err != nil {
		fail(err)
		return
	}
	defer d.close()
	lease, err := d.obtain(ctx)
	if err != nil {
		fail(err)
		return
	}
	metric, err := s.apply(l, lease)
	if err != nil {
		fail(err)
		return
	}
	res := lease.result(name)
	s.cfg.Log.Info("lease applied", "link", name, "addr", res.Addr.String(), "router", res.Router,
		"dns", res.DNS, "lease", res.Lease, "metric", metric, "rapid_commit", res.RapidCommit,
		"took", time.Since(s.start))
	if s.cfg.Probe != nil {
		if err := s.probe(ctx, res); err != nil {
			// The lease stays, renewed, with its unproven metric: the
			// address is the node's, only its route must not win.
			s.cfg.Log.Warn("link not chosen", "link", name, "metric", metric, "err", err)
			report(outcome{err: &LinkError{Link: name, Err: err}})
			s.keep(ctx, l, d, lease)
			return
		}
		if metric, err = s.promote(l, lease); err != nil {
			fail(err)
			s.keep(ctx, l, d, lease)
			return
		}
		s.cfg.Log.Info("default route promoted", "link", name, "addr", res.Addr.String(), "metric", metric)
	}
	res.Took = time.Since(s.start)
	report(outcome{res: res})
	s.keep(ctx, l, d, lease)
}

// waitCarrier polls rather than subscribing: it is simpler, the same in
// every namespace, and 50 ms is well below a link's negotiation time.
func waitCarrier(ctx context.Context, h *netlink.Handle, index int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		l, err := h.LinkByIndex(index)
		if err != nil {
			return fmt.Errorf("read link state: %w", err)
		}
		if hasCarrier(l.Attrs()) {
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

// hasCarrier trusts the operational state rather than the bare carrier
// bit: the kernel sets it from its linkwatch work, the same place that
// attaches the queueing discipline, so a link reported up can transmit.
// Drivers that do not report operstate stay "unknown" and count as up once
// IFF_RUNNING and IFF_LOWER_UP say so.
func hasCarrier(a *netlink.LinkAttrs) bool {
	switch a.OperState {
	case netlink.OperUp:
		return true
	case netlink.OperUnknown:
		const want = unix.IFF_RUNNING | unix.IFF_LOWER_UP
		return a.RawFlags&want == want
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

// upError reports every link's reason, and says first whether no link had
// carrier at all, which points at cabling or drivers rather than DHCP.
func upError(failed []*LinkError) error {
	errs := make([]error, len(failed))
	msgs := make([]string, len(failed))
	noCarrier := true
	for i, f := range failed {
		errs[i], msgs[i] = f, f.Error()
		if !errors.Is(f, ErrNoCarrier) {
			noCarrier = false
		}
	}
	what := "no DHCPv4 lease on any link"
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
