package cmdline

import (
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/netconf"
)

const reg = "zeroboot.registry=https://203.0.113.1:8443"

func TestSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []arg
	}{
		{"", nil},
		{"   ", nil},
		{"quiet", []arg{{key: "quiet"}}},
		{"a=1  b=2\tc", []arg{{"a", "1", true}, {"b", "2", true}, {key: "c"}}},
		{`a="x y" b`, []arg{{"a", "x y", true}, {key: "b"}}},
		{`"a=x y" b`, []arg{{"a", "x y", true}, {key: "b"}}},
		{`a=`, []arg{{"a", "", true}}},
		{`a=b=c`, []arg{{"a", "b=c", true}}},
		{`a=x"y z"`, []arg{{"a", `x"y z"`, true}}},
		{`a b -- zeroboot.farm=x`, []arg{{key: "a"}, {key: "b"}}},
		{`"--" c`, []arg{{key: "--"}, {key: "c"}}},
		{`a="unterminated b`, []arg{{"a", "unterminated b", true}}},
		{`"`, []arg{{key: ""}}},
	}
	for _, tt := range tests {
		got := split(tt.in)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("split(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseGood(t *testing.T) {
	c, ps := Parse(`BOOT_IMAGE=/vmlinuz root=/dev/ram0 console=tty0 console=ttyS0,115200 quiet ` +
		`zeroboot.registry=https://203.0.113.1:8443,https://reg.example.net/base zeroboot.farm=lab-2 ` +
		`zeroboot.channel=beta.1 zeroboot.debug ip=dhcp zeroboot.cache=/dev/disk/by-id/virtio-zb_cache zeroboot.cache.wipe -- zeroboot.farm=ignored`)
	if len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	var urls []string
	for _, u := range c.Registries {
		urls = append(urls, u.String())
	}
	if want := []string{"https://203.0.113.1:8443", "https://reg.example.net/base"}; !reflect.DeepEqual(urls, want) {
		t.Errorf("registries %v, want %v", urls, want)
	}
	if c.Farm != "lab-2" || c.Channel != "beta.1" || !c.Debug || c.Rescue || c.Cache != "/dev/disk/by-id/virtio-zb_cache" || !c.CacheWipe {
		t.Errorf("config %+v", c)
	}
	if want := []string{"tty0", "ttyS0,115200"}; !reflect.DeepEqual(c.Consoles, want) {
		t.Errorf("consoles %v, want %v", c.Consoles, want)
	}
	if want := (netconf.Config{IPs: []netconf.IP{{Methods: []netconf.Method{netconf.DHCP}}}}); !reflect.DeepEqual(c.Net, want) {
		t.Errorf("net %+v, want %+v", c.Net, want)
	}
}

func TestParseDefaults(t *testing.T) {
	c, ps := Parse(reg)
	if len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	if !reflect.DeepEqual(c.Net, netconf.Config{}) || c.NTP != nil || c.Debug || c.Rescue || c.Farm != "" || c.Channel != "" || c.Consoles != nil {
		t.Errorf("defaults %+v", c)
	}
}

func TestParseBooleans(t *testing.T) {
	for v, want := range map[string]bool{"": true, "=1": true, "=true": true, "=YES": true, "=on": true,
		"=0": false, "=false": false, "=no": false, "=off": false} {
		c, ps := Parse(reg + " zeroboot.debug" + v + " zeroboot.rescue" + v)
		if len(ps) != 0 {
			t.Errorf("%q: problems %v", v, ps)
		}
		if c.Debug != want || c.Rescue != want {
			t.Errorf("%q: debug=%v rescue=%v, want %v", v, c.Debug, c.Rescue, want)
		}
	}
}

func TestDashUnderscoreEquivalent(t *testing.T) {
	// Kernel rule: '-' and '_' are the same in names; a repeat under the
	// other spelling is still a repeat.
	// The first is unknown (a warning), the second a repeat of it.
	_, ps := Parse(reg + " zeroboot.x-y=1 zeroboot.x_y=2")
	if len(ps) != 2 || ps[1].Severity != Error || !strings.Contains(ps[1].Msg, `given twice ("1" and "2")`) || ps[1].Param != "zeroboot.x_y" {
		t.Fatalf("problems %v, want unknown warning then 'given twice' error on zeroboot.x_y", ps)
	}
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name, in string
		sev      Severity
		param    string
		msg      string // substring
	}{
		{"http", "zeroboot.registry=http://203.0.113.1", Error, "zeroboot.registry", "http refused"},
		{"http in list", reg + ",http://203.0.113.2", Error, "zeroboot.registry", "http refused"},
		{"ftp", "zeroboot.registry=ftp://203.0.113.1", Error, "zeroboot.registry", `scheme "ftp" refused`},
		{"no host", "zeroboot.registry=https:///x", Error, "zeroboot.registry", "no host"},
		{"relative", "zeroboot.registry=203.0.113.1", Error, "zeroboot.registry", `scheme "" refused`},
		{"userinfo", "zeroboot.registry=https://u:p@203.0.113.1", Error, "zeroboot.registry", "credentials"},
		{"query", "zeroboot.registry=https://203.0.113.1/?a=b", Error, "zeroboot.registry", "query"},
		{"stray comma", reg + ",", Error, "zeroboot.registry", "empty URL"},
		{"bad url", "zeroboot.registry=https://[::1", Error, "zeroboot.registry", "not a URL"},
		{"bare registry", "zeroboot.registry", Error, "zeroboot.registry", "needs a value"},
		{"dup url", reg + "," + strings.TrimPrefix(reg, "zeroboot.registry="), Warning, "zeroboot.registry", "listed twice"},
		{"repeat", reg + " zeroboot.registry=https://198.51.100.1", Error, "zeroboot.registry", `"https://203.0.113.1:8443" and "https://198.51.100.1"`},
		{"farm upper", reg + " zeroboot.farm=Lab", Error, "zeroboot.farm", "must match"},
		{"farm long", reg + " zeroboot.farm=" + strings.Repeat("a", 64), Error, "zeroboot.farm", "must match"},
		{"farm empty", reg + " zeroboot.farm=", Error, "zeroboot.farm", "needs a value"},
		{"farm space", reg + ` zeroboot.farm="a b"`, Error, "zeroboot.farm", "must match"},
		{"channel", reg + " zeroboot.channel=-x", Error, "zeroboot.channel", "must match"},
		{"cache outside /dev", reg + " zeroboot.cache=/tmp/x", Error, "zeroboot.cache", "must match /dev/NAME"},
		{"cache dot-dot", reg + " zeroboot.cache=/dev/disk/../../etc/x", Error, "zeroboot.cache", "not a clean path (/etc/x)"},
		{"cache empty", reg + " zeroboot.cache=", Error, "zeroboot.cache", "needs a value"},
		{"cache wipe bad", reg + " zeroboot.cache.wipe=all", Error, "zeroboot.cache.wipe", "not a boolean"},
		{"debug bad", reg + " zeroboot.debug=maybe", Error, "zeroboot.debug", "not a boolean"},
		{"debug empty", reg + " zeroboot.debug=", Error, "zeroboot.debug", "not a boolean"},
		{"unknown", reg + " zeroboot.regsitry=x", Warning, "zeroboot.regsitry", "known: zeroboot.registry, zeroboot.farm"},
		{"case", reg + " ZeroBoot.farm=x", Warning, "ZeroBoot.farm", "case-sensitive, write zeroboot.farm"},
		{"ip twice", reg + " ip=dhcp ip=off", Error, "ip", "a second ip= without device (the first is ip=dhcp)"},
		{"ip bad", reg + " ip=dhcpp", Error, "ip", `unknown method "dhcpp"`},
		{"ip bare", reg + " ip", Error, "ip", "empty: write ip=METHOD"},
		{"ip ibft", reg + " ip=eth0:ibft", Error, "ip", "not supported"},
		{"ifname bad", reg + " ifname=boot0:52-54-00-12-34-56", Error, "ifname", "want 6 hex pairs separated by colons"},
		{"vlan bad", reg + " vlan=vlan0:eth0", Error, "vlan", `VLAN ID "0"`},
		{"bond bad", reg + " bond=bond0:eth0:mode=fast", Error, "bond", "option mode"},
		{"bond conflict", reg + " bond=bond0:eth0 bond=bond1:eth0", Error, "bond", "slave eth0 is already in bond=bond0:eth0"},
		{"nameserver bad", reg + " nameserver=dns.example.net", Error, "nameserver", "not an IP address"},
		{"slave ip", reg + " bond=bond0:eth0,eth1 ip=eth0:dhcp", Error, "ip", "eth0 is a slave in bond=bond0:eth0,eth1"},
		{"ntp empty", reg + " zeroboot.ntp=", Error, "zeroboot.ntp", "needs a value"},
		{"ntp stray comma", reg + " zeroboot.ntp=pool.ntp.org,", Error, "zeroboot.ntp", "empty server in the list (stray comma?)"},
		{"ntp bad host", reg + " zeroboot.ntp=ntp_1.example.net", Error, "zeroboot.ntp", `'_' not allowed`},
		{"ntp bare v6", reg + " zeroboot.ntp=2001:db8::123", Error, "zeroboot.ntp", "must be in square brackets"},
		{"ntp v4 brackets", reg + " zeroboot.ntp=[192.0.2.123]", Error, "zeroboot.ntp", "brackets hold an IPv6 address"},
		{"ntp open bracket", reg + " zeroboot.ntp=[2001:db8::123", Error, "zeroboot.ntp", "'[' without ']'"},
		{"ntp after bracket", reg + " zeroboot.ntp=[2001:db8::123]123", Error, "zeroboot.ntp", "only :PORT may follow ']'"},
		{"ntp port", reg + " zeroboot.ntp=ntp.example.net:0", Error, "zeroboot.ntp", `port "0": want a number from 1 to 65535`},
		{"ntp port big", reg + " zeroboot.ntp=ntp.example.net:65536", Error, "zeroboot.ntp", `port "65536"`},
		{"ntp port name", reg + " zeroboot.ntp=ntp.example.net:ntp", Error, "zeroboot.ntp", `port "ntp"`},
		{"ntp port empty", reg + " zeroboot.ntp=ntp.example.net:", Error, "zeroboot.ntp", "empty port"},
		{"ntp multicast", reg + " zeroboot.ntp=224.0.1.1", Error, "zeroboot.ntp", "server 224.0.1.1 is a multicast address"},
		{"ntp loopback", reg + " zeroboot.ntp=[::1]", Error, "zeroboot.ntp", "loopback"},
		{"ntp too many", reg + " zeroboot.ntp=a,b,c,d,e,f,g,h,i", Error, "zeroboot.ntp", "9 servers, at most 8"},
		{"ntp dup", reg + " zeroboot.ntp=192.0.2.123,192.0.2.123:123", Warning, "zeroboot.ntp", "listed twice"},
		{"ntp twice", reg + " zeroboot.ntp=a zeroboot.ntp=b", Error, "zeroboot.ntp", "given twice"},
		{"watchdog bare", reg + " zeroboot.watchdog", Error, "zeroboot.watchdog", "needs a value"},
		{"watchdog unit", reg + " zeroboot.watchdog=60s", Error, "zeroboot.watchdog", "want whole seconds: 0 (off) or 5 to 3600"},
		{"watchdog short", reg + " zeroboot.watchdog=4", Error, "zeroboot.watchdog", "5 to 3600"},
		{"watchdog long", reg + " zeroboot.watchdog=3601", Error, "zeroboot.watchdog", "5 to 3600"},
		{"watchdog negative", reg + " zeroboot.watchdog=-1", Error, "zeroboot.watchdog", "whole seconds"},
		{"watchdog huge", reg + " zeroboot.watchdog=99999999999", Error, "zeroboot.watchdog", "whole seconds"},
		{"watchdog twice", reg + " zeroboot.watchdog=10 zeroboot.watchdog=0", Error, "zeroboot.watchdog", "given twice"},
		{"hang bare", reg + " zeroboot.debug.hang", Error, "zeroboot.debug.hang", "needs a value"},
		{"hang unknown", reg + " zeroboot.debug.hang=network", Error, "zeroboot.debug.hang", "want one of watchdog, supervise"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ps := Parse(tt.in)
			if len(ps) != 1 {
				t.Fatalf("want exactly one problem, got %v", ps)
			}
			p := ps[0]
			if p.Severity != tt.sev || p.Param != tt.param || !strings.Contains(p.Msg, tt.msg) {
				t.Errorf("got %s; want %s on %s containing %q", p, tt.sev, tt.param, tt.msg)
			}
			if HasErrors(ps) != (tt.sev == Error) {
				t.Errorf("HasErrors = %v", HasErrors(ps))
			}
		})
	}
}

