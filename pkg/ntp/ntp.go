// Package ntp asks NTP servers for the time, in parallel, and keeps only a
// time a majority of them agree on. It speaks SNTP through
// github.com/beevik/ntp and does not touch the clock: pkg/clock's FromNTP
// applies a Result within the bounds one unauthenticated source may move
// the clock.
//
// NTP is unauthenticated: a server, or anyone on the path to it, can say
// any time. What this package guards against is a broken or lying server
// among honest ones, and an off-path spoofer:
//
//   - every answer must come from the server's address and port (a
//     connected UDP socket) and carry our request's transmit timestamp,
//     which is 64 random bits, in its origin field (the library checks it:
//     a reply that does not match is refused as
//     ntp.ErrServerResponseMismatch), so a blind spoofer cannot answer;
//   - it must pass the library's Response.Validate (not a kiss-o'-death,
//     stratum below 16, a fresh reference time, dispersion below 16 s, leap
//     indicator not "not synchronised") and ours: stratum 1 to 15, a
//     non-negative round trip, a root distance below MaxRootDistance;
//   - with two or more valid answers, the time is the median offset of the
//     answers within AgreeWithin of the median, and only when those are a
//     majority of the valid answers; otherwise Query fails and says what
//     each server said.
//
// An attacker on the path to every server can still make them agree on a
// lie; that is why pkg/clock gives agreeing servers no more power than a
// single one.
package ntp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bntp "github.com/beevik/ntp"

	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/netconf"
)

const (
	// DefaultTimeout bounds each server's query (name resolution, request
	// and answer) when Config.Timeout is zero.
	DefaultTimeout = 2 * time.Second

	// AgreeWithin is how far a server's offset may be from the median of
	// all valid answers and still count as agreeing. It is far above what
	// honest servers on one network differ by (milliseconds) and far below
	// what matters for certificates and expiry.
	AgreeWithin = time.Second

	// MaxRootDistance is the largest root distance (half the round trip
	// to the reference clock plus the server's dispersion) an answer may
	// have: an answer that uncertain cannot be checked against AgreeWithin.
	MaxRootDistance = 1500 * time.Millisecond

	// MaxServers bounds how many servers are asked; the rest are ignored
	// with a warning.
	MaxServers = 8

	defaultPort = "123"
	maxName     = 200 // bytes of a server's name repeated in errors and logs
)

// Config says whom to ask.
type Config struct {
	// Servers are HOST:PORT, HOST or an IP address (IPv6 bare or in
	// brackets); the port is 123 when missing. They may come from
	// zeroboot.ntp=, DHCP option 42, DHCPv6 option 56 or the registry. A
	// server listed twice, or two names of one address and port, count
	// once.
	Servers []string
	Timeout time.Duration // per server; zero: DefaultTimeout
	Log     *slog.Logger  // nil: discard
}

// Sample is one server's valid answer.
type Sample struct {
	Server       string        // as configured, with its port
	Addr         string        // the address and port it was reached at
	Time         time.Time     // the server's time when its answer arrived
	Offset       time.Duration // how far the server's time is ahead of the local clock
	RTT          time.Duration // the round trip, less the server's processing time
	RootDistance time.Duration
	Stratum      uint8
}

// Result is what Query found.
type Result struct {
	// Time is the agreed time (the median offset of Agreeing applied to
	// the local clock) at At, a reading of the local clock with its
	// monotonic part. Zero when Query failed.
	Time time.Time
	At   time.Time
	// Offset is Time - At: how far the servers are ahead of the local
	// clock.
	Offset time.Duration
	// Single is set when exactly one server gave a valid answer: its time
	// was not checked against any other.
	Single   bool
	Agreeing []Sample // the answers the time is taken from, by offset
	Outliers []Sample // valid answers too far from the median, by offset
	Refused  []error  // one per server without a valid answer, naming it
}

// Now is the agreed time now: Time advanced by the monotonic time since
// At, so a clock step since the query does not skew it. A Result built by
// hand without At gives Time as it is.
func (r Result) Now() time.Time {
	if r.At.IsZero() {
		return r.Time
	}
	return r.Time.Add(time.Since(r.At))
}

// Servers names the agreeing servers, for logs.
func (r Result) Servers() []string {
	names := make([]string, len(r.Agreeing))
	for i, s := range r.Agreeing {
		names[i] = s.Server
	}
	return names
}

