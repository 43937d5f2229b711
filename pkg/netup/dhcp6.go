package netup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/nclient6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/zeroboot/zeroboot/pkg/console"
)

// dhcp6Client runs DHCPv6 on one link with a UDP socket bound to it.
type dhcp6Client struct {
	c       *nclient6.Client
	mac     net.HardwareAddr
	rapid   bool
	timeout time.Duration
}

// reply6 is a DHCPv6 Reply, checked and reduced to what we apply.
type reply6 struct {
	addr          net.IPNet // IP nil: stateless (Information-request) or no IA_NA address
	valid, prefer time.Duration
	dns           []net.IP
	search        []string
	ntp           []net.IP
	registry      string
	rapid         bool
}

// newDHCP6 binds [::]:546 to the link (SO_BINDTODEVICE), so several links
// each have their own client and none depends on its link-local address
// being past DAD: the kernel picks the source address when sending.
func (s *state) newDHCP6(lk *link) (*dhcp6Client, error) {
	var conn net.PacketConn
	err := s.cfg.Enter(func() (err error) {
		lc := net.ListenConfig{Control: bindToDevice(lk.name)}
		conn, err = lc.ListenPacket(context.Background(), "udp6", fmt.Sprintf("[::]:%d", dhcpv6.DefaultClientPort))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open DHCPv6 socket on %s: %w", lk.name, err)
	}
	// No zone: the socket is bound to the link, and a zone would be
	// resolved in the namespace of whichever thread sends.
	servers := &net.UDPAddr{IP: dhcpv6.AllDHCPRelayAgentsAndServers, Port: dhcpv6.DefaultServerPort}
	c, err := nclient6.NewWithConn(conn, lk.mac, nclient6.WithTimeout(packetResend), nclient6.WithRetry(-1),
		nclient6.WithBroadcastAddr(servers))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start DHCPv6 client on %s: %w", lk.name, err)
	}
	return &dhcp6Client{c: c, mac: lk.mac, rapid: !s.cfg.DisableRapidCommit, timeout: s.cfg.DHCPTimeout}, nil
}

func (d *dhcp6Client) close() { d.c.Close() }

// duid is stable across boots (DUID-LL, RFC 8415 11.4): a stateless node
// has no stored DUID-LLT, and a new one each boot would cost the server a
// new lease each time.
func (d *dhcp6Client) duid() dhcpv6.DUID {
	return &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: d.mac}
}

var requested6 = dhcpv6.WithRequestedOptions(dhcpv6.OptionDNSRecursiveNameServer, dhcpv6.OptionDomainSearchList,
	dhcpv6.OptionNTPServer, dhcpv6.OptionBootfileURL)

// exchange asks for an address (stateful: Solicit, with Rapid Commit
// unless disabled, then Request) or for configuration only
// (Information-request), within one attempt's timeout.
func (d *dhcp6Client) exchange(ctx context.Context, stateful bool) (*reply6, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var msg *dhcpv6.Message
	var err error
	mods := []dhcpv6.Modifier{dhcpv6.WithClientID(d.duid()), requested6, dhcpv6.WithUserClass([]byte(UserClass))}
	switch {
	case !stateful:
		msg, err = d.inform(ctx, mods)
	case d.rapid:
		msg, err = d.c.RapidSolicit(ctx, mods...)
	default:
		var adv *dhcpv6.Message
		if adv, err = d.c.Solicit(ctx, mods...); err == nil {
			msg, err = d.c.Request(ctx, adv, mods...)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nclient6.ErrNoResponse) {
		err = fmt.Errorf("no answer within %v", d.timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("DHCPv6: %w", err)
	}
	return parseReply6(msg, stateful)
}

func (d *dhcp6Client) inform(ctx context.Context, mods []dhcpv6.Modifier) (*dhcpv6.Message, error) {
	m, err := dhcpv6.NewMessage(append(mods, dhcpv6.WithOption(dhcpv6.OptElapsedTime(0)))...)
	if err != nil {
		return nil, err
	}
	m.MessageType = dhcpv6.MessageTypeInformationRequest
	return d.c.SendAndRead(ctx, d.c.RemoteAddr(), m, nclient6.IsMessageType(dhcpv6.MessageTypeReply))
}

// parseReply6 keeps the first usable IA_NA address (global unicast, valid
// lifetime > 0, preferred <= valid) and sane DNS servers and domains.
func parseReply6(m *dhcpv6.Message, stateful bool) (*reply6, error) {
	if m.MessageType != dhcpv6.MessageTypeReply {
		return nil, fmt.Errorf("DHCPv6: answer is %s, not a Reply", m.MessageType)
	}
	if st := m.Options.Status(); st != nil && st.StatusCode != iana.StatusSuccess {
		return nil, fmt.Errorf("DHCPv6: server says %s: %s", st.StatusCode, console.Sanitize(st.StatusMessage, 120))
	}
	r := &reply6{rapid: m.GetOneOption(dhcpv6.OptionRapidCommit) != nil, registry: registryText(m.Options.BootFileURL())}
	for _, ia := range m.Options.IANA() {
		if st := ia.Options.Status(); st != nil && st.StatusCode != iana.StatusSuccess {
			return nil, fmt.Errorf("DHCPv6: no address: %s: %s", st.StatusCode, console.Sanitize(st.StatusMessage, 120))
		}
		for _, a := range ia.Options.Addresses() {
			if a.IPv6Addr.To16() == nil || a.IPv6Addr.To4() != nil || !a.IPv6Addr.IsGlobalUnicast() ||
				a.ValidLifetime <= 0 || a.PreferredLifetime > a.ValidLifetime {
				continue
			}
			r.addr = net.IPNet{IP: a.IPv6Addr, Mask: net.CIDRMask(128, 128)}
			r.valid, r.prefer = a.ValidLifetime, a.PreferredLifetime
			break
		}
		if r.addr.IP != nil {
			break
		}
	}
	if stateful && r.addr.IP == nil {
		return nil, errors.New("DHCPv6: Reply without a usable address")
	}
	for _, d := range m.Options.DNS() {
		if d.To16() != nil && d.To4() == nil && usableServer(d) && len(r.dns) < maxDNS {
			r.dns = append(r.dns, d)
		}
	}
	for _, d := range m.Options.NTPServers() {
		if d.To16() != nil && d.To4() == nil && usableServer(d) && len(r.ntp) < maxDNS {
			r.ntp = append(r.ntp, d)
		}
	}
	if l := m.Options.DomainSearchList(); l != nil {
		for _, d := range l.Labels {
			if validDomain(d) && len(r.search) < maxSearch {
				r.search = append(r.search, d)
			}
		}
	}
	return r, nil
}
