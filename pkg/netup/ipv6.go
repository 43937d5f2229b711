package netup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// ipv6Sysctls sets a link's IPv6 knobs before it goes up, when its
// link-local address is made:
//   - RAs are accepted where a source configures IPv6, and SLAAC runs in
//     the kernel for auto6 (it keeps the address alive from later RAs);
//   - the default route from RAs is ours (accept_ra_defrtr 0), so it gets
//     our metric and only wins after the probe;
//   - optimistic DAD (RFC 4429): the link-local address can solicit
//     routers and DHCPv6 at once instead of after a second of duplicate
//     address detection (global addresses are still waited for, see
//     waitDAD);
//   - no random delay before the first router solicitation.
//
// Links without an IPv6 source accept no RAs: a rogue router on a link the
// node does not use for IPv6 must not give it an address.
func (s *state) ipv6Sysctls(lk *link) error {
	if !s.cfg.hasIPv6(lk.name) {
		return nil // IPv6 sources fail on their own (errNoIPv6)
	}
	if !lk.ra {
		// Static IPv6 too: RAs would add prefixes and routes beside it.
		return s.cfg.sysctls(lk.name, [][2]string{{"disable_ipv6", "0"}, {"accept_ra", "0"}, {"autoconf", "0"}})
	}
	autoconf := "0"
	if lk.slaac {
		autoconf = "1"
	}
	if err := s.cfg.sysctls(lk.name, [][2]string{{"disable_ipv6", "0"}, {"accept_ra", "1"}, {"autoconf", autoconf},
		{"accept_ra_defrtr", "0"}, {"router_solicitation_delay", "0"}}); err != nil {
		return err
	}
	// A kernel without CONFIG_IPV6_OPTIMISTIC_DAD has no such knobs: the
	// DAD wait (DADTimeout) covers it.
	if err := s.cfg.sysctls(lk.name, [][2]string{{"optimistic_dad", "1"}, {"use_optimistic", "1"}}); err != nil {
		s.cfg.Log.Debug("no optimistic DAD", "link", lk.name, "err", err)
	}
	return nil
}

// ipv6Off keeps a link the node brings up without configuring it (a VLAN's
// parent) out of IPv6 autoconfiguration.
func (c Config) ipv6Off(link string) error {
	if !c.hasIPv6(link) {
		return nil
	}
	return c.sysctls(link, [][2]string{{"accept_ra", "0"}, {"autoconf", "0"}})
}

func (c Config) confDir(link string) string { return filepath.Join(c.ProcSys, "net/ipv6/conf", link) }

func (c Config) hasIPv6(link string) bool {
	return c.Enter(func() error { _, err := os.Stat(c.confDir(link)); return err }) == nil
}

func (c Config) sysctls(link string, kv [][2]string) error {
	for _, e := range kv {
		p := filepath.Join(c.confDir(link), e[0])
		if err := c.Enter(func() error { return os.WriteFile(p, []byte(e[1]), 0) }); err != nil {
			return fmt.Errorf("set IPv6 %s=%s on %s: %w", e[0], e[1], link, err)
		}
	}
	return nil
}

// ra is what a router advertisement says, checked.
type ra struct {
	from     net.IP // link-local source
	router   net.IP // from, or nil when its router lifetime is 0
	life     time.Duration
	managed  bool // M: addresses from DHCPv6
	other    bool // O: other configuration (DNS) from DHCPv6
	prefixes []netip.Prefix
	dns      []net.IP
	search   []string
}

// Limits on what one RA may make us use: more is ignored, not an error.
const (
	maxRAPrefixes = 8
	maxDNS        = 8
	maxSearch     = 8
)

