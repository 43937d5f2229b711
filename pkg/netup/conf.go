package netup

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/zeroboot/zeroboot/pkg/atomicfile"
	"golang.org/x/sys/unix"
)

// conf is what one source says about one family of one link, checked and
// reduced to what we apply: DHCPv4's lease, an RA with its SLAAC address
// and DHCPv6's answer, or the command line's static address.
type conf struct {
	family Family
	source string
	addr   net.IPNet // the address probed and reported
	// kernel: addr is a SLAAC address the kernel made and refreshes from
	// RAs; it is not ours to add. Every other address is added; on IPv4 it
	// is then the only global one on the link, on IPv6 it sits beside the
	// kernel's link-local and SLAAC ones, which are never removed.
	kernel        bool
	valid, prefer time.Duration // 0: forever
	router        net.IP        // nil: no default route from this source
	onlink        bool          // router outside addr's prefix: reach it on-link
	proto         netlink.RouteProtocol
	dns           []net.IP
	search        []string
	ntp           []net.IP
	registry      string
	server        net.IP
	lease         time.Duration
	rapid         bool
	nodad         bool   // static IPv6: the operator vouches for it
	peer          net.IP // static point-to-point peer (ip=CLIENT:PEER:...)
}

func (c *conf) result(link string) *Result {
	return &Result{
		Link: link, Family: c.family, Source: c.source, Addr: c.addr, Router: c.router,
		DNS: c.dns, NTP: c.ntp, Registry: c.registry, Server: c.server, Lease: c.lease, RapidCommit: c.rapid,
	}
}

// apply configures c on a link: its address, a default route through its
// router, its DNS servers. It replaces what a previous run left, so it is
// safe to repeat. It returns the route metric.
func (s *state) apply(lk *link, c *conf) (int, error) {
	h := s.cfg.Handle
	if !c.kernel {
		if err := addAddr(h, lk, c.addr, c.valid, c.prefer, c.nodad, c.peer); err != nil {
			return 0, err
		}
	}
	if c.family == IPv4 {
		if err := dropOtherAddrs(h, lk, c.addr.IP); err != nil {
			return 0, err
		}
	}
	key := routeKey{c.family, lk.index}
	metric := s.metric(key)
	if err := setDefaultRoute(h, lk, c, metric); err != nil {
		return 0, err
	}
	if err := s.setDNS(key, c); err != nil {
		return 0, err
	}
	return metric, nil
}

// addAddr adds or refreshes one address with its lifetimes; with a peer,
// as a point-to-point address (the kernel routes the peer on-link).
func addAddr(h *netlink.Handle, lk *link, a net.IPNet, valid, prefer time.Duration, nodad bool, peer net.IP) error {
	na := &netlink.Addr{IPNet: &net.IPNet{IP: a.IP, Mask: a.Mask}}
	if peer != nil {
		na.Peer = &net.IPNet{IP: peer, Mask: net.CIDRMask(len(peer)*8, len(peer)*8)}
	}
	if a.IP.To4() != nil {
		na.Broadcast = broadcast(a)
	}
	if valid > 0 {
		na.ValidLft = int(valid / time.Second)
		na.PreferedLft = int(min(prefer, valid) / time.Second)
	}
	if nodad {
		na.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrReplace(lk.nl, na); err != nil {
		return fmt.Errorf("add address %s to %s: %w", a.String(), lk.name, err)
	}
	return nil
}

// metric gives each (family, link) a stable metric in the order it got
// configured: from baseMetric without a probe, from unprovenMetric with one
// until promote. Renewals keep it.
func (s *state) metric(key routeKey) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.metrics[key]
	if !ok {
		if s.cfg.Probe == nil {
			m = baseMetric + s.proven[key.family]
			s.proven[key.family]++
		} else {
			m = unprovenMetric + s.unproven[key.family]
			s.unproven[key.family]++
		}
		s.metrics[key] = m
	}
	return m
}

// promote moves a source that passed its probe to the next metric from
// baseMetric, so links are preferred in the order they proved their path,
// and puts its DNS servers ahead of unproven ones.
func (s *state) promote(lk *link, c *conf) (int, error) {
	key := routeKey{c.family, lk.index}
	s.mu.Lock()
	m := baseMetric + s.proven[c.family]
	s.proven[c.family]++
	s.metrics[key] = m
	s.mu.Unlock()
	if err := setDefaultRoute(s.cfg.Handle, lk, c, m); err != nil {
		return 0, err
	}
	if err := s.setDNS(key, c); err != nil {
		return 0, err
	}
	return m, nil
}

func broadcast(n net.IPNet) net.IP {
	ip := n.IP.To4()
	b := make(net.IP, 4)
	for i := range b {
		b[i] = ip[i] | ^n.Mask[i]
	}
	return b
}

