package netup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/zeroboot/zeroboot/pkg/netconf"
)

// method is one way a source configures a family on a link.
type method string

const (
	mDHCP4  method = "dhcp4"
	mAuto6  method = "auto6" // RAs: SLAAC, DHCPv6 when the RA says M or O
	mDHCP6  method = "dhcp6" // DHCPv6 only; RAs for the default route
	mStatic method = "static"
)

// plan is one link to configure and how.
type plan struct {
	link    netlink.Link
	ip      *netconf.IP // nil: Auto
	methods []method
}

// methodsOf turns an ip= entry into sources; nil means Auto. Off gives
// none: the link is brought up and left alone. auto6 with dhcp6 is one
// IPv6 source that always asks DHCPv6 (two would fight over port 546 and
// the link's IPv6 route); see link.dhcp6.
func methodsOf(ip *netconf.IP) []method {
	if ip.Uses(netconf.Static) {
		return []method{mStatic}
	}
	var ms []method
	if ip.Uses(netconf.DHCP) {
		ms = append(ms, mDHCP4)
	}
	switch {
	case ip.Uses(netconf.Auto6):
		ms = append(ms, mAuto6)
	case ip.Uses(netconf.DHCP6):
		ms = append(ms, mDHCP6)
	}
	return ms
}

func (m method) family(ip *netconf.IP) Family {
	switch m {
	case mDHCP4:
		return IPv4
	case mStatic:
		if ip != nil && ip.Addr.Addr().Is4() {
			return IPv4
		}
	}
	return IPv6
}

// buildLinks applies ifname=, bond= and vlan= in that order: a bond's
// slaves may be renamed links, a VLAN may sit on a bond. Each is skipped
// when a previous Up already did it, so a retried Up does not fail on its
// own work.
func (c Config) buildLinks() error {
	for _, r := range c.Net.Renames {
		if err := c.rename(r); err != nil {
			return err
		}
	}
	if len(c.Net.Bonds) > 0 {
		if err := c.load("bonding"); err != nil {
			return err
		}
	}
	for _, b := range c.Net.Bonds {
		if err := c.bond(b); err != nil {
			return fmt.Errorf("bond=%s: %w", b.Name, err)
		}
	}
	if len(c.Net.VLANs) > 0 {
		if err := c.load("8021q"); err != nil {
			return err
		}
	}
	for _, v := range c.Net.VLANs {
		if err := c.vlan(v); err != nil {
			return fmt.Errorf("vlan=%s:%s: %w", v.Name, v.Parent, err)
		}
	}
	return nil
}

func (c Config) load(module string) error {
	if c.LoadModule == nil {
		return nil // built in, or the kernel says so when the link is added
	}
	if err := c.LoadModule(module); err != nil {
		return fmt.Errorf("load kernel module %s: %w", module, err)
	}
	return nil
}

func (c Config) rename(r netconf.Rename) error {
	if l, err := c.Handle.LinkByName(r.Name); err == nil && isNIC(l) && hasMAC(l, r.MAC) {
		return nil // done by an earlier Up: since then a bond or VLAN may share the MAC
	}
	all, err := c.Handle.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var found netlink.Link
	for _, l := range all {
		if isNIC(l) && hasMAC(l, r.MAC) {
			found = l
			break
		}
	}
	if found == nil {
		return fmt.Errorf("ifname=%s:%s: no link has MAC %s (links: %s)", r.Name, r.MAC, r.MAC, describe(all))
	}
	if other, err := c.Handle.LinkByName(r.Name); err == nil {
		return fmt.Errorf("ifname=%s:%s: name %s is taken by the link with MAC %s", r.Name, r.MAC, r.Name, other.Attrs().HardwareAddr)
	}
	if err := c.Handle.LinkSetDown(found); err != nil {
		return fmt.Errorf("ifname=%s:%s: set %s down: %w", r.Name, r.MAC, found.Attrs().Name, err)
	}
	if err := c.Handle.LinkSetName(found, r.Name); err != nil {
		return fmt.Errorf("ifname=%s:%s: rename %s: %w", r.Name, r.MAC, found.Attrs().Name, err)
	}
	c.Log.Info("link renamed", "from", found.Attrs().Name, "to", r.Name, "mac", r.MAC.String())
	return nil
}