func TestParseNet(t *testing.T) {
	c, ps := Parse(reg + " ifname=boot0:52:54:00:12:34:56 bond=bond0:eth0,eth1:mode=802.3ad,miimon=100:9000" +
		" vlan=bond0.100:bond0 ip=bond0.100:dhcp,dhcp6 ip=boot0:auto6 ip=off" +
		" ip=192.0.2.10::192.0.2.1:255.255.255.0:node1:eth2:none:192.0.2.53" +
		" ip=[2001:db8::10]/64::[2001:db8::1]:::eth3:none nameserver=198.51.100.53 nameserver=[2001:db8::53]")
	if len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	n := c.Net
	var ips []string
	for _, ip := range n.IPs {
		ips = append(ips, ip.String())
	}
	want := []string{"bond0.100:dhcp,dhcp6", "boot0:auto6", "off", "192.0.2.10::192.0.2.1:24:node1:eth2:none:192.0.2.53",
		"[2001:db8::10]::[2001:db8::1]:64::eth3:none"}
	if !reflect.DeepEqual(ips, want) {
		t.Errorf("ip= %q, want %q", ips, want)
	}
	if len(n.Renames) != 1 || n.Renames[0].String() != "boot0:52:54:00:12:34:56" {
		t.Errorf("renames %v", n.Renames)
	}
	if len(n.VLANs) != 1 || n.VLANs[0] != (netconf.VLAN{Name: "bond0.100", Parent: "bond0", ID: 100}) {
		t.Errorf("vlans %v", n.VLANs)
	}
	if len(n.Bonds) != 1 || n.Bonds[0].String() != "bond0:eth0,eth1:mode=802.3ad,miimon=100:9000" {
		t.Errorf("bonds %v", n.Bonds)
	}
	if want := []netip.Addr{netip.MustParseAddr("198.51.100.53"), netip.MustParseAddr("2001:db8::53")}; !reflect.DeepEqual(n.DNS, want) {
		t.Errorf("DNS %v, want %v", n.DNS, want)
	}
	if ip := n.For("eth7"); ip == nil || ip.String() != "off" {
		t.Errorf("For(eth7) = %v, want the ip=off entry", ip)
	}
}

