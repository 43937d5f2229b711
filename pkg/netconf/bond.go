package netconf

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// defaultSlaves are the slaves of a bond= that names none, as in dracut.
const defaultSlaves = "eth0,eth1"

// maxARPTargets is the bonding driver's BOND_MAX_ARP_TARGETS.
const maxARPTargets = 16

// ParseBond reads the value of one bond= parameter:
// NAME[:SLAVES[:OPTIONS[:MTU]]]. SLAVES is a comma list (omitted: eth0,eth1,
// dracut's default; given, it must name at least one), OPTIONS a comma list
// of key=value for the bonding driver (arp_ip_target takes several
// addresses separated by ';', as in dracut). Values the kernel would refuse,
// or refuse in the bond's mode, are refused here, where the error can still
// name the parameter.
func ParseBond(v string) (Bond, error) {
	fs := strings.Split(v, ":")
	if len(fs) > 4 {
		return Bond{}, fmt.Errorf("%d fields, too many: want NAME[:SLAVES[:OPTIONS[:MTU]]]", len(fs))
	}
	var b Bond
	if err := CheckDeviceName(fs[0]); err != nil {
		return Bond{}, fmt.Errorf("NAME: %v", err)
	}
	b.Name = fs[0]
	slaves := defaultSlaves
	if len(fs) > 1 {
		slaves = fs[1]
	}
	var err error
	if b.Slaves, err = parseSlaves(b.Name, slaves); err != nil {
		if len(fs) == 1 {
			return Bond{}, fmt.Errorf("default SLAVES %s: %v", slaves, err)
		}
		return Bond{}, err
	}
	if len(fs) > 2 && fs[2] != "" {
		if b.Options, err = parseBondOptions(fs[2]); err != nil {
			return Bond{}, err
		}
	}
	if len(fs) > 3 && fs[3] != "" {
		if b.MTU, err = parseMTU(fs[3]); err != nil {
			return Bond{}, err
		}
	}
	if err := b.checkOptions(); err != nil {
		return Bond{}, err
	}
	return b, nil
}

func parseSlaves(bond, f string) ([]string, error) {
	if f == "" {
		return nil, fmt.Errorf("no SLAVES: list at least one, or leave out the field (and what follows) for %s", defaultSlaves)
	}
	var ss []string
	for _, s := range strings.Split(f, ",") {
		if s == "" {
			return nil, fmt.Errorf("empty slave in %q (stray comma?)", f)
		}
		if err := CheckDeviceName(s); err != nil {
			return nil, fmt.Errorf("SLAVES: %v", err)
		}
		switch {
		case s == bond:
			return nil, fmt.Errorf("bond %s cannot be its own slave", bond)
		case slices.Contains(ss, s):
			return nil, fmt.Errorf("slave %s listed twice", s)
		}
		ss = append(ss, s)
	}
	return ss, nil
}

// bondOption describes one option the bonding driver takes: the values it
// accepts (check) and the modes it is refused in (the driver's
// unsuppmodes, bond_options.c).
type bondOption struct {
	check      func(string) error
	notInModes []string
	repeatable bool
}

var bondModes = []string{"balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"}

var bondOptions = map[string]bondOption{
	"mode":             {check: oneOf(bondModes...)},
	"miimon":           {check: number},
	"updelay":          {check: number},
	"downdelay":        {check: number},
	"min_links":        {check: number},
	"lacp_rate":        {check: oneOf("slow", "fast"), notInModes: allModesBut("802.3ad")},
	"ad_select":        {check: oneOf("stable", "bandwidth", "count")},
	"xmit_hash_policy": {check: oneOf("layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4", "vlan+srcmac")},
	"fail_over_mac":    {check: oneOf("none", "active", "follow")},
	"primary":          {check: CheckDeviceName, notInModes: allModesBut("active-backup", "balance-tlb", "balance-alb")},
	"arp_interval":     {check: number, notInModes: []string{"802.3ad", "balance-tlb", "balance-alb"}},
	"arp_ip_target":    {check: arpTargets, repeatable: true},
}

