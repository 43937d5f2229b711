package netconf

import (
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func ms(m ...Method) []Method { return m }

func TestParseIPGood(t *testing.T) {
	tests := []struct {
		in   string
		want IP
	}{
		// Bare methods.
		{"dhcp", IP{Methods: ms(DHCP)}},
		{"DHCP", IP{Methods: ms(DHCP)}},
		{"on", IP{Methods: ms(Auto)}},
		{"any", IP{Methods: ms(Auto)}},
		{"auto", IP{Methods: ms(Auto)}},
		{"dhcp6", IP{Methods: ms(DHCP6)}},
		{"auto6", IP{Methods: ms(Auto6)}},
		{"off", IP{Methods: ms(Off)}},
		{"none", IP{Methods: ms(Off)}},
		{"dhcp,dhcp6", IP{Methods: ms(DHCP, DHCP6)}},
		{"dhcp,auto6", IP{Methods: ms(Auto)}},
		{"auto6,dhcp", IP{Methods: ms(Auto)}},
		{"dhcp6,on", IP{Methods: ms(Auto, DHCP6)}},
		{"dhcp6,auto6", IP{Methods: ms(Auto6, DHCP6)}},
		{"dhcp,dhcp", IP{Methods: ms(DHCP)}},
		{"on,dhcp", IP{Methods: ms(Auto)}},
		// Device form.
		{"eth0:dhcp", IP{Device: "eth0", Methods: ms(DHCP)}},
		{"eth0:dhcp:", IP{Device: "eth0", Methods: ms(DHCP)}},
		{"eth0:off", IP{Device: "eth0", Methods: ms(Off)}},
		{"enp1s0:dhcp6:1500", IP{Device: "enp1s0", Methods: ms(DHCP6), MTU: 1500}},
		{"eth0:dhcp:576", IP{Device: "eth0", Methods: ms(DHCP), MTU: 576}},
		{"eth0:dhcp:68", IP{Device: "eth0", Methods: ms(DHCP), MTU: 68}},
		{"eth0:auto6:1280", IP{Device: "eth0", Methods: ms(Auto6), MTU: 1280}},
		{"eth0:dhcp::52:54:00:12:34:56", IP{Device: "eth0", Methods: ms(DHCP), MAC: mac("52:54:00:12:34:56")}},
		{"eth0:dhcp,dhcp6:9000:52:54:00:AB:cd:EF", IP{Device: "eth0", Methods: ms(DHCP, DHCP6), MTU: 9000, MAC: mac("52:54:00:ab:cd:ef")}},
		{"eth0.5:on:65535", IP{Device: "eth0.5", Methods: ms(Auto), MTU: 65535}},
		// Static form.
		{"192.0.2.10::192.0.2.1:255.255.255.0:node1:eth0:none",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("192.0.2.10/24"), Gateway: addr("192.0.2.1"), Hostname: "node1"}},
		{"192.0.2.10/24::192.0.2.1::node1.example.net:eth0:off",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("192.0.2.10/24"), Gateway: addr("192.0.2.1"), Hostname: "node1.example.net"}},
		{"192.0.2.10/24::192.0.2.1:255.255.255.0::eth0:",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("192.0.2.10/24"), Gateway: addr("192.0.2.1")}},
		{"192.0.2.10:192.0.2.20::32::ppp0:none",
			IP{Device: "ppp0", Methods: ms(Static), Addr: pfx("192.0.2.10/32"), Peer: addr("192.0.2.20")}},
		{"192.0.2.10::192.0.2.1:24::eth0:none:192.0.2.53:198.51.100.53",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("192.0.2.10/24"), Gateway: addr("192.0.2.1"), DNS: []netip.Addr{addr("192.0.2.53"), addr("198.51.100.53")}}},
		{"192.0.2.10::192.0.2.1:24::eth0:none::192.0.2.53",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("192.0.2.10/24"), Gateway: addr("192.0.2.1"), DNS: []netip.Addr{addr("192.0.2.53")}}},
		{"192.0.2.10::192.0.2.1:24::eth0:none:[2001:db8::53]",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("192.0.2.10/24"), Gateway: addr("192.0.2.1"), DNS: []netip.Addr{addr("2001:db8::53")}}},
		{"192.0.2.10::192.0.2.1:24::eth0:none:1500",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("192.0.2.10/24"), Gateway: addr("192.0.2.1"), MTU: 1500}},
		{"192.0.2.10::192.0.2.1:24::eth0:none:1500:52:54:00:12:34:56",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("192.0.2.10/24"), Gateway: addr("192.0.2.1"), MTU: 1500, MAC: mac("52:54:00:12:34:56")}},
		{"192.0.2.10::192.0.2.1:24::eth0:none::52:54:00:12:34:56",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("192.0.2.10/24"), Gateway: addr("192.0.2.1"), MAC: mac("52:54:00:12:34:56")}},
		// A gateway outside the subnet is reached by an on-link route.
		{"192.0.2.10::198.51.100.1:24::eth0:none",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("192.0.2.10/24"), Gateway: addr("198.51.100.1")}},
		// RFC 3021: both addresses of a /31 are hosts.
		{"192.0.2.0/31:::::eth0:none", IP{Device: "eth0", Methods: ms(Static), Addr: pfx("192.0.2.0/31")}},
		{"192.0.2.1:::31::eth0:none", IP{Device: "eth0", Methods: ms(Static), Addr: pfx("192.0.2.1/31")}},
		{"192.0.2.10::192.0.2.1:255.255.255.252::eth0:none",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("192.0.2.10/30"), Gateway: addr("192.0.2.1")}},
		{"[2001:db8::10]::[2001:db8::1]:64::eth0:none",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("2001:db8::10/64"), Gateway: addr("2001:db8::1")}},
		{"[2001:db8::10]/64::[fe80::1]:::eth0:none",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("2001:db8::10/64"), Gateway: addr("fe80::1")}},
		{"[2001:db8::10/64]:::::eth0:none:[2001:db8::53]",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("2001:db8::10/64"), DNS: []netip.Addr{addr("2001:db8::53")}}},
		{"[2001:DB8::10]:::128::eth0:none:1280",
			IP{Device: "eth0", Methods: ms(Static), Addr: pfx("2001:db8::10/128"), MTU: 1280}},
		// Static form without CLIENT: host name, device, DNS for a method.
		{"::::node1:eth0:dhcp", IP{Device: "eth0", Methods: ms(DHCP), Hostname: "node1"}},
		{"::::::dhcp", IP{Methods: ms(DHCP)}},
		{":::::eth0:off", IP{Device: "eth0", Methods: ms(Off)}},
		{"::::::on:192.0.2.53", IP{Methods: ms(Auto), DNS: []netip.Addr{addr("192.0.2.53")}}},
		{"::::::dhcp,auto6:1500", IP{Methods: ms(Auto), MTU: 1500}},
		{":::::eth0:dhcp6::52:54:00:12:34:56", IP{Device: "eth0", Methods: ms(DHCP6), MAC: mac("52:54:00:12:34:56")}},
	}
	for _, tt := range tests {
		got, err := ParseIP(tt.in)
		if err != nil {
			t.Errorf("ParseIP(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseIP(%q) = %#v\nwant %#v", tt.in, got, tt.want)
			continue
		}
		s := got.String()
		back, err := ParseIP(s)
		if err != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("ParseIP(%q).String() = %q, which parses to %#v, %v", tt.in, s, back, err)
		}
	}
}

