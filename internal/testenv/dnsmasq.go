package testenv

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Dnsmasq runs dnsmasq in network namespace ns on iface with args (ranges,
// RA, options) until the test ends, and waits until it says it serves a
// range or advertises a prefix. Every line it logs goes to logf. Its DNS
// is off and it does not ping an address before offering it (which would
// add up to 3 s to every lease and hide the client's own timing).
func Dnsmasq(t testing.TB, ns, iface, dir string, logf func(string), args ...string) {
	t.Helper()
	NeedTool(t, "dnsmasq")
	args = append([]string{"netns", "exec", ns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--interface=" + iface, "--bind-interfaces", "--except-interface=lo", "--port=0", "--no-ping",
		"--log-dhcp", "--log-facility=-",
		"--dhcp-leasefile=" + filepath.Join(dir, iface+".leases"),
		"--pid-file=" + filepath.Join(dir, iface+".pid")}, args...)
	cmd := exec.Command("ip", args...)
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		once := false
		for sc.Scan() {
			logf(sc.Text())
			if !once && (strings.Contains(sc.Text(), "IP range") || strings.Contains(sc.Text(), "router advertisement on")) {
				once = true
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatalf("dnsmasq did not start on %s in %s", iface, ns)
	}
}
