package netup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/zeroboot/zeroboot/internal/testenv"
	"github.com/zeroboot/zeroboot/pkg/netconf"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// testNet is a pair of network namespaces: the client where Up runs and a
// server holding the far ends of the veths and dnsmasq.
type testNet struct {
	t              *testing.T
	server, client string
	clientNS       netns.NsHandle
	h              *netlink.Handle
	dir            string
}

var nsCounter atomic.Int32

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	testenv.NeedRoot(t, "a network namespace test")
	for _, tool := range []string{"ip", "dnsmasq"} {
		testenv.NeedTool(t, tool)
	}
	id := fmt.Sprintf("zbnet%d-%d", os.Getpid(), nsCounter.Add(1))
	n := &testNet{t: t, server: id + "-s", client: id + "-c", dir: t.TempDir()}
	for _, ns := range []string{n.server, n.client} {
		n.ip("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		n.ip("-n", ns, "link", "set", "lo", "up")
	}
	var err error
	if n.clientNS, err = netns.GetFromName(n.client); err != nil {
		t.Fatalf("open namespace %s: %v", n.client, err)
	}
	t.Cleanup(func() { n.clientNS.Close() })
	if n.h, err = netlink.NewHandleAt(n.clientNS); err != nil {
		t.Fatalf("netlink handle in %s: %v", n.client, err)
	}
	t.Cleanup(n.h.Close)
	return n
}

func (n *testNet) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// veth links client-side clientIf to server-side serverIf, which gets
// serverAddr if not empty and is up unless serverDown.
func (n *testNet) veth(clientIf, serverIf, serverAddr string, serverDown bool) {
	n.ip("link", "add", clientIf, "netns", n.client, "type", "veth", "peer", "name", serverIf, "netns", n.server)
	if serverAddr != "" {
		n.ip("-n", n.server, "addr", "add", serverAddr, "dev", serverIf)
	}
	if !serverDown {
		n.ip("-n", n.server, "link", "set", serverIf, "up")
	}
}

// dnsmasq serves 192.0.2.0/24 on serverIf until the test ends.
func (n *testNet) dnsmasq(serverIf string, rapid bool) {
	n.t.Helper()
	n.dnsmasqNet(serverIf, "192.0.2", rapid)
}

// dnsmasqNet serves subnet.0/24 (subnet is its first three octets) on serverIf:
// addresses .50-.99, router .1, DNS server .53.
func (n *testNet) dnsmasqNet(serverIf, subnet string, rapid bool) {
	n.t.Helper()
	args := []string{"--dhcp-range=" + subnet + ".50," + subnet + ".99,255.255.255.0,1h",
		"--dhcp-option=option:router," + subnet + ".1", "--dhcp-option=option:dns-server," + subnet + ".53",
		"--dhcp-option=option:ntp-server," + subnet + ".123"}
	if rapid {
		args = append(args, "--dhcp-rapid-commit")
	}
	n.startDnsmasq(serverIf, args...)
}

// startDnsmasq runs dnsmasq on serverIf with args until the test ends;
// its log is shown when the test fails or runs verbose.
func (n *testNet) startDnsmasq(serverIf string, args ...string) {
	n.t.Helper()
	var log bytes.Buffer
	var mu sync.Mutex
	testenv.Dnsmasq(n.t, n.server, serverIf, n.dir, func(l string) {
		mu.Lock()
		log.WriteString(l + "\n")
		mu.Unlock()
	}, args...)
	n.t.Cleanup(func() {
		if n.t.Failed() || testing.Verbose() {
			mu.Lock()
			n.t.Logf("dnsmasq on %s:\n%s", serverIf, log.String())
			mu.Unlock()
		}
	})
}

// dhcp4Only is ip=dhcp: the DHCPv4 tests leave IPv6 out, or each would
// wait for router advertisements that never come.
var dhcp4Only = netconf.Config{IPs: []netconf.IP{{Methods: []netconf.Method{netconf.DHCP}}}}

func (n *testNet) config() Config {
	w := &testWriter{t: n.t}
	n.t.Cleanup(w.stop)
	return Config{
		Log:         slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Net:         dhcp4Only,
		LinkTimeout: 5 * time.Second,
		DHCPTimeout: 3 * time.Second,
		ResolvConf:  filepath.Join(n.dir, "etc", "resolv.conf"),
		Handle:      n.h,
		Enter:       func(fn func() error) error { return inNS(n.clientNS, fn) },
	}
}