// dropOtherAddrs removes IPv4 addresses an earlier lease left on the link,
// so a changed lease does not leave two source addresses. Only leased
// ones (with a lifetime): a permanent address, static or added by Core-0
// or a workload (a VIP), is not ours to remove.
func dropOtherAddrs(h *netlink.Handle, lk *link, keep net.IP) error {
	addrs, err := h.AddrList(lk.nl, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", lk.name, err)
	}
	for _, a := range addrs {
		if a.IP.Equal(keep) || a.Scope != int(netlink.SCOPE_UNIVERSE) || a.Flags&unix.IFA_F_PERMANENT != 0 {
			continue
		}
		if err := h.AddrDel(lk.nl, &a); err != nil {
			return fmt.Errorf("remove stale address %s from %s: %w", a.IPNet, lk.name, err)
		}
	}
	return nil
}

// setDefaultRoute replaces the default routes of c's family we own on this
// link (marked with c's protocol) with one via c's router. A router
// outside the address's prefix (a /32 lease, a DHCPv6 /128) is reached
// on-link; IPv6 routers are link-local, so the route names the link.
func setDefaultRoute(h *netlink.Handle, lk *link, c *conf, metric int) error {
	old, err := h.RouteListFiltered(c.family.netlink(),
		&netlink.Route{LinkIndex: lk.index, Protocol: c.proto},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", lk.name, err)
	}
	for _, r := range old {
		if !isDefault(r.Dst) || (c.router != nil && r.Gw.Equal(c.router) && r.Priority == metric) {
			continue
		}
		if err := h.RouteDel(&r); err != nil {
			return fmt.Errorf("remove stale default route via %v on %s: %w", r.Gw, lk.name, err)
		}
	}
	if c.router == nil {
		return nil
	}
	bits := 32
	if c.family == IPv6 {
		bits = 128
	}
	r := &netlink.Route{
		LinkIndex: lk.index,
		Dst:       &net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)},
		Gw:        c.router,
		Priority:  metric,
		Protocol:  c.proto,
	}
	if c.family == IPv4 {
		r.Src = c.addr.IP
		r.Dst.IP = net.IPv4zero.To4()
	}
	switch {
	case c.family == IPv4 && (c.onlink || !c.addr.Contains(c.router)),
		c.family == IPv6 && c.onlink && !c.router.IsLinkLocalUnicast():
		r.Flags = int(netlink.FLAG_ONLINK)
	}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("add default route via %v on %s metric %d: %w", c.router, lk.name, metric, err)
	}
	return nil
}

func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}

// setDNS records a source's servers and rewrites resolv.conf with those of
// every configured source, in the order of their route metrics (the
// resolver tries the path that carries the traffic first), then the
// command line's nameserver= ones.
func (s *state) setDNS(key routeKey, c *conf) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	entry := linkDNS{key: key, servers: c.dns, search: c.search}
	found := false
	for i := range s.dns {
		if s.dns[i].key == key {
			s.dns[i], found = entry, true
		}
	}
	if !found {
		s.dns = append(s.dns, entry)
	}
	byMetric := slices.Clone(s.dns)
	slices.SortStableFunc(byMetric, func(a, b linkDNS) int { return s.metrics[a.key] - s.metrics[b.key] })
	if len(s.cfg.Net.DNS) > 0 {
		var fixed []net.IP
		for _, a := range s.cfg.Net.DNS {
			fixed = append(fixed, net.IP(a.AsSlice()))
		}
		byMetric = append(byMetric, linkDNS{servers: fixed})
	}
	return writeResolvConf(s.cfg.ResolvConf, []byte(resolvConf(byMetric)))
}

// resolvConf renders servers and search domains, without duplicates. The
// resolver reads at most three nameservers; the rest are listed anyway as
// documentation of what the network said.
func resolvConf(links []linkDNS) string {
	var b strings.Builder
	b.WriteString("# written by zeroboot netup from DHCP, RAs and the command line\n")
	seenS := map[string]bool{}
	var search []string
	for _, l := range links {
		for _, d := range l.search {
			if !seenS[d] {
				seenS[d] = true
				search = append(search, d)
			}
		}
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	seen := map[string]bool{}
	for _, l := range links {
		for _, ip := range l.servers {
			if k := ip.String(); !seen[k] {
				seen[k] = true
				fmt.Fprintf(&b, "nameserver %s\n", k)
			}
		}
	}
	return b.String()
}

// writeResolvConf replaces path atomically, so a reader never sees a
// half-written resolv.conf; /etc may not exist yet in the initramfs.
func writeResolvConf(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return atomicfile.Write(path, data, 0o644)
}
