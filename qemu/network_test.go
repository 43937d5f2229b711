package qemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netns"
	"github.com/zeroboot/zeroboot/internal/testenv"
	"github.com/zeroboot/zeroboot/qemu/vswitch"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// The network tests boot a node into sites: a network namespace holding
// the uplink tap of a userspace switch (qemu/vswitch: access, 802.1Q and
// LACP ports, which the host kernel cannot do), dnsmasq or a DHCP server,
// and a relay that forwards the site's registry address to the grid on
// the host's loopback. The node's NICs are QEMU dgram ports of the switch:
// nothing reaches the site except through it.
const (
	siteV4     = "192.0.2.1"    // the site's gateway and registry address
	siteDeadV4 = "198.51.100.1" // a site with DHCP and no registry
	siteV6     = "2001:db8:1::1"
	sitePort   = "8443"
)

type site struct {
	t   *testing.T
	ns  string
	h   netns.NsHandle
	sw  *vswitch.Switch
	dir string
	log bytes.Buffer
	mu  sync.Mutex
}

var siteCounter atomic.Int32

func newSite(t *testing.T) *site {
	t.Helper()
	testenv.NeedRoot(t, "network namespaces for the QEMU network tests")
	testenv.NeedTool(t, "dnsmasq")
	s := &site{t: t, ns: fmt.Sprintf("zbsite%d-%d", siteCounter.Add(1), time.Now().UnixNano()%100000), dir: t.TempDir()}
	s.ip("netns", "add", s.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", s.ns).Run() })
	var err error
	if s.h, err = netns.GetFromName(s.ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.h.Close() })
	if s.sw, err = vswitch.New(""); err != nil {
		t.Fatal(err)
	}
	s.sw.Log = func(format string, args ...any) { s.logf("vswitch: "+format, args...) }
	t.Cleanup(func() { s.sw.Close() })
	if err := s.sw.TapIn(s.ns, "sw0"); err != nil {
		t.Fatal(err)
	}
	// No DAD on the site's side: its addresses are there at once.
	s.ip("netns", "exec", s.ns, "sysctl", "-qw", "net.ipv6.conf.sw0.accept_dad=0")
	s.ip("-n", s.ns, "link", "set", "lo", "up")
	s.ip("-n", s.ns, "link", "set", "sw0", "up")
	t.Cleanup(func() {
		if t.Failed() {
			s.mu.Lock()
			t.Logf("site %s:\n%s", s.ns, s.log.String())
			s.mu.Unlock()
		}
	})
	return s
}

func (s *site) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(&s.log, format+"\n", args...)
}

func (s *site) ip(args ...string) {
	s.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		s.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (s *site) addr(cidr string) { s.ip("-n", s.ns, "addr", "add", cidr, "dev", "sw0", "nodad") }

// dnsmasq serves the site with args (ranges, RA) until the test ends.
func (s *site) dnsmasq(args ...string) {
	s.t.Helper()
	testenv.Dnsmasq(s.t, s.ns, "sw0", s.dir, func(l string) { s.logf("dnsmasq: %s", l) }, args...)
}

// relay makes the grid's registry answer at host:sitePort inside the site:
// the listener is the site's, each connection is forwarded to the grid on
// the host's loopback.
func (s *site) relay(host string, g *grid) {
	s.t.Helper()
	s.forward(host, sitePort, g.port)
}

// forward makes host:port inside the site a relay to port on the host's
// loopback: each connection is forwarded.
func (s *site) forward(host, port string, to int) {
	s.t.Helper()
	var ln net.Listener
	if err := testenv.InNS(s.h, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(host, port))
		return err
	}); err != nil {
		s.t.Fatalf("relay listen in %s: %v", s.ns, err)
	}
	s.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", to))
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
}

// nic is a node NIC on port id of the site's switch. Bonded NICs need a
// speed and full duplex, or Linux makes the port an individual link.
func (s *site) nic(id string, n int, mode vswitch.PortMode) NIC {
	s.t.Helper()
	arg, err := s.sw.QEMUPort(id, mode)
	if err != nil {
		s.t.Fatal(err)
	}
	return NIC{Netdev: arg, Device: fmt.Sprintf("virtio-net-pci,netdev=%s,mac=52:54:00:%02x:00:%02x,speed=1000,duplex=full", id, siteCounter.Load(), n)}
}

