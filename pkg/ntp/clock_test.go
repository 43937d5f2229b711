package ntp_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/clock"
	"github.com/zeroboot/zeroboot/pkg/ntp"
)

var build = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is the node's clock as clock.Clock sees it through Now and
// Set: it stands still unless set.
type fakeClock struct {
	now  time.Time
	sets []time.Time
}

func (f *fakeClock) clock(log *slog.Logger) *clock.Clock {
	return &clock.Clock{
		Now:       func() time.Time { return f.now },
		Set:       func(t time.Time) error { f.sets = append(f.sets, t); f.now = t; return nil },
		BuildTime: build,
		Log:       log,
	}
}

// From the wire to the clock: servers whose clocks run from at answer real
// NTP packets, Query agrees on a time, FromNTP applies it to a clock that
// reads the build time.
func TestQueryThenFromNTP(t *testing.T) {
	tests := []struct {
		name    string
		at      time.Time // what the servers' clocks read when the test starts
		servers []server  // their offsets from at; each server's now is set by the test
		changed bool
		err     string // from Query or FromNTP
		log     string // in the log of a move
	}{
		{name: "three agree: moved", at: build.Add(10 * 24 * time.Hour), servers: []server{{}, {offset: 2 * time.Millisecond}, {offset: -time.Millisecond}},
			changed: true, log: "3 NTP servers agree on"},
		{name: "one liar among three: ignored", at: build.Add(10 * 24 * time.Hour), servers: []server{{}, {offset: 200 * 24 * time.Hour}, {}},
			changed: true, log: "2 NTP servers agree on"},
		{name: "a single server: moved within the same bounds", at: build.Add(10 * 24 * time.Hour), servers: []server{{}},
			changed: true, log: "one NTP server gave, unchecked by any other"},
		{name: "agreeing on a time before the build floor: refused", at: build.Add(-24 * time.Hour), servers: []server{{}, {}, {}},
			err: "the date is not after the image's build time"},
		{name: "agreeing beyond the max lead: refused", at: build.Add(400 * 24 * time.Hour), servers: []server{{}, {}, {}},
			err: "the date is more than 365 days past the image's build time (2026-03-01T12:00:00Z, limit 2027-03-01T12:00:00Z); no time source may move the clock that far"},
		{name: "a single server beyond the max lead: refused", at: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), servers: []server{{}},
			err: "clock not set from NTP server 127.0.0.1:"},
		{name: "two liars disagreeing with one: nothing to apply", at: build.Add(10 * 24 * time.Hour), servers: []server{{offset: 3 * time.Minute}, {offset: -2 * time.Hour}, {}},
			err: "servers disagree"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := since(tt.at)
			addrs := make([]string, len(tt.servers))
			for i, s := range tt.servers {
				s.now = now
				addrs[i] = s.start(t)
			}
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			f := &fakeClock{now: build}
			c := f.clock(log)

			res, err := ntp.Query(context.Background(), ntp.Config{Servers: addrs, Timeout: 500 * time.Millisecond, Log: log})
			changed := false
			if err == nil {
				changed, err = c.FromNTP(res)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if changed != tt.changed || len(f.sets) != map[bool]int{true: 1}[tt.changed] {
				t.Fatalf("changed=%v, set %v", changed, f.sets)
			}
			if !changed {
				if !f.now.Equal(build) {
					t.Errorf("clock moved to %v", f.now)
				}
				return
			}
			if d := f.now.Sub(now()); d > 100*time.Millisecond || d < -100*time.Millisecond {
				t.Errorf("clock set to %v, %v off the servers' time", f.now, d)
			}
			for _, want := range []string{"clock set", tt.log, "old=2026-03-01T12:00:00Z", "source=\"NTP server"} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log %q lacks %q", logs.String(), want)
				}
			}
		})
	}
}
