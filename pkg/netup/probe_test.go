package netup

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/zeroboot/zeroboot/internal/testenv"
)

// registry is where the test "registry" listens: a third namespace behind
// the server namespace, which routes for it but is only routed back to the
// 198.51.100.0/24 segment.
const registryAddr = "203.0.113.10:8443"

var registryIP = net.IPv4(203, 0, 113, 10)

// acceptAndClose plays a registry for the probe: it takes every
// connection and closes it, until ln is closed.
func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// inNS runs fn with the calling thread in ns, for the sockets fn creates.
func inNS(ns netns.NsHandle, fn func() error) error { return testenv.InNS(ns, fn) }

// dialIn dials from inside ns: the socket, its connect and its wait all run
// on the goroutine's locked thread.
func dialIn(ns netns.NsHandle) dialFunc {
	return func(ctx context.Context, d *net.Dialer, network, addr string) (c net.Conn, err error) {
		nerr := inNS(ns, func() error {
			c, err = d.DialContext(ctx, network, addr)
			return nil
		})
		if nerr != nil {
			return nil, nerr
		}
		return c, err
	}
}

// addNS creates one more namespace, deleted when the test ends.
func (n *testNet) addNS(name string) netns.NsHandle {
	n.t.Helper()
	n.ip("netns", "add", name)
	n.t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		n.t.Fatalf("open namespace %s: %v", name, err)
	}
	n.t.Cleanup(func() { h.Close() })
	return h
}

// registry starts a TCP listener on registryAddr in a namespace behind the
// server one; it answers only the 198.51.100.0/24 segment.
func (n *testNet) registry() {
	n.t.Helper()
	reg := n.server[:len(n.server)-2] + "-r"
	regNS := n.addNS(reg)
	n.ip("-n", reg, "link", "set", "lo", "up")
	n.ip("link", "add", "rtr0", "netns", n.server, "type", "veth", "peer", "name", "reg0", "netns", reg)
	n.ip("-n", n.server, "addr", "add", "203.0.113.1/24", "dev", "rtr0")
	n.ip("-n", reg, "addr", "add", "203.0.113.10/24", "dev", "reg0")
	n.ip("-n", n.server, "link", "set", "rtr0", "up")
	n.ip("-n", reg, "link", "set", "reg0", "up")
	n.ip("-n", reg, "route", "add", "198.51.100.0/24", "via", "203.0.113.1")
	if out, err := exec.Command("ip", "netns", "exec", n.server, "sh", "-c",
		"echo 1 > /proc/sys/net/ipv4/ip_forward").CombinedOutput(); err != nil {
		n.t.Fatalf("enable forwarding in %s: %v\n%s", n.server, err, out)
	}
	var ln net.Listener
	if err := inNS(regNS, func() (err error) {
		ln, err = net.Listen("tcp", registryAddr)
		return err
	}); err != nil {
		n.t.Fatalf("listen on %s in %s: %v", registryAddr, reg, err)
	}
	n.t.Cleanup(func() { ln.Close() })
	go acceptAndClose(ln)
}

func (n *testNet) defaultRoutes(link string) []netlink.Route {
	return n.defaultRoutesOf(netlink.FAMILY_V4, link)
}

func (n *testNet) defaultRoutesOf(family int, link string) []netlink.Route {
	n.t.Helper()
	routes, err := n.h.RouteListFiltered(family,
		&netlink.Route{LinkIndex: n.link(link).Attrs().Index}, netlink.RT_FILTER_OIF)
	if err != nil {
		n.t.Fatal(err)
	}
	var defaults []netlink.Route
	for _, r := range routes {
		if isDefault(r.Dst) {
			defaults = append(defaults, r)
		}
	}
	return defaults
}

// checkLeased asserts that link kept exactly one address in subnet.50-99
// and one default route via subnet.1, and returns that route's metric.
func (n *testNet) checkLeased(link, subnet string) int {
	n.t.Helper()
	addrs, err := n.h.AddrList(n.link(link), netlink.FAMILY_V4)
	if err != nil {
		n.t.Fatal(err)
	}
	if len(addrs) != 1 || !inRange(addrs[0].IP, subnet) {
		n.t.Errorf("addresses on %s = %v, want one in %s.50-99", link, addrs, subnet)
	}
	defaults := n.defaultRoutes(link)
	if len(defaults) != 1 || defaults[0].Gw.String() != subnet+".1" {
		n.t.Errorf("default routes on %s = %v, want one via %s.1", link, defaults, subnet)
		return -1
	}
	return defaults[0].Priority
}

