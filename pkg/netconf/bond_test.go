package netconf

import (
	"reflect"
	"strings"
	"testing"
)

func opts(kvs ...string) []BondOption {
	var os []BondOption
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		os = append(os, BondOption{k, v})
	}
	return os
}

func TestParseBondGood(t *testing.T) {
	tests := []struct {
		in   string
		want Bond
		mode string
	}{
		{"bond0", Bond{Name: "bond0", Slaves: []string{"eth0", "eth1"}}, "balance-rr"},
		{"bond0:eth2", Bond{Name: "bond0", Slaves: []string{"eth2"}}, "balance-rr"},
		{"bond0:eth0,eth1:mode=802.3ad,miimon=100,lacp_rate=fast",
			Bond{Name: "bond0", Slaves: []string{"eth0", "eth1"}, Options: opts("mode=802.3ad", "miimon=100", "lacp_rate=fast")}, "802.3ad"},
		{"bond0:eth0,eth1:mode=active-backup,primary=eth0",
			Bond{Name: "bond0", Slaves: []string{"eth0", "eth1"}, Options: opts("mode=active-backup", "primary=eth0")}, "active-backup"},
		{"bond1:enp1s0,enp2s0:mode=4,lacp_rate=1,xmit_hash_policy=layer3+4,ad_select=bandwidth,min_links=1:9000",
			Bond{Name: "bond1", Slaves: []string{"enp1s0", "enp2s0"}, Options: opts("mode=4", "lacp_rate=1", "xmit_hash_policy=layer3+4", "ad_select=bandwidth", "min_links=1"), MTU: 9000}, "802.3ad"},
		{"bond0:eth0,eth1::1500", Bond{Name: "bond0", Slaves: []string{"eth0", "eth1"}, MTU: 1500}, "balance-rr"},
		{"bond0:eth0,eth1:", Bond{Name: "bond0", Slaves: []string{"eth0", "eth1"}}, "balance-rr"},
		{"bond0:eth0,eth1:mode=balance-xor,arp_interval=200,arp_ip_target=192.0.2.1;192.0.2.2",
			Bond{Name: "bond0", Slaves: []string{"eth0", "eth1"}, Options: opts("mode=balance-xor", "arp_interval=200", "arp_ip_target=192.0.2.1;192.0.2.2")}, "balance-xor"},
		{"bond0:eth0:arp_interval=100,arp_ip_target=192.0.2.1,arp_ip_target=192.0.2.2",
			Bond{Name: "bond0", Slaves: []string{"eth0"}, Options: opts("arp_interval=100", "arp_ip_target=192.0.2.1", "arp_ip_target=192.0.2.2")}, "balance-rr"},
		{"bond0:eth0,eth1:mode=balance-alb,primary=eth1,fail_over_mac=active,updelay=200,downdelay=0,miimon=0",
			Bond{Name: "bond0", Slaves: []string{"eth0", "eth1"}, Options: opts("mode=balance-alb", "primary=eth1", "fail_over_mac=active", "updelay=200", "downdelay=0", "miimon=0")}, "balance-alb"},
		{"bond0:eth0:mode=6", Bond{Name: "bond0", Slaves: []string{"eth0"}, Options: opts("mode=6")}, "balance-alb"},
		{"bond0:eth0:mode=broadcast,miimon=0,arp_interval=0", Bond{Name: "bond0", Slaves: []string{"eth0"}, Options: opts("mode=broadcast", "miimon=0", "arp_interval=0")}, "broadcast"},
	}
	for _, tt := range tests {
		got, err := ParseBond(tt.in)
		if err != nil {
			t.Errorf("ParseBond(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseBond(%q) = %#v\nwant %#v", tt.in, got, tt.want)
		}
		if m := got.Mode(); m != tt.mode {
			t.Errorf("ParseBond(%q).Mode() = %q, want %q", tt.in, m, tt.mode)
		}
		if back, err := ParseBond(got.String()); err != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("ParseBond(%q).String() = %q parses to %#v, %v", tt.in, got.String(), back, err)
		}
	}
}

