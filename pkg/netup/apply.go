package netup

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/zeroboot/zeroboot/pkg/atomicfile"
	"github.com/zeroboot/zeroboot/pkg/backoff"
	"golang.org/x/sys/unix"
)

// renewRetry is the least wait between renewal attempts (RFC 2131 4.4.5).
const renewRetry = time.Minute

// apply configures a lease on a link: exactly the leased IPv4 address, a
// default route through the router, and the DNS servers. It replaces what a
// previous run left, so it is safe to repeat. It returns the route metric.
func (s *state) apply(link netlink.Link, l *lease) (int, error) {
	h := s.cfg.Handle
	name := link.Attrs().Name
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: l.addr.IP, Mask: l.addr.Mask}, Broadcast: broadcast(l.addr)}
	if l.life > 0 {
		addr.ValidLft = int(l.life / time.Second)
		addr.PreferedLft = addr.ValidLft
	}
	if err := h.AddrReplace(link, addr); err != nil {
		return 0, fmt.Errorf("add address %s to %s: %w", l.addr.String(), name, err)
	}
	if err := dropOtherAddrs(h, link, l.addr.IP); err != nil {
		return 0, err
	}
	metric := s.metric(link.Attrs().Index)
	if err := setDefaultRoute(h, link, l, metric); err != nil {
		return 0, err
	}
	if err := s.setDNS(link.Attrs().Index, l); err != nil {
		return 0, err
	}
	return metric, nil
}

// metric gives each link a stable metric in the order links got a lease:
// from baseMetric without a probe, from unprovenMetric with one until
// promote. Renewals keep the link's metric.
func (s *state) metric(index int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.metrics[index]
	if !ok {
		if s.cfg.Probe == nil {
			m = baseMetric + s.proven
			s.proven++
		} else {
			m = unprovenMetric + s.unproven
			s.unproven++
		}
		s.metrics[index] = m
	}
	return m
}

// promote moves a link that passed its probe to the next metric from
// baseMetric, so links are preferred in the order they proved their path,
// and puts its DNS servers ahead of unproven links' ones.
func (s *state) promote(link netlink.Link, l *lease) (int, error) {
	index := link.Attrs().Index
	s.mu.Lock()
	m := baseMetric + s.proven
	s.proven++
	s.metrics[index] = m
	s.mu.Unlock()
	if err := setDefaultRoute(s.cfg.Handle, link, l, m); err != nil {
		return 0, err
	}
	if err := s.setDNS(index, l); err != nil {
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
// so a changed lease does not leave two source addresses.
func dropOtherAddrs(h *netlink.Handle, link netlink.Link, keep net.IP) error {
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	for _, a := range addrs {
		if a.IP.Equal(keep) || a.Scope != int(netlink.SCOPE_UNIVERSE) {
			continue
		}
		if err := h.AddrDel(link, &a); err != nil {
			return fmt.Errorf("remove stale address %s from %s: %w", a.IPNet, link.Attrs().Name, err)
		}
	}
	return nil
}

// setDefaultRoute replaces the default routes we own on this link (marked
// with protocol dhcp) with one via the lease's router. A router outside the
// leased subnet (e.g. a /32 lease) is reached on-link.
func setDefaultRoute(h *netlink.Handle, link netlink.Link, l *lease, metric int) error {
	name := link.Attrs().Name
	idx := link.Attrs().Index
	old, err := h.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{LinkIndex: idx, Protocol: unix.RTPROT_DHCP},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", name, err)
	}
	for _, r := range old {
		if !isDefault(r.Dst) || (l.router != nil && r.Gw.Equal(l.router) && r.Priority == metric) {
			continue
		}
		if err := h.RouteDel(&r); err != nil {
			return fmt.Errorf("remove stale default route via %v on %s: %w", r.Gw, name, err)
		}
	}
	if l.router == nil {
		return nil
	}
	r := &netlink.Route{
		LinkIndex: idx,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:        l.router,
		Priority:  metric,
		Protocol:  unix.RTPROT_DHCP,
		Src:       l.addr.IP,
	}
	if !l.addr.Contains(l.router) {
		r.Flags = int(netlink.FLAG_ONLINK)
	}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("add default route via %v on %s metric %d: %w", l.router, name, metric, err)
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

// setDNS records the link's servers and rewrites resolv.conf with the
// servers of every configured link, in the order of their route metrics:
// the resolver tries the link that carries the traffic first.
func (s *state) setDNS(index int, l *lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	entry := linkDNS{index: index, servers: l.dns, search: l.search}
	found := false
	for i := range s.dns {
		if s.dns[i].index == index {
			s.dns[i], found = entry, true
		}
	}
	if !found {
		s.dns = append(s.dns, entry)
	}
	byMetric := slices.Clone(s.dns)
	slices.SortStableFunc(byMetric, func(a, b linkDNS) int { return s.metrics[a.index] - s.metrics[b.index] })
	return writeResolvConf(s.cfg.ResolvConf, []byte(resolvConf(byMetric)))
}

// resolvConf renders servers and search domains, without duplicates. The
// resolver reads at most three nameservers; the rest are listed anyway as
// documentation of what DHCP said.
func resolvConf(links []linkDNS) string {
	var b strings.Builder
	b.WriteString("# written by zeroboot netup from DHCP\n")
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

// keep renews the lease at T1, retries at half the remaining time (at
// least renewRetry apart), and starts over with DISCOVER once it has
// expired. It stops with ctx, leaving the address to expire with its
// lifetime.
func (s *state) keep(ctx context.Context, link netlink.Link, d *dhcpClient, l *lease) {
	log := s.cfg.Log.With("link", link.Attrs().Name)
	next := s.renewAfter(l)
	for l.life > 0 {
		if backoff.Sleep(ctx, next) != nil {
			return
		}
		nl, err := d.renew(ctx, l)
		if err != nil && time.Now().After(l.granted.Add(l.life)) {
			nl, err = d.obtain(ctx)
		}
		if err == nil {
			_, err = s.apply(link, nl)
		}
		if err != nil {
			next = max(time.Until(l.granted.Add(l.life))/2, renewRetry)
			log.Warn("lease renewal failed", "addr", l.addr.String(), "err", err, "retry_in", next)
			continue
		}
		l = nl
		next = s.renewAfter(l)
		log.Info("lease renewed", "addr", l.addr.String(), "lease", l.life)
	}
	<-ctx.Done()
}

func (s *state) renewAfter(l *lease) time.Duration {
	if s.cfg.renewAfter != nil {
		return s.cfg.renewAfter(l)
	}
	return l.renew
}