// testWriter logs through t until the test's cleanup: Up's background
// goroutines may still log as the test ends, and t.Log after the test has
// completed panics.
type testWriter struct {
	t       *testing.T
	mu      sync.Mutex
	stopped bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

func (n *testNet) link(name string) netlink.Link {
	n.t.Helper()
	l, err := n.h.LinkByName(name)
	if err != nil {
		n.t.Fatalf("link %s: %v", name, err)
	}
	return l
}

// checkConfigured asserts that link carries exactly res.Addr and one
// default route via 192.0.2.1 with the given metric.
func (n *testNet) checkConfigured(res *Result, metric int) {
	n.t.Helper()
	l := n.link(res.Link)
	addrs, err := n.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		n.t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != res.Addr.String() {
		n.t.Errorf("addresses on %s = %v, want only %v", res.Link, addrs, res.Addr.String())
	}
	if len(addrs) == 1 && (addrs[0].ValidLft <= 0 || addrs[0].ValidLft > 3600) {
		n.t.Errorf("address valid lifetime %d s, want the lease's (<= 3600 s)", addrs[0].ValidLft)
	}
	defaults := n.defaultRoutes(res.Link)
	if len(defaults) != 1 || !defaults[0].Gw.Equal(net.IPv4(192, 0, 2, 1)) || defaults[0].Priority != metric {
		n.t.Errorf("default routes on %s = %v, want one via 192.0.2.1 metric %d", res.Link, defaults, metric)
	}
}

func checkResult(t *testing.T, res *Result, link string, rapid bool) {
	t.Helper()
	lo, hi := net.IPv4(192, 0, 2, 50).To4(), net.IPv4(192, 0, 2, 99).To4()
	ip := res.Addr.IP.To4()
	if res.Link != link || ip == nil || bytes.Compare(ip, lo) < 0 || bytes.Compare(ip, hi) > 0 {
		t.Errorf("lease on %s addr %v, want %s in 192.0.2.50-99", res.Link, res.Addr.String(), link)
	}
	if ones, _ := res.Addr.Mask.Size(); ones != 24 {
		t.Errorf("prefix /%d, want /24", ones)
	}
	if !res.Router.Equal(net.IPv4(192, 0, 2, 1)) {
		t.Errorf("router %v, want 192.0.2.1", res.Router)
	}
	if len(res.DNS) != 1 || !res.DNS[0].Equal(net.IPv4(192, 0, 2, 53)) {
		t.Errorf("DNS %v, want [192.0.2.53]", res.DNS)
	}
	if len(res.NTP) != 1 || !res.NTP[0].Equal(net.IPv4(192, 0, 2, 123)) {
		t.Errorf("NTP %v, want [192.0.2.123] (option 42)", res.NTP)
	}
	if res.Lease != time.Hour {
		t.Errorf("lease time %v, want 1h", res.Lease)
	}
	if res.RapidCommit != rapid {
		t.Errorf("rapid commit = %v, want %v", res.RapidCommit, rapid)
	}
}

func TestUpOneLink(t *testing.T) {
	tests := []struct {
		name          string
		serverRapid   bool
		disableClient bool
		wantRapid     bool
	}{
		{"rapid commit", true, false, true},
		{"server without rapid commit", false, false, false},
		{"client without rapid commit", true, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNet(t)
			n.veth("eth0", "srv0", "192.0.2.1/24", false)
			n.dnsmasq("srv0", tc.serverRapid)
			cfg := n.config()
			cfg.DisableRapidCommit = tc.disableClient
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			res, err := Up(ctx, cfg)
			if err != nil {
				t.Fatalf("Up: %v", err)
			}
			checkResult(t, res, "eth0", tc.wantRapid)
			n.checkConfigured(res, baseMetric)
			rc, err := os.ReadFile(cfg.ResolvConf)
			if err != nil || !strings.Contains(string(rc), "nameserver 192.0.2.53\n") {
				t.Errorf("resolv.conf = %q, %v; want nameserver 192.0.2.53", rc, err)
			}
			lo := n.link("lo")
			if lo.Attrs().Flags&net.FlagUp == 0 {
				t.Errorf("lo is not up")
			}

			// Up again over the configured link: replaces, never duplicates.
			res2, err := Up(ctx, cfg)
			if err != nil {
				t.Fatalf("second Up: %v", err)
			}
			n.checkConfigured(res2, baseMetric)
		})
	}
}