// registryURL is the site's registry, IPv6 in brackets.
func registryURL(host string) string { return "https://" + net.JoinHostPort(host, sitePort) }

// netBoot boots a node with nics and the command line (zeroboot.farm
// added) and waits for Core-0.
func netBoot(t *testing.T, g *grid, uuid, cmdline string, nics ...NIC) *VM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vm, id := bootVM(t, ctx, g, &VM{UUID: uuid, NICs: nics, Append: cmdline + " zeroboot.farm=demo"})
	if _, err := vm.WaitFor(ctx, reReady); err != nil {
		t.Fatal(err)
	}
	if _, err := g.waitNode(ctx, id, "ready"); err != nil {
		t.Fatal(err)
	}
	networkFigures(t, vm)
	return vm
}

// wantNetwork checks the console's network line: the winner's link,
// family and source.
func wantNetwork(t *testing.T, vm *VM, link, family, source string) {
	t.Helper()
	re := regexp.MustCompile(`network: \S+ on ` + regexp.QuoteMeta(link) + ` \(` + family + ` ` + regexp.QuoteMeta(source) + `\)`)
	if vm.Count(re) == 0 {
		t.Errorf("console never showed %q: %v", re, matching(vm, regexp.MustCompile(`network: `)))
	}
}

func gridFor(t *testing.T) *grid {
	t.Helper()
	needVM(t)
	g := newGrid(t)
	g.publish(core0Tree(t), 1, "--heartbeat", "2s")
	g.serve()
	return g
}

// TestNetIPv6Only: no IPv4 anywhere; SLAAC from the RA with DNS from
// RDNSS, or an address from stateful DHCPv6 (the RA's M flag); the
// registry by its IPv6 address.
func TestNetIPv6Only(t *testing.T) {
	for i, tc := range []struct {
		mode, source string
		dnsmasq      []string
	}{
		{"SLAAC", "slaac", []string{"--dhcp-range=2001:db8:1::,ra-only,64,1h", "--dhcp-option=option6:dns-server,[2001:db8:1::53]"}},
		{"DHCPv6", "dhcp6", []string{"--dhcp-range=2001:db8:1::100,2001:db8:1::1ff,64,1h", "--dhcp-rapid-commit"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			g := gridFor(t)
			s := newSite(t)
			s.addr(siteV6 + "/64")
			s.dnsmasq(append([]string{"--enable-ra"}, tc.dnsmasq...)...)
			s.relay(siteV6, g)
			vm := netBoot(t, g, fmt.Sprintf("5a1c0b0e-0000-4000-8000-00000000061%d", i), "zeroboot.registry="+registryURL(siteV6), s.nic("nic1", 1, vswitch.Access()))
			wantNetwork(t, vm, "eth0", "IPv6", tc.source)
		})
	}
}

// TestNetDualStackIPv4Dead: DHCPv4 answers but the registry is only on
// IPv6; the node reaches it over IPv6 and keeps both configured.
func TestNetDualStackIPv4Dead(t *testing.T) {
	g := gridFor(t)
	s := newSite(t)
	s.addr(siteV4 + "/24")
	s.addr(siteV6 + "/64")
	s.dnsmasq("--enable-ra", "--dhcp-range=2001:db8:1::,ra-only,64,1h",
		"--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,1h", "--dhcp-option=option:router,"+siteV4, "--dhcp-rapid-commit")
	s.relay(siteV6, g)
	vm := netBoot(t, g, "5a1c0b0e-0000-4000-8000-000000000602",
		"zeroboot.registry="+registryURL(siteV4)+","+registryURL(siteV6), s.nic("nic1", 1, vswitch.Access()))
	wantNetwork(t, vm, "eth0", "IPv6", "slaac")
	if vm.Count(regexp.MustCompile(`configured link=eth0 family=IPv4 source=dhcp4 addr=192\.0\.2\.`)) == 0 {
		t.Errorf("IPv4 was not configured beside IPv6")
	}
}

