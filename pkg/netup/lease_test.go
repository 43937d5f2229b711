package netup

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

func ack(t *testing.T, yiaddr string, opts ...dhcpv4.Option) *nclient4.Lease {
	t.Helper()
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.ParseIP(yiaddr))}
	for _, o := range opts {
		mods = append(mods, dhcpv4.WithOption(o))
	}
	m, err := dhcpv4.New(mods...)
	if err != nil {
		t.Fatal(err)
	}
	return &nclient4.Lease{Offer: m, ACK: m}
}

func TestParseLease(t *testing.T) {
	ip := net.ParseIP
	tests := []struct {
		name    string
		lease   *nclient4.Lease
		addr    string
		router  net.IP
		dns     string
		search  string
		life    time.Duration
		renew   time.Duration
		wantErr string
	}{
		{"full", ack(t, "192.0.2.60",
			dhcpv4.OptSubnetMask(net.CIDRMask(25, 32)), dhcpv4.OptRouter(ip("192.0.2.1")),
			dhcpv4.OptDNS(ip("192.0.2.53"), ip("0.0.0.0"), ip("198.51.100.53")),
			dhcpv4.OptDomainName("example.test"), dhcpv4.OptIPAddressLeaseTime(time.Hour),
			dhcpv4.OptRenewTimeValue(20*time.Minute)),
			"192.0.2.60/25", ip("192.0.2.1").To4(), "[192.0.2.53 198.51.100.53]", "[example.test]", time.Hour, 20 * time.Minute, ""},
		{"no mask: class default, no router, T1 half", ack(t, "198.51.100.7", dhcpv4.OptIPAddressLeaseTime(10*time.Minute)),
			"198.51.100.7/24", nil, "[]", "[]", 10 * time.Minute, 5 * time.Minute, ""},
		{"T1 beyond lease is ignored", ack(t, "192.0.2.61", dhcpv4.OptSubnetMask(net.CIDRMask(24, 32)),
			dhcpv4.OptIPAddressLeaseTime(time.Minute), dhcpv4.OptRenewTimeValue(time.Hour)),
			"192.0.2.61/24", nil, "[]", "[]", time.Minute, 30 * time.Second, ""},
		{"infinite lease", ack(t, "192.0.2.62", dhcpv4.OptSubnetMask(net.CIDRMask(32, 32)),
			dhcpv4.OptIPAddressLeaseTime(infinite)),
			"192.0.2.62/32", nil, "[]", "[]", 0, 0, ""},
		{"no address", ack(t, "0.0.0.0"), "", nil, "", "", 0, 0, "unusable address 0.0.0.0"},
		{"broadcast address", ack(t, "255.255.255.255"), "", nil, "", "", 0, 0, "unusable address 255.255.255.255"},
		{"multicast address", ack(t, "224.0.0.1"), "", nil, "", "", 0, 0, "unusable address 224.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := parseLease(tc.lease, false, time.Now())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseLease = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := l.addr.String(); got != tc.addr {
				t.Errorf("addr %s, want %s", got, tc.addr)
			}
			if !l.router.Equal(tc.router) {
				t.Errorf("router %v, want %v", l.router, tc.router)
			}
			if got := fmt.Sprint(l.dns); got != tc.dns {
				t.Errorf("dns %s, want %s", got, tc.dns)
			}
			if got := fmt.Sprint(l.search); got != tc.search {
				t.Errorf("search %s, want %s", got, tc.search)
			}
			if l.life != tc.life || l.renew != tc.renew {
				t.Errorf("life %v renew %v, want %v %v", l.life, l.renew, tc.life, tc.renew)
			}
		})
	}
}

func TestOfferOrRapidAck(t *testing.T) {
	msg := func(mt dhcpv4.MessageType, rapid bool) *dhcpv4.DHCPv4 {
		m, _ := dhcpv4.New(dhcpv4.WithMessageType(mt))
		if rapid {
			m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionRapidCommit, nil))
		}
		return m
	}
	tests := []struct {
		m      *dhcpv4.DHCPv4
		asked  bool
		accept bool
	}{
		{msg(dhcpv4.MessageTypeOffer, false), true, true},
		{msg(dhcpv4.MessageTypeOffer, false), false, true},
		{msg(dhcpv4.MessageTypeAck, true), true, true},
		{msg(dhcpv4.MessageTypeAck, true), false, false},
		{msg(dhcpv4.MessageTypeAck, false), true, false},
		{msg(dhcpv4.MessageTypeNak, false), true, false},
	}
	for _, tc := range tests {
		if got := offerOrRapidAck(tc.asked)(tc.m); got != tc.accept {
			t.Errorf("%s (rapid option %v), asked %v: accepted %v, want %v",
				tc.m.MessageType(), tc.m.Options.Has(dhcpv4.OptionRapidCommit), tc.asked, got, tc.accept)
		}
	}
}

