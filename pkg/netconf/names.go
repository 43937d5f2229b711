package netconf

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ifNameMax is IFNAMSIZ-1: the kernel keeps 16 bytes with the NUL.
const ifNameMax = 15

// CheckDeviceName refuses a name Linux would refuse for a network device
// (dev_valid_name: 1..15 bytes, no '/', ':' or white space, not "." or
// ".."), and also what Linux accepts but would misbehave here: '%' (the
// kernel reads it as a template, "eth%d" becomes the next free eth
// number), ',', '[' and ']' (separators in bond= and ip=, so such a link
// could not be named there), and bytes outside printable ASCII (the kernel
// counts some of them as space, and a console garbles them).
func CheckDeviceName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty device name")
	case len(name) > ifNameMax:
		return fmt.Errorf("device name %q is %d bytes, at most %d fit (IFNAMSIZ)", name, len(name), ifNameMax)
	case name == "." || name == "..":
		return fmt.Errorf("device name %q is not allowed", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("device name %q: byte %#x not allowed (printable ASCII only, no spaces)", name, c)
		}
		if strings.IndexByte("/:,%[]", c) >= 0 {
			return fmt.Errorf("device name %q: %q not allowed", name, c)
		}
	}
	return nil
}

// CheckHostname refuses what is not an RFC 1123 host name: labels of 1..63
// letters, digits and '-', not starting or ending with '-', separated by
// dots, at most 253 bytes, no trailing dot. A dotted quad is refused too:
// RFC 1123 2.1 says a name must not look like an address.
func CheckHostname(h string) error {
	if h == "" {
		return fmt.Errorf("empty host name")
	}
	if len(h) > 253 {
		return fmt.Errorf("host name is %d bytes, at most 253", len(h))
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return fmt.Errorf("%q is an IP address, not a host name", h)
	}
	for _, l := range strings.Split(h, ".") {
		if err := checkLabel(l); err != nil {
			return fmt.Errorf("host name %q: %v", h, err)
		}
	}
	return nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return fmt.Errorf("empty label (stray dot?)")
	case len(l) > 63:
		return fmt.Errorf("label %q is %d bytes, at most 63", l, len(l))
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with '-'", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Errorf("label %q: %q not allowed (letters, digits and '-' only)", l, c)
		}
	}
	return nil
}

// parseMAC reads an Ethernet address written as 6 hex pairs separated by
// colons, in either case. It refuses multicast and all-zero addresses: no
// NIC has one, and a link cannot be given one.
func parseMAC(s string) (net.HardwareAddr, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return nil, fmt.Errorf("MAC %q: want 6 hex pairs separated by colons, like 52:54:00:12:34:56", s)
	}
	for _, p := range parts {
		if !isHexPair(p) {
			return nil, fmt.Errorf("MAC %q: %q is not a hex pair", s, p)
		}
	}
	mac, err := net.ParseMAC(s)
	if err != nil { // cannot happen after the checks above
		return nil, fmt.Errorf("MAC %q: %v", s, err)
	}
	switch {
	case mac[0]&1 != 0:
		return nil, fmt.Errorf("MAC %s is a multicast address (low bit of the first byte set)", mac)
	case string(mac) == "\x00\x00\x00\x00\x00\x00":
		return nil, fmt.Errorf("MAC %s is all zero", mac)
	}
	return mac, nil
}

func isHexPair(s string) bool {
	if len(s) != 2 {
		return false
	}
	for i := 0; i < 2; i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// MTU bounds: 68 is the IPv4 minimum (RFC 791), 1280 the IPv6 one (RFC
// 8200), 65535 what an IP packet length can say.
const (
	minMTU  = 68
	minMTU6 = 1280
	maxMTU  = 65535
)

// parseMTU reads a decimal MTU in 68..65535.
func parseMTU(s string) (int, error) {
	n, err := parseUint(s, maxMTU)
	if err != nil || n < minMTU {
		return 0, fmt.Errorf("MTU %q: want a number from %d to %d", s, minMTU, maxMTU)
	}
	return n, nil
}

// parseUint reads decimal digits only (no sign, no spaces, no 0x) up to max.
func parseUint(s string, max int) (int, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a decimal number", s)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > uint64(max) {
		return 0, fmt.Errorf("%q is more than %d", s, max)
	}
	return int(n), nil
}

// CheckHostAddr refuses an address no host can have or be reached at:
// with a zone, IPv4-mapped, unspecified, multicast, loopback or the IPv4
// broadcast address. what names the address in the error, e.g. "GATEWAY".
// It is used for clients, gateways, peers, DNS servers, and by pkg/cmdline
// for NTP servers.
func CheckHostAddr(what string, a netip.Addr) error {
	switch {
	case a.Zone() != "":
		return fmt.Errorf("%s %s: no %%zone, the device names the link", what, a)
	case a.Is4In6():
		return fmt.Errorf("%s %s: IPv4-mapped IPv6 address, write it as %s", what, a, a.Unmap())
	case a.IsUnspecified():
		return fmt.Errorf("%s %s is the unspecified address", what, a)
	case a.IsMulticast():
		return fmt.Errorf("%s %s is a multicast address", what, a)
	case a.IsLoopback():
		return fmt.Errorf("%s %s is a loopback address", what, a)
	case a.Is4() && a.As4() == [4]byte{255, 255, 255, 255}:
		return fmt.Errorf("%s %s is the broadcast address", what, a)
	}
	return nil
}
