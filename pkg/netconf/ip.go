package netconf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

const (
	formBare   = "ip=METHOD"
	formDevice = "ip=DEVICE:METHOD[:[MTU][:MAC]]"
	formStatic = "ip=CLIENT:[PEER]:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF[:DNS0[:DNS1]] (or [:[MTU][:MAC]] after AUTOCONF)"

	// maxFields is the longest ip=: 7 static fields, MTU, and a MAC that
	// the colons split into 6.
	maxFields = 7 + 1 + 6
	// maxHostname is HOST_NAME_MAX: the HOSTNAME field becomes the node's
	// host name, and sethostname(2) takes no more.
	maxHostname = 64
)

// ParseIP reads the value of one ip= parameter, in any of the forms of
// dracut.cmdline(7) and the kernel's nfsroot.rst:
//
//	dhcp | on | any | auto | dhcp6 | auto6 | off | none  (or a comma list)
//	DEVICE:METHOD[:[MTU][:MAC]]
//	CLIENT:[PEER]:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF[:DNS0[:DNS1]]
//	CLIENT:[PEER]:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF[:[MTU][:MAC]]
//
// Unlike dracut, "on" and "any" mean Auto (DHCPv4 and router
// advertisements), and a CLIENT address with AUTOCONF dhcp is refused
// rather than taken as a hint. A GATEWAY outside the client's subnet is
// allowed: it is reached by an on-link route.
func ParseIP(v string) (IP, error) {
	ip, err := parseIP(v)
	if err != nil {
		// The usual mistake reads as DEVICE:METHOD, whose error would
		// not say what is wrong.
		if a, ok := bareIPv6(v); ok {
			return IP{}, fmt.Errorf("IPv6 address %s must be in square brackets: [%s]", a, a)
		}
		return IP{}, err
	}
	return ip, nil
}

func parseIP(v string) (IP, error) {
	if v == "" {
		return IP{}, fmt.Errorf("empty: write %s, %s or %s", formBare, formDevice, formStatic)
	}
	fs, err := splitFields(v)
	if err != nil {
		return IP{}, err
	}
	if len(fs) > maxFields {
		return IP{}, fmt.Errorf("%d fields, too many: the longest form is %s", len(fs), formStatic)
	}
	var ip IP
	switch {
	case len(fs) == 1:
		ip.Methods, err = parseMethods(fs[0])
	case isStaticForm(fs):
		ip, err = parseStatic(fs)
	default:
		ip, err = parseDevice(fs)
	}
	if err != nil {
		return IP{}, err
	}
	return ip, ip.check()
}

// isStaticForm tells the static form from the device form by its first
// field: an address (or nothing) rather than a device name.
func isStaticForm(fs []string) bool {
	f := fs[0]
	return f == "" || f[0] == '[' ||
		strings.Contains(f, ".") && strings.ContainsAny(f, "0123456789") && strings.Trim(f, "0123456789./") == ""
}