func TestParseBareBond(t *testing.T) {
	c, ps := Parse(reg + " bond")
	if len(ps) != 0 || len(c.Net.Bonds) != 1 || c.Net.Bonds[0].String() != "bond0:eth0,eth1:mode=balance-rr" {
		t.Fatalf("bonds %v, problems %v", c.Net.Bonds, ps)
	}
}

// Every bad network value is its own problem, and so is every conflict.
func TestParseNetProblems(t *testing.T) {
	_, ps := Parse(reg + " ip=dhcpp ip=eth0:dhcp ip=eth0:off vlan=x:eth0 nameserver=127.0.0.1 ip=on ip=off")
	want := []Problem{
		{"ip", "dhcpp", Error, `unknown method "dhcpp"`},
		{"vlan", "x:eth0", Error, `NAME "x" does not say the VLAN ID`},
		{"nameserver", "127.0.0.1", Error, "loopback"},
		{"ip", "eth0:off", Error, "a second ip= for eth0"},
		{"ip", "off", Error, "a second ip= without device (the first is ip=dhcp,auto6)"},
	}
	if len(ps) != len(want) {
		t.Fatalf("problems %v, want %v", ps, want)
	}
	for i, w := range want {
		if p := ps[i]; p.Param != w.Param || p.Value != w.Value || p.Severity != w.Severity || !strings.Contains(p.Msg, w.Msg) {
			t.Errorf("problem %d = %s, want %s", i, p, w)
		}
	}
}