// TestNetStatic: no DHCP server and no router advertisement anywhere.
func TestNetStatic(t *testing.T) {
	g := gridFor(t)
	s := newSite(t)
	s.addr(siteV4 + "/24")
	s.relay(siteV4, g)
	vm := netBoot(t, g, "5a1c0b0e-0000-4000-8000-000000000603",
		"ip=192.0.2.10::"+siteV4+":255.255.255.0:node603:eth0:none nameserver=192.0.2.53 zeroboot.registry="+registryURL(siteV4),
		s.nic("nic1", 1, vswitch.Access()))
	wantNetwork(t, vm, "eth0", "IPv4", "static")
	if vm.Count(regexp.MustCompile(`host name node603 \(from ip=\)`)) == 0 {
		t.Errorf("the host name of ip= was not set")
	}
}

// TestNetVLAN: the registry is reachable only on VLAN 10; the switch
// drops untagged frames, so only a node that tags gets there.
func TestNetVLAN(t *testing.T) {
	g := gridFor(t)
	s := newSite(t)
	s.addr(siteV4 + "/24")
	s.dnsmasq("--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,1h", "--dhcp-option=option:router,"+siteV4, "--dhcp-rapid-commit")
	s.relay(siteV4, g)
	vm := netBoot(t, g, "5a1c0b0e-0000-4000-8000-000000000604",
		"vlan=eth0.10:eth0 ip=eth0.10:dhcp zeroboot.registry="+registryURL(siteV4), s.nic("nic1", 1, vswitch.Tagged(10)))
	wantNetwork(t, vm, "eth0.10", "IPv4", "dhcp4")
	if c := s.sw.Counters("nic1"); c.In == 0 {
		t.Errorf("no tagged frame from the node: %+v", c)
	}
}

// TestNetBond: two NICs in a bond. With 802.3ad the switch forwards
// nothing on a member until LACP has negotiated on it; a VLAN may ride on
// the bond; active-backup needs no partner.
func TestNetBond(t *testing.T) {
	for i, tc := range []struct {
		name, cmdline, link string
		mode                vswitch.PortMode
		lacp                bool
	}{
		{"LACP", "bond=bond0:eth0,eth1:mode=802.3ad,miimon=100,lacp_rate=fast ip=bond0:dhcp", "bond0", vswitch.LACP("bond0"), true},
		{"VLAN on LACP", "bond=bond0:eth0,eth1:mode=802.3ad,miimon=100,lacp_rate=fast vlan=bond0.10:bond0 ip=bond0.10:dhcp", "bond0.10",
			vswitch.LACP("bond0").Tagged(10), true},
		{"active-backup", "bond=bond0:eth0,eth1:mode=active-backup,miimon=100 ip=bond0:dhcp", "bond0", vswitch.Access(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := gridFor(t)
			s := newSite(t)
			s.addr(siteV4 + "/24")
			s.dnsmasq("--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,1h", "--dhcp-option=option:router,"+siteV4, "--dhcp-rapid-commit")
			s.relay(siteV4, g)
			vm := netBoot(t, g, fmt.Sprintf("5a1c0b0e-0000-4000-8000-00000000065%d", i), tc.cmdline+" zeroboot.registry="+registryURL(siteV4),
				s.nic("nic1", 1, tc.mode), s.nic("nic2", 2, tc.mode))
			wantNetwork(t, vm, tc.link, "IPv4", "dhcp4")
			if tc.lacp {
				if up := s.sw.Negotiated("bond0"); len(up) != 2 {
					t.Errorf("negotiated members %v, want both", up)
				}
				t.Logf("figure: switch bond0 %+v", s.sw.Counters("bond0"))
			}
		})
	}
}