func inRange(ip net.IP, subnet string) bool {
	lo, hi := net.ParseIP(subnet+".50").To4(), net.ParseIP(subnet+".99").To4()
	ip = ip.To4()
	return ip != nil && bytes.Compare(ip, lo) >= 0 && bytes.Compare(ip, hi) <= 0
}

// routeTo says which link and gateway the client namespace would use to
// reach dst without binding to a device.
func (n *testNet) routeTo(dst net.IP) (string, net.IP) {
	n.t.Helper()
	rs, err := n.h.RouteGet(dst)
	if err != nil || len(rs) == 0 {
		n.t.Fatalf("route to %v: %v %v", dst, rs, err)
	}
	l, err := n.h.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		n.t.Fatal(err)
	}
	return l.Attrs().Name, rs[0].Gw
}

// TestUpProbeChoosesReachableLink: eth0 gets its lease first but cannot
// reach the registry; eth1, whose carrier comes only after eth0's first
// failed probe, can. Up must return eth1 and route the registry through it.
func TestUpProbeChoosesReachableLink(t *testing.T) {
	n := newTestNet(t)
	n.veth("eth0", "srv0", "192.0.2.1/24", false)
	n.veth("eth1", "srv1", "198.51.100.1/24", true)
	n.dnsmasqNet("srv0", "192.0.2", true)
	n.dnsmasqNet("srv1", "198.51.100", true)
	n.registry()

	probe := dialProbe([]string{registryAddr}, 300*time.Millisecond, dialIn(n.clientNS))
	var eth1Up sync.Once
	var eth0Probes, eth1Probes atomic.Int32
	// What the routing table alone would do while eth1 is being probed:
	// eth0, applied first, has the better unproven metric.
	var unboundLink string
	var unboundErr error
	cfg := n.config()
	cfg.Probe = func(ctx context.Context, r *Result) error {
		if r.Link == "eth1" && eth1Probes.Add(1) == 1 {
			unboundLink, _ = n.routeTo(registryIP)
			var c net.Conn
			if c, unboundErr = dialIn(n.clientNS)(ctx, &net.Dialer{Timeout: 300 * time.Millisecond}, "tcp", registryAddr); c != nil {
				c.Close()
			}
		}
		err := probe(ctx, r)
		if r.Link == "eth0" {
			eth0Probes.Add(1)
			if err == nil {
				t.Errorf("probe via eth0 reached the registry, which only answers 198.51.100.0/24")
			}
			eth1Up.Do(func() { n.ip("-n", n.server, "link", "set", "srv1", "up") })
		}
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	if res.Link != "eth1" || !inRange(res.Addr.IP, "198.51.100") || !res.Router.Equal(net.IPv4(198, 51, 100, 1)) {
		t.Fatalf("Up chose %s %v via %v, want eth1 in 198.51.100.50-99 via 198.51.100.1", res.Link, res.Addr.String(), res.Router)
	}
	if eth0Probes.Load() == 0 {
		t.Errorf("eth0 was never probed")
	}

	// The probe passed only because it was bound to eth1.
	if unboundLink != "eth0" {
		t.Errorf("while eth1 was probed, the unbound route to the registry went out of %q, want eth0 (better unproven metric)", unboundLink)
	}
	if unboundErr == nil {
		t.Errorf("unbound dial to the registry succeeded via eth0; the test topology does not isolate the segments")
	} else {
		t.Logf("unbound dial while eth0 was preferred: %v", unboundErr)
	}

	// The winner carries the traffic now.
	if link, gw := n.routeTo(registryIP); link != "eth1" || !gw.Equal(net.IPv4(198, 51, 100, 1)) {
		t.Errorf("route to the registry goes out of %s via %v, want eth1 via 198.51.100.1", link, gw)
	}
	var c net.Conn
	if err := inNS(n.clientNS, func() (err error) {
		c, err = net.DialTimeout("tcp", registryAddr, 2*time.Second)
		return err
	}); err != nil {
		t.Errorf("plain dial to the registry after Up: %v", err)
	} else {
		c.Close()
	}
	if m := n.checkLeased("eth1", "198.51.100"); m != baseMetric {
		t.Errorf("eth1 default route metric %d, want %d", m, baseMetric)
	}
	// eth0 keeps its address, its route loses to any winner.
	if m := n.checkLeased("eth0", "192.0.2"); m < unprovenMetric {
		t.Errorf("eth0 (probe failing) default route metric %d, want >= %d", m, unprovenMetric)
	}
	rc, err := os.ReadFile(cfg.ResolvConf)
	if err != nil || !strings.Contains(string(rc), "nameserver 198.51.100.53\nnameserver 192.0.2.53\n") {
		t.Errorf("resolv.conf = %q, %v; want the winner's server 198.51.100.53 first", rc, err)
	}
}

// TestUpProbeFailsEverywhere: both links get leases, neither reaches the
// registry; the error names each link, its address and the probe's reason.
func TestUpProbeFailsEverywhere(t *testing.T) {
	n := newTestNet(t)
	n.veth("eth0", "srv0", "192.0.2.1/24", false)
	n.veth("eth1", "srv1", "198.51.100.1/24", false)
	n.dnsmasqNet("srv0", "192.0.2", true)
	n.dnsmasqNet("srv1", "198.51.100", true)
	cfg := n.config()
	cfg.Probe = dialProbe([]string{registryAddr}, 200*time.Millisecond, dialIn(n.clientNS))
	cfg.ProbeRetries = 1
	_, err := Up(context.Background(), cfg)
	if err == nil {
		t.Fatal("Up succeeded although no link reaches the registry")
	}
	t.Logf("error: %v", err)
	msg := err.Error()
	for _, want := range []string{"no link passed the probe: ", "eth0 dhcp4: 192.0.2.", "eth1 dhcp4: 198.51.100.",
		"/24: probe failed after 2 attempt(s): ", "dial tcp4 " + registryAddr} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if !errors.Is(err, ErrProbeFailed) {
		t.Errorf("error does not wrap ErrProbeFailed")
	}
	// Both leases stay, neither route at a winner's metric.
	for _, l := range []struct{ link, subnet string }{{"eth0", "192.0.2"}, {"eth1", "198.51.100"}} {
		if m := n.checkLeased(l.link, l.subnet); m < unprovenMetric {
			t.Errorf("%s default route metric %d, want >= %d after a failed probe", l.link, m, unprovenMetric)
		}
	}
}

// TestUpProbeRetries: a probe that fails a few times on the only link.
func TestUpProbeRetries(t *testing.T) {
	tests := []struct {
		name      string
		failures  int32
		retries   int
		wantCalls int32
		wantErr   string
	}{
		{"first probe passes", 0, 0, 1, ""},
		{"passes on the last retry", 2, 2, 3, ""},
		{"no retry", 1, -1, 1, "no link passed the probe: eth0 dhcp4: 192.0.2."},
		{"retries exhausted", 5, 1, 2, "probe failed after 2 attempt(s): registry down"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNet(t)
			n.veth("eth0", "srv0", "192.0.2.1/24", false)
			n.dnsmasq("srv0", true)
			cfg := n.config()
			cfg.ProbeRetries = tc.retries
			var calls atomic.Int32
			cfg.Probe = func(ctx context.Context, r *Result) error {
				if _, ok := ctx.Deadline(); !ok {
					t.Errorf("probe called without a deadline")
				}
				if calls.Add(1) <= tc.failures {
					return errors.New("registry down")
				}
				return nil
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			res, err := Up(ctx, cfg)
			if calls.Load() != tc.wantCalls {
				t.Errorf("probe called %d times, want %d", calls.Load(), tc.wantCalls)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Up error %v, want one containing %q", err, tc.wantErr)
				}
				if m := n.checkLeased("eth0", "192.0.2"); m != unprovenMetric {
					t.Errorf("metric %d after a failed probe, want %d", m, unprovenMetric)
				}
				return
			}
			if err != nil {
				t.Fatalf("Up: %v", err)
			}
			checkResult(t, res, "eth0", true)
			n.checkConfigured(res, baseMetric)
		})
	}
}

// TestDialProbe runs the real DialProbe in the test's own namespace over
// loopback: bound to lo it connects; bound to a missing link, or given bad
// addresses, it says why.
func TestDialProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go acceptAndClose(ln)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closed.Addr().String()
	closed.Close()
	good := ln.Addr().String()

	tests := []struct {
		name    string
		link    string
		addrs   []string
		wantErr []string // every one must appear; none means success
	}{
		{"listener on lo", "lo", []string{good}, nil},
		{"any address will do", "lo", []string{refused, good}, nil},
		{"nothing listens", "lo", []string{refused}, []string{"no probe address reachable via lo", "dial tcp4 " + refused, "refused"}},
		{"missing link", "nosuch0", []string{good}, []string{"bind socket to nosuch0", "no such device"}},
		{"no port", "lo", []string{"127.0.0.1"}, []string{`probe address "127.0.0.1"`, "missing port"}},
		{"no address", "lo", nil, []string{"no IPv4 address to probe"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := DialProbe(tc.addrs, time.Second)(context.Background(), &Result{Link: tc.link, Family: IPv4})
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("DialProbe via %s to %v: %v", tc.link, tc.addrs, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("DialProbe via %s to %v succeeded, want an error", tc.link, tc.addrs)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