func TestParseIPBad(t *testing.T) {
	long := strings.Repeat("a", 65)
	tests := []struct{ in, msg string }{
		{"", "empty: write ip=METHOD"},
		{"dhcpp", `unknown method "dhcpp" (known: dhcp, on, any, auto, dhcp6, auto6, off, none)`},
		{"eth0:dhcp4", `unknown method "dhcp4"`},
		{"ibft", "iBFT (firmware-provided configuration) is not supported"},
		{"eth0:ibft", "iBFT"},
		{"either6", "either6 is not supported"},
		{"link6", "link6 is not supported"},
		{"single-dhcp", "single-dhcp is not supported"},
		{"bootp", "bootp is not supported"},
		{"rarp", "rarp is not supported"},
		{"::::::both", "AUTOCONF: both (BOOTP and RARP) is not supported"},
		{"static", "static is not a METHOD"},
		{"eth0:static", "static is not a METHOD"},
		{"dhcp,", `empty method in "dhcp," (stray comma?)`},
		{"off,dhcp", `"off,dhcp": off and none cannot be combined`},
		{"none,none", "cannot be combined"},
		{"eth0:", "empty METHOD"},
		// Device names.
		{"eth0/1:dhcp", `device name "eth0/1": '/' not allowed`},
		{"averyveryverylong:dhcp", `device name "averyveryverylong" is 17 bytes, at most 15`},
		{".:dhcp", `device name "." is not allowed`},
		{"..:dhcp", `device name ".." is not allowed`},
		{"eth 0:dhcp", "byte 0x20 not allowed"},
		{"eth%d:dhcp", `'%' not allowed`},
		{"eth0,eth1:dhcp", `',' not allowed`},
		{"ethé:dhcp", "byte 0xc3 not allowed"},
		// MTU and MAC.
		{"eth0:dhcp:67", `MTU "67": want a number from 68 to 65535`},
		{"eth0:dhcp:65536", `MTU "65536"`},
		{"eth0:dhcp:99999999999999999999", `MTU "99999999999999999999"`},
		{"eth0:dhcp:abc", `MTU "abc"`},
		{"eth0:dhcp:-1", `MTU "-1"`},
		{"eth0:dhcp:+1500", `MTU "+1500"`},
		{"eth0:auto6:1000", "MTU 1000 is below 1280, the IPv6 minimum, and auto6 configures IPv6"},
		{"eth0:on:1279", "below 1280"},
		{"eth0:dhcp,dhcp6:576", "below 1280"},
		{"[2001:db8::10]:::64::eth0:none:1000", "MTU 1000 is below 1280, the IPv6 minimum, and the static address 2001:db8::10/64 configures IPv6"},
		{"eth0:dhcp:1500:52:54:00:12:34", `MAC "52:54:00:12:34": want 6 hex pairs`},
		{"eth0:dhcp:1500:zz", `MAC "zz": want 6 hex pairs`},
		{"eth0:dhcp::52:54:00:12:34:5g", `"5g" is not a hex pair`},
		{"eth0:dhcp:1500:52:54:00:12:34:56:", `MAC "52:54:00:12:34:56:"`},
		{"eth0:dhcp:52:54:00:12:34:56", "MAC 52:54:00:12:34:56 must follow the MTU field: write ::52:54:00:12:34:56"},
		{"eth0:dhcp:1500:52:54:00:12:34:56:78", "2 fields before the MAC, too many"},
		{"eth0:dhcp::01:00:5e:00:00:01", "MAC 01:00:5e:00:00:01 is a multicast address"},
		{"eth0:dhcp::00:00:00:00:00:00", "MAC 00:00:00:00:00:00 is all zero"},
		{"::::::dhcp::52:54:00:12:34:56", "MAC 52:54:00:12:34:56 without DEVICE: every link would get it"},
		// Static form: fields and methods.
		{"192.0.2.10::192.0.2.1:24", "4 fields: the static form is ip=CLIENT:[PEER]:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF"},
		{"a:b:c:d:e:f:g:h:i:j:k:l:m:n:o", "15 fields, too many"},
		{"192.0.2.10::192.0.2.1:255.255.255.0::eth0:dhcp", "CLIENT 192.0.2.10 with AUTOCONF dhcp is ambiguous"},
		{"192.0.2.10::192.0.2.1:24::eth0:on", "with AUTOCONF dhcp,auto6 is ambiguous"},
		{"192.0.2.10::192.0.2.1:24:::none", "static address 192.0.2.10/24 without DEVICE: every link would get it"},
		{":::::eth0:", "no CLIENT and no AUTOCONF: nothing to configure"},
		{"::192.0.2.1:24::eth0:dhcp", "GATEWAY 192.0.2.1 without CLIENT: only a static address uses it"},
		{":192.0.2.1::::eth0:dhcp", "PEER 192.0.2.1 without CLIENT"},
		{":::24::eth0:dhcp", "NETMASK 24 without CLIENT"},
		// Static form: addresses and masks.
		{"192.0.2.10::192.0.2.1:::eth0:none", "no prefix length for CLIENT 192.0.2.10: give NETMASK or CLIENT/LEN"},
		{"192.0.2.10/24::192.0.2.1:16::eth0:none", "CLIENT 192.0.2.10/24 and NETMASK 16 disagree (/24 and /16)"},
		{"192.0.2.10::192.0.2.1:255.0.255.0::eth0:none", "NETMASK 255.0.255.0: its ones are not contiguous"},
		{"192.0.2.10::192.0.2.1:0.0.0.0::eth0:none", "NETMASK 0.0.0.0 is the whole address space"},
		{"192.0.2.10::192.0.2.1:0::eth0:none", "prefix length 0 is the whole address space"},
		{"192.0.2.10/0::192.0.2.1:::eth0:none", "prefix length 0 is the whole address space"},
		{"192.0.2.10::192.0.2.1:33::eth0:none", `NETMASK prefix length "33": want 1 to 32`},
		{"192.0.2.10::192.0.2.1:255.255.255.256::eth0:none", `NETMASK "255.255.255.256": want a dotted mask`},
		{"192.0.2.10::192.0.2.1:[::]::eth0:none", `NETMASK "[::]"`},
		{"[2001:db8::10]:::255.255.255.0::eth0:none", "an IPv6 netmask is a prefix length, like 64"},
		{"[2001:db8::10]:::129::eth0:none", `prefix length "129": want 1 to 128`},
		{"[2001:db8::10]/64/3:::::eth0:none", `prefix length "64/3"`},
		{"192.0.2.300::192.0.2.1:24::eth0:none", `CLIENT "192.0.2.300": not an IP address`},
		{"0.0.0.0::192.0.2.1:24::eth0:none", "CLIENT 0.0.0.0 is the unspecified address"},
		{"127.0.0.2:::8::lo:none", "CLIENT 127.0.0.2 is a loopback address"},
		{"224.0.0.5:::24::eth0:none", "CLIENT 224.0.0.5 is a multicast address"},
		{"255.255.255.255:::32::eth0:none", "CLIENT 255.255.255.255 is the broadcast address"},
		{"192.0.2.0::192.0.2.1:24::eth0:none", "CLIENT 192.0.2.0/24 is the network address of 192.0.2.0/24"},
		{"192.0.2.255::192.0.2.1:24::eth0:none", "CLIENT 192.0.2.255/24 is the broadcast address of 192.0.2.0/24"},
		{"[::]:::64::eth0:none", "CLIENT :: is the unspecified address"},
		{"[::1]:::128::eth0:none", "CLIENT ::1 is a loopback address"},
		{"[ff02::1]:::64::eth0:none", "CLIENT ff02::1 is a multicast address"},
		{"[fe80::10%eth0]:::64::eth0:none", "CLIENT fe80::10%eth0: no %zone"},
		{"[::ffff:192.0.2.10]:::120::eth0:none", "IPv4-mapped IPv6 address, write it as 192.0.2.10"},
		{"192.0.2.10::[2001:db8::1]:24::eth0:none", "GATEWAY 2001:db8::1 and CLIENT 192.0.2.10 are not the same IP version"},
		{"[2001:db8::10]::192.0.2.1:64::eth0:none", "GATEWAY 192.0.2.1 and CLIENT 2001:db8::10 are not the same IP version"},
		{"192.0.2.10:[2001:db8::1]::24::eth0:none", "PEER 2001:db8::1 and CLIENT 192.0.2.10 are not the same IP version"},
		{"192.0.2.10::192.0.2.10:24::eth0:none", "GATEWAY 192.0.2.10 is the client's own address"},
		{"192.0.2.10:192.0.2.10::32::ppp0:none", "PEER 192.0.2.10 is the client's own address"},
		{"192.0.2.10::224.0.0.1:24::eth0:none", "GATEWAY 224.0.0.1 is a multicast address"},
		{"192.0.2.10::127.0.0.1:24::eth0:none", "GATEWAY 127.0.0.1 is a loopback address"},
		{"192.0.2.10::0.0.0.0:24::eth0:none", "GATEWAY 0.0.0.0 is the unspecified address"},
		{"192.0.2.10::gw:24::eth0:none", `GATEWAY "gw": not an IP address`},
		{"192.0.2.10::[192.0.2.1]:24::eth0:none", `GATEWAY "[192.0.2.1]": brackets are for IPv6 addresses, write 192.0.2.1`},
		{"[192.0.2.10]::192.0.2.1:24::eth0:none", `CLIENT "[192.0.2.10]": brackets are for IPv6 addresses`},
		{"[2001:db8::10]::[2001:db8::1]x:64::eth0:none", `GATEWAY "[2001:db8::1]x": nothing may follow ']'`},
		{"[2001:db8::10]x:::64::eth0:none", `CLIENT "[2001:db8::10]x": only /LEN may follow ']'`},
		{"[2001:db8::10/64]/64:::::eth0:none", "only /LEN may follow ']'"},
		// Brackets.
		{"[2001:db8::10::::eth0:none", "'[' without ']'"},
		{"2001:db8::10]:::64::eth0:none", "']' without '['"},
		{"[[2001:db8::10]]:::64::eth0:none", "'[' inside brackets"},
		{"a[b]:dhcp", `'[' in the middle of field "a["`},
		{"[2001:db8::10]::2001:db8::1:64::eth0:none", `GATEWAY "2001": not an IP address (IPv6 addresses go in square brackets`},
		{"2001:db8::10::2001:db8::1:64::eth0:none", "IPv6 address 2001:db8::10 must be in square brackets: [2001:db8::10]"},
		{"2001:db8::10:::64::eth0:none", "must be in square brackets"},
		// Host names.
		{"192.0.2.10::192.0.2.1:24:bad_host:eth0:none", `HOSTNAME: host name "bad_host": label "bad_host": '_' not allowed`},
		{"::::-node:eth0:dhcp", `label "-node" starts or ends with '-'`},
		{"::::node.:eth0:dhcp", "empty label (stray dot?)"},
		{"::::192.0.2.1:eth0:dhcp", `"192.0.2.1" is an IP address, not a host name`},
		{"::::" + long + ":eth0:dhcp", "is 65 bytes, at most 63"},
		{"::::" + strings.Repeat("a.", 32) + "a:eth0:dhcp", "is 65 bytes, at most 64 (HOST_NAME_MAX)"},
		// After AUTOCONF.
		{"192.0.2.10::192.0.2.1:24::eth0:none:192.0.2.53:192.0.2.54:192.0.2.55", "3 fields after AUTOCONF, too many"},
		{"192.0.2.10::192.0.2.1:24::eth0:none:224.0.0.1", "DNS0 224.0.0.1 is a multicast address"},
		{"192.0.2.10::192.0.2.1:24::eth0:none::127.0.0.53", "DNS1 127.0.0.53 is a loopback address"},
		{"192.0.2.10::192.0.2.1:24::eth0:none:0.0.0.0", "DNS0 0.0.0.0 is the unspecified address"},
		{"192.0.2.10::192.0.2.1:24::eth0:none:192.0.2.53:52:54:00:12:34:56", "not both"},
		{"192.0.2.10::192.0.2.1:24::eth0:none:abc", `DNS0 "abc": not an IP address`},
		{"192.0.2.10::192.0.2.1:24::eth0:none:1500:192.0.2.53", `MAC "192.0.2.53": want 6 hex pairs`},
		{"192.0.2.10::192.0.2.1:24::eth0:none:52:54:00:12:34:56", "must follow the MTU field"},
	}
	for _, tt := range tests {
		ip, err := ParseIP(tt.in)
		if err == nil {
			t.Errorf("ParseIP(%q) = %#v, want error containing %q", tt.in, ip, tt.msg)
			continue
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseIP(%q): %q, want it to contain %q", tt.in, err, tt.msg)
		}
	}
}