// Query asks every server at once, each for at most cfg.Timeout (or until
// ctx ends), and returns the time a majority of the valid answers agree on
// (see the package comment). The error says why there is none: no
// servers, no valid answer (with each server's reason), or servers that
// disagree (with what each said). The Result is returned either way, with
// the refused servers and, on disagreement, the valid answers as Outliers.
func Query(ctx context.Context, cfg Config) (Result, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var res Result
	servers, bad := normalize(cfg.Servers)
	for _, err := range bad {
		log.Warn("NTP server not asked", "error", err)
		res.Refused = append(res.Refused, err)
	}
	if len(servers) > MaxServers {
		log.Warn(fmt.Sprintf("NTP: %d servers, asking the first %d", len(servers), MaxServers), "ignored", strings.Join(servers[MaxServers:], ", "))
		servers = servers[:MaxServers]
	}
	if len(servers) == 0 {
		return res, joinRefused("ntp: no server to ask", res.Refused)
	}

	samples := make([]Sample, len(servers))
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { samples[i], errs[i] = ask(ctx, s, timeout) })
	}
	wg.Wait()
	at := time.Now()

	var valid []Sample
	seen := map[string]string{}
	for i, s := range servers {
		switch {
		case errs[i] != nil:
			log.Warn("NTP answer refused", "server", s, "error", errs[i])
			res.Refused = append(res.Refused, errs[i])
		case seen[samples[i].Addr] != "":
			// One server must not vote twice under two names.
			log.Info("NTP server is "+seen[samples[i].Addr]+" under another name; counted once", "server", s, "addr", samples[i].Addr)
		default:
			seen[samples[i].Addr] = s
			valid = append(valid, samples[i])
		}
	}
	if len(valid) == 0 {
		return res, joinRefused(fmt.Sprintf("ntp: none of %d servers gave a valid answer", len(servers)), res.Refused)
	}

	agree, out, ok := agreement(valid)
	if !ok {
		res.Outliers = valid
		return res, disagree(valid, len(servers))
	}
	res.Agreeing, res.Outliers, res.Single = agree, out, len(valid) == 1
	res.Offset = median(agree)
	res.At = at
	res.Time = at.Add(res.Offset).Round(0)
	for _, o := range out {
		log.Warn("NTP server disagrees with the others; ignored", "server", o.Server, "offset", signed(o.Offset), "median", signed(res.Offset))
	}
	msg := fmt.Sprintf("NTP: %d of %d servers agree", len(agree), len(servers))
	if res.Single {
		msg = fmt.Sprintf("NTP: only one of %d servers gave a valid answer; its time is not checked against another", len(servers))
	}
	log.Info(msg, "servers", strings.Join(res.Servers(), ", "), "offset", signed(res.Offset), "time", res.Time.UTC().Format(time.RFC3339Nano))
	return res, nil
}

// agreement keeps the samples within AgreeWithin of the median offset,
// sorted by offset, and says whether they are a majority.
func agreement(valid []Sample) (agree, out []Sample, ok bool) {
	slices.SortStableFunc(valid, func(a, b Sample) int { return compare(a.Offset, b.Offset) })
	m := median(valid)
	for _, s := range valid {
		if d := s.Offset - m; d <= AgreeWithin && d >= -AgreeWithin {
			agree = append(agree, s)
		} else {
			out = append(out, s)
		}
	}
	return agree, out, 2*len(agree) > len(valid)
}

// median is the middle offset of samples sorted by offset (for an even
// count, halfway between the middle two).
func median(s []Sample) time.Duration {
	n := len(s)
	if n%2 == 1 {
		return s[n/2].Offset
	}
	a, b := s[n/2-1].Offset, s[n/2].Offset
	return a + (b-a)/2
}

