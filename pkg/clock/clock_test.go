package clock

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/ntp"
)

type fakeClock struct {
	now  time.Time
	sets []time.Time
	err  error
}

func (f *fakeClock) clock(build time.Time, log *slog.Logger) *Clock {
	return &Clock{
		Now: func() time.Time { return f.now },
		Set: func(t time.Time) error {
			if f.err != nil {
				return f.err
			}
			f.sets = append(f.sets, t)
			f.now = t
			return nil
		},
		BuildTime: build,
		Log:       log,
	}
}

var build = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestEnsureNotBefore(t *testing.T) {
	tests := []struct {
		name    string
		now     time.Time
		changed bool
		want    time.Time
	}{
		{"rtc reset to 1970", time.Unix(0, 0), true, build},
		{"one second early", build.Add(-time.Second), true, build},
		{"exactly build time", build, false, build},
		{"later", build.Add(time.Hour), false, build.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeClock{now: tt.now}
			changed, err := f.clock(build, nil).EnsureNotBefore()
			if err != nil || changed != tt.changed || !f.now.Equal(tt.want) {
				t.Errorf("changed=%v err=%v now=%v; want changed=%v now=%v", changed, err, f.now, tt.changed, tt.want)
			}
			if len(f.sets) != map[bool]int{true: 1, false: 0}[tt.changed] {
				t.Errorf("set %d times", len(f.sets))
			}
		})
	}
}

// chainEnd is a certificate chain validity far enough out not to matter.
var chainEnd = build.Add(10 * 365 * 24 * time.Hour)

const src = "Date header of registry https://192.0.2.2:8443"

func TestFromServer(t *testing.T) {
	tests := []struct {
		name     string
		now      time.Time
		server   time.Time
		notAfter time.Time
		lead     time.Duration
		changed  bool
		want     time.Time
		log      string // in the log line, "" for none
	}{
		{"clock at build floor, registry later", build, build.Add(48 * time.Hour), chainEnd, 0, true, build.Add(48 * time.Hour), "clock set"},
		{"within skew", build.Add(time.Hour), build.Add(time.Hour + 2*time.Second), chainEnd, 0, false, build.Add(time.Hour), ""},
		{"just over skew", build.Add(time.Hour), build.Add(time.Hour + 2*time.Second + time.Millisecond), chainEnd, 0, true, build.Add(time.Hour + 2*time.Second + time.Millisecond), "clock set"},
		{"clock ahead of the registry: never moved back", build.Add(72 * time.Hour), build.Add(time.Hour), chainEnd, 0, false, build.Add(72 * time.Hour), "only moves forward"},
		{"registry before build time: ignored", build.Add(time.Hour), build.Add(-24 * time.Hour), chainEnd, 0, false, build.Add(time.Hour), "not after the image's build time"},
		{"registry at build time: ignored", time.Unix(0, 0), build, chainEnd, 0, false, time.Unix(0, 0), "not after the image's build time"},

		// The bounds: one source is believed only within its own chain and
		// within MaxLead of the build time.
		{"no verified chain", build, build.Add(48 * time.Hour), time.Time{}, 0, false, build, "no verified certificate chain"},
		{"after the chain expires", build, build.Add(48*time.Hour + time.Second), build.Add(48 * time.Hour), 0, false, build, "after the source's own certificate chain expires (2026-03-03T12:00:00Z)"},
		{"at the chain's end", build, build.Add(48 * time.Hour), build.Add(48 * time.Hour), 0, true, build.Add(48 * time.Hour), "clock set"},
		{"year 2100 with a chain until 2110", build, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2110, 1, 1, 0, 0, 0, 0, time.UTC), 0, false, build, "more than 365 days past the image's build time"},
		{"just past the default lead", build, build.Add(DefaultMaxLead + time.Second), chainEnd, 0, false, build, "limit 2027-03-01T12:00:00Z"},
		{"at the default lead", build, build.Add(DefaultMaxLead), chainEnd, 0, true, build.Add(DefaultMaxLead), "clock set"},
		{"past a shorter lead", build, build.Add(31 * 24 * time.Hour), chainEnd, 30 * 24 * time.Hour, false, build, "more than 30 days past"},
		{"lead counts from the build time, not the clock", build.Add(300 * 24 * time.Hour), build.Add(400 * 24 * time.Hour), chainEnd, 0, false, build.Add(300 * 24 * time.Hour), "more than 365 days past"},
		{"a clock already past the lead within skew: quiet", build.Add(2 * DefaultMaxLead), build.Add(2*DefaultMaxLead + time.Second), chainEnd, 0, false, build.Add(2 * DefaultMaxLead), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			f := &fakeClock{now: tt.now}
			c := f.clock(build, slog.New(slog.NewTextHandler(&buf, nil)))
			c.MaxLead = tt.lead
			changed, err := c.FromServer(src, tt.server, tt.notAfter)
			if err != nil || changed != tt.changed || !f.now.Equal(tt.want) {
				t.Errorf("changed=%v err=%v now=%v; want changed=%v now=%v", changed, err, f.now, tt.changed, tt.want)
			}
			out := buf.String()
			if tt.log == "" {
				if out != "" {
					t.Errorf("logged %q, want nothing", out)
				}
				return
			}
			// Whatever happened, the log says who sent which date (as
			// date= when refused, new= when taken).
			for _, want := range []string{tt.log, `source="` + src + `"`, "=" + tt.server.UTC().Format(time.RFC3339)} {
				if !strings.Contains(out, want) {
					t.Errorf("log %q lacks %q", out, want)
				}
			}
		})
	}
}

