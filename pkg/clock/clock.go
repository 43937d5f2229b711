// Package clock keeps the wall clock usable for TLS and signature expiry
// on a node that may have no RTC or a wrong one.
//
// The image's build time is a floor nothing earlier can be true: a clock
// before it is wrong, and accepting it would let an old, expired-but-signed
// release or certificate pass its checks. The registry's Date header,
// received over a verified TLS connection, moves the clock forward to the
// real time, but only as far as one source can be believed on its own:
//
//   - not past the earliest NotAfter of the certificate chain the source
//     just presented (its own leaf, any intermediate, the pinned CA): a Date
//     after it says the source's own certificate has expired, the source
//     contradicts itself, and following it would make every registry under
//     that CA fail its certificate check until reboot;
//   - not more than MaxLead past the build time: certificates are
//     long-lived, so the chain alone would still let one replica push the
//     clock years ahead, past the certificates of its sibling replicas.
//
// A Date beyond either bound is refused whole, not clamped: a source that
// lies about the time is not believed about any of it. The clock then stays
// where it was, which keeps failover working; the cost is that an image
// older than MaxLead on a node without a good RTC keeps the weaker freeze
// protection of its build time until it is rebuilt.
//
// NTP servers' agreed time (FromNTP, from ntp.Query) moves the clock under
// the same rule less the certificate bound, which NTP has none of: after
// the build time, forward only, at most MaxLead past the build time, and
// refused whole otherwise. Several agreeing servers get no more than one.
package clock

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/ntp"
)

// MaxSkew is how far the clock may be from the registry's time before it
// is set; smaller differences are network latency and Date's 1 s precision.
const MaxSkew = 2 * time.Second

// DefaultMaxLead is how far past the build time any source (a registry's
// Date, NTP servers, agreeing or not) may move the clock when
// Clock.MaxLead is zero. A year is longer than an image should
// live without a rebuild, and far shorter than the registry's certificates
// (ten years from zgrid's tlsgen), so a lying replica cannot expire them.
const DefaultMaxLead = 365 * 24 * time.Hour

const maxBuild = 7258118400 // 2200-01-01T00:00:00Z

// maxSource bounds how much of a source's name a log line repeats.
const maxSource = 200

// Clock adjusts the system clock. Zero fields take defaults: Now =
// time.Now, Set = clock_settime(CLOCK_REALTIME), MaxLead = DefaultMaxLead,
// Log discards.
type Clock struct {
	Now       func() time.Time
	Set       func(time.Time) error
	BuildTime time.Time     // when the image was built: the clock never goes before it
	MaxLead   time.Duration // how far past BuildTime any source may move the clock
	Log       *slog.Logger
}

