package clock

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
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

func TestFromServer(t *testing.T) {
	tests := []struct {
		name    string
		now     time.Time
		server  time.Time
		changed bool
		want    time.Time
	}{
		{"clock at build floor, registry later", build, build.Add(48 * time.Hour), true, build.Add(48 * time.Hour)},
		{"within skew", build.Add(time.Hour), build.Add(time.Hour + 2*time.Second), false, build.Add(time.Hour)},
		{"just over skew", build.Add(time.Hour), build.Add(time.Hour + 2*time.Second + time.Millisecond), true, build.Add(time.Hour + 2*time.Second + time.Millisecond)},
		{"clock ahead of the registry: never moved back", build.Add(72 * time.Hour), build.Add(time.Hour), false, build.Add(72 * time.Hour)},
		{"registry before build time: ignored", build.Add(time.Hour), build.Add(-24 * time.Hour), false, build.Add(time.Hour)},
		{"registry at build time: ignored", time.Unix(0, 0), build, false, time.Unix(0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeClock{now: tt.now}
			changed, err := f.clock(build, nil).FromServer(tt.server)
			if err != nil || changed != tt.changed || !f.now.Equal(tt.want) {
				t.Errorf("changed=%v err=%v now=%v; want changed=%v now=%v", changed, err, f.now, tt.changed, tt.want)
			}
		})
	}
}

func TestFromServerLogsOldAndNew(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	f := &fakeClock{now: build}
	if _, err := f.clock(build, log).FromServer(build.Add(24 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "old=2026-03-01T12:00:00Z") || !strings.Contains(out, "new=2026-03-02T12:00:00Z") {
		t.Errorf("log %q lacks old and new times", out)
	}
}

func TestSetErrors(t *testing.T) {
	f := &fakeClock{now: time.Unix(0, 0), err: errors.New("operation not permitted")}
	c := f.clock(build, nil)
	if changed, err := c.EnsureNotBefore(); changed || err == nil || !strings.Contains(err.Error(), "set clock to 2026-03-01T12:00:00Z: operation not permitted") {
		t.Errorf("changed=%v err=%v", changed, err)
	}
	// Even with the clock stuck in 1970, checks use the floor.
	if got := c.Trusted(); !got.Equal(build) {
		t.Errorf("Trusted() = %v, want build time", got)
	}
	if _, err := c.FromServer(time.Time{}); err == nil {
		t.Error("zero registry time accepted")
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
