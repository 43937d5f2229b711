package netup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"github.com/zeroboot/zeroboot/pkg/backoff"
	"golang.org/x/sys/unix"
)

// lease is what a DHCP ACK says, checked and reduced to what we apply.
type lease struct {
	raw      *nclient4.Lease
	addr     net.IPNet
	router   net.IP
	dns      []net.IP
	search   []string
	ntp      []net.IP
	registry string
	server   net.IP
	life     time.Duration // 0: infinite
	renew    time.Duration // T1; 0 when life is infinite
	rapid    bool
	granted  time.Time
}

// infinite is the DHCP lease time that never expires (RFC 2131 3.3).
const infinite = time.Duration(0xffffffff) * time.Second

// parseLease checks an ACK and extracts the configuration. A lease without
// a usable address is an error rather than something to apply.
func parseLease(raw *nclient4.Lease, rapid bool, now time.Time) (*lease, error) {
	ack := raw.ACK
	ip := ack.YourIPAddr.To4()
	if ip == nil || ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() || ip.Equal(net.IPv4bcast) {
		return nil, fmt.Errorf("lease from %v: unusable address %v", ack.ServerIdentifier(), ack.YourIPAddr)
	}
	mask := ack.SubnetMask()
	if ones, bits := mask.Size(); bits != 32 || ones == 0 {
		mask = ip.DefaultMask() // RFC 2132 3.3: absent mask means the class default
	}
	l := &lease{
		raw:     raw,
		addr:    net.IPNet{IP: ip, Mask: mask},
		server:  ack.ServerIdentifier(),
		rapid:   rapid,
		granted: now,
	}
	for _, r := range ack.Router() {
		if r4 := r.To4(); r4 != nil && usableServer(r4) { // not broadcast, multicast or loopback either
			l.router = r4
			break
		}
	}
	for _, d := range ack.DNS() {
		if d4 := d.To4(); d4 != nil && usableServer(d4) && len(l.dns) < maxDNS {
			l.dns = append(l.dns, d4)
		}
	}
	l.registry = registryText(ack.BootFileNameOption())
	for _, n := range ack.NTPServers() {
		if n4 := n.To4(); n4 != nil && usableServer(n4) && len(l.ntp) < maxDNS {
			l.ntp = append(l.ntp, n4)
		}
	}
	// Search domains go into resolv.conf: only host name characters, or a
	// rogue server could write lines of its own there.
	if s := ack.DomainSearch(); s != nil {
		for _, d := range s.Labels {
			if validDomain(d) && len(l.search) < maxSearch {
				l.search = append(l.search, d)
			}
		}
	}
	if dn := strings.TrimSpace(strings.TrimRight(ack.DomainName(), "\x00")); len(l.search) == 0 && validDomain(dn) {
		l.search = []string{dn}
	}
	life := ack.IPAddressLeaseTime(infinite)
	if life < infinite && life > 0 {
		l.life = life
		l.renew = ack.IPAddressRenewalTime(life / 2)
		if l.renew <= 0 || l.renew >= life {
			l.renew = life / 2
		}
	}
	return l, nil
}

func (l *lease) conf() *conf {
	return &conf{
		family: IPv4, source: "dhcp4", addr: l.addr, valid: l.life, prefer: l.life,
		router: l.router, proto: unix.RTPROT_DHCP, dns: l.dns, search: l.search, ntp: l.ntp, registry: l.registry,
		server: l.server, lease: l.life, rapid: l.rapid,
	}
}

// dhcpClient runs DHCP on one link with its own raw socket, kept open for
// renewals.
type dhcpClient struct {
	mac     net.HardwareAddr
	c       *nclient4.Client
	rapid   bool
	timeout time.Duration
	tries   int
}

func (s *state) newDHCP(link string, mac net.HardwareAddr) (*dhcpClient, error) {
	var conn net.PacketConn
	err := s.cfg.Enter(func() (err error) {
		conn, err = defaultSocket(link)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open DHCP socket: %w", err)
	}
	// Resend after 1 s, doubling, within the attempt's deadline: a lost
	// packet must not cost a whole attempt. No random start delay (RFC 2131
	// 4.4.1 suggests 1-10 s); a booting node has nothing else to do.
	c, err := nclient4.NewWithConn(conn, mac,
		nclient4.WithTimeout(packetResend), nclient4.WithRetry(-1))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start DHCP client: %w", err)
	}
	return &dhcpClient{
		mac: mac, c: c,
		rapid:   !s.cfg.DisableRapidCommit,
		timeout: s.cfg.DHCPTimeout,
		tries:   s.cfg.Retries + 1,
	}, nil
}

func (d *dhcpClient) close() { d.c.Close() }

