// Package clock keeps the wall clock usable for TLS and signature expiry
// on a node that may have no RTC or a wrong one.
//
// The image's build time is a floor nothing earlier can be true: a clock
// before it is wrong, and accepting it would let an old, expired-but-signed
// release or certificate pass its checks. The registry's Date header,
// received over a verified TLS connection, moves the clock forward to the
// real time.
package clock

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// MaxSkew is how far the clock may be from the registry's time before it
// is set; smaller differences are network latency and Date's 1 s precision.
const MaxSkew = 2 * time.Second

const maxBuild = 7258118400 // 2200-01-01T00:00:00Z

// Clock adjusts the system clock. Zero fields take defaults: Now =
// time.Now, Set = clock_settime(CLOCK_REALTIME), Log discards.
type Clock struct {
	Now       func() time.Time
	Set       func(time.Time) error
	BuildTime time.Time // when the image was built: the clock never goes before it
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

// EnsureNotBefore sets the clock to BuildTime when it is earlier.
func (c *Clock) EnsureNotBefore() (changed bool, err error) {
	now := c.now()
	if !now.Before(c.BuildTime) {
		return false, nil
	}
	return c.move(now, c.BuildTime, "clock before the image's build time")
}

// FromServer moves the clock forward to t, a time learnt from the
// authenticated registry, when t is after BuildTime and more than MaxSkew
// ahead of the clock. It never moves the clock back: a registry (or a
// stolen registry key) that could turn the clock back could revive an
// expired signed release, the freeze attack expiry exists to stop. A t at
// or before BuildTime is ignored: the registry is wrong, and the floor
// holds.
func (c *Clock) FromServer(t time.Time) (changed bool, err error) {
	if t.IsZero() {
		return false, errors.New("set clock from registry: no time given")
	}
	if !t.After(c.BuildTime) {
		c.log().Warn("registry time before the image's build time, ignored",
			"registry", t.UTC().Format(time.RFC3339), "build", c.BuildTime.UTC().Format(time.RFC3339))
		return false, nil
	}
	now := c.now()
	if t.Sub(now) <= MaxSkew {
		if now.Sub(t) > MaxSkew {
			c.log().Warn("registry time behind the clock; the clock only moves forward",
				"registry", t.UTC().Format(time.RFC3339), "clock", now.UTC().Format(time.RFC3339))
		}
		return false, nil
	}
	return c.move(now, t, "clock differs from the registry's")
}

func (c *Clock) move(from, to time.Time, why string) (bool, error) {
	if err := c.set(to); err != nil {
		return false, fmt.Errorf("set clock to %s: %w", to.UTC().Format(time.RFC3339), err)
	}
	c.log().Info("clock set", "reason", why,
		"old", from.UTC().Format(time.RFC3339), "new", to.UTC().Format(time.RFC3339))
	return true, nil
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
