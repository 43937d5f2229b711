package netconf

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"
)

// ParseNameserver reads the value of one nameserver= parameter: an IPv4 or
// IPv6 address, the latter with or without square brackets. It must be an
// address a resolver can be reached at (not unspecified, multicast or
// loopback: nothing listens on loopback in the initramfs).
func ParseNameserver(v string) (netip.Addr, error) {
	a, err := parseAddr("nameserver", v)
	if err != nil {
		return netip.Addr{}, err
	}
	return a, CheckHostAddr("nameserver", a)
}

// splitFields splits an ip= value at the colons outside square brackets.
// A bracket may only open a field (it holds an IPv6 address) and must
// close before the next field.
func splitFields(v string) ([]string, error) {
	var fs []string
	start, in := 0, false
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '[':
			if in {
				return nil, fmt.Errorf("'[' inside brackets")
			}
			if i != start {
				return nil, fmt.Errorf("'[' in the middle of field %q: brackets hold a whole IPv6 address", v[start:i+1])
			}
			in = true
		case ']':
			if !in {
				return nil, fmt.Errorf("']' without '['")
			}
			in = false
		case ':':
			if !in {
				fs = append(fs, v[start:i])
				start = i + 1
			}
		}
	}
	if in {
		return nil, fmt.Errorf("'[' without ']'")
	}
	return append(fs, v[start:]), nil
}

// unbracket takes the square brackets off an IPv6 field; rest is what
// follows ']' (a /LEN, only for the client address).
func unbracket(f string) (inner, rest string, bracketed bool, err error) {
	if !strings.HasPrefix(f, "[") {
		if strings.ContainsAny(f, "[]") {
			return "", "", false, fmt.Errorf("%q: stray bracket", f)
		}
		return f, "", false, nil
	}
	i := strings.IndexByte(f, ']')
	if i < 0 {
		return "", "", false, fmt.Errorf("%q: '[' without ']'", f)
	}
	if strings.ContainsAny(f[i+1:], "[]") {
		return "", "", false, fmt.Errorf("%q: stray bracket", f)
	}
	return f[1:i], f[i+1:], true, nil
}

// parseAddr reads an address field: IPv4 as is, IPv6 in square brackets
// (inside ip= it has to be, its colons would split it).
func parseAddr(what, f string) (netip.Addr, error) {
	inner, rest, bracketed, err := unbracket(f)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s %v", what, err)
	}
	if rest != "" {
		return netip.Addr{}, fmt.Errorf("%s %q: nothing may follow ']'", what, f)
	}
	a, err := netip.ParseAddr(inner)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s %q: not an IP address%s", what, f, bracketHint(inner))
	}
	if bracketed && !a.Is6() {
		return netip.Addr{}, fmt.Errorf("%s %q: brackets are for IPv6 addresses, write %s", what, f, a)
	}
	return a, nil
}

// bracketHint helps with the usual mistake, an IPv6 address without
// brackets: split at its colons, its pieces land in several fields.
func bracketHint(f string) string {
	if f != "" && strings.Trim(f, "0123456789abcdefABCDEF") == "" {
		return " (IPv6 addresses go in square brackets: [2001:db8::1])"
	}
	return ""
}

// parseClient reads the CLIENT field: an address, optionally with /LEN,
// IPv6 in brackets ([2001:db8::10]/64 or [2001:db8::10/64]). bits is -1
// when no length is given.
func parseClient(f string) (a netip.Addr, bits int, err error) {
	inner, rest, bracketed, err := unbracket(f)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("CLIENT %v", err)
	}
	if rest != "" && (!strings.HasPrefix(rest, "/") || strings.Contains(inner, "/")) {
		return netip.Addr{}, 0, fmt.Errorf("CLIENT %q: only /LEN may follow ']'", f)
	}
	addr, length, hasLen := strings.Cut(inner+rest, "/")
	a, err = netip.ParseAddr(addr)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("CLIENT %q: not an IP address%s", f, bracketHint(addr))
	}
	switch {
	case bracketed && !a.Is6():
		return netip.Addr{}, 0, fmt.Errorf("CLIENT %q: brackets are for IPv6 addresses", f)
	case a.Zone() != "":
		// Checked here: a Prefix drops the zone.
		return netip.Addr{}, 0, fmt.Errorf("CLIENT %s: no %%zone, the device names the link", a)
	}
	if !hasLen {
		return a, -1, nil
	}
	bits, err = prefixLen(a, length)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("CLIENT %q: %v", f, err)
	}
	return a, bits, nil
}

// prefixLen reads a prefix length for a's family. 0 is refused: the whole
// address space on one link is a mistake, not a subnet.
func prefixLen(a netip.Addr, s string) (int, error) {
	n, err := parseUint(s, a.BitLen())
	if err != nil {
		return 0, fmt.Errorf("prefix length %q: want 1 to %d", s, a.BitLen())
	}
	if n == 0 {
		return 0, fmt.Errorf("prefix length 0 is the whole address space, not a subnet")
	}
	return n, nil
}

// parseMask reads the NETMASK field for client a: a prefix length, or for
// IPv4 a dotted mask whose ones are contiguous. -1 when empty.
func parseMask(f string, a netip.Addr) (int, error) {
	if f == "" {
		return -1, nil
	}
	if strings.Trim(f, "0123456789") == "" {
		n, err := prefixLen(a, f)
		if err != nil {
			return 0, fmt.Errorf("NETMASK %v", err)
		}
		return n, nil
	}
	if a.Is6() {
		return 0, fmt.Errorf("NETMASK %q: an IPv6 netmask is a prefix length, like 64", f)
	}
	m, err := netip.ParseAddr(f)
	if err != nil || !m.Is4() {
		return 0, fmt.Errorf("NETMASK %q: want a dotted mask like 255.255.255.0 or a prefix length like 24", f)
	}
	b := m.As4()
	u := binary.BigEndian.Uint32(b[:])
	if ^u&(^u+1) != 0 {
		return 0, fmt.Errorf("NETMASK %s: its ones are not contiguous", m)
	}
	n := bits.OnesCount32(u)
	if n == 0 {
		return 0, fmt.Errorf("NETMASK %s is the whole address space, not a subnet", m)
	}
	return n, nil
}

// checkSubnet refuses a client address that, in an IPv4 subnet of /30 or
// wider, is the subnet's network or broadcast address (RFC 3021 /31s have
// neither).
func checkSubnet(p netip.Prefix) error {
	a := p.Addr()
	if !a.Is4() || p.Bits() > 30 {
		return nil
	}
	b := a.As4()
	host := binary.BigEndian.Uint32(b[:]) & (1<<(32-p.Bits()) - 1)
	switch host {
	case 0:
		return fmt.Errorf("CLIENT %s is the network address of %s", p, p.Masked())
	case 1<<(32-p.Bits()) - 1:
		return fmt.Errorf("CLIENT %s is the broadcast address of %s", p, p.Masked())
	}
	return nil
}

// formatAddr writes an address as ip= wants it: IPv6 in brackets.
func formatAddr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}