func TestFromServerLogsMove(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	f := &fakeClock{now: build}
	if _, err := f.clock(build, log).FromServer(src, build.Add(24*time.Hour), chainEnd); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		`source="Date header of registry https://192.0.2.2:8443"`,
		"old=2026-03-01T12:00:00Z", "new=2026-03-02T12:00:00Z",
		"reason=\"the clock was 24h0m0s behind the date",
		"chain_valid_until=2036-02-27T12:00:00Z", "lead_limit=2027-03-01T12:00:00Z",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
}

// The review's case: one replica answers with a Date in 2100. The node's
// clock must stay where the good replica's certificate still verifies, so
// failing over to it works, and its Date is then taken.
func TestFromServerOneLiarCannotBreakFailover(t *testing.T) {
	f := &fakeClock{now: build}
	c := f.clock(build, nil)
	goodChainEnd := build.Add(90 * 24 * time.Hour)
	liar := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	// The liar's chain is valid until after its lie: only the lead stops it.
	if changed, err := c.FromServer("Date header of registry https://bad", liar, liar.Add(time.Hour)); changed || err != nil {
		t.Fatalf("liar moved the clock: changed=%v err=%v", changed, err)
	}
	if got := c.Trusted(); got.After(goodChainEnd) {
		t.Fatalf("clock %v is past the good registry's certificate (%v): failover broken", got, goodChainEnd)
	}
	real := build.Add(10 * 24 * time.Hour)
	if changed, err := c.FromServer("Date header of registry https://good", real, goodChainEnd); !changed || err != nil || !f.now.Equal(real) {
		t.Fatalf("good registry: changed=%v err=%v now=%v, want %v", changed, err, f.now, real)
	}
}

// A source's name is outside text (it carries a URL); it must not reach
// the console raw.
func TestFromServerSanitizesSource(t *testing.T) {
	var buf bytes.Buffer
	f := &fakeClock{now: build}
	c := f.clock(build, slog.New(slog.NewTextHandler(&buf, nil)))
	if _, err := c.FromServer("registry https://x/\x1b[2J", build.Add(time.Hour), chainEnd); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "\x1b") || strings.Contains(buf.String(), `\x1b`) || !strings.Contains(buf.String(), "https://x/?[2J") {
		t.Errorf("log %q: escape character not neutralised", buf.String())
	}
}

func TestSetErrors(t *testing.T) {
	f := &fakeClock{now: time.Unix(0, 0), err: errors.New("operation not permitted")}
	c := f.clock(build, nil)
	if changed, err := c.EnsureNotBefore(); changed || err == nil || !strings.Contains(err.Error(), "set clock to 2026-03-01T12:00:00Z from the image's build time: operation not permitted") {
		t.Errorf("changed=%v err=%v", changed, err)
	}
	// Even with the clock stuck in 1970, checks use the floor.
	if got := c.Trusted(); !got.Equal(build) {
		t.Errorf("Trusted() = %v, want build time", got)
	}
	if _, err := c.FromServer(src, time.Time{}, chainEnd); err == nil {
		t.Error("zero registry time accepted")
	}
	f.err = errors.New("operation not permitted")
	f.now = build
	if _, err := c.FromServer(src, build.Add(time.Hour), chainEnd); err == nil || !strings.Contains(err.Error(), "set clock to 2026-03-01T13:00:00Z from "+src+": operation not permitted") {
		t.Errorf("FromServer with a clock that cannot be set: %v", err)
	}
}

func TestTrusted(t *testing.T) {
	later := build.Add(time.Minute)
	f := &fakeClock{now: later}
	if got := f.clock(build, nil).Trusted(); !got.Equal(later) {
		t.Errorf("Trusted() = %v, want %v", got, later)
	}
}

func TestParseBuildTime(t *testing.T) {
	got, err := ParseBuildTime("1772366400")
	if err != nil || !got.Equal(build) {
		t.Errorf("got %v %v, want %v", got, err, build)
	}
	for in, want := range map[string]string{
		"":            "not embedded",
		"2026-03-01":  "not decimal Unix seconds",
		"1.5":         "not decimal Unix seconds",
		"0":           "between 1970 and 2200",
		"-5":          "between 1970 and 2200",
		"99999999999": "between 1970 and 2200",
	} {
		if _, err := ParseBuildTime(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseBuildTime(%q) error %v, want %q", in, err, want)
		}
	}
}

// agreed is what ntp.Query returns when the servers agree on at.
func agreed(at time.Time, servers ...string) ntp.Result {
	r := ntp.Result{Time: at, Single: len(servers) == 1}
	for _, s := range servers {
		r.Agreeing = append(r.Agreeing, ntp.Sample{Server: s, Time: at})
	}
	return r
}