// knownBondOptions lists bondOptions' keys in a stable order for errors.
func knownBondOptions() string {
	ks := make([]string, 0, len(bondOptions))
	for k := range bondOptions {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return strings.Join(ks, ", ")
}

// oneOf accepts one of the names or, as the driver does, its index.
func oneOf(names ...string) func(string) error {
	return func(v string) error {
		if slices.Contains(names, v) {
			return nil
		}
		if n, err := parseUint(v, len(names)-1); err == nil && strconv.Itoa(n) == v {
			return nil
		}
		return fmt.Errorf("%q is not one of %s (or 0 to %d)", v, strings.Join(names, ", "), len(names)-1)
	}
}

func allModesBut(keep ...string) []string {
	var ms []string
	for _, m := range bondModes {
		if !slices.Contains(keep, m) {
			ms = append(ms, m)
		}
	}
	return ms
}

// number accepts a non-negative decimal int, what the driver's int options
// take (milliseconds, counts).
func number(v string) error {
	if _, err := parseUint(v, 1<<31-1); err != nil {
		return fmt.Errorf("%q is not a number from 0 to %d", v, 1<<31-1)
	}
	return nil
}

func arpTargets(v string) error {
	ts := strings.Split(v, ";")
	if len(ts) > maxARPTargets {
		return fmt.Errorf("%d addresses, at most %d", len(ts), maxARPTargets)
	}
	for _, t := range ts {
		a, err := netip.ParseAddr(t)
		switch {
		case err != nil || !a.Is4():
			return fmt.Errorf("%q is not an IPv4 address (several go separated by ';')", t)
		case CheckHostAddr("target", a) != nil:
			return CheckHostAddr("target", a)
		}
	}
	return nil
}

func parseBondOptions(f string) ([]BondOption, error) {
	var opts []BondOption
	for _, kv := range strings.Split(f, ",") {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case kv == "":
			return nil, fmt.Errorf("empty option in %q (stray comma?)", f)
		case !ok || v == "":
			return nil, fmt.Errorf("option %q: want key=value", kv)
		}
		o, known := bondOptions[k]
		if !known {
			return nil, fmt.Errorf("unknown bonding option %q (known: %s)", k, knownBondOptions())
		}
		if !o.repeatable && slices.ContainsFunc(opts, func(o BondOption) bool { return o.Key == k }) {
			return nil, fmt.Errorf("option %s given twice", k)
		}
		if err := o.check(v); err != nil {
			return nil, fmt.Errorf("option %s: %v", k, err)
		}
		opts = append(opts, BondOption{k, v})
	}
	return opts, nil
}

// Option returns the value of option key, "" if not given (the first one
// for arp_ip_target, see Options for all).
func (b Bond) Option(key string) string {
	for _, o := range b.Options {
		if o.Key == key {
			return o.Value
		}
	}
	return ""
}

// Mode returns the bond's mode by name, index values translated
// (mode=4 is 802.3ad); balance-rr, the driver's default, when not given.
func (b Bond) Mode() string {
	m := b.Option("mode")
	if n, err := strconv.Atoi(m); err == nil && n >= 0 && n < len(bondModes) {
		return bondModes[n]
	}
	if m == "" {
		return bondModes[0]
	}
	return m
}

// checkOptions holds the rules between options, which the driver would
// otherwise apply at run time, too late to name the parameter.
func (b Bond) checkOptions() error {
	mode := b.Mode()
	for _, o := range b.Options {
		if slices.Contains(bondOptions[o.Key].notInModes, mode) {
			dflt := ""
			if b.Option("mode") == "" {
				dflt = " (the default: no mode= given)"
			}
			return fmt.Errorf("option %s does not work in mode %s%s", o.Key, mode, dflt)
		}
	}
	if p := b.Option("primary"); p != "" && !slices.Contains(b.Slaves, p) {
		return fmt.Errorf("primary %s is not a slave of %s (slaves: %s)", p, b.Name, strings.Join(b.Slaves, ","))
	}
	miimon, arp := b.Option("miimon"), b.Option("arp_interval")
	switch {
	case miimon != "" && strings.Trim(miimon, "0") != "" && arp != "" && strings.Trim(arp, "0") != "":
		return fmt.Errorf("miimon and arp_interval both set: the driver runs only one link monitor")
	case arp != "" && strings.Trim(arp, "0") != "" && b.Option("arp_ip_target") == "":
		return fmt.Errorf("arp_interval without arp_ip_target: the ARP monitor has nothing to ask")
	}
	return nil
}

// String writes the bond as the value of bond=, slaves always listed.
func (b Bond) String() string {
	s := b.Name + ":" + strings.Join(b.Slaves, ",")
	if len(b.Options) > 0 || b.MTU != 0 {
		kvs := make([]string, len(b.Options))
		for i, o := range b.Options {
			kvs[i] = o.Key + "=" + o.Value
		}
		s += ":" + strings.Join(kvs, ",")
	}
	if b.MTU != 0 {
		s += ":" + strconv.Itoa(b.MTU)
	}
	return s
}