// parseRA checks an RA from src: RFC 4861 6.1.2 (source link-local, hop
// limit 255, checked by the caller who has the header) and keeps the
// prefixes a node can autoconfigure (/64, autonomous, not link-local or
// multicast, preferred <= valid), and sane DNS servers and domains.
func parseRA(m *ndp.RouterAdvertisement, src netip.Addr) (*ra, error) {
	if !src.Is6() || !src.IsLinkLocalUnicast() {
		return nil, fmt.Errorf("router advertisement from %v: not a link-local source", src)
	}
	r := &ra{from: ipOf(src), managed: m.ManagedConfiguration, other: m.OtherConfiguration, life: m.RouterLifetime}
	if m.RouterLifetime > 0 {
		r.router = ipOf(src)
	}
	for _, o := range m.Options {
		switch o := o.(type) {
		case *ndp.PrefixInformation:
			p := netip.PrefixFrom(o.Prefix, int(o.PrefixLength)).Masked()
			if o.AutonomousAddressConfiguration && o.PrefixLength == 64 && o.ValidLifetime > 0 &&
				o.PreferredLifetime <= o.ValidLifetime && p.Addr().IsGlobalUnicast() && len(r.prefixes) < maxRAPrefixes {
				r.prefixes = append(r.prefixes, p)
			}
		case *ndp.RecursiveDNSServer:
			if o.Lifetime == 0 {
				continue
			}
			for _, d := range o.Servers {
				if usableDNS(d) && len(r.dns) < maxDNS {
					r.dns = append(r.dns, ipOf(d))
				}
			}
		case *ndp.DNSSearchList:
			if o.Lifetime == 0 {
				continue
			}
			for _, d := range o.DomainNames {
				if validDomain(d) && len(r.search) < maxSearch {
					r.search = append(r.search, d)
				}
			}
		}
	}
	return r, nil
}

func usableDNS(a netip.Addr) bool { return usableServer(ipOf(a)) }

// usableServer keeps a DNS or NTP server a network may point the node to:
// not unspecified, multicast, broadcast or loopback.
func usableServer(ip net.IP) bool {
	return len(ip) > 0 && !ip.IsUnspecified() && !ip.IsMulticast() && !ip.IsLoopback() && !ip.Equal(net.IPv4bcast)
}

// validDomain keeps a search domain safe to write into resolv.conf: host
// name characters only, at most 253 bytes.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, c := range []byte(d) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}

// raConn listens for RAs on one link and solicits them.
type raConn struct {
	c     *ndp.Conn
	index int
	// enter is Config.Enter: ndp resolves the link's name to an index on
	// each write, in the namespace of the writing thread.
	enter func(func() error) error
}

func (s *state) listenRA(lk *link) (*raConn, error) {
	var c *ndp.Conn
	err := s.cfg.Enter(func() error {
		ifi, err := net.InterfaceByName(lk.name)
		if err != nil {
			return err
		}
		c, _, err = ndp.Listen(ifi, ndp.Unspecified)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen for router advertisements: %w", err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterAdvertisement)
	if err := c.SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, fmt.Errorf("filter ICMPv6: %w", err)
	}
	if err := c.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface, true); err != nil {
		c.Close()
		return nil, fmt.Errorf("ask for hop limits: %w", err)
	}
	return &raConn{c: c, index: lk.index, enter: s.cfg.Enter}, nil
}

var allRouters = netip.MustParseAddr("ff02::2")

func (r *raConn) solicit() error {
	return r.enter(func() error {
		return r.c.WriteTo(&ndp.RouterSolicitation{}, &ipv6.ControlMessage{HopLimit: ndp.HopLimit, IfIndex: r.index}, allRouters)
	})
}

// next returns the next valid RA on this link before deadline. Invalid
// ones (another link, hop limit below 255, not link-local) are dropped.
func (r *raConn) next(deadline time.Time) (*ra, error) {
	if err := r.c.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	for {
		m, cm, src, err := r.c.ReadFrom()
		if err != nil {
			return nil, err
		}
		adv, ok := m.(*ndp.RouterAdvertisement)
		if !ok || cm == nil || cm.IfIndex != r.index || cm.HopLimit != ndp.HopLimit {
			continue
		}
		if a, err := parseRA(adv, src); err == nil {
			return a, nil
		}
	}
}