func TestForAndUses(t *testing.T) {
	c := Config{IPs: []IP{
		{Device: "eth1", Methods: ms(Off)},
		{Methods: ms(DHCP6)},
		{Device: "eth0", Methods: ms(DHCP, DHCP6)},
	}}
	if got := c.For("eth0"); got != &c.IPs[2] {
		t.Errorf("For(eth0) = %v, want the entry naming it", got)
	}
	if got := c.For("eth1"); got != &c.IPs[0] {
		t.Errorf("For(eth1) = %v", got)
	}
	if got := c.For("eth2"); got != &c.IPs[1] {
		t.Errorf("For(eth2) = %v, want the entry without device", got)
	}
	var none Config
	if got := none.For("eth0"); got != nil {
		t.Errorf("For without ip= = %v, want nil", got)
	}
	onlyDev := Config{IPs: []IP{{Device: "eth0", Methods: ms(DHCP)}}}
	if got := onlyDev.For("eth1"); got != nil {
		t.Errorf("For(eth1) = %v, want nil (Auto)", got)
	}

	uses := []struct {
		ip   *IP
		m    Method
		want bool
	}{
		{nil, Auto, true}, {nil, DHCP, true}, {nil, Auto6, true}, {nil, DHCP6, false}, {nil, Off, false}, {nil, Static, false},
		{&IP{Methods: ms(Auto, DHCP6)}, DHCP, true}, {&IP{Methods: ms(Auto, DHCP6)}, DHCP6, true},
		{&IP{Methods: ms(DHCP)}, Auto6, false}, {&IP{Methods: ms(DHCP)}, Auto, false},
		{&IP{Methods: ms(DHCP, Auto6)}, Auto, true},
		{&IP{Methods: ms(Auto6)}, Auto6, true}, {&IP{Methods: ms(Auto6)}, DHCP6, false},
		{&IP{Methods: ms(Off)}, Off, true}, {&IP{Methods: ms(Off)}, DHCP, false},
		{&IP{Methods: ms(Static)}, Static, true}, {&IP{Methods: ms(Static)}, Auto6, false},
	}
	for _, u := range uses {
		if got := u.ip.Uses(u.m); got != u.want {
			t.Errorf("%v.Uses(%s) = %v, want %v", u.ip, u.m, got, u.want)
		}
	}
}