func TestUpSecondLinkHasServer(t *testing.T) {
	n := newTestNet(t)
	n.veth("eth0", "dead0", "", false)
	n.veth("eth1", "srv1", "192.0.2.1/24", false)
	n.dnsmasq("srv1", true)
	cfg := n.config()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	checkResult(t, res, "eth1", true)
	n.checkConfigured(res, baseMetric)
	if l := n.link("eth0"); l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("eth0 was not set up")
	}
}

func TestUpNoServer(t *testing.T) {
	n := newTestNet(t)
	n.veth("eth0", "dead0", "", false)
	cfg := n.config()
	cfg.DHCPTimeout = time.Second
	cfg.Retries = 1
	start := time.Now()
	_, err := Up(context.Background(), cfg)
	took := time.Since(start)
	if err == nil {
		t.Fatal("Up without a DHCP server succeeded")
	}
	t.Logf("error: %v", err)
	msg := err.Error()
	if !strings.Contains(msg, "no address on any link") || !strings.Contains(msg, "eth0 dhcp4: DHCP failed after 2 attempt(s)") {
		t.Errorf("error %q does not name eth0 and the DHCP failure", msg)
	}
	var le *LinkError
	if !errors.As(err, &le) || le.Link != "eth0" {
		t.Errorf("error does not unwrap to eth0's LinkError: %v", err)
	}
	// Two attempts of 1 s plus link setup: it must not hang for long.
	if budget := cfg.LinkTimeout + 2*cfg.DHCPTimeout; took > budget {
		t.Errorf("Up took %v, beyond its budget %v", took, budget)
	}
}

func TestUpNoCarrier(t *testing.T) {
	n := newTestNet(t)
	n.veth("eth0", "dead0", "", true)
	n.veth("eth1", "dead1", "", true)
	cfg := n.config()
	cfg.LinkTimeout = 300 * time.Millisecond
	_, err := Up(context.Background(), cfg)
	if err == nil {
		t.Fatal("Up with no carrier succeeded")
	}
	t.Logf("error: %v", err)
	msg := err.Error()
	for _, want := range []string{"no link with carrier", "eth0: no carrier after 300ms", "eth1: no carrier", "operstate"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if !errors.Is(err, ErrNoCarrier) {
		t.Errorf("error does not wrap ErrNoCarrier")
	}
}

func TestUpFilter(t *testing.T) {
	n := newTestNet(t)
	n.veth("eth0", "srv0", "192.0.2.1/24", false)
	n.dnsmasq("srv0", true)
	cfg := n.config()
	cfg.Filter = func(name string) bool { return name != "eth0" }
	_, err := Up(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "no Ethernet link to configure") || !strings.Contains(err.Error(), "eth0(veth)") {
		t.Fatalf("Up with eth0 filtered out: %v, want an error listing the links seen", err)
	}
}

// logCatcher passes records to a channel so a test can wait for one.
type logCatcher struct{ msgs chan string }

func (c logCatcher) Enabled(context.Context, slog.Level) bool { return true }
func (c logCatcher) Handle(_ context.Context, r slog.Record) error {
	select {
	case c.msgs <- r.Message:
	default:
	}
	return nil
}
func (c logCatcher) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c logCatcher) WithGroup(string) slog.Handler      { return c }

func TestLeaseRenewed(t *testing.T) {
	n := newTestNet(t)
	n.veth("eth0", "srv0", "192.0.2.1/24", false)
	n.dnsmasq("srv0", true)
	cfg := n.config()
	msgs := make(chan string, 100)
	cfg.Log = slog.New(logCatcher{msgs})
	cfg.renewAfter = func(*lease) time.Duration { return 200 * time.Millisecond }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	deadline := time.After(10 * time.Second)
	for renewed := 0; renewed < 2; {
		select {
		case m := <-msgs:
			if m == "lease renewal failed" {
				t.Fatalf("renewal failed")
			}
			if m == "lease renewed" {
				renewed++
			}
		case <-deadline:
			t.Fatalf("lease not renewed twice within 10 s")
		}
	}
	n.checkConfigured(res, baseMetric)
}