func TestFromNTP(t *testing.T) {
	three := []string{"192.0.2.1:123", "192.0.2.2:123", "[2001:db8::3]:123"}
	tests := []struct {
		name    string
		now     time.Time
		servers []string
		at      time.Time
		lead    time.Duration
		changed bool
		want    time.Time
		err     string // in the error, "" for none
	}{
		{"three agree, clock at the build floor", build, three, build.Add(10 * 24 * time.Hour), 0, true, build.Add(10 * 24 * time.Hour), ""},
		{"one server: the same bounds", build, three[:1], build.Add(10 * 24 * time.Hour), 0, true, build.Add(10 * 24 * time.Hour), ""},
		{"within skew: quiet", build.Add(time.Hour), three, build.Add(time.Hour + time.Second), 0, false, build.Add(time.Hour), ""},
		{"at the default lead", build, three, build.Add(DefaultMaxLead), 0, true, build.Add(DefaultMaxLead), ""},

		{"before the build floor", build.Add(time.Hour), three, build.Add(-24 * time.Hour), 0, false, build.Add(time.Hour),
			"clock not set from NTP servers 192.0.2.1:123, 192.0.2.2:123, [2001:db8::3]:123 (time 2026-02-28T12:00:00Z, build 2026-03-01T12:00:00Z): the date is not after the image's build time"},
		{"at the build floor", time.Unix(0, 0), three, build, 0, false, time.Unix(0, 0), "not after the image's build time"},
		{"past the default lead, agreeing", build, three, build.Add(DefaultMaxLead + time.Second), 0, false, build,
			"the date is more than 365 days past the image's build time (2026-03-01T12:00:00Z, limit 2027-03-01T12:00:00Z)"},
		{"past the default lead, one server", build, three[:1], time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), 0, false, build,
			"clock not set from NTP server 192.0.2.1:123 (time 2100-01-01T00:00:00Z, clock 2026-03-01T12:00:00Z): the date is more than 365 days past"},
		{"past a shorter lead", build, three, build.Add(31 * 24 * time.Hour), 30 * 24 * time.Hour, false, build, "more than 30 days past"},
		{"lead counts from the build time, not the clock", build.Add(300 * 24 * time.Hour), three, build.Add(400 * 24 * time.Hour), 0, false, build.Add(300 * 24 * time.Hour), "more than 365 days past"},
		{"never back, however many agree", build.Add(72 * time.Hour), three, build.Add(time.Hour), 0, false, build.Add(72 * time.Hour),
			"the date is behind the clock, and the clock only moves forward"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			f := &fakeClock{now: tt.now}
			c := f.clock(build, slog.New(slog.NewTextHandler(&buf, nil)))
			c.MaxLead = tt.lead
			changed, err := c.FromNTP(agreed(tt.at, tt.servers...))
			if changed != tt.changed || !f.now.Equal(tt.want) {
				t.Errorf("changed=%v now=%v; want changed=%v now=%v", changed, f.now, tt.changed, tt.want)
			}
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("err %v, want %q", err, tt.err)
			}
			if !changed {
				if buf.Len() != 0 {
					t.Errorf("logged %q without a move (the error says it)", buf.String())
				}
				return
			}
			source := "NTP servers " + strings.Join(tt.servers, ", ")
			vouch := "3 NTP servers agree on (within 1s)"
			if len(tt.servers) == 1 {
				source, vouch = "NTP server "+tt.servers[0], "one NTP server gave, unchecked by any other"
			}
			for _, want := range []string{"clock set", `source="` + source + `"`, "old=" + stamp(tt.now), "new=" + stamp(tt.want), vouch, "lead_limit=2027-03-01T12:00:00Z"} {
				if !strings.Contains(buf.String(), want) {
					t.Errorf("log %q lacks %q", buf.String(), want)
				}
			}
		})
	}
}

func TestFromNTPErrors(t *testing.T) {
	f := &fakeClock{now: build}
	c := f.clock(build, nil)
	if _, err := c.FromNTP(ntp.Result{}); err == nil || !strings.Contains(err.Error(), "no agreed time") {
		t.Errorf("empty result: %v", err)
	}
	f.err = errors.New("operation not permitted")
	if _, err := c.FromNTP(agreed(build.Add(time.Hour), "192.0.2.1:123")); err == nil || !strings.Contains(err.Error(), "set clock to 2026-03-01T13:00:00Z from NTP server 192.0.2.1:123: operation not permitted") {
		t.Errorf("clock that cannot be set: %v", err)
	}
}

// A server's name may come from DHCP; it must not reach the console raw.
func TestFromNTPSanitizesServers(t *testing.T) {
	var buf bytes.Buffer
	f := &fakeClock{now: build}
	c := f.clock(build, slog.New(slog.NewTextHandler(&buf, nil)))
	if _, err := c.FromNTP(agreed(build.Add(time.Hour), "ntp\x1b[2J:123")); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "\x1b") || strings.Contains(buf.String(), `\x1b`) || !strings.Contains(buf.String(), "ntp?[2J:123") {
		t.Errorf("log %q: escape character not neutralised", buf.String())
	}
}