func TestParseWatchdog(t *testing.T) {
	tests := []struct {
		args string
		want time.Duration
		hang string
	}{
		{"", DefaultWatchdog, ""},
		{" zeroboot.watchdog=0", 0, ""},
		{" zeroboot.watchdog=5", 5 * time.Second, ""},
		{" zeroboot.watchdog=010", 10 * time.Second, ""},
		{" zeroboot.watchdog=3600", time.Hour, ""},
		{" zeroboot.watchdog=10 zeroboot.debug.hang=supervise", 10 * time.Second, "supervise"},
		{" zeroboot.debug.hang=watchdog", DefaultWatchdog, "watchdog"},
	}
	for _, tt := range tests {
		c, ps := Parse(reg + tt.args)
		if len(ps) != 0 {
			t.Errorf("%q: problems %v", tt.args, ps)
		}
		if c.Watchdog != tt.want || c.DebugHang != tt.hang {
			t.Errorf("%q: watchdog %v hang %q, want %v and %q", tt.args, c.Watchdog, c.DebugHang, tt.want, tt.hang)
		}
	}
}

func TestParseNTP(t *testing.T) {
	c, ps := Parse(reg + " zeroboot.ntp=pool.ntp.org,192.0.2.123,[2001:db8::123],[2001:DB8::124]:10123,ntp.example.net:1123,time")
	if len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	want := []string{"pool.ntp.org:123", "192.0.2.123:123", "[2001:db8::123]:123", "[2001:db8::124]:10123", "ntp.example.net:1123", "time:123"}
	if !reflect.DeepEqual(c.NTP, want) {
		t.Errorf("NTP %q, want %q", c.NTP, want)
	}
}

