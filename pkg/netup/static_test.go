package netup

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/zeroboot/zeroboot/pkg/netconf"
)

// TestUpStatic: no DHCP server and no router advertisement anywhere; the
// ip= addresses, gateways and DNS servers are applied and probed.
func TestUpStatic(t *testing.T) {
	tests := []struct {
		name, ip  string
		family    int
		gw        string
		wantRoute bool
	}{
		{"IPv4", "192.0.2.10::192.0.2.1:255.255.255.0:node1:eth0:none:192.0.2.53", netlink.FAMILY_V4, "192.0.2.1", true},
		{"IPv4 gateway outside the subnet", "192.0.2.10::198.51.100.1:32::eth0:off", netlink.FAMILY_V4, "198.51.100.1", true},
		{"IPv6", "[2001:db8:1::10]::[2001:db8:1::1]:64::eth0:none:[2001:db8:1::53]", netlink.FAMILY_V6, "2001:db8:1::1", true},
		{"IPv6 without gateway", "[2001:db8:1::10]:::64::eth0:none", netlink.FAMILY_V6, "", false},
		{"IPv4 point-to-point peer", "192.0.2.10:198.51.100.7:198.51.100.7:32::eth0:none", netlink.FAMILY_V4, "198.51.100.7", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNet(t)
			n.veth("eth0", "srv0", "", false)
			ip, err := netconf.ParseIP(tc.ip)
			if err != nil {
				t.Fatalf("ParseIP(%q): %v", tc.ip, err)
			}
			cfg := n.config()
			cfg.Net = netconf.Config{IPs: []netconf.IP{ip}}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			res, err := Up(ctx, cfg)
			if err != nil {
				t.Fatalf("Up: %v", err)
			}
			if res.Source != "static" || res.Addr.String() != ip.Addr.String() {
				t.Errorf("result %s %s, want static %s", res.Source, res.Addr.String(), ip.Addr)
			}
			addrs, err := n.h.AddrList(n.link("eth0"), tc.family)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, a := range addrs {
				samePeer := !ip.Peer.IsValid() || (a.Peer != nil && a.Peer.IP.String() == ip.Peer.String())
				found = found || (a.IPNet.String() == ip.Addr.String() && samePeer)
			}
			if !found {
				t.Errorf("addresses on eth0 = %v, want %s", addrs, ip.Addr)
			}
			routes, err := n.h.RouteListFiltered(tc.family, &netlink.Route{LinkIndex: n.link("eth0").Attrs().Index}, netlink.RT_FILTER_OIF)
			if err != nil {
				t.Fatal(err)
			}
			var gws []string
			for _, r := range routes {
				if isDefault(r.Dst) {
					gws = append(gws, r.Gw.String())
				}
			}
			if tc.wantRoute && (len(gws) != 1 || gws[0] != tc.gw) {
				t.Errorf("default routes via %v, want one via %s", gws, tc.gw)
			}
			if !tc.wantRoute && len(gws) != 0 {
				t.Errorf("default routes via %v, want none", gws)
			}
			rc, _ := os.ReadFile(cfg.ResolvConf)
			for _, d := range ip.DNS {
				if !strings.Contains(string(rc), "nameserver "+net.IP(d.AsSlice()).String()+"\n") {
					t.Errorf("resolv.conf = %q, want nameserver %s", rc, d)
				}
			}
		})
	}
}

// TestUpOffAndNamed: ip=eth0:off brings eth0 up unconfigured; eth1 is the
// only one named for DHCPv4, and a link no ip= names is left alone.
func TestUpOffAndNamed(t *testing.T) {
	n := newTestNet(t)
	n.veth("eth0", "srv0", "", false)
	n.veth("eth1", "srv1", "192.0.2.1/24", false)
	n.veth("eth2", "srv2", "", false)
	n.dnsmasq("srv1", true)
	cfg := n.config()
	off, _ := netconf.ParseIP("eth0:off")
	dhcp, _ := netconf.ParseIP("eth1:dhcp")
	cfg.Net = netconf.Config{IPs: []netconf.IP{off, dhcp}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	checkResult(t, res, "eth1", true)
	if len(res.Others) != 0 {
		t.Errorf("Others = %q, want none (eth0 is off, eth2 not named)", res.Others)
	}
	if n.link("eth2").Attrs().Flags&net.FlagUp != 0 {
		t.Errorf("eth2, named by no ip=, was set up")
	}
	cfg.Net.IPs = append(cfg.Net.IPs, netconf.IP{Device: "eth9", Methods: []netconf.Method{netconf.DHCP}})
	if _, err := Up(ctx, cfg); err == nil || !strings.Contains(err.Error(), "ip=: no link named eth9") {
		t.Errorf("Up with ip= naming a missing link: %v", err)
	}
}

// TestUpRename: ifname= renames by MAC before anything else, so ip= can
// name the link by its new name.
func TestUpRename(t *testing.T) {
	n := newTestNet(t)
	n.veth("eth0", "srv0", "192.0.2.1/24", false)
	n.dnsmasq("srv0", true)
	mac := n.link("eth0").Attrs().HardwareAddr
	r, err := netconf.ParseRename("uplink0:" + mac.String())
	if err != nil {
		t.Fatal(err)
	}
	ip, _ := netconf.ParseIP("uplink0:dhcp")
	cfg := n.config()
	cfg.Net = netconf.Config{Renames: []netconf.Rename{r}, IPs: []netconf.IP{ip}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	if res.Link != "uplink0" {
		t.Errorf("configured %s, want uplink0", res.Link)
	}
	// Up again: the rename is already done, nothing fails.
	if _, err := Up(ctx, cfg); err != nil {
		t.Errorf("second Up after the rename: %v", err)
	}
	r.MAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	cfg.Net.Renames = []netconf.Rename{r}
	if _, err := Up(ctx, cfg); err == nil || !strings.Contains(err.Error(), "no link has MAC 02:00:00:00:00:99") {
		t.Errorf("Up renaming a MAC no link has: %v", err)
	}
}
