// Package netconf is the network configuration of a node before first
// contact, and the parser of the dracut/kernel parameters that give it:
// ip=, ifname=, vlan=, bond= and nameserver= (dracut.cmdline(7), the
// kernel's Documentation/admin-guide/nfs/nfsroot.rst).
//
// It is pure logic: no netlink, no syscalls. pkg/cmdline feeds it the
// parameters and pkg/netup applies the result. Every refusal is an error
// whose text names what is wrong in the value, because these values are
// typed by hand into boot loaders and a node that guesses what was meant
// ends up on the wrong network.
//
// Names of links are the final ones: after ifname= renames, and including
// the VLANs and bonds this configuration creates (dracut reads them the same
// way).
package netconf

import (
	"net"
	"net/netip"
	"slices"
)

// Config is the network configuration of a node before first contact.
type Config struct {
	Renames []Rename     // ifname=NAME:MAC
	VLANs   []VLAN       // vlan=NAME:PARENT
	Bonds   []Bond       // bond=NAME:SLAVES:OPTIONS[:MTU]
	IPs     []IP         // ip=..., in command-line order; none means Auto on every link
	DNS     []netip.Addr // nameserver= (repeatable), used in addition to what DHCP/RA give
}

// Rename gives the NIC with hardware address MAC the name Name (ifname=).
type Rename struct {
	Name string
	MAC  net.HardwareAddr
}

// VLAN is an 802.1Q link Name on top of Parent (vlan=). ID comes from Name,
// as dracut derives it.
type VLAN struct {
	Name, Parent string
	ID           int // 1..4094
}

// Bond is a bonding master Name over Slaves (bond=).
type Bond struct {
	Name    string
	Slaves  []string
	Options []BondOption // in given order, e.g. mode=802.3ad, miimon=100, lacp_rate=fast
	MTU     int          // 0: unchanged
}

// BondOption is one key=value of the bonding driver (modinfo bonding).
type BondOption struct{ Key, Value string }

// Method is one way of configuring addresses on a link.
type Method string

const (
	DHCP   Method = "dhcp"   // DHCPv4
	DHCP6  Method = "dhcp6"  // DHCPv6 only (stateful), no SLAAC
	Auto6  Method = "auto6"  // router advertisements: SLAAC, and DHCPv6 when the RA says M or O
	Auto   Method = "auto"   // dhcp + auto6: what a link gets when no ip= names it ("on", "any" and "dhcp,auto6"-like combinations map here)
	Static Method = "static" // addresses from the ip= line (autoconf none/off with a client address)
	Off    Method = "off"    // link brought up but not configured
)

// IP is one ip= parameter.
//
// Methods is never empty in a parsed IP and is canonical: Static and Off
// stand alone; otherwise it is a subset of [Auto, DHCP, Auto6, DHCP6] in
// that order, where Auto replaces DHCP and Auto6 together (so [DHCP, Auto6]
// never appears). Use Uses rather than comparing Methods.
type IP struct {
	Device   string           // "" means every link not named by another ip=
	Methods  []Method         // one or more (dracut allows a comma list like dhcp,dhcp6)
	Addr     netip.Prefix     // static client address with prefix; zero unless Static
	Peer     netip.Addr       // point-to-point peer, optional
	Gateway  netip.Addr       // optional
	Hostname string           // optional, validated as an RFC 1123 host name
	DNS      []netip.Addr     // DNS0, DNS1 of the static form
	MTU      int              // optional (device form ip=DEV:METHOD[:MTU[:MAC]])
	MAC      net.HardwareAddr // optional (device form): the address to set on the link
}

// For returns the ip= entry that applies to link name: the one naming it,
// else the one without device, else nil, which means Auto (see Uses).
//
// For knows nothing of bonds: a bond slave is configured by its bond, so
// ask BondOf first (Check refuses an ip= naming a slave, but an ip= without
// device still matches a slave's name here).
func (c *Config) For(link string) *IP {
	var every *IP
	for i := range c.IPs {
		ip := &c.IPs[i]
		switch {
		case ip.Device == link:
			return ip
		case ip.Device == "" && every == nil:
			every = ip
		}
	}
	return every
}

// BondOf returns the name of the bond that has link as a slave, or "".
func (c *Config) BondOf(link string) string {
	for _, b := range c.Bonds {
		if slices.Contains(b.Slaves, link) {
			return b.Name
		}
	}
	return ""
}

// Uses reports whether the entry runs method m. Auto counts as DHCP and
// Auto6 (and Uses(Auto) needs both); a nil entry, what For returns when no
// ip= applies, is Auto. DHCP6 is only the stateful client the entry asks
// for: Auto6 may still start DHCPv6 when a router advertisement says M or O.
func (ip *IP) Uses(m Method) bool {
	ms := []Method{Auto}
	if ip != nil {
		ms = ip.Methods
	}
	has := func(m Method) bool { return slices.Contains(ms, m) }
	switch m {
	case DHCP, Auto6:
		return has(m) || has(Auto)
	case Auto:
		return has(Auto) || has(DHCP) && has(Auto6)
	}
	return has(m)
}

// ipv6 reports whether the entry configures IPv6 on its link, which then
// needs an MTU of at least 1280 (RFC 8200).
func (ip *IP) ipv6() bool {
	return ip.Uses(Auto6) || ip.Uses(DHCP6) || ip.Uses(Static) && ip.Addr.Addr().Is6()
}
