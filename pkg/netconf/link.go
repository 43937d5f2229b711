package netconf

import (
	"fmt"
	"strings"
)

// ParseRename reads the value of one ifname= parameter: NAME:MAC, the MAC
// as 6 hex pairs separated by colons, in either case.
//
// dracut warns against kernel-style names (eth0, eth1, ...) for NAME: the
// kernel may give the same name to another NIC first, and the rename then
// fails. A pure parser cannot warn, so this is only said here and in
// docs/kernel-cmdline.md.
func ParseRename(v string) (Rename, error) {
	name, mac, ok := strings.Cut(v, ":")
	if !ok {
		return Rename{}, fmt.Errorf("want NAME:MAC, like bootnet:52:54:00:12:34:56")
	}
	if err := CheckDeviceName(name); err != nil {
		return Rename{}, fmt.Errorf("NAME: %v", err)
	}
	m, err := parseMAC(mac)
	if err != nil {
		return Rename{}, err
	}
	return Rename{Name: name, MAC: m}, nil
}

// String writes the rename as the value of ifname=.
func (r Rename) String() string { return r.Name + ":" + r.MAC.String() }

// maxVID is the last usable 802.1Q VLAN ID; 0 and 4095 are reserved.
const maxVID = 4094

// ParseVLAN reads the value of one vlan= parameter: NAME:PARENT. The VLAN
// ID comes from NAME, in one of dracut's four styles: vlan0005, vlan5,
// eth0.0005, eth0.5 (the part before the dot is only part of the name, it
// need not be PARENT).
func ParseVLAN(v string) (VLAN, error) {
	name, parent, ok := strings.Cut(v, ":")
	if !ok {
		return VLAN{}, fmt.Errorf("want NAME:PARENT, like vlan5:eth0 or eth0.5:eth0")
	}
	if err := CheckDeviceName(name); err != nil {
		return VLAN{}, fmt.Errorf("NAME: %v", err)
	}
	if err := CheckDeviceName(parent); err != nil {
		return VLAN{}, fmt.Errorf("PARENT: %v", err)
	}
	if name == parent {
		return VLAN{}, fmt.Errorf("VLAN %s is its own parent", name)
	}
	id, err := vlanID(name)
	if err != nil {
		return VLAN{}, err
	}
	return VLAN{Name: name, Parent: parent, ID: id}, nil
}

// vlanID derives the VLAN ID from its name as dracut does.
func vlanID(name string) (int, error) {
	var digits string
	switch i := strings.LastIndexByte(name, '.'); {
	case i >= 0:
		digits = name[i+1:]
	case strings.HasPrefix(name, "vlan"):
		digits = name[len("vlan"):]
	default:
		return 0, fmt.Errorf("NAME %q does not say the VLAN ID: name it vlanVID or DEV.VID, like vlan5 or eth0.5", name)
	}
	id, err := parseUint(digits, maxVID)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("NAME %q: VLAN ID %q, want a number from 1 to %d", name, digits, maxVID)
	}
	return id, nil
}

// String writes the VLAN as the value of vlan= (the ID is in the name).
func (v VLAN) String() string { return v.Name + ":" + v.Parent }