// TestNetSecondNICLeadsHome: eth0 gets a DHCP lease on a network without
// the registry; eth1's network has it. The node must choose eth1.
func TestNetSecondNICLeadsHome(t *testing.T) {
	g := gridFor(t)
	dead := newSite(t)
	dead.addr(siteDeadV4 + "/24")
	dead.dnsmasq("--dhcp-range=198.51.100.50,198.51.100.99,255.255.255.0,1h", "--dhcp-option=option:router,"+siteDeadV4, "--dhcp-rapid-commit")
	home := newSite(t)
	home.addr(siteV4 + "/24")
	home.dnsmasq("--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,1h", "--dhcp-option=option:router,"+siteV4, "--dhcp-rapid-commit")
	home.relay(siteV4, g)
	vm := netBoot(t, g, "5a1c0b0e-0000-4000-8000-000000000606", "ip=dhcp zeroboot.registry="+registryURL(siteV4),
		dead.nic("nic1", 1, vswitch.Access()), home.nic("nic2", 2, vswitch.Access()))
	wantNetwork(t, vm, "eth1", "IPv4", "dhcp4")
	if vm.Count(regexp.MustCompile(`network: also eth0 dhcp4: (198\.51\.100\.\d+/24(: probe failed| configured, probing)|still trying)`)) == 0 {
		t.Errorf("console does not say why eth0 lost: %v", matching(vm, regexp.MustCompile(`network: also`)))
	}
}

// TestNetLeaseRenewedAfterHandoff: a DHCP server with a 10 s lease; the
// address expires with its lease unless renewed, so a node still answering
// pings many lease times after Core-0 started has renewed it, from PID 1,
// after the hand-off.
func TestNetLeaseRenewedAfterHandoff(t *testing.T) {
	g := gridFor(t)
	s := newSite(t)
	s.addr(siteV4 + "/24")
	s.relay(siteV4, g)
	var requests atomic.Int32
	s.dhcpServer(10*time.Second, &requests)
	vm := netBoot(t, g, "5a1c0b0e-0000-4000-8000-000000000607", "ip=dhcp zeroboot.registry="+registryURL(siteV4), s.nic("nic1", 1, vswitch.Access()))
	wantNetwork(t, vm, "eth0", "IPv4", "dhcp4")
	before := requests.Load()
	for i := 0; i < 4; i++ {
		time.Sleep(10 * time.Second)
		if err := s.ping(leaseAddr); err != nil {
			t.Fatalf("node does not answer at %s %d lease times after Core-0 started: %v", leaseAddr, i+1, err)
		}
	}
	renewed := requests.Load() - before
	t.Logf("figure: %d DHCP requests (renewals) in 40 s after Core-0 started, lease 10 s", renewed)
	if renewed < 4 {
		t.Errorf("%d renewals in 4 lease times, want at least 4 (T1 is half the lease)", renewed)
	}
	if vm.Count(regexp.MustCompile(`lease renewed`)) == 0 {
		t.Errorf("console never said the lease was renewed")
	}
}

// leaseAddr is what dhcpServer leases.
const leaseAddr = "192.0.2.77"

// dhcpServer answers DISCOVER and REQUEST on the site with leaseAddr for
// life, counting REQUESTs: dnsmasq leases for two minutes at least.
func (s *site) dhcpServer(life time.Duration, requests *atomic.Int32) {
	s.t.Helper()
	handler := func(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
		var typ dhcpv4.MessageType
		switch m.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			typ = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			typ = dhcpv4.MessageTypeAck
			requests.Add(1)
		default:
			return
		}
		reply, err := dhcpv4.NewReplyFromRequest(m,
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithYourIP(net.ParseIP(leaseAddr)),
			dhcpv4.WithServerIP(net.ParseIP(siteV4)),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(siteV4))),
			dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.CIDRMask(24, 32))),
			dhcpv4.WithOption(dhcpv4.OptRouter(net.ParseIP(siteV4))),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(life)))
		if err != nil {
			return
		}
		s.logf("dhcp: %s -> %s %s", m.MessageType(), typ, leaseAddr)
		// The client has no address yet: answer by broadcast.
		conn.WriteTo(reply.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort})
	}
	var srv *server4.Server
	if err := testenv.InNS(s.h, func() (err error) {
		srv, err = server4.NewServer("sw0", &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, handler)
		return err
	}); err != nil {
		s.t.Fatalf("DHCP server in %s: %v", s.ns, err)
	}
	go srv.Serve()
	s.t.Cleanup(func() { srv.Close() })
}