func TestParseBondBad(t *testing.T) {
	targets := strings.TrimSuffix(strings.Repeat("192.0.2.1;", 17), ";")
	tests := []struct{ in, msg string }{
		{"", "NAME: empty device name"},
		{"bond/0", `NAME: device name "bond/0": '/' not allowed`},
		{"bond0:eth0:mode=4:1500:x", "5 fields, too many: want NAME[:SLAVES[:OPTIONS[:MTU]]]"},
		{"bond0::mode=4", "no SLAVES: list at least one, or leave out the field (and what follows) for eth0,eth1"},
		{"bond0:eth0,", `empty slave in "eth0," (stray comma?)`},
		{"bond0:,eth0", "empty slave"},
		{"bond0:eth0,eth0", "slave eth0 listed twice"},
		{"bond0:bond0", "bond bond0 cannot be its own slave"},
		{"eth0", "default SLAVES eth0,eth1: bond eth0 cannot be its own slave"},
		{"bond0:eth 0", "SLAVES: device name"},
		{"bond0:averyveryverylong", "SLAVES: device name \"averyveryverylong\" is 17 bytes"},
		{"bond0:eth0:mode=fast", `option mode: "fast" is not one of balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb (or 0 to 6)`},
		{"bond0:eth0:mode=7", "option mode:"},
		{"bond0:eth0:mode=04", "option mode:"},
		{"bond0:eth0:mode=802.3AD", "option mode:"},
		{"bond0:eth0:mode=4,lacp_rate=medium", `option lacp_rate: "medium" is not one of slow, fast (or 0 to 1)`},
		{"bond0:eth0:mode=4,lacp_rate=2", "option lacp_rate"},
		{"bond0:eth0:miimon=fast", `option miimon: "fast" is not a number from 0 to 2147483647`},
		{"bond0:eth0:miimon=-1", "option miimon"},
		{"bond0:eth0:miimon=2147483648", "option miimon"},
		{"bond0:eth0:updelay=1s", "option updelay"},
		{"bond0:eth0:downdelay=", `option "downdelay=": want key=value`},
		{"bond0:eth0:mode", `option "mode": want key=value`},
		{"bond0:eth0:mode=4,", `empty option in "mode=4," (stray comma?)`},
		{"bond0:eth0:mode=4,mode=1", "option mode given twice"},
		{"bond0:eth0:miimon=100,miimon=200", "option miimon given twice"},
		{"bond0:eth0:bogus=1", "unknown bonding option \"bogus\" (known: ad_select, arp_interval, arp_ip_target, downdelay, fail_over_mac, lacp_rate, miimon, min_links, mode, primary, updelay, xmit_hash_policy)"},
		{"bond0:eth0:Mode=4", `unknown bonding option "Mode"`},
		{"bond0:eth0:xmit_hash_policy=layer4", "option xmit_hash_policy"},
		{"bond0:eth0:ad_select=best", "option ad_select"},
		{"bond0:eth0:fail_over_mac=yes", "option fail_over_mac"},
		{"bond0:eth0:min_links=x", "option min_links"},
		{"bond0:eth0:primary=eth/1", "option primary: device name"},
		{"bond0:eth0,eth1:mode=1,primary=eth2", "primary eth2 is not a slave of bond0 (slaves: eth0,eth1)"},
		{"bond0:eth0:lacp_rate=fast", "option lacp_rate does not work in mode balance-rr (the default: no mode= given)"},
		{"bond0:eth0:mode=active-backup,lacp_rate=fast", "option lacp_rate does not work in mode active-backup"},
		{"bond0:eth0:mode=4,primary=eth0", "option primary does not work in mode 802.3ad"},
		{"bond0:eth0:mode=balance-tlb,arp_interval=100,arp_ip_target=192.0.2.1", "option arp_interval does not work in mode balance-tlb"},
		{"bond0:eth0:mode=1,miimon=100,arp_interval=100,arp_ip_target=192.0.2.1", "miimon and arp_interval both set"},
		{"bond0:eth0:mode=1,arp_interval=100", "arp_interval without arp_ip_target"},
		{"bond0:eth0:arp_ip_target=" + targets, "option arp_ip_target: 17 addresses, at most 16"},
		{"bond0:eth0:arp_ip_target=gw", `option arp_ip_target: "gw" is not an IPv4 address`},
		{"bond0:eth0:arp_ip_target=192.0.2.1;", `option arp_ip_target: "" is not an IPv4 address`},
		{"bond0:eth0:arp_ip_target=2001:db8::1", "6 fields, too many"},
		{"bond0:eth0:arp_ip_target=224.0.0.1", "option arp_ip_target: target 224.0.0.1 is a multicast address"},
		{"bond0:eth0:arp_ip_target=255.255.255.255", "broadcast"},
		{"bond0:eth0::67", `MTU "67": want a number from 68 to 65535`},
		{"bond0:eth0::65536", `MTU "65536"`},
		{"bond0:eth0::jumbo", `MTU "jumbo"`},
	}
	for _, tt := range tests {
		b, err := ParseBond(tt.in)
		if err == nil {
			t.Errorf("ParseBond(%q) = %#v, want error containing %q", tt.in, b, tt.msg)
			continue
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseBond(%q): %q, want it to contain %q", tt.in, err, tt.msg)
		}
	}
}

func FuzzParseBond(f *testing.F) {
	for _, s := range []string{
		"bond0", "bond0:eth0,eth1:mode=802.3ad,miimon=100,lacp_rate=fast", "bond0:eth0,eth1:mode=active-backup,primary=eth0",
		"bond0:eth0::9000", "bond0::", "bond0:eth0:arp_interval=100,arp_ip_target=192.0.2.1;192.0.2.2", "bond0:eth0:mode=4:1500",
		":", "bond0:eth0,eth0", "bond0:eth0:lacp_rate=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBond(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseBond(%q): empty error", s)
			}
			return
		}
		if len(b.Slaves) == 0 {
			t.Fatalf("ParseBond(%q) accepted without slaves", s)
		}
		canon := b.String()
		back, err := ParseBond(canon)
		if err != nil {
			t.Fatalf("ParseBond(%q).String() = %q does not parse: %v", s, canon, err)
		}
		if !reflect.DeepEqual(back, b) {
			t.Fatalf("ParseBond(%q) = %#v\nits String %q parses to %#v", s, b, canon, back)
		}
		if again := back.String(); again != canon {
			t.Fatalf("String not canonical: %q then %q", canon, again)
		}
	})
}