func TestResolvConf(t *testing.T) {
	got := resolvConf([]linkDNS{
		{key: routeKey{IPv4, 2}, servers: []net.IP{net.ParseIP("192.0.2.53"), net.ParseIP("192.0.2.54")}, search: []string{"a.test"}},
		{key: routeKey{IPv6, 3}, servers: []net.IP{net.ParseIP("192.0.2.54"), net.ParseIP("198.51.100.53")}, search: []string{"a.test", "b.test"}},
	})
	want := "# written by zeroboot netup from DHCP, RAs and the command line\nsearch a.test b.test\n" +
		"nameserver 192.0.2.53\nnameserver 192.0.2.54\nnameserver 198.51.100.53\n"
	if got != want {
		t.Errorf("resolvConf =\n%s\nwant\n%s", got, want)
	}
}

func TestIsEthernet(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	attrs := func(name string, mac net.HardwareAddr, encap string, flags net.Flags, master int) netlink.LinkAttrs {
		return netlink.LinkAttrs{Name: name, HardwareAddr: mac, EncapType: encap, Flags: flags, MasterIndex: master}
	}
	tests := []struct {
		link netlink.Link
		want bool
	}{
		{&netlink.Device{LinkAttrs: attrs("eth0", mac, "ether", 0, 0)}, true},
		{&netlink.Veth{LinkAttrs: attrs("veth0", mac, "ether", 0, 0)}, true},
		{&netlink.Device{LinkAttrs: attrs("lo", net.HardwareAddr{0, 0, 0, 0, 0, 0}, "loopback", net.FlagLoopback, 0)}, false},
		{&netlink.Device{LinkAttrs: attrs("ib0", make(net.HardwareAddr, 20), "infiniband", 0, 0)}, false},
		{&netlink.Device{LinkAttrs: attrs("eth1", mac, "ether", 0, 7)}, false}, // enslaved to a bond/bridge
		{&netlink.Bridge{LinkAttrs: attrs("br0", mac, "ether", 0, 0)}, false},
		{&netlink.Vlan{LinkAttrs: attrs("eth0.7", mac, "ether", 0, 0)}, false},
		{&netlink.Device{LinkAttrs: attrs("wg0", nil, "none", 0, 0)}, false},
	}
	for _, tc := range tests {
		if got := isEthernet(tc.link); got != tc.want {
			t.Errorf("isEthernet(%s %s) = %v, want %v", tc.link.Type(), tc.link.Attrs().Name, got, tc.want)
		}
	}
}

func TestBroadcast(t *testing.T) {
	_, n, _ := net.ParseCIDR("192.0.2.77/26")
	n.IP = net.ParseIP("192.0.2.77").To4()
	if got := broadcast(*n); !got.Equal(net.ParseIP("192.0.2.127")) {
		t.Errorf("broadcast of 192.0.2.77/26 = %v, want 192.0.2.127", got)
	}
}

func TestUpErrorNamesEveryLink(t *testing.T) {
	carrier := &LinkError{Link: "eth0", Err: fmt.Errorf("%w after 1s (operstate down)", ErrNoCarrier)}
	dhcp := &LinkError{Link: "eth1", Err: errors.New("DHCP failed after 1 attempt(s): no answer within 1s")}
	probe := &LinkError{Link: "eth2", Err: fmt.Errorf("198.51.100.7/24: %w after 1 attempt(s): refused", ErrProbeFailed)}
	tests := []struct {
		in     []*LinkError
		prefix string
	}{
		{[]*LinkError{carrier}, "no link with carrier: eth0: no carrier"},
		{[]*LinkError{carrier, dhcp}, "no address on any link: eth0: no carrier after 1s (operstate down); eth1: DHCP failed"},
		{[]*LinkError{carrier, dhcp, probe}, "no link passed the probe: eth0: no carrier after 1s (operstate down); eth1: DHCP failed"},
	}
	for _, tc := range tests {
		err := upError(tc.in)
		if !strings.HasPrefix(err.Error(), tc.prefix) {
			t.Errorf("upError = %q, want prefix %q", err, tc.prefix)
		}
		var le *LinkError
		if !errors.As(err, &le) || le.Link != "eth0" {
			t.Errorf("upError does not unwrap to the first LinkError")
		}
	}
}