// hasMAC: the link's MAC is mac, or was before ip=...:MAC changed it (its
// permanent address, where the driver reports one).
func hasMAC(l netlink.Link, mac net.HardwareAddr) bool {
	a := l.Attrs()
	return a.HardwareAddr.String() == mac.String() || (len(a.PermHWAddr) > 0 && a.PermHWAddr.String() == mac.String())
}

// bond creates the bond, writes its options through sysfs (the bonding
// driver's own names and values, as dracut passes them; mode first, while
// the bond is down and empty) and enslaves the slaves.
func (c Config) bond(b netconf.Bond) error {
	l, err := c.Handle.LinkByName(b.Name)
	fresh := false
	switch {
	case err == nil && l.Type() != "bond":
		return fmt.Errorf("a link named %s exists and is a %s, not a bond", b.Name, l.Type())
	case err != nil:
		if err := c.Handle.LinkAdd(netlink.NewLinkBond(netlink.LinkAttrs{Name: b.Name})); err != nil {
			return fmt.Errorf("create: %w", err)
		}
		if l, err = c.Handle.LinkByName(b.Name); err != nil {
			return fmt.Errorf("find after create: %w", err)
		}
		fresh = true
	}
	if fresh || !c.hasSlaves(l) {
		if err := c.Handle.LinkSetDown(l); err != nil {
			return fmt.Errorf("set down: %w", err)
		}
		for _, o := range bondOptionOrder(b.Options) {
			if err := c.bondOption(b.Name, o); err != nil {
				return err
			}
		}
	}
	for _, name := range b.Slaves {
		s, err := c.Handle.LinkByName(name)
		if err != nil {
			return fmt.Errorf("slave %s: no such link", name)
		}
		if s.Attrs().MasterIndex == l.Attrs().Index {
			continue
		}
		if err := c.Handle.LinkSetDown(s); err != nil {
			return fmt.Errorf("set slave %s down: %w", name, err)
		}
		if err := c.Handle.LinkSetMasterByIndex(s, l.Attrs().Index); err != nil {
			return fmt.Errorf("enslave %s: %w", name, err)
		}
	}
	if b.MTU > 0 {
		if err := c.Handle.LinkSetMTU(l, b.MTU); err != nil {
			return fmt.Errorf("set MTU %d: %w", b.MTU, err)
		}
	}
	c.Log.Info("bond built", "bond", b.Name, "slaves", b.Slaves, "options", bondOptionString(b.Options))
	return nil
}

// bondOption writes one option. arp_ip_target takes one +ADDR per write
// (the driver's syntax), and a target the bond already has is skipped, so
// a retried Up does not fail on it.
func (c Config) bondOption(bond string, o netconf.BondOption) error {
	p := filepath.Join(c.Sysfs, "class/net", bond, "bonding", o.Key)
	values := []string{o.Value}
	if o.Key == "arp_ip_target" {
		have, _ := os.ReadFile(p)
		values = nil
		for _, a := range strings.Split(o.Value, ";") {
			if a != "" && !slices.Contains(strings.Fields(string(have)), a) {
				values = append(values, "+"+a)
			}
		}
	}
	for _, v := range values {
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return fmt.Errorf("option %s=%s: %w", o.Key, o.Value, err)
		}
	}
	return nil
}

func (c Config) hasSlaves(bond netlink.Link) bool {
	all, err := c.Handle.LinkList()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(all, func(l netlink.Link) bool { return l.Attrs().MasterIndex == bond.Attrs().Index })
}

