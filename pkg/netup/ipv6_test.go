package netup

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/zeroboot/zeroboot/internal/testenv"
	"github.com/zeroboot/zeroboot/pkg/netconf"
	"golang.org/x/net/ipv6"
)

// v6net puts 2001:db8:1::1/64 on the server side of eth0 (no DAD, so the
// router is ready at once) and returns the router's link-local address.
func (n *testNet) v6net() net.IP {
	n.t.Helper()
	n.veth("eth0", "srv0", "", true)
	// No DAD on the router's side: its link-local address, the RA's
	// source, is usable as soon as the link is.
	if out, err := exec.Command("ip", "netns", "exec", n.server, "sysctl", "-qw", "net.ipv6.conf.srv0.accept_dad=0").CombinedOutput(); err != nil {
		n.t.Fatalf("sysctl: %v %s", err, out)
	}
	n.ip("-n", n.server, "link", "set", "srv0", "up")
	n.ip("-n", n.server, "addr", "add", "2001:db8:1::1/64", "dev", "srv0", "nodad")
	// The kernel makes the link-local address only once the link has
	// carrier, i.e. once the client side is up: derive it (EUI-64).
	out, err := execOut("ip", "-n", n.server, "-o", "link", "show", "dev", "srv0")
	i := strings.Index(out, "link/ether ")
	if err != nil || i < 0 {
		n.t.Fatalf("MAC of srv0: %v %q", err, out)
	}
	mac, err := net.ParseMAC(strings.Fields(out[i:])[1])
	if err != nil {
		n.t.Fatal(err)
	}
	ll := net.IP{0xfe, 0x80, 0, 0, 0, 0, 0, 0, mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]}
	return ll
}

func execOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}

func (n *testNet) serverNS() netns.NsHandle {
	n.t.Helper()
	h, err := netns.GetFromName(n.server)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { h.Close() })
	return h
}

// v6Config is cfg for one IPv6 method on eth0.
func (n *testNet) v6Config(m netconf.Method) Config {
	cfg := n.config()
	cfg.Net = netconf.Config{IPs: []netconf.IP{{Device: "eth0", Methods: []netconf.Method{m}}}}
	cfg.DHCPTimeout = 3 * time.Second
	return cfg
}

func (n *testNet) defaultRoutes6(link string) []netlink.Route {
	return n.defaultRoutesOf(netlink.FAMILY_V6, link)
}

func TestUpIPv6(t *testing.T) {
	prefix := netip.MustParsePrefix("2001:db8:1::/64")
	tests := []struct {
		name       string
		method     netconf.Method
		dnsmasq    []string
		wantSource string
		wantDNS    string // "" : none expected
		wantPrefix int
	}{
		{"SLAAC with RDNSS and DNSSL", netconf.Auto6,
			[]string{"--enable-ra", "--dhcp-range=2001:db8:1::,ra-only,64,1h", "--dhcp-option=option6:dns-server,[2001:db8:1::53]", "--domain=v6.test"},
			"slaac", "2001:db8:1::53", 64},
		{"SLAAC, RA without RDNSS", netconf.Auto6,
			[]string{"--enable-ra", "--dhcp-range=2001:db8:1::,ra-only,64,1h"},
			"slaac", "", 64},
		{"SLAAC, DNS from stateless DHCPv6", netconf.Auto6,
			[]string{"--enable-ra", "--dhcp-range=2001:db8:1::,ra-stateless,64,1h", "--dhcp-option=option6:dns-server,[2001:db8:1::54]",
				"--dhcp-option=option6:ntp-server,[2001:db8:1::123]"},
			"slaac", "2001:db8:1::54", 64},
		{"stateful DHCPv6 from the RA's M flag", netconf.Auto6,
			[]string{"--enable-ra", "--dhcp-range=2001:db8:1::100,2001:db8:1::1ff,64,1h", "--dhcp-option=option6:dns-server,[2001:db8:1::55]", "--dhcp-rapid-commit"},
			"dhcp6", "2001:db8:1::55", 128},
		{"ip=eth0:dhcp6", netconf.DHCP6,
			[]string{"--enable-ra", "--dhcp-range=2001:db8:1::100,2001:db8:1::1ff,64,1h", "--dhcp-option=option6:dns-server,[2001:db8:1::55]"},
			"dhcp6", "2001:db8:1::55", 128},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNet(t)
			router := n.v6net()
			n.startDnsmasq("srv0", tc.dnsmasq...)
			cfg := n.v6Config(tc.method)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			res, err := Up(ctx, cfg)
			if err != nil {
				t.Fatalf("Up: %v", err)
			}
			t.Logf("result: %+v (took %v)", res, res.Took)
			ip, _ := netip.AddrFromSlice(res.Addr.IP)
			ones, _ := res.Addr.Mask.Size()
			if res.Link != "eth0" || res.Family != IPv6 || res.Source != tc.wantSource || !prefix.Contains(ip) || ones != tc.wantPrefix {
				t.Errorf("result %s %s %s %s, want eth0 IPv6 %s in %s/%d", res.Link, res.Family, res.Source, res.Addr.String(), tc.wantSource, prefix, tc.wantPrefix)
			}
			if !res.Router.Equal(router) {
				t.Errorf("router %v, want the RA's source %v", res.Router, router)
			}
			defaults := n.defaultRoutes6("eth0")
			if len(defaults) != 1 || !defaults[0].Gw.Equal(router) || defaults[0].Priority != baseMetric {
				t.Errorf("IPv6 default routes on eth0 = %v, want one via %v metric %d", defaults, router, baseMetric)
			}
			if strings.Contains(strings.Join(tc.dnsmasq, " "), "ntp-server") && (len(res.NTP) != 1 || res.NTP[0].String() != "2001:db8:1::123") {
				t.Errorf("NTP %v, want [2001:db8:1::123] (DHCPv6 option 56)", res.NTP)
			}
			rc, _ := os.ReadFile(cfg.ResolvConf)
			if tc.wantDNS != "" && !strings.Contains(string(rc), "nameserver "+tc.wantDNS+"\n") {
				t.Errorf("resolv.conf = %q, want nameserver %s", rc, tc.wantDNS)
			}
			if tc.wantDNS == "" && strings.Contains(string(rc), "nameserver") {
				t.Errorf("resolv.conf = %q, want no nameserver", rc)
			}
		})
	}
}

