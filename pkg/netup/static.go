package netup

import (
	"errors"
	"net"
	"net/netip"

	"github.com/zeroboot/zeroboot/pkg/netconf"
	"golang.org/x/sys/unix"
)

// staticConf turns an ip=CLIENT:... entry into a configuration: the
// address with its prefix, a default route via the gateway when given
// (on-link when outside the prefix, as the kernel's ip= does), and its DNS
// servers.
func staticConf(ip *netconf.IP) (*conf, error) {
	if ip == nil || !ip.Addr.IsValid() {
		return nil, errors.New("static configuration without an address")
	}
	a := ip.Addr.Addr()
	fam := IPv6
	if a.Is4() {
		fam = IPv4
	}
	c := &conf{
		family: fam,
		source: "static",
		addr:   net.IPNet{IP: ipOf(a), Mask: net.CIDRMask(ip.Addr.Bits(), a.BitLen())},
		proto:  unix.RTPROT_STATIC,
		// Duplicate address detection would only delay an address the
		// operator chose; a clash shows as unreachable, not as a hang.
		nodad: fam == IPv6,
	}
	if ip.Peer.IsValid() {
		c.peer = ipOf(ip.Peer)
	}
	if ip.Gateway.IsValid() {
		c.router = ipOf(ip.Gateway)
		c.onlink = !ip.Addr.Masked().Contains(ip.Gateway)
	}
	for _, d := range ip.DNS {
		c.dns = append(c.dns, ipOf(d))
	}
	return c, nil
}

// ipOf converts to the net.IP form netlink takes: 4 bytes for IPv4.
func ipOf(a netip.Addr) net.IP {
	if a.Is4() || a.Is4In6() {
		b := a.Unmap().As4()
		return net.IP(b[:])
	}
	b := a.As16()
	return net.IP(b[:])
}