func TestParseNameserver(t *testing.T) {
	good := map[string]netip.Addr{
		"192.0.2.53":      addr("192.0.2.53"),
		"2001:db8::53":    addr("2001:db8::53"),
		"[2001:db8::53]":  addr("2001:db8::53"),
		"[2001:DB8::53]":  addr("2001:db8::53"),
		"198.51.100.1":    addr("198.51.100.1"),
		"fd00::1":         addr("fd00::1"),
		"169.254.169.254": addr("169.254.169.254"),
	}
	for in, want := range good {
		got, err := ParseNameserver(in)
		if err != nil || got != want {
			t.Errorf("ParseNameserver(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := []struct{ in, msg string }{
		{"", `nameserver "": not an IP address`},
		{"dns.example.net", `nameserver "dns.example.net": not an IP address`},
		{"192.0.2.53:53", "not an IP address"},
		{"[192.0.2.53]", "brackets are for IPv6"},
		{"[2001:db8::53", "'[' without ']'"},
		{"[2001:db8::53]:53", "nothing may follow ']'"},
		{"2001:db8::53]", "stray bracket"},
		{"127.0.0.53", "nameserver 127.0.0.53 is a loopback address"},
		{"::1", "loopback"},
		{"0.0.0.0", "unspecified"},
		{"224.0.0.251", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"fe80::1%eth0", "no %zone"},
		{"::ffff:192.0.2.53", "IPv4-mapped"},
	}
	for _, tt := range bad {
		a, err := ParseNameserver(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseNameserver(%q) = %v, %v; want error containing %q", tt.in, a, err, tt.msg)
		}
	}
}

func FuzzParseIP(f *testing.F) {
	for _, s := range []string{
		"dhcp", "on", "off", "dhcp,dhcp6", "eth0:dhcp", "eth0:dhcp6:1500", "eth0:dhcp::52:54:00:12:34:56",
		"eth0:on:9000:52:54:00:12:34:56", "192.0.2.10::192.0.2.1:255.255.255.0:node1:eth0:none",
		"192.0.2.10/24::192.0.2.1::node:eth0:off:192.0.2.53:[2001:db8::53]",
		"192.0.2.10::192.0.2.1:24::eth0:none:1500:52:54:00:12:34:56",
		"[2001:db8::10]/64::[fe80::1]:::eth0:none", "[2001:db8::10/64]:::::eth0:none::[2001:db8::53]",
		"::::node:eth0:dhcp", "::::::dhcp,auto6:1500", ":::::eth0:off", "2001:db8::10::::::", "[", "]", "[[]]", ":",
		"192.0.2.10::192.0.2.1:24::eth0:dhcp", "eth0:dhcp:52:54:00:12:34:56", "ibft", "a:b:c:d:e:f:g:h:i:j:k:l:m:n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ip, err := ParseIP(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseIP(%q): empty error", s)
			}
			return
		}
		if len(ip.Methods) == 0 {
			t.Fatalf("ParseIP(%q) accepted without a method: %#v", s, ip)
		}
		if ip.Addr.IsValid() != ip.Uses(Static) {
			t.Fatalf("ParseIP(%q): address %v with methods %v", s, ip.Addr, ip.Methods)
		}
		canon := ip.String()
		back, err := ParseIP(canon)
		if err != nil {
			t.Fatalf("ParseIP(%q).String() = %q does not parse: %v", s, canon, err)
		}
		if !reflect.DeepEqual(back, ip) {
			t.Fatalf("ParseIP(%q) = %#v\nits String %q parses to %#v", s, ip, canon, back)
		}
		if again := back.String(); again != canon {
			t.Fatalf("String not canonical: %q then %q", canon, again)
		}
	})
}