func TestUpIPv6NoRouter(t *testing.T) {
	n := newTestNet(t)
	n.v6net()
	cfg := n.v6Config(netconf.Auto6)
	cfg.DHCPTimeout = 500 * time.Millisecond
	cfg.Retries = 1
	_, err := Up(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "eth0 auto6: IPv6 failed after 2 attempt(s): no router advertisement within 500ms") {
		t.Fatalf("Up without a router: %v, want the RA wait named", err)
	}
}

// TestUpDualStackIPv6Wins: DHCPv4 answers, but only IPv6 reaches the
// registry: the IPv6 source wins, IPv4 stays configured behind it.
func TestUpDualStackIPv6Wins(t *testing.T) {
	n := newTestNet(t)
	n.v6net()
	n.ip("-n", n.server, "addr", "add", "192.0.2.1/24", "dev", "srv0")
	n.startDnsmasq("srv0", "--enable-ra", "--dhcp-range=2001:db8:1::,ra-only,64,1h",
		"--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,1h", "--dhcp-option=option:router,192.0.2.1", "--dhcp-rapid-commit")
	// The "registry" listens on the server's IPv6 address only.
	var ln net.Listener
	if err := inNS(n.serverNS(), func() (err error) {
		ln, err = net.Listen("tcp", "[2001:db8:1::1]:8443")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go acceptAndClose(ln)
	cfg := n.config()
	cfg.Net = netconf.Config{}
	cfg.Probe = dialProbe([]string{"198.51.100.10:8443", "[2001:db8:1::1]:8443"}, 300*time.Millisecond, dialIn(n.clientNS))
	// No retry: past DAD, the first connection from the SLAAC address
	// must go through.
	cfg.ProbeRetries = -1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	if res.Family != IPv6 || res.Source != "slaac" {
		t.Fatalf("winner %s %s %s, want IPv6 slaac", res.Link, res.Family, res.Source)
	}
	if !strings.Contains(strings.Join(res.Others, "; "), "eth0 dhcp4") {
		t.Errorf("Others = %q, want the IPv4 source's state", res.Others)
	}
	// IPv4 stays configured (the probe fails, its route stays unproven).
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if addrs, _ := n.h.AddrList(n.link("eth0"), netlink.FAMILY_V4); len(addrs) == 1 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("eth0 has no IPv4 address beside IPv6")
}

// TestUpRegistryFromDHCP: a server that knows zeroboot's user class gives
// the registry list in DHCPv4 option 67 and DHCPv6 option 59.
func TestUpRegistryFromDHCP(t *testing.T) {
	tests := []struct {
		name    string
		v6      bool
		dnsmasq []string
		want    string
	}{
		{"DHCPv4 option 67", false, []string{"--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,1h", "--dhcp-userclass=set:zb,zeroboot",
			"--dhcp-option=tag:zb,option:bootfile-name,https://192.0.2.1:8443,https://reg.example.net"}, "https://192.0.2.1:8443,https://reg.example.net"},
		{"DHCPv4, other user class only", false, []string{"--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,1h", "--dhcp-userclass=set:ipxe,iPXE",
			"--dhcp-option=tag:ipxe,option:bootfile-name,http://192.0.2.1/boot.ipxe"}, ""},
		{"DHCPv6 option 59", true, []string{"--enable-ra", "--dhcp-range=2001:db8:1::100,2001:db8:1::1ff,64,1h", "--dhcp-userclass=set:zb,zeroboot",
			"--dhcp-option=tag:zb,option6:bootfile-url,https://[2001:db8:1::1]:8443"}, "https://[2001:db8:1::1]:8443"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNet(t)
			n.v6net()
			n.ip("-n", n.server, "addr", "add", "192.0.2.1/24", "dev", "srv0")
			n.startDnsmasq("srv0", tc.dnsmasq...)
			cfg := n.config()
			if tc.v6 {
				cfg = n.v6Config(netconf.Auto6)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			res, err := Up(ctx, cfg)
			if err != nil {
				t.Fatalf("Up: %v", err)
			}
			if res.Registry != tc.want {
				t.Errorf("registry from DHCP = %q, want %q", res.Registry, tc.want)
			}
		})
	}
}

// TestUpWithoutIPv6: a kernel booted with ipv6.disable=1 has no
// /proc/sys/net/ipv6; auto still gets its DHCPv4 address, and the IPv6
// source says why it gave nothing.
func TestUpWithoutIPv6(t *testing.T) {
	n := newTestNet(t)
	n.veth("eth0", "srv0", "192.0.2.1/24", false)
	n.dnsmasq("srv0", true)
	cfg := n.config()
	cfg.Net = netconf.Config{}
	cfg.ProcSys = t.TempDir() // no net/ipv6 in it
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	checkResult(t, res, "eth0", true)
	// The IPv6 source fails at once, before DHCPv4 can answer.
	if want := "eth0 auto6: the kernel has no IPv6"; !strings.Contains(strings.Join(res.Others, "; "), want) {
		t.Errorf("Others = %q, want %q", res.Others, want)
	}
}

// raSender sends router advertisements on srv0 from the server namespace,
// from a chosen link-local source, as a second router or a liar would.
type raSender struct {
	t *testing.T
	c *ndp.Conn
}

func (n *testNet) raSender() *raSender {
	n.t.Helper()
	var c *ndp.Conn
	if err := testenv.InNS(n.serverNS(), func() error {
		ifi, err := net.InterfaceByName("srv0")
		if err != nil {
			return err
		}
		c, _, err = ndp.Listen(ifi, ndp.LinkLocal)
		return err
	}); err != nil {
		n.t.Fatalf("RA sender: %v", err)
	}
	n.t.Cleanup(func() { c.Close() })
	return &raSender{t: n.t, c: c}
}

// send advertises 2001:db8:1::/64 with the given router lifetime from src
// (added to srv0 as a link-local address first).
func (r *raSender) send(n *testNet, src string, life time.Duration) {
	r.t.Helper()
	ra := &ndp.RouterAdvertisement{CurrentHopLimit: 64, RouterLifetime: life, Options: []ndp.Option{
		&ndp.PrefixInformation{PrefixLength: 64, OnLink: true, AutonomousAddressConfiguration: true,
			ValidLifetime: time.Hour, PreferredLifetime: time.Hour, Prefix: netip.MustParseAddr("2001:db8:1::")},
	}}
	cm := &ipv6.ControlMessage{HopLimit: ndp.HopLimit, Src: net.ParseIP(src), IfIndex: 0}
	if err := testenv.InNS(n.serverNS(), func() error {
		ifi, err := net.InterfaceByName("srv0")
		if err != nil {
			return err
		}
		cm.IfIndex = ifi.Index
		return r.c.WriteTo(ra, cm, netip.MustParseAddr("ff02::1"))
	}); err != nil {
		r.t.Fatalf("send RA from %s: %v", src, err)
	}
}

// TestRADefaultRoutePerRouter: the route follows the router in use only.
// Another router's lifetime-0 RA leaves it; the router's own lifetime-0 RA
// removes it; a lifetime that runs out removes it too.
func TestRADefaultRoutePerRouter(t *testing.T) {
	n := newTestNet(t)
	n.v6net()
	const a, b = "fe80::a", "fe80::b"
	for _, ll := range []string{a, b} {
		n.ip("-n", n.server, "addr", "add", ll+"/64", "dev", "srv0", "nodad")
	}
	rs := n.raSender()
	cfg := n.v6Config(netconf.Auto6)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // answer the solicitations: router a, lifetime 30 s
		for ctx.Err() == nil {
			rs.send(n, a, 30*time.Second)
			time.Sleep(300 * time.Millisecond)
			if len(n.defaultRoutes6("eth0")) > 0 {
				return
			}
		}
	}()
	res, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	if res.Router.String() != a {
		t.Fatalf("router %v, want %s", res.Router, a)
	}
	routeVia := func(want string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			rs := n.defaultRoutes6("eth0")
			got := ""
			if len(rs) == 1 {
				got = rs[0].Gw.String()
			}
			if got == want && len(rs) <= 1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("IPv6 default routes %v, want via %q", rs, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	routeVia(a)
	rs.send(n, b, 0) // another router says it is none: nothing changes
	time.Sleep(300 * time.Millisecond)
	routeVia(a)
	rs.send(n, a, 0) // the router in use withdraws
	routeVia("")
	rs.send(n, a, 2*time.Second) // back, for two seconds only
	routeVia(a)
	time.Sleep(2500 * time.Millisecond)
	routeVia("")
}