// bareIPv6 finds an IPv6 address written without brackets at the start of
// v: the longest prefix, ending at a colon, that parses as one.
func bareIPv6(v string) (netip.Addr, bool) {
	if strings.HasPrefix(v, ":") {
		return netip.Addr{}, false // an empty CLIENT: "::GW" is no address
	}
	if len(v) > 64 {
		v = v[:64]
	}
	for i := len(v); i > 0; i-- {
		if i < len(v) && v[i] != ':' {
			continue
		}
		s := v[:i]
		a, err := netip.ParseAddr(s)
		if err == nil && a.Is6() && strings.ContainsAny(s, "0123456789abcdefABCDEF") {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func parseDevice(fs []string) (IP, error) {
	var ip IP
	var err error
	if err := CheckDeviceName(fs[0]); err != nil {
		return IP{}, fmt.Errorf("DEVICE: %v", err)
	}
	ip.Device = fs[0]
	if ip.Methods, err = parseMethods(fs[1]); err != nil {
		return IP{}, err
	}
	if ip.MTU, ip.MAC, err = parseMTUMAC(fs[2:]); err != nil {
		return IP{}, err
	}
	return ip, nil
}

func parseStatic(fs []string) (IP, error) {
	if len(fs) < 7 {
		return IP{}, fmt.Errorf("%d fields: the static form is %s; a device form is %s", len(fs), formStatic, formDevice)
	}
	client, peer, gw, mask, host, dev, auto := fs[0], fs[1], fs[2], fs[3], fs[4], fs[5], fs[6]
	var ip IP
	var err error
	// Field by field, so that the first error is about the first field
	// that is wrong.
	if client != "" {
		err = ip.static(client, peer, gw, mask)
	} else {
		err = noStatic(peer, gw, mask)
	}
	if err != nil {
		return IP{}, err
	}
	if host != "" {
		if err := checkNodeName(host); err != nil {
			return IP{}, fmt.Errorf("HOSTNAME: %v", err)
		}
		ip.Hostname = host
	}
	if dev != "" {
		if err := CheckDeviceName(dev); err != nil {
			return IP{}, fmt.Errorf("DEVICE: %v", err)
		}
		ip.Device = dev
	}
	if ip.Methods, err = autoconf(auto, client); err != nil {
		return IP{}, err
	}
	if ip.DNS, ip.MTU, ip.MAC, err = parseStaticTail(fs[7:]); err != nil {
		return IP{}, err
	}
	return ip, nil
}

// autoconf reads AUTOCONF. With a CLIENT address it must be none, off or
// empty: dracut takes the address as a mere hint for dhcp, which leaves
// the operator guessing which one the node will have.
func autoconf(auto, client string) ([]Method, error) {
	if auto == "" {
		if client == "" {
			return nil, fmt.Errorf("no CLIENT and no AUTOCONF: nothing to configure (AUTOCONF off brings the link up unconfigured)")
		}
		return []Method{Static}, nil
	}
	methods, err := parseMethods(auto)
	switch {
	case err != nil:
		return nil, fmt.Errorf("AUTOCONF: %v", err)
	case client == "":
		return methods, nil
	case methods[0] != Off:
		return nil, fmt.Errorf("CLIENT %s with AUTOCONF %s is ambiguous (dracut takes the address as a mere hint): "+
			"use AUTOCONF none for a static address, or leave CLIENT empty", client, formatMethods(methods))
	}
	return []Method{Static}, nil
}

// static fills in a static address from the CLIENT, PEER, GATEWAY and
// NETMASK fields, in that order.
func (ip *IP) static(client, peer, gw, mask string) error {
	a, n, err := parseClient(client)
	if err != nil {
		return err
	}
	if err := CheckHostAddr("CLIENT", a); err != nil {
		return err
	}
	if ip.Peer, err = router("PEER", peer, a); err != nil {
		return err
	}
	if ip.Gateway, err = router("GATEWAY", gw, a); err != nil {
		return err
	}
	m, err := parseMask(mask, a)
	switch {
	case err != nil:
		return err
	case n < 0 && m < 0:
		return fmt.Errorf("no prefix length for CLIENT %s: give NETMASK or CLIENT/LEN", client)
	case n >= 0 && m >= 0 && n != m:
		return fmt.Errorf("CLIENT %s and NETMASK %s disagree (/%d and /%d)", client, mask, n, m)
	case n < 0:
		n = m
	}
	ip.Addr = netip.PrefixFrom(a, n)
	return checkSubnet(ip.Addr)
}

// router reads PEER or GATEWAY: optional, of the family of client, an
// address a host can have, and not the client itself.
func router(what, f string, client netip.Addr) (netip.Addr, error) {
	if f == "" {
		return netip.Addr{}, nil
	}
	a, err := parseAddr(what, f)
	if err != nil {
		return netip.Addr{}, err
	}
	switch {
	case a.Is4() != client.Is4():
		return netip.Addr{}, fmt.Errorf("%s %s and CLIENT %s are not the same IP version", what, a, client)
	case a == client:
		return netip.Addr{}, fmt.Errorf("%s %s is the client's own address", what, a)
	}
	return a, CheckHostAddr(what, a)
}

// noStatic checks the fields a line without CLIENT must leave empty.
func noStatic(peer, gw, mask string) error {
	for _, f := range []struct{ name, val string }{{"PEER", peer}, {"GATEWAY", gw}, {"NETMASK", mask}} {
		if f.val != "" {
			return fmt.Errorf("%s %s without CLIENT: only a static address uses it", f.name, f.val)
		}
	}
	return nil
}

// parseStaticTail reads what follows AUTOCONF: [DNS0[:DNS1]] or
// [MTU][:MAC]. A number first, or a MAC at the end, means the second.
func parseStaticTail(fs []string) (dns []netip.Addr, mtu int, mac net.HardwareAddr, err error) {
	if len(fs) == 0 {
		return nil, 0, nil, nil
	}
	if _, _, ok := trailingMAC(fs); ok || fs[0] != "" && strings.Trim(fs[0], "0123456789") == "" {
		if _, err := parseAddr("DNS0", fs[0]); err == nil {
			return nil, 0, nil, fmt.Errorf("DNS0 %s and a MAC: after AUTOCONF comes [DNS0[:DNS1]] or [MTU][:MAC], not both", fs[0])
		}
		mtu, mac, err = parseMTUMAC(fs)
		return nil, mtu, mac, err
	}
	if len(fs) > 2 {
		return nil, 0, nil, fmt.Errorf("%d fields after AUTOCONF, too many: want [DNS0[:DNS1]] or [MTU][:MAC]", len(fs))
	}
	for i, f := range fs {
		if f == "" {
			continue
		}
		what := "DNS" + strconv.Itoa(i)
		a, err := parseAddr(what, f)
		if err == nil {
			err = CheckHostAddr(what, a)
		}
		if err != nil {
			return nil, 0, nil, err
		}
		dns = append(dns, a)
	}
	return dns, 0, nil, nil
}

// trailingMAC finds a MAC at the end of fs: the ip= line splits one into
// 6 hex pairs at its colons.
func trailingMAC(fs []string) (mac string, rest []string, ok bool) {
	if len(fs) < 6 {
		return "", fs, false
	}
	tail := fs[len(fs)-6:]
	for _, f := range tail {
		if !isHexPair(f) {
			return "", fs, false
		}
	}
	return strings.Join(tail, ":"), fs[:len(fs)-6], true
}

// parseMTUMAC reads the optional [MTU][:MAC] fields. The MAC needs the MTU
// field before it, empty or not, as in dracut's grammar.
func parseMTUMAC(fs []string) (mtu int, mac net.HardwareAddr, err error) {
	s, rest, ok := trailingMAC(fs)
	switch {
	case ok:
		if mac, err = parseMAC(s); err != nil {
			return 0, nil, err
		}
		if len(rest) == 0 {
			return 0, nil, fmt.Errorf("MAC %s must follow the MTU field: write ::%s for no MTU", mac, mac)
		}
	case len(rest) > 1:
		// Not 6 hex pairs: parseMAC says what is wrong with it.
		if s := strings.Join(rest[1:], ":"); s != "" {
			if _, err := parseMAC(s); err != nil {
				return 0, nil, err
			}
		}
		rest = rest[:1]
	}
	if len(rest) > 1 {
		return 0, nil, fmt.Errorf("%d fields before the MAC, too many: want [MTU][:MAC]", len(rest))
	}
	if len(rest) == 1 && rest[0] != "" {
		if mtu, err = parseMTU(rest[0]); err != nil {
			return 0, nil, err
		}
	}
	return mtu, mac, nil
}

// check holds the rules that tie fields of different forms together.
func (ip *IP) check() error {
	switch {
	case ip.Uses(Static) && ip.Device == "":
		return fmt.Errorf("static address %s without DEVICE: every link would get it", ip.Addr)
	case ip.MAC != nil && ip.Device == "":
		return fmt.Errorf("MAC %s without DEVICE: every link would get it", ip.MAC)
	case ip.MTU != 0 && ip.MTU < minMTU6 && ip.ipv6():
		what := formatMethods(ip.Methods)
		if ip.Uses(Static) {
			what = "the static address " + ip.Addr.String()
		}
		return fmt.Errorf("MTU %d is below %d, the IPv6 minimum, and %s configures IPv6", ip.MTU, minMTU6, what)
	}
	return nil
}

// checkNodeName checks a name the node will take as its own.
func checkNodeName(h string) error {
	if err := CheckHostname(h); err != nil {
		return err
	}
	if len(h) > maxHostname {
		return fmt.Errorf("host name %q is %d bytes, at most %d (HOST_NAME_MAX)", h, len(h), maxHostname)
	}
	return nil
}

// methodWords maps each accepted METHOD/AUTOCONF word to its methods.
var methodWords = map[string]Method{
	"dhcp": DHCP, "on": Auto, "any": Auto, "auto": Auto,
	"dhcp6": DHCP6, "auto6": Auto6, "off": Off, "none": Off,
}

const knownMethods = "dhcp, on, any, auto, dhcp6, auto6, off, none"

// unsupported are methods dracut or the kernel know and zeroboot does not.
var unsupported = map[string]string{
	"ibft":        "iBFT (firmware-provided configuration) is not supported",
	"either6":     "either6 is not supported: use auto6 (which runs DHCPv6 when the router says so) or dhcp6",
	"link6":       "link6 is not supported: use off, the link still gets its IPv6 link-local address",
	"single-dhcp": "single-dhcp is not supported: dhcp runs on every link and the first lease that reaches the registry wins",
	"bootp":       "bootp is not supported: use dhcp",
	"rarp":        "rarp is not supported: use dhcp",
	"both":        "both (BOOTP and RARP) is not supported: use dhcp",
	"static":      "static is not a METHOD: give the address as " + formStatic + " with AUTOCONF none",
}

// parseMethods reads a METHOD or AUTOCONF field: one word or a comma list,
// any case. The result is canonical (see IP.Methods).
func parseMethods(s string) ([]Method, error) {
	if s == "" {
		return nil, fmt.Errorf("empty METHOD (known: %s)", knownMethods)
	}
	var dhcp4, auto6, dhcp6, off bool
	words := strings.Split(s, ",")
	for _, w := range words {
		lw := strings.ToLower(w)
		if msg, ok := unsupported[lw]; ok {
			return nil, errors.New(msg)
		}
		m, ok := methodWords[lw]
		switch {
		case w == "":
			return nil, fmt.Errorf("empty method in %q (stray comma?)", s)
		case !ok:
			return nil, fmt.Errorf("unknown method %q (known: %s)", w, knownMethods)
		}
		switch m {
		case DHCP:
			dhcp4 = true
		case Auto:
			dhcp4, auto6 = true, true
		case Auto6:
			auto6 = true
		case DHCP6:
			dhcp6 = true
		case Off:
			off = true
		}
	}
	if off {
		if len(words) > 1 {
			return nil, fmt.Errorf("%q: off and none cannot be combined with other methods", s)
		}
		return []Method{Off}, nil
	}
	var ms []Method
	switch {
	case dhcp4 && auto6:
		ms = append(ms, Auto)
	case dhcp4:
		ms = append(ms, DHCP)
	case auto6:
		ms = append(ms, Auto6)
	}
	if dhcp6 {
		ms = append(ms, DHCP6)
	}
	return ms, nil
}

// formatMethods writes methods as dracut reads them. Auto becomes
// "dhcp,auto6" rather than "on": to dracut "on" is DHCPv4 only.
func formatMethods(ms []Method) string {
	ws := make([]string, len(ms))
	for i, m := range ms {
		switch m {
		case Auto:
			ws[i] = "dhcp,auto6"
		case Static:
			ws[i] = "none"
		default:
			ws[i] = string(m)
		}
	}
	return strings.Join(ws, ",")
}

// String writes the entry in the shortest dracut form that holds it (the
// value of ip=, without "ip="); ParseIP reads it back to an equal IP. An
// IP that ParseIP cannot produce (DNS together with an MTU, more than two
// DNS servers) has no dracut form and its String does not parse.
func (ip IP) String() string {
	switch {
	case ip.needsStaticForm():
		return ip.staticString()
	case ip.Device != "":
		return ip.Device + ":" + formatMethods(ip.Methods) + formatMTUMAC(ip.MTU, ip.MAC)
	}
	return formatMethods(ip.Methods)
}

func (ip IP) needsStaticForm() bool {
	return ip.Addr.IsValid() || ip.Peer.IsValid() || ip.Gateway.IsValid() || ip.Hostname != "" ||
		len(ip.DNS) > 0 || ip.Device == "" && (ip.MTU != 0 || ip.MAC != nil)
}

func (ip IP) staticString() string {
	var client, mask string
	if ip.Addr.IsValid() {
		client, mask = formatAddr(ip.Addr.Addr()), strconv.Itoa(ip.Addr.Bits())
	}
	auto := formatMethods(ip.Methods)
	s := strings.Join([]string{client, formatAddr(ip.Peer), formatAddr(ip.Gateway), mask, ip.Hostname, ip.Device, auto}, ":")
	for _, a := range ip.DNS {
		s += ":" + formatAddr(a)
	}
	return s + formatMTUMAC(ip.MTU, ip.MAC)
}

func formatMTUMAC(mtu int, mac net.HardwareAddr) string {
	s := ""
	if mtu != 0 || mac != nil {
		s = ":"
		if mtu != 0 {
			s += strconv.Itoa(mtu)
		}
	}
	if mac != nil {
		s += ":" + mac.String()
	}
	return s
}
