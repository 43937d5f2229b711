package netconf

import (
	"errors"
	"strings"
	"testing"
)

// config builds a Config from parameter values, failing the test on a
// value the parsers refuse.
func config(t *testing.T, params ...string) Config {
	t.Helper()
	var c Config
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		var err error
		switch k {
		case "ip":
			var ip IP
			ip, err = ParseIP(v)
			c.IPs = append(c.IPs, ip)
		case "ifname":
			var r Rename
			r, err = ParseRename(v)
			c.Renames = append(c.Renames, r)
		case "vlan":
			var vl VLAN
			vl, err = ParseVLAN(v)
			c.VLANs = append(c.VLANs, vl)
		case "bond":
			var b Bond
			b, err = ParseBond(v)
			c.Bonds = append(c.Bonds, b)
		default:
			t.Fatalf("unknown parameter %q", p)
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	return c
}

func TestCheckGood(t *testing.T) {
	for _, ps := range [][]string{
		nil,
		{"ip=dhcp"},
		{"ip=eth0:dhcp", "ip=eth1:off", "ip=auto6"},
		{"ifname=boot0:52:54:00:12:34:56", "ifname=boot1:52:54:00:12:34:57", "ip=boot0:dhcp"},
		{"bond=bond0:eth0,eth1:mode=802.3ad", "vlan=bond0.100:bond0", "vlan=bond0.200:bond0", "ip=bond0.100:dhcp", "ip=bond0:off"},
		{"vlan=vlan5:eth0", "vlan=vlan5x.5:eth1", "ip=eth0:dhcp", "ip=vlan5:auto6"},
		{"bond=bond0:eth0,eth1", "bond=bond1:eth2,eth3", "ip=10.0.0.2::10.0.0.1:24:node1:bond0:none", "ip=::::node1:bond1:dhcp"},
	} {
		c := config(t, ps...)
		if err := c.Check(); err != nil {
			t.Errorf("%v: %v", ps, err)
		}
	}
}

func TestCheckBad(t *testing.T) {
	tests := []struct {
		params []string
		want   []Conflict // Msg is a substring
	}{
		{[]string{"ip=dhcp", "ip=off"},
			[]Conflict{{"ip", "off", "a second ip= without device (the first is ip=dhcp)"}}},
		{[]string{"ip=eth0:dhcp", "ip=192.0.2.10::192.0.2.1:24::eth0:none"},
			[]Conflict{{"ip", "192.0.2.10::192.0.2.1:24::eth0:none", "a second ip= for eth0 (the first is ip=eth0:dhcp): keep one"}}},
		{[]string{"ifname=lan:52:54:00:12:34:56", "vlan=lan.5:eth0", "ifname=lan:52:54:00:12:34:57"},
			[]Conflict{{"ifname", "lan:52:54:00:12:34:57", "name lan is already given by ifname=lan:52:54:00:12:34:56"}}},
		{[]string{"ifname=lan0:52:54:00:12:34:56", "ifname=lan1:52:54:00:12:34:56"},
			[]Conflict{{"ifname", "lan1:52:54:00:12:34:56", "MAC 52:54:00:12:34:56 is already renamed by ifname=lan0:52:54:00:12:34:56"}}},
		{[]string{"ifname=vlan5:52:54:00:12:34:56", "vlan=vlan5:eth0"},
			[]Conflict{{"vlan", "vlan5:eth0", "name vlan5 is already given by ifname=vlan5:52:54:00:12:34:56"}}},
		{[]string{"vlan=bond0.5:eth0", "bond=bond0.5:eth1"},
			[]Conflict{{"bond", "bond0.5:eth1", "name bond0.5 is already given by vlan=bond0.5:eth0"}}},
		{[]string{"bond=bond0:eth0", "bond=bond0:eth1"},
			[]Conflict{{"bond", "bond0:eth1", "name bond0 is already given by bond=bond0:eth0"}}},
		{[]string{"vlan=vlan5:eth0", "vlan=eth0.5:eth0"},
			[]Conflict{{"vlan", "eth0.5:eth0", "VLAN ID 5 on eth0 is already vlan=vlan5:eth0"}}},
		{[]string{"bond=bond0:eth0,eth1", "vlan=vlan7:eth1"},
			[]Conflict{{"vlan", "vlan7:eth1", "parent eth1 is a slave in bond=bond0:eth0,eth1: put the VLAN on the bond"}}},
		{[]string{"bond=bond0:eth0,eth1", "bond=bond1:eth1,eth2"},
			[]Conflict{{"bond", "bond1:eth1,eth2", "slave eth1 is already in bond=bond0:eth0,eth1: a link has one bond"}}},
		{[]string{"bond=bond0:eth0,eth1", "ip=eth1:dhcp"},
			[]Conflict{{"ip", "eth1:dhcp", "eth1 is a slave in bond=bond0:eth0,eth1: the bond takes its traffic"}}},
		{[]string{"ip=::::node1:eth0:dhcp", "ip=::::node2:eth1:dhcp"},
			[]Conflict{{"ip", "::::node2:eth1:dhcp", "host name node2, but ip=::::node1:eth0:dhcp gives node1: a node has one"}}},
		// Every problem is reported, not just the first.
		{[]string{"ip=dhcp", "ip=on", "bond=bond0:eth0", "bond=bond1:eth0", "ip=eth0:dhcp", "ip=eth0:off"},
			[]Conflict{
				{"bond", "bond1:eth0", "slave eth0 is already in bond=bond0:eth0"},
				{"ip", "dhcp,auto6", "a second ip= without device"},
				{"ip", "eth0:dhcp", "eth0 is a slave in bond=bond0:eth0"},
				{"ip", "eth0:off", "a second ip= for eth0"},
				{"ip", "eth0:off", "eth0 is a slave in bond=bond0:eth0"},
			}},
	}
	for _, tt := range tests {
		c := config(t, tt.params...)
		got := c.Conflicts()
		if len(got) != len(tt.want) {
			t.Errorf("%v: conflicts %v, want %v", tt.params, got, tt.want)
			continue
		}
		for i, w := range tt.want {
			g := got[i]
			if g.Param != w.Param || g.Value != w.Value || !strings.Contains(g.Msg, w.Msg) {
				t.Errorf("%v: conflict %d = %#v, want %#v", tt.params, i, g, w)
			}
		}
		err := c.Check()
		if err == nil {
			t.Errorf("%v: Check() = nil", tt.params)
			continue
		}
		for _, g := range got {
			if !strings.Contains(err.Error(), g.Error()) {
				t.Errorf("%v: Check() = %q, does not say %q", tt.params, err, g)
			}
			var k Conflict
			if !errors.As(err, &k) {
				t.Errorf("%v: Check() holds no Conflict", tt.params)
			}
		}
	}
}

// Check also guards Configs that were built by hand, not parsed.
func TestCheckBuilt(t *testing.T) {
	c := Config{
		VLANs: []VLAN{{Name: "eth0", Parent: "eth0", ID: 1}},
		Bonds: []Bond{{Name: "bond0"}},
	}
	err := c.Check()
	for _, want := range []string{"vlan=eth0:eth0: VLAN eth0 is its own parent", "bond=bond0:: bond bond0 has no slaves"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check() = %v, want it to say %q", err, want)
		}
	}
}
