package netconf

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseRename(t *testing.T) {
	good := []struct {
		in   string
		want Rename
	}{
		{"bootnet:52:54:00:12:34:56", Rename{"bootnet", mac("52:54:00:12:34:56")}},
		{"lan0:52:54:00:AB:CD:EF", Rename{"lan0", mac("52:54:00:ab:cd:ef")}},
		{"a:00:1b:21:0a:0b:0c", Rename{"a", mac("00:1b:21:0a:0b:0c")}},
	}
	for _, tt := range good {
		got, err := ParseRename(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseRename(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		if back, err := ParseRename(got.String()); err != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("ParseRename(%q).String() = %q parses to %v, %v", tt.in, got.String(), back, err)
		}
	}
	bad := []struct{ in, msg string }{
		{"", "want NAME:MAC"},
		{"bootnet", "want NAME:MAC, like bootnet:52:54:00:12:34:56"},
		{":52:54:00:12:34:56", "NAME: empty device name"},
		{"boot/net:52:54:00:12:34:56", `NAME: device name "boot/net": '/' not allowed`},
		{"averyveryverylong:52:54:00:12:34:56", "at most 15"},
		{"bootnet:", `MAC "": want 6 hex pairs`},
		{"bootnet:52-54-00-12-34-56", `MAC "52-54-00-12-34-56": want 6 hex pairs separated by colons`},
		{"bootnet:5254.0012.3456", "want 6 hex pairs"},
		{"bootnet:52:54:00:12:34", "want 6 hex pairs"},
		{"bootnet:52:54:00:12:34:56:78", "want 6 hex pairs"},
		{"bootnet:52:54:00:12:34:5", `"5" is not a hex pair`},
		{"bootnet:52:54:00:12:34:xy", `"xy" is not a hex pair`},
		{"bootnet:ff:ff:ff:ff:ff:ff", "multicast"},
		{"bootnet:00:00:00:00:00:00", "all zero"},
	}
	for _, tt := range bad {
		r, err := ParseRename(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseRename(%q) = %v, %v; want error containing %q", tt.in, r, err, tt.msg)
		}
	}
}

func TestParseVLAN(t *testing.T) {
	good := []struct {
		in   string
		want VLAN
	}{
		{"vlan0005:eth0", VLAN{"vlan0005", "eth0", 5}},
		{"vlan5:eth0", VLAN{"vlan5", "eth0", 5}},
		{"eth0.0005:eth0", VLAN{"eth0.0005", "eth0", 5}},
		{"eth0.5:eth0", VLAN{"eth0.5", "eth0", 5}},
		{"bond0.100:bond0", VLAN{"bond0.100", "bond0", 100}},
		{"mgmt.4094:eth1", VLAN{"mgmt.4094", "eth1", 4094}},
		{"vlan1:enp1s0f0", VLAN{"vlan1", "enp1s0f0", 1}},
	}
	for _, tt := range good {
		got, err := ParseVLAN(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseVLAN(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		if back, err := ParseVLAN(got.String()); err != nil || back != got {
			t.Errorf("ParseVLAN(%q).String() = %q parses to %v, %v", tt.in, got.String(), back, err)
		}
	}
	bad := []struct{ in, msg string }{
		{"", "want NAME:PARENT"},
		{"vlan5", "want NAME:PARENT, like vlan5:eth0"},
		{"vlan5:", "PARENT: empty device name"},
		{":eth0", "NAME: empty device name"},
		{"vlan5:eth0:x", `PARENT: device name "eth0:x": ':' not allowed`},
		{"vlan5:vlan5", "VLAN vlan5 is its own parent"},
		{"lan:eth0", `NAME "lan" does not say the VLAN ID: name it vlanVID or DEV.VID`},
		{"vlan:eth0", `VLAN ID "", want a number from 1 to 4094`},
		{"eth0.:eth0", `VLAN ID ""`},
		{"vlan0:eth0", `VLAN ID "0"`},
		{"eth0.4095:eth0", `VLAN ID "4095"`},
		{"vlan5a:eth0", `VLAN ID "5a"`},
		{"vlan+5:eth0", `VLAN ID "+5"`},
		{"eth0.5x:eth0", `VLAN ID "5x"`},
		{"averyverylongname.5:eth0", "at most 15"},
	}
	for _, tt := range bad {
		v, err := ParseVLAN(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseVLAN(%q) = %v, %v; want error containing %q", tt.in, v, err, tt.msg)
		}
	}
}

func TestCheckHostname(t *testing.T) {
	for _, h := range []string{"a", "node1", "Node-1", "1node", "node1.example.net", "xn--bcher-kva.example", strings.Repeat("a", 63),
		strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("a", 61)} {
		if err := CheckHostname(h); err != nil {
			t.Errorf("CheckHostname(%q): %v", h, err)
		}
	}
	bad := []struct{ in, msg string }{
		{"", "empty host name"},
		{"node_1", `'_' not allowed`},
		{"node 1", `' ' not allowed`},
		{"-node", "starts or ends with '-'"},
		{"node-", "starts or ends with '-'"},
		{"node..net", "empty label"},
		{".node", "empty label"},
		{"node.", "empty label (stray dot?)"},
		{strings.Repeat("a", 64), "is 64 bytes, at most 63"},
		{strings.Repeat(strings.Repeat("a", 63)+".", 4), "at most 253"},
		{"192.0.2.1", "is an IP address, not a host name"},
		{"::1", "is an IP address"},
		{"nöde", "not allowed"},
	}
	for _, tt := range bad {
		if err := CheckHostname(tt.in); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("CheckHostname(%q) = %v, want error containing %q", tt.in, err, tt.msg)
		}
	}
}