func (c *Clock) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Clock) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (c *Clock) set(t time.Time) error {
	if c.Set != nil {
		return c.Set(t)
	}
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

func (c *Clock) maxLead() time.Duration {
	if c.MaxLead > 0 {
		return c.MaxLead
	}
	return DefaultMaxLead
}

// EnsureNotBefore sets the clock to BuildTime when it is earlier.
func (c *Clock) EnsureNotBefore() (changed bool, err error) {
	now := c.now()
	if !now.Before(c.BuildTime) {
		return false, nil
	}
	return c.move("the image's build time", now, c.BuildTime, "the clock was before the image's build time")
}

// FromServer moves the clock forward to date, a time source (e.g. "Date
// header of registry https://192.0.2.2:8443") sent over a TLS connection
// whose verified certificate chain is valid until notAfter (zero: no
// verified chain). The clock moves when date is more than MaxSkew ahead of
// it and within the bounds of the package comment; every move and every
// refusal is logged with the source and the reason.
//
// It never moves the clock back: a registry (or a stolen registry key)
// that could turn the clock back could revive an expired signed release,
// the freeze attack expiry exists to stop. A date at or before BuildTime is
// ignored: the registry is wrong, and the floor holds.
//
// A refused date is not an error (the clock is left as it was, which is
// safe); err is only for a call without a date or a clock that cannot be
// set.
func (c *Clock) FromServer(source string, date, notAfter time.Time) (changed bool, err error) {
	source = console.Sanitize(source, maxSource)
	if date.IsZero() {
		return false, fmt.Errorf("set clock from %s: no time given", source)
	}
	changed, no, err := c.forward(source, date, func() string { return chainBound(date, notAfter) },
		"is before the source's certificate chain expires and", "chain_valid_until", stamp(notAfter))
	if no != nil {
		c.log().Warn("clock not set: "+no.why, "source", source, "date", stamp(date), no.key, no.value)
	}
	return changed, err
}

// FromNTP moves the clock forward to the time NTP servers agreed on
// (ntp.Query), under the same rule as a registry's Date, less the
// certificate bound NTP has none of:
//
//   - the time must be after BuildTime, and not more than MaxLead past it;
//   - the clock moves only forward, and only when the time is more than
//     MaxSkew ahead of it; a time behind the clock is refused.
//
// The rule is the same for one server (r.Single) and for several that
// agree. NTP is unauthenticated, and several servers reached over the same
// network are not independent witnesses against whoever controls that
// network: agreement protects against a broken or lying server, not
// against an attacker on the path, so it buys no wider bounds. Within
// them, a lying NTP majority can at worst move the clock forward; it can
// never move it back to revive an expired release.
//
// A refused time is an error naming the servers, the time and the bound
// it broke, and the clock is left as it was (which is safe: the node
// still has its build-time floor and the registry's Date). A time within
// MaxSkew of the clock changes nothing and is no error. Every move is
// logged with the servers it came from.
func (c *Clock) FromNTP(r ntp.Result) (changed bool, err error) {
	if len(r.Agreeing) == 0 || r.Time.IsZero() {
		return false, errors.New("set clock from NTP: no agreed time")
	}
	names := make([]string, len(r.Agreeing))
	for i, s := range r.Agreeing {
		names[i] = console.Sanitize(s.Server, maxSource)
	}
	source := "NTP servers " + strings.Join(names, ", ")
	vouch := fmt.Sprintf("%d NTP servers agree on (within %s) and", len(names), ntp.AgreeWithin)
	if len(names) == 1 {
		source = "NTP server " + names[0]
		vouch = "one NTP server gave, unchecked by any other, and"
	}
	date := r.Now()
	changed, no, err := c.forward(source, date, nil, vouch,
		"ntp_offset", r.Offset.Round(time.Millisecond).String(), "ntp_outliers", len(r.Outliers), "ntp_refused", len(r.Refused))
	if no != nil {
		return false, fmt.Errorf("clock not set from %s (time %s, %s %s): %s", source, stamp(date), no.key, no.value, no.why)
	}
	return changed, err
}

// refusal says why a source's date did not move the clock, and what it
// was judged against (key "build" or "clock", and that time).
type refusal struct {
	why, key, value string
}

// forward is the one way a source (already sanitised) moves the clock to
// date: only when date is after BuildTime, more than MaxSkew ahead of the
// clock, accepted by bound (the source's own limit; nil: none) and not
// more than MaxLead past BuildTime. vouch completes the reason logged with
// a move ("the clock was 3h behind the date, which <vouch> within ...").
// A date behind the clock by more than MaxSkew, or refused by a bound, is
// returned as a refusal; one within MaxSkew is neither moved to nor
// refused.
func (c *Clock) forward(source string, date time.Time, bound func() string, vouch string, attrs ...any) (bool, *refusal, error) {
	if !date.After(c.BuildTime) {
		return false, &refusal{"the date is not after the image's build time", "build", stamp(c.BuildTime)}, nil
	}
	now := c.now()
	if date.Sub(now) <= MaxSkew {
		if now.Sub(date) > MaxSkew {
			return false, &refusal{"the date is behind the clock, and the clock only moves forward", "clock", stamp(now)}, nil
		}
		return false, nil, nil
	}
	var why string
	if bound != nil {
		why = bound()
	}
	if why == "" {
		why = c.leadBound(date)
	}
	if why != "" {
		return false, &refusal{why, "clock", stamp(now)}, nil
	}
	limit := c.BuildTime.Add(c.maxLead())
	changed, err := c.move(source, now, date,
		fmt.Sprintf("the clock was %s behind the date, which %s within %s of the image's build time", span(date.Sub(now)), vouch, span(c.maxLead())),
		append(attrs, "lead_limit", stamp(limit))...)
	return changed, nil, err
}

// chainBound says why date is not believable from a source whose chain is
// valid until notAfter, or "" when it is.
func chainBound(date, notAfter time.Time) string {
	if notAfter.IsZero() {
		return "no verified certificate chain came with the date, so nothing authenticates it"
	}
	if date.After(notAfter) {
		return fmt.Sprintf("the date is after the source's own certificate chain expires (%s); believing it would fail every registry under that CA", stamp(notAfter))
	}
	return ""
}

// leadBound says why date is too far past the build time for any source,
// or "" when it is not.
func (c *Clock) leadBound(date time.Time) string {
	if limit := c.BuildTime.Add(c.maxLead()); date.After(limit) {
		return fmt.Sprintf("the date is more than %s past the image's build time (%s, limit %s); no time source may move the clock that far (rebuild the image)",
			span(c.maxLead()), stamp(c.BuildTime), stamp(limit))
	}
	return ""
}

func (c *Clock) move(source string, from, to time.Time, why string, attrs ...any) (bool, error) {
	if err := c.set(to); err != nil {
		return false, fmt.Errorf("set clock to %s from %s: %w", stamp(to), source, err)
	}
	c.log().Info("clock set", append([]any{"source", source, "old", stamp(from), "new", stamp(to), "reason", why}, attrs...)...)
	return true, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// span shows long durations in days, which is how people think of them.
func span(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%.0f days", d.Hours()/24)
	}
	return d.Round(time.Second).String()
}

// Trusted is the time to check certificates and expiry against: the clock,
// but never before BuildTime (even when setting the clock failed).
func (c *Clock) Trusted() time.Time {
	now := c.now()
	if now.Before(c.BuildTime) {
		return c.BuildTime
	}
	return now
}

// ParseBuildTime parses the build time embedded with -ldflags as decimal
// Unix seconds (e.g. from SOURCE_DATE_EPOCH).
func ParseBuildTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("build time: not embedded (build with -ldflags -X ...=$(date +%s))")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("build time %q: not decimal Unix seconds", s)
	}
	if n <= 0 || n > maxBuild {
		// A floor in the far future would make every certificate expired.
		return time.Time{}, fmt.Errorf("build time %q: must be between 1970 and 2200", s)
	}
	return time.Unix(n, 0).UTC(), nil
}