func compare(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func disagree(valid []Sample, asked int) error {
	said := make([]string, len(valid))
	for i, s := range valid {
		said[i] = fmt.Sprintf("%s says %s", s.Server, signed(s.Offset))
	}
	return fmt.Errorf("ntp: servers disagree: no majority of the %d valid answers (of %d servers) is within %s of the median: %s (offsets from this node's clock)",
		len(valid), asked, AgreeWithin, strings.Join(said, ", "))
}

func joinRefused(msg string, errs []error) error {
	if len(errs) == 0 {
		return errors.New(msg)
	}
	s := make([]string, len(errs))
	for i, err := range errs {
		s[i] = err.Error()
	}
	return fmt.Errorf("%s: %s", msg, strings.Join(s, "; "))
}

// signed shows an offset with its sign, to the millisecond.
func signed(d time.Duration) string {
	d = d.Round(time.Millisecond)
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

// normalize gives each server as HOST:PORT, once, and an error for each
// that cannot be asked.
func normalize(in []string) (out []string, bad []error) {
	seen := map[string]bool{}
	for _, s := range in {
		hp, err := hostPort(s)
		if err != nil {
			bad = append(bad, fmt.Errorf("ntp server %q: %v", console.Sanitize(s, maxName), err))
			continue
		}
		if !seen[hp] {
			seen[hp] = true
			out = append(out, hp)
		}
	}
	return out, bad
}

func hostPort(s string) (string, error) {
	host, port := s, defaultPort
	if h, p, err := net.SplitHostPort(s); err == nil {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return "", fmt.Errorf("port %q: want a number from 1 to 65535", p)
		}
		host, port = h, p
	} else if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		host = s[1 : len(s)-1]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if z := a.Zone(); console.Sanitize(z, len(z)) != z || strings.ContainsAny(z, " %") {
			return "", errors.New("unprintable IPv6 zone")
		}
		return net.JoinHostPort(a.String(), port), nil
	}
	if err := netconf.CheckHostname(host); err != nil {
		return "", fmt.Errorf("want HOST:PORT, HOST, an IP address or [IPv6]:PORT: %v", err)
	}
	return net.JoinHostPort(host, port), nil
}

// ask queries one server, all of it (resolving its name included) within
// timeout, and checks the answer.
func ask(ctx context.Context, server string, timeout time.Duration) (Sample, error) {
	noAnswer := fmt.Errorf("no answer within %s", timeout)
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, noAnswer)
	defer cancel()
	var addr string
	resp, err := bntp.QueryWithOptions(server, bntp.QueryOptions{
		Timeout: timeout,
		Dialer: func(local, remote string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "udp", remote)
			if err != nil {
				return nil, err
			}
			addr = c.RemoteAddr().String()
			if ua, ok := c.RemoteAddr().(*net.UDPAddr); ok {
				ap := ua.AddrPort()
				addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
			}
			// The end of ctx ends the exchange too.
			context.AfterFunc(ctx, func() { c.Close() })
			return c, nil
		},
	})
	recv := time.Now()
	if err != nil {
		// The socket's deadline, or ctx's end closing the socket: say so.
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			err = noAnswer
		case ctx.Err() != nil && (errors.Is(err, net.ErrClosed) || errors.Is(err, ctx.Err())):
			err = context.Cause(ctx)
		}
		return Sample{}, fmt.Errorf("ntp server %s: %w", server, err)
	}
	if why := check(resp); why != nil {
		return Sample{}, fmt.Errorf("ntp server %s: %w", server, why)
	}
	return Sample{
		Server:       server,
		Addr:         addr,
		Time:         recv.Add(resp.ClockOffset).Round(0),
		Offset:       resp.ClockOffset,
		RTT:          resp.RTT,
		RootDistance: resp.RootDistance,
		Stratum:      resp.Stratum,
	}, nil
}

// check refuses an answer not fit to set a clock by.
func check(r *bntp.Response) error {
	if r.IsKissOfDeath() {
		return fmt.Errorf("%w: kiss code %q%s", bntp.ErrKissOfDeath, kissCode(r.ReferenceID), kissMeaning[kissCode(r.ReferenceID)])
	}
	if err := r.Validate(); err != nil {
		return err
	}
	switch {
	case r.Stratum < 1 || r.Stratum > 15:
		return fmt.Errorf("stratum %d, want 1 to 15", r.Stratum)
	case r.Leap == bntp.LeapNotInSync:
		return errors.New("the server says its clock is not synchronised")
	case r.RTT < 0:
		return fmt.Errorf("negative round trip %s", r.RTT)
	case r.RootDistance >= MaxRootDistance:
		return fmt.Errorf("root distance %s, want less than %s", r.RootDistance.Round(time.Millisecond), MaxRootDistance)
	}
	return nil
}

// kissCode shows a kiss-o'-death's reference ID as text the server chose:
// printable ASCII, anything else '?'.
func kissCode(id uint32) string {
	b := []byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

var kissMeaning = map[string]string{
	"RATE": " (the server limits how often it may be asked)",
	"DENY": " (the server refuses this node)",
	"RSTR": " (the server refuses this node)",
}