// waitRA solicits and waits for a first RA, resending the solicitation
// after 1 s, 2 s, 4 s... (RFC 7559 backoff, faster start: a booting node
// has nothing else to do) within timeout. A solicitation that cannot be
// sent yet (the link's IPv6 is still being set up: "network is
// unreachable") is sent again at the next interval; an unsolicited RA is
// taken all the same.
func (r *raConn) waitRA(ctx context.Context, timeout time.Duration) (*ra, error) {
	deadline := time.Now().Add(timeout)
	wait := 100 * time.Millisecond
	var sendErr error
	for {
		if sendErr = r.solicit(); sendErr == nil {
			wait = max(wait, time.Second)
		}
		until := time.Now().Add(wait)
		if until.After(deadline) {
			until = deadline
		}
		a, err := r.next(until)
		if err == nil {
			return a, nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("read router advertisements: %w", err)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !time.Now().Before(deadline) {
			if sendErr != nil {
				return nil, fmt.Errorf("no router advertisement within %v (router solicitation: %v)", timeout, sendErr)
			}
			return nil, fmt.Errorf("no router advertisement within %v", timeout)
		}
		if sendErr == nil {
			wait *= 2
		}
	}
}

// runIPv6 configures IPv6 from RAs: the router for the default route,
// SLAAC's address (auto6), DHCPv6's when the RA sets M or the method is
// dhcp6, and DNS from RDNSS/DNSSL and DHCPv6. Then it follows later RAs
// and renews DHCPv6 for the node's life.
func (s *state) runIPv6(ctx context.Context, src *source, report func(outcome)) {
	lk := src.link
	if !s.cfg.hasIPv6(lk.name) {
		report(outcome{err: src.fail(errNoIPv6)})
		return
	}
	rc, err := s.listenRA(lk)
	if err != nil {
		report(outcome{err: src.fail(err)})
		return
	}
	defer rc.c.Close()
	var a *ra
	var c *conf
	var d6 *dhcp6Client
	defer func() {
		if d6 != nil {
			d6.close()
		}
	}()
	var errs []error
	for try := 0; try <= s.cfg.Retries; try++ {
		if a, err = rc.waitRA(ctx, s.cfg.DHCPTimeout); err != nil {
			if src.method != mDHCP6 {
				errs = append(errs, err)
				continue
			}
			a = &ra{managed: true} // DHCPv6 without RA: an address, no route
		}
		if c, d6, err = s.ipv6Conf(ctx, src, a, d6); err == nil {
			break
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if c == nil {
		err := fmt.Errorf("IPv6 failed after %d attempt(s): %s", len(errs), joinErrs(errs))
		s.cfg.Log.Warn("link not configured", "link", lk.name, "source", src.method, "err", err)
		report(outcome{err: src.fail(err)})
		return
	}
	if s.settle(ctx, src, c, report) {
		s.followRA(ctx, src, rc, c, d6, a.life)
	}
}

// ipv6Conf builds the configuration an RA leads to.
func (s *state) ipv6Conf(ctx context.Context, src *source, a *ra, d6 *dhcp6Client) (*conf, *dhcp6Client, error) {
	lk := src.link
	c := &conf{family: IPv6, router: a.router, proto: unix.RTPROT_RA, dns: a.dns, search: a.search}
	if a.router != nil {
		c.server = a.router
	}
	if src.method == mAuto6 && len(a.prefixes) > 0 {
		inPrefix := func(ip netip.Addr) bool {
			return slices.ContainsFunc(a.prefixes, func(p netip.Prefix) bool { return p.Contains(ip) })
		}
		addr, err := s.waitDAD(ctx, lk, fmt.Sprintf("SLAAC address in %v", a.prefixes), inPrefix)
		if err != nil {
			return nil, d6, err
		}
		c.addr, c.kernel, c.source = addr, true, "slaac"
	}
	if a.managed || a.other || src.method == mDHCP6 || lk.dhcp6 {
		if d6 == nil {
			var err error
			if d6, err = s.newDHCP6(lk); err != nil && c.source == "" {
				return nil, nil, err
			} else if err != nil {
				s.cfg.Log.Warn("DHCPv6 unavailable; keeping SLAAC", "link", lk.name, "err", err)
				return c, nil, nil
			}
		}
		stateful := a.managed || src.method == mDHCP6 || lk.dhcp6
		rep, err := d6.exchange(ctx, stateful)
		switch {
		case err != nil && c.source == "":
			return nil, d6, err
		case err != nil:
			// SLAAC works; DNS from DHCPv6 is missing, RDNSS may have it.
			s.cfg.Log.Warn("DHCPv6 failed; keeping SLAAC", "link", lk.name, "err", err)
		default:
			c.dns = appendNew(c.dns, net.IP.Equal, rep.dns...)
			c.ntp = appendNew(c.ntp, net.IP.Equal, rep.ntp...)
			c.registry = rep.registry
			c.search = appendNew(c.search, sameString, rep.search...)
			if rep.addr.IP == nil {
				break
			}
			if err := addAddr(s.cfg.Handle, lk, rep.addr, rep.valid, rep.prefer, false, nil); err != nil {
				return nil, d6, err
			}
			if c.source != "" {
				// SLAAC's address is the one probed; DHCPv6's is kept
				// beside it and renewed at half its lease.
				c.source, c.lease = "slaac+dhcp6", rep.valid
				break
			}
			want, _ := netip.AddrFromSlice(rep.addr.IP)
			if _, err := s.waitDAD(ctx, lk, "DHCPv6 address", func(ip netip.Addr) bool { return ip == want }); err != nil {
				return nil, d6, err
			}
			// Added and past DAD: settle refreshes it with the same lifetimes.
			c.addr, c.valid, c.prefer, c.lease = rep.addr, rep.valid, rep.prefer, rep.valid
			c.source, c.rapid = "dhcp6", rep.rapid
		}
	}
	if c.source == "" {
		return nil, d6, fmt.Errorf("router advertisement offers no address: no autonomous /64 prefix and the M flag is clear")
	}
	return c, d6, nil
}

// waitDAD waits until an address of the link that match accepts has
// passed duplicate address detection, and returns it. Optimistic DAD lets
// the link-local address solicit routers and DHCPv6 at once, but a global
// optimistic address is not yet answered for by neighbour discovery on the
// far side, so a connection from it stalls for seconds: the wait for DAD
// (RetransTimer, 1 s by RFC 4862) is the price of a working first probe.
func (s *state) waitDAD(ctx context.Context, lk *link, what string, accepts func(netip.Addr) bool) (net.IPNet, error) {
	deadline := time.Now().Add(s.cfg.DADTimeout)
	for {
		addrs, err := s.cfg.Handle.AddrList(lk.nl, netlink.FAMILY_V6)
		if err != nil {
			return net.IPNet{}, fmt.Errorf("list IPv6 addresses of %s: %w", lk.name, err)
		}
		var tentative net.IP
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || !accepts(ip) {
				continue
			}
			switch {
			case a.Flags&unix.IFA_F_DADFAILED != 0:
				return net.IPNet{}, fmt.Errorf("%s %s failed duplicate address detection: another host has it", what, a.IP)
			case a.Flags&unix.IFA_F_TENTATIVE == 0:
				return *a.IPNet, nil
			}
			tentative = a.IP
		}
		if time.Now().After(deadline) {
			if tentative != nil {
				return net.IPNet{}, fmt.Errorf("%s %s still in duplicate address detection after %v", what, tentative, s.cfg.DADTimeout)
			}
			return net.IPNet{}, fmt.Errorf("no %s within %v", what, s.cfg.DADTimeout)
		}
		select {
		case <-ctx.Done():
			return net.IPNet{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// followRA keeps IPv6 alive: each new RA from the router in use refreshes
// the default route and DNS; the route goes when that router says lifetime
// 0 or stops advertising past its lifetime (a later RA brings it back);
// DHCPv6 is asked again at half its lease.
func (s *state) followRA(ctx context.Context, src *source, rc *raConn, c *conf, d6 *dhcp6Client, life time.Duration) {
	lk := src.link
	go func() { <-ctx.Done(); rc.c.SetReadDeadline(time.Now()) }()
	var renew, routerUntil time.Time
	if d6 != nil && c.lease > 0 {
		renew = time.Now().Add(c.lease / 2)
	}
	if c.router != nil {
		routerUntil = time.Now().Add(life)
	}
	for ctx.Err() == nil {
		until := earliest(time.Now().Add(time.Minute), renew, routerUntil)
		a, err := rc.next(until)
		now := time.Now()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			// One router's RA speaks for that router only: another's, or
			// a lifetime-0 RA from a router we do not use, changes nothing.
			switch {
			case a.router != nil && (c.router == nil || c.router.Equal(a.router)):
				c.router, routerUntil = a.router, now.Add(a.life)
			case a.router == nil && c.router != nil && c.router.Equal(a.from):
				c.router, routerUntil = nil, time.Time{}
				s.cfg.Log.Warn("router withdrew (lifetime 0); IPv6 default route removed", "link", lk.name, "router", a.from)
			default:
				continue
			}
			s.refreshRA(lk, c, a.dns, a.search)
		case !routerUntil.IsZero() && !now.Before(routerUntil):
			s.cfg.Log.Warn("router lifetime ran out without a new advertisement; IPv6 default route removed", "link", lk.name, "router", c.router)
			c.router, routerUntil = nil, time.Time{}
			s.refreshRA(lk, c, nil, nil)
		case !renew.IsZero() && !now.Before(renew):
			renew = s.renewDHCP6(ctx, lk, d6)
		}
	}
}

// refreshRA applies c with an RA's DNS servers and domains in front.
func (s *state) refreshRA(lk *link, c *conf, dns []net.IP, search []string) {
	nc := *c
	nc.kernel = true // an RA refreshes the route and DNS, not DHCPv6's lifetimes
	nc.dns, nc.search = appendNew(dns, net.IP.Equal, c.dns...), appendNew(search, sameString, c.search...)
	if _, err := s.apply(lk, &nc); err != nil {
		s.cfg.Log.Warn("router advertisement not applied", "link", lk.name, "err", err)
	}
}

// renewDHCP6 asks DHCPv6 again and returns when to ask next.
func (s *state) renewDHCP6(ctx context.Context, lk *link, d6 *dhcp6Client) time.Time {
	rep, err := d6.exchange(ctx, true)
	if err != nil || rep.addr.IP == nil {
		s.cfg.Log.Warn("DHCPv6 renewal failed", "link", lk.name, "err", err)
		return time.Now().Add(renewRetry)
	}
	if err := addAddr(s.cfg.Handle, lk, rep.addr, rep.valid, rep.prefer, false, nil); err != nil {
		s.cfg.Log.Warn("DHCPv6 renewal not applied", "link", lk.name, "err", err)
	}
	s.cfg.Log.Info("DHCPv6 lease renewed", "link", lk.name, "addr", rep.addr.String(), "lease", rep.valid)
	return time.Now().Add(max(rep.valid/2, renewRetry))
}

// earliest of t and the non-zero others.
func earliest(t time.Time, others ...time.Time) time.Time {
	for _, o := range others {
		if !o.IsZero() && o.Before(t) {
			t = o
		}
	}
	return t
}

// appendNew appends what to does not hold yet, same saying what is equal.
func appendNew[T any](to []T, same func(T, T) bool, add ...T) []T {
	out := slices.Clone(to)
	for _, a := range add {
		if !slices.ContainsFunc(out, func(b T) bool { return same(a, b) }) {
			out = append(out, a)
		}
	}
	return out
}

func sameString(a, b string) bool { return a == b }

// joinErrs lists distinct errors on one line: they go to the console.
func joinErrs(errs []error) string {
	var msgs []string
	for _, e := range errs {
		if m := e.Error(); !slices.Contains(msgs, m) {
			msgs = append(msgs, m)
		}
	}
	return strings.Join(msgs, "; ")
}
