package netup

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"golang.org/x/sys/unix"
)

// probeBackoff spaces the probes of one link: a registry that is still
// starting, or a switch port still learning, gets a moment; the whole stays
// within a few seconds of the link's lease.
var probeBackoff = backoff.Policy{Base: 500 * time.Millisecond, Cap: 2 * time.Second}

// probe runs Config.Probe on an applied lease up to 1+ProbeRetries times,
// each bounded by ProbeTimeout. The error names the address and every
// distinct reason, and wraps ErrProbeFailed.
func (s *state) probe(ctx context.Context, res *Result) error {
	tries := s.cfg.ProbeRetries + 1
	var reasons []string
	n := 0
	for n < tries {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeTimeout)
		err := s.cfg.Probe(pctx, res)
		cancel()
		n++
		if err == nil {
			s.cfg.Log.Info("probe passed", "link", res.Link, "addr", res.Addr.String(), "attempt", n)
			return nil
		}
		if msg := err.Error(); !slices.Contains(reasons, msg) {
			reasons = append(reasons, msg)
		}
		if n == tries {
			s.cfg.Log.Warn("probe failed", "link", res.Link, "addr", res.Addr.String(), "attempt", n, "err", err)
			break
		}
		wait := probeBackoff.Delay(n - 1)
		s.cfg.Log.Warn("probe failed", "link", res.Link, "addr", res.Addr.String(), "attempt", n, "err", err, "retry_in", wait)
		if backoff.Sleep(ctx, wait) != nil {
			reasons = append(reasons, ctx.Err().Error())
			break
		}
	}
	return fmt.Errorf("%s: %w after %d attempt(s): %s", res.Addr.String(), ErrProbeFailed, n, strings.Join(reasons, "; "))
}

// DialProbe returns a Config.Probe that passes when a TCP connection to any
// of addrs (host:port) can be opened out of the source's own link, in its
// own family (an IPv6 source dials only IPv6 addresses). The socket
// is bound to the link (SO_BINDTODEVICE), so the route lookup only considers
// routes through that link: the probe proves that link's path even while
// another link's default route has a better metric. Each connect is bounded
// by timeout; all addresses are tried at once and the first connection
// wins. A host name is resolved through resolv.conf, whose queries are not
// bound to the link: give addresses where the registry is known by IP.
func DialProbe(addrs []string, timeout time.Duration) func(ctx context.Context, r *Result) error {
	return dialProbe(addrs, timeout, dialContext)
}

// dialFunc opens a connection with d; tests swap it to dial inside another
// network namespace.
type dialFunc func(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error)

func dialContext(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	return d.DialContext(ctx, network, addr)
}

func dialProbe(addrs []string, timeout time.Duration, dial dialFunc) func(context.Context, *Result) error {
	addrs = slices.Clone(addrs)
	return func(ctx context.Context, r *Result) error {
		addrs := ofFamily(addrs, r.Family)
		if len(addrs) == 0 {
			return fmt.Errorf("no %s address to probe", r.Family)
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // the first connection ends the others' attempts
		type answer struct {
			i   int
			err error
		}
		answers := make(chan answer, len(addrs))
		for i, a := range addrs {
			go func() { answers <- answer{i, dialOne(ctx, r.Link, r.Family, a, timeout, dial)} }()
		}
		errs := make([]error, len(addrs))
		for range addrs {
			a := <-answers
			if a.err == nil {
				return nil
			}
			errs[a.i] = a.err
		}
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("no probe address reachable via %s over %s: %s", r.Link, r.Family, strings.Join(msgs, "; "))
	}
}

// ofFamily keeps the addresses a source of family f can dial: IP literals
// of that family, and host names (resolved in that family).
func ofFamily(addrs []string, f Family) []string {
	var out []string
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			out = append(out, a) // dialOne names the error
			continue
		}
		ip, perr := netip.ParseAddr(host)
		if perr != nil || (ip.Unmap().Is4() == (f == IPv4)) {
			out = append(out, a)
		}
	}
	return out
}

func dialOne(ctx context.Context, link string, f Family, addr string, timeout time.Duration, dial dialFunc) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("probe address %q: %w", addr, err)
	}
	d := &net.Dialer{Timeout: timeout, Control: bindToDevice(link)}
	network := "tcp4"
	if f == IPv6 {
		network = "tcp6"
	}
	c, err := dial(ctx, d, network, addr)
	if err != nil {
		return err // net.OpError names the address and the reason
	}
	return c.Close()
}

// bindToDevice forces a socket out of link whatever the routing table
// prefers.
func bindToDevice(link string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, link)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("bind socket to %s: %w", link, serr)
		}
		return nil
	}
}