// bondOptionOrder puts mode first: the driver refuses most options until
// the mode that has them is set.
func bondOptionOrder(opts []netconf.BondOption) []netconf.BondOption {
	out := slices.Clone(opts)
	slices.SortStableFunc(out, func(a, b netconf.BondOption) int {
		switch {
		case a.Key == "mode" && b.Key != "mode":
			return -1
		case b.Key == "mode" && a.Key != "mode":
			return 1
		}
		return 0
	})
	return out
}

func bondOptionString(opts []netconf.BondOption) string {
	s := make([]string, len(opts))
	for i, o := range opts {
		s[i] = o.Key + "=" + o.Value
	}
	return strings.Join(s, ",")
}

func (c Config) vlan(v netconf.VLAN) error {
	parent, err := c.Handle.LinkByName(v.Parent)
	if err != nil {
		return fmt.Errorf("parent %s: no such link", v.Parent)
	}
	if l, err := c.Handle.LinkByName(v.Name); err == nil {
		if vl, ok := l.(*netlink.Vlan); !ok || vl.VlanId != v.ID || vl.ParentIndex != parent.Attrs().Index {
			return fmt.Errorf("a link named %s exists and is not VLAN %d on %s", v.Name, v.ID, v.Parent)
		}
	} else if err := c.Handle.LinkAdd(&netlink.Vlan{
		LinkAttrs: netlink.LinkAttrs{Name: v.Name, ParentIndex: parent.Attrs().Index},
		VlanId:    v.ID,
	}); err != nil {
		return fmt.Errorf("create VLAN %d: %w", v.ID, err)
	}
	// A VLAN has carrier only while its parent is up. Unless an ip= names
	// the parent (then its own bring-up sets these), a router on its
	// untagged network must not give the node an address or a route.
	if err := c.ipv6Off(v.Parent); err != nil {
		return err
	}
	if err := c.Handle.LinkSetUp(parent); err != nil {
		return fmt.Errorf("set parent %s up: %w", v.Parent, err)
	}
	c.Log.Info("VLAN built", "link", v.Name, "parent", v.Parent, "id", v.ID)
	return nil
}

// plan chooses the links to configure, in ifindex order: the Ethernet
// links (not enslaved), the bonds and VLANs built from the command line;
// a VLAN's parent only when an ip= names it. Without any ip= every link
// gets Auto; with ip= entries, a link no entry applies to is left alone.
func (c Config) plan() ([]plan, error) {
	all, err := c.Handle.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	named := map[string]bool{}
	for _, ip := range c.Net.IPs {
		if ip.Device != "" {
			named[ip.Device] = true
		}
	}
	built := map[string]bool{}
	parents := map[string]bool{}
	for _, b := range c.Net.Bonds {
		built[b.Name] = true
	}
	for _, v := range c.Net.VLANs {
		built[v.Name] = true
		parents[v.Parent] = true
	}
	var plans []plan
	seen := map[string]bool{}
	for _, l := range all {
		name := l.Attrs().Name
		seen[name] = true
		candidate := (isEthernet(l) || built[name]) && (!parents[name] || named[name]) && c.Net.BondOf(name) == ""
		if !candidate || (c.Filter != nil && !c.Filter(name)) {
			continue
		}
		ip := c.Net.For(name)
		if ip == nil && len(c.Net.IPs) > 0 {
			continue
		}
		plans = append(plans, plan{link: l, ip: ip, methods: methodsOf(ip)})
	}
	for dev := range named {
		if !seen[dev] {
			return nil, fmt.Errorf("ip=: no link named %s (links: %s)", dev, describe(all))
		}
	}
	if len(plans) == 0 {
		return nil, fmt.Errorf("no Ethernet link to configure among %s", describe(all))
	}
	if !slices.ContainsFunc(plans, func(p plan) bool { return len(p.methods) > 0 }) {
		return nil, fmt.Errorf("ip=: every link is off, nothing to configure (links: %s)", describe(all))
	}
	return plans, nil
}