// obtain runs up to tries attempts, each bounded by timeout.
func (d *dhcpClient) obtain(ctx context.Context) (*lease, error) {
	var errs []string
	for i := 0; i < d.tries; i++ {
		actx, cancel := context.WithTimeout(ctx, d.timeout)
		l, err := d.exchange(actx)
		cancel()
		if err == nil {
			return l, nil
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nclient4.ErrNoResponse) {
			err = fmt.Errorf("no answer within %v", d.timeout)
		}
		errs = append(errs, err.Error())
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("DHCP failed after %d attempt(s): %s", len(errs), strings.Join(errs, "; "))
}

var requested = dhcpv4.WithRequestedOptions(
	dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
	dhcpv4.OptionDomainName, dhcpv4.OptionDNSDomainSearchList,
	dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue,
	dhcpv4.OptionNTPServers, dhcpv4.OptionBootfileName,
)

// userClass4 tells the server this is a zeroboot node (option 77, as iPXE
// says "iPXE"), so it can answer with the registry in option 67.
var userClass4 = dhcpv4.WithOption(dhcpv4.OptUserClass(UserClass))

// exchange does DISCOVER/OFFER/REQUEST/ACK, or DISCOVER/ACK when the
// server honours Rapid Commit. nclient4 has no Rapid Commit support, so the
// DISCOVER is built here and either answer is accepted.
func (d *dhcpClient) exchange(ctx context.Context) (*lease, error) {
	mods := []dhcpv4.Modifier{requested, userClass4, dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize))}
	disc := mods
	if d.rapid {
		disc = append(disc[:len(disc):len(disc)], dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionRapidCommit, nil)))
	}
	discover, err := dhcpv4.NewDiscovery(d.mac, disc...)
	if err != nil {
		return nil, fmt.Errorf("build DISCOVER: %w", err)
	}
	answer, err := d.c.SendAndRead(ctx, d.c.RemoteAddr(), discover, offerOrRapidAck(d.rapid))
	if err != nil {
		return nil, fmt.Errorf("DISCOVER: %w", err)
	}
	if answer.MessageType() == dhcpv4.MessageTypeAck {
		return parseLease(&nclient4.Lease{Offer: answer, ACK: answer, CreationTime: time.Now()}, true, time.Now())
	}
	raw, err := d.c.RequestFromOffer(ctx, answer, mods...)
	if err != nil {
		return nil, fmt.Errorf("REQUEST %v from %v: %w", answer.YourIPAddr, answer.ServerIdentifier(), err)
	}
	return parseLease(raw, false, time.Now())
}

// offerOrRapidAck accepts an OFFER, or an ACK carrying Rapid Commit when we
// asked for it (RFC 4039 4.1: any other ACK to a DISCOVER is discarded).
func offerOrRapidAck(rapid bool) nclient4.Matcher {
	return func(m *dhcpv4.DHCPv4) bool {
		switch m.MessageType() {
		case dhcpv4.MessageTypeOffer:
			return true
		case dhcpv4.MessageTypeAck:
			return rapid && m.Options.Has(dhcpv4.OptionRapidCommit)
		}
		return false
	}
}

// renew asks the server that granted l to extend it.
func (d *dhcpClient) renew(ctx context.Context, l *lease) (*lease, error) {
	actx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	raw, err := d.c.Renew(actx, l.raw, requested, userClass4)
	if err != nil {
		return nil, fmt.Errorf("renew %v: %w", l.addr.IP, err)
	}
	return parseLease(raw, l.rapid, time.Now())
}

// renewRetry is the least wait between renewal attempts (RFC 2131 4.4.5).
const renewRetry = time.Minute

// runDHCP4 gets a lease, settles it, then keeps it.
func (s *state) runDHCP4(ctx context.Context, src *source, report func(outcome)) {
	lk := src.link
	d, err := s.newDHCP(lk.name, lk.mac)
	if err != nil {
		report(outcome{err: src.fail(err)})
		return
	}
	defer d.close()
	l, err := d.obtain(ctx)
	if err != nil {
		s.cfg.Log.Warn("link not configured", "link", lk.name, "source", "dhcp4", "err", err)
		report(outcome{err: src.fail(err)})
		return
	}
	if s.settle(ctx, src, l.conf(), report) {
		s.keep(ctx, lk, d, l)
	}
}

// keep renews the lease at T1, retries at half the remaining time (at
// least renewRetry apart), and starts over with DISCOVER once it has
// expired. It stops with ctx, leaving the address to expire with its
// lifetime.
func (s *state) keep(ctx context.Context, lk *link, d *dhcpClient, l *lease) {
	log := s.cfg.Log.With("link", lk.name)
	next := s.renewAfter(l)
	for l.life > 0 {
		if backoff.Sleep(ctx, next) != nil {
			return
		}
		nl, err := d.renew(ctx, l)
		if err != nil && time.Now().After(l.granted.Add(l.life)) {
			log.Warn("lease expired without renewal; starting over", "addr", l.addr.String(), "err", err)
			s.expire(lk, l)
			nl, err = d.obtain(ctx)
		}
		if err == nil {
			_, err = s.apply(lk, nl.conf())
		}
		if err != nil {
			next = max(time.Until(l.granted.Add(l.life))/2, renewRetry)
			log.Warn("lease renewal failed", "addr", l.addr.String(), "err", err, "retry_in", next)
			continue
		}
		l = nl
		next = s.renewAfter(l)
		log.Info("lease renewed", "addr", l.addr.String(), "lease", l.life)
	}
	<-ctx.Done()
}

// expire removes a lease that ran out, rather than leave the kernel to
// drop the address under routes that still name it as their source.
func (s *state) expire(lk *link, l *lease) {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: l.addr.IP, Mask: l.addr.Mask}}
	if err := s.cfg.Handle.AddrDel(lk.nl, a); err != nil {
		s.cfg.Log.Debug("expired address already gone", "link", lk.name, "addr", l.addr.String(), "err", err)
	}
}

func (s *state) renewAfter(l *lease) time.Duration {
	if s.cfg.renewAfter != nil {
		return s.cfg.renewAfter(l)
	}
	return l.renew
}