func TestRescueWithoutRegistry(t *testing.T) {
	c, ps := Parse("zeroboot.rescue")
	if len(ps) != 0 || !c.Rescue {
		t.Fatalf("rescue=%v problems=%v", c.Rescue, ps)
	}
}

func TestRepeatKeepsFirst(t *testing.T) {
	c, ps := Parse(reg + " zeroboot.farm=a zeroboot.farm=b")
	if c.Farm != "a" || !HasErrors(ps) {
		t.Fatalf("farm=%q problems=%v", c.Farm, ps)
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{"zeroboot.farm", "A B", Error, "must match x"}, `error: zeroboot.farm="A B": must match x`},
		{Problem{"zeroboot.registry", "", Error, "no registry"}, `error: zeroboot.registry: no registry`},
		{Problem{"zeroboot.x", "1", Warning, "unknown"}, `warning: zeroboot.x="1": unknown`},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestDocsMentionEveryParam(t *testing.T) {
	b, err := os.ReadFile("../../docs/kernel-cmdline.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Params {
		if !strings.Contains(string(b), "`"+p.Name+"`") {
			t.Errorf("docs/kernel-cmdline.md does not mention `%s`", p.Name)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", reg, `a="b c" "d=e f"`, "zeroboot.registry=http://x", `"`, `a="`, "--", "zeroboot.farm=a zeroboot.farm=b",
		"zeroboot.registry=https://[::1]:8443,https://203.0.113.1 ip=off console=ttyS0",
		reg + " ip=192.0.2.10::192.0.2.1:24:node1:eth0:none ip=eth1:dhcp,dhcp6:9000 bond=bond0:eth2,eth3:mode=4 vlan=vlan5:bond0",
		reg + " ifname=boot0:52:54:00:12:34:56 nameserver=[2001:db8::53] zeroboot.ntp=[2001:db8::123]:123,pool.ntp.org bond",
		"zeroboot.debug=2 zeroboot.nope ZEROBOOT.farm=x zeroboot.rescue",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ps := Parse(s)
		for _, u := range c.Registries {
			if u.Scheme != "https" || u.Host == "" {
				t.Fatalf("accepted registry %v", u)
			}
		}
		for _, p := range ps {
			if p.Msg == "" || p.Param == "" && p.Value == "" {
				t.Fatalf("problem without explanation: %#v", p)
			}
		}
	})
}

func TestParseRegistries(t *testing.T) {
	tests := []struct {
		in       string
		want     []string
		problems []string
	}{
		{"https://192.0.2.1:8443", []string{"https://192.0.2.1:8443"}, nil},
		{"https://[2001:db8:1::1]:8443,https://reg.example.net", []string{"https://[2001:db8:1::1]:8443", "https://reg.example.net"}, nil},
		{"http://192.0.2.1", nil, []string{`"http://192.0.2.1": http refused`}},
		{"https://a.test,,https://a.test", []string{"https://a.test"}, []string{`"": empty URL`, `"https://a.test": listed twice`}},
		{"https://u:p@a.test", nil, []string{"credentials in the URL refused"}},
	}
	for _, tc := range tests {
		urls, problems := ParseRegistries(tc.in)
		var got []string
		for _, u := range urls {
			got = append(got, u.String())
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("ParseRegistries(%q) = %v, want %v", tc.in, got, tc.want)
		}
		if len(problems) != len(tc.problems) {
			t.Errorf("ParseRegistries(%q) problems %v, want %d", tc.in, problems, len(tc.problems))
			continue
		}
		for i, p := range problems {
			if !strings.Contains(p.Error(), tc.problems[i]) {
				t.Errorf("ParseRegistries(%q) problem %q, want %q", tc.in, p.Error(), tc.problems[i])
			}
		}
	}
	if c, ps := Parse("quiet"); HasErrors(ps) || len(c.Registries) != 0 {
		t.Errorf("no zeroboot.registry: %v %v, want no error (DHCP may give it)", c.Registries, ps)
	}
}

func TestParseDebugPanic(t *testing.T) {
	c, ps := Parse(reg + " zeroboot.debug.panic=components")
	if len(ps) != 0 || c.DebugPanic != "components" {
		t.Fatalf("DebugPanic %q, problems %v", c.DebugPanic, ps)
	}
	c, ps = Parse(reg + " zeroboot.debug.panic=mount")
	if c.DebugPanic != "" || len(ps) != 1 || ps[0].Severity != Error || !strings.Contains(ps[0].Msg, "want one of network, time, identity, registry, components, handoff") {
		t.Fatalf("DebugPanic %q, problems %v", c.DebugPanic, ps)
	}
}