// ping sends ICMP echo requests to addr from the site until one is
// answered, for up to 3 s.
func (s *site) ping(addr string) error {
	var c *icmp.PacketConn
	if err := testenv.InNS(s.h, func() (err error) {
		c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	dst := &net.IPAddr{IP: net.ParseIP(addr)}
	deadline := time.Now().Add(3 * time.Second)
	for seq := 1; time.Now().Before(deadline); seq++ {
		m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 0x2b, Seq: seq, Data: []byte("zeroboot")}}
		b, _ := m.Marshal(nil)
		if _, err := c.WriteTo(b, dst); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				break // resend
			}
			r, err := icmp.ParseMessage(1, buf[:n])
			if err == nil && r.Type == ipv4.ICMPTypeEchoReply && from.String() == addr {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply from %s within 3 s", addr)
}

// TestNetRegistryFromDHCP: no zeroboot.registry on the command line; the
// site's DHCP server gives it to nodes of user class zeroboot (option 67).
func TestNetRegistryFromDHCP(t *testing.T) {
	g := gridFor(t)
	s := newSite(t)
	s.addr(siteV4 + "/24")
	s.dnsmasq("--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,1h", "--dhcp-option=option:router,"+siteV4, "--dhcp-rapid-commit",
		"--dhcp-userclass=set:zb,zeroboot", "--dhcp-option=tag:zb,option:bootfile-name,"+registryURL(siteV4))
	s.relay(siteV4, g)
	vm := netBoot(t, g, "5a1c0b0e-0000-4000-8000-000000000608", "", s.nic("nic1", 1, vswitch.Access()))
	wantNetwork(t, vm, "eth0", "IPv4", "dhcp4")
	if vm.Count(regexp.MustCompile(`registry from DHCP \(dhcp4 on eth0\): `+regexp.QuoteMeta(registryURL(siteV4)))) == 0 {
		t.Errorf("console does not say the registry came from DHCP")
	}
}

// TestNetUntaggedAndUnbondedFail shows the switch tells: a node that does
// not tag on the VLAN port (eth0) and does not bond its LACP port (eth1)
// gets no address at all, and the switch counts why.
func TestNetUntaggedAndUnbondedFail(t *testing.T) {
	g := gridFor(t)
	s := newSite(t)
	s.addr(siteV4 + "/24")
	s.dnsmasq("--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,1h", "--dhcp-option=option:router,"+siteV4, "--dhcp-rapid-commit")
	s.relay(siteV4, g)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm := &VM{UUID: "5a1c0b0e-0000-4000-8000-000000000609",
		Append: "ip=dhcp zeroboot.farm=demo zeroboot.registry=" + registryURL(siteV4),
		NICs:   []NIC{s.nic("nic1", 1, vswitch.Tagged(10)), s.nic("nic2", 2, vswitch.LACP("bond0"))}}
	startVM(t, g, vm)
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`network failed \(attempt 1\)`)); err != nil {
		t.Fatal(err)
	}
	// The links fail in whichever order their last attempts end.
	for _, link := range []string{"eth0", "eth1"} {
		if vm.Count(regexp.MustCompile(`no address on any link: .*`+link+` dhcp4: DHCP failed`)) == 0 {
			t.Errorf("the failure does not name %s's DHCP: %v", link, matching(vm, regexp.MustCompile(`network failed`)))
		}
	}
	if c := s.sw.Counters("nic1"); c.DropUntagged == 0 {
		t.Errorf("VLAN port dropped no untagged frame: %+v", c)
	}
	if c := s.sw.Counters("nic2"); c.DropNotNegotiated == 0 {
		t.Errorf("LACP port dropped no frame before negotiation: %+v", c)
	}
	if vm.Count(reReady) != 0 {
		t.Errorf("Core-0 started through ports the node did not tag or bond")
	}
}