func describe(all []netlink.Link) string {
	seen := make([]string, len(all))
	for i, l := range all {
		seen[i] = l.Attrs().Name + "(" + l.Type() + ")"
	}
	return strings.Join(seen, ", ")
}

// isEthernet keeps physical NICs and veths with a MAC address. Bridges,
// bonds, VLANs, tunnels and links enslaved to a master are left alone
// unless the command line built them.
func isEthernet(l netlink.Link) bool { return isNIC(l) && l.Attrs().MasterIndex == 0 }

// isNIC: a physical NIC or a veth with an Ethernet MAC, enslaved or not.
func isNIC(l netlink.Link) bool {
	a := l.Attrs()
	switch l.Type() {
	case "device", "veth":
	default:
		return false
	}
	return a.Flags&net.FlagLoopback == 0 && a.EncapType == "ether" && len(a.HardwareAddr) == 6
}

// link is one link being configured, shared by its sources: it is set up
// once, whichever source gets there first.
type link struct {
	name  string
	index int
	mac   net.HardwareAddr
	ip    *netconf.IP
	v6    bool // some source configures IPv6 here
	ra    bool // ... from router advertisements (auto6, dhcp6; not static)
	slaac bool // ... with SLAAC (auto6)
	dhcp6 bool // auto6 asks DHCPv6 even when the RA says neither M nor O
	nl    netlink.Link
	ready func(ctx context.Context) error
}

func (s *state) newLink(p plan) *link {
	a := p.link.Attrs()
	lk := &link{name: a.Name, index: a.Index, mac: a.HardwareAddr, ip: p.ip, nl: p.link}
	for _, m := range p.methods {
		lk.v6 = lk.v6 || m.family(p.ip) == IPv6
		lk.ra = lk.ra || m == mAuto6 || m == mDHCP6
		lk.slaac = lk.slaac || m == mAuto6
	}
	lk.dhcp6 = p.ip.Uses(netconf.Auto6) && p.ip.Uses(netconf.DHCP6)
	var once sync.Once
	var err error
	lk.ready = func(ctx context.Context) error {
		once.Do(func() { err = s.bringUp(ctx, lk) })
		return err
	}
	if len(p.methods) == 0 {
		// ip=DEV:off: up, nothing else.
		go func() {
			if err := lk.ready(context.Background()); err != nil {
				s.cfg.Log.Warn("link (ip=off) not brought up", "link", lk.name, "err", err)
			}
		}()
	}
	return lk
}

// bringUp sets the IPv6 knobs (before the link is up: its link-local
// address is made then), sets the link up, applies ip=...:MTU and waits
// for carrier.
func (s *state) bringUp(ctx context.Context, lk *link) error {
	if err := s.ipv6Sysctls(lk); err != nil {
		return err
	}
	if lk.ip != nil && lk.ip.MTU > 0 {
		if err := s.cfg.Handle.LinkSetMTU(lk.nl, lk.ip.MTU); err != nil {
			return fmt.Errorf("set MTU %d: %w", lk.ip.MTU, err)
		}
	}
	if lk.ip != nil && len(lk.ip.MAC) > 0 {
		if err := s.cfg.Handle.LinkSetHardwareAddr(lk.nl, lk.ip.MAC); err != nil {
			return fmt.Errorf("set MAC %s: %w", lk.ip.MAC, err)
		}
		lk.mac = lk.ip.MAC
	}
	if err := s.cfg.Handle.LinkSetUp(lk.nl); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	if err := waitCarrier(ctx, s.cfg.Handle, lk.index, s.cfg.LinkTimeout); err != nil {
		return err
	}
	s.cfg.Log.Debug("carrier", "link", lk.name, "after", sinceMS(s.start))
	return nil
}

// errNoIPv6 fails the IPv6 sources of a kernel without IPv6 (or booted
// with ipv6.disable=1); IPv4 sources on the same link carry on.
var errNoIPv6 = errors.New("the kernel has no IPv6 (no /proc/sys/net/ipv6; ipv6.disable=1?)")
