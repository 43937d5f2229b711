package watchdog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock whose ticker the test drives.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	period time.Duration // what NewTicker was asked for
	tick   chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), tick: make(chan time.Time)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

func (c *fakeClock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	c.period = d
	c.mu.Unlock()
	return c.tick, func() {}
}

// fakeIoctls is a driver that takes timeouts from min to max, rounded up
// to an even number of seconds (as some hardware counts), or refuses them.
type fakeIoctls struct {
	min, max int
	current  int
	refuse   bool
	noGet    bool
	asked    []int
}

func (f *fakeIoctls) ioctls() Ioctls {
	return Ioctls{
		SetTimeout: func(fd, s int) error {
			f.asked = append(f.asked, s)
			if f.refuse || s < f.min || s > f.max {
				return errors.New("invalid argument")
			}
			f.current = s + s%2
			return nil
		},
		GetTimeout: func(fd int) (int, error) {
			if f.noGet {
				return 0, errors.New("inappropriate ioctl for device")
			}
			return f.current, nil
		},
	}
}

// device is a regular file standing in for /dev/watchdog: every pet is
// one byte written to it.
func device(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func written(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func logger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, nil))
}

func TestOpenTimeout(t *testing.T) {
	tests := []struct {
		name      string
		want      time.Duration
		drv       fakeIoctls
		effective time.Duration
		interval  time.Duration
		warns     string
	}{
		{name: "taken", want: 60 * time.Second, drv: fakeIoctls{min: 1, max: 600, current: 30},
			effective: 60 * time.Second, interval: 20 * time.Second},
		{name: "rounded by the driver", want: 9 * time.Second, drv: fakeIoctls{min: 1, max: 600, current: 30},
			effective: 10 * time.Second, interval: 10 * time.Second / 3},
		{name: "refused: the device's own", want: 3600 * time.Second, drv: fakeIoctls{min: 1, max: 600, current: 30},
			effective: 30 * time.Second, interval: 10 * time.Second, warns: "timeout 3600 s refused"},
		{name: "unreadable: every second", want: 60 * time.Second, drv: fakeIoctls{min: 1, max: 600, noGet: true},
			effective: 0, interval: time.Second, warns: "timeout not readable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			dev := device(t)
			w := &Watchdog{Path: dev, Timeout: tt.want, Ioctls: tt.drv.ioctls(), Clock: newFakeClock(), Log: logger(&log)}
			if err := w.Open(); err != nil {
				t.Fatal(err)
			}
			if w.EffectiveTimeout() != tt.effective || w.Interval() != tt.interval {
				t.Errorf("timeout %v interval %v, want %v and %v", w.EffectiveTimeout(), w.Interval(), tt.effective, tt.interval)
			}
			if len(tt.drv.asked) != 1 || tt.drv.asked[0] != int(tt.want/time.Second) {
				t.Errorf("SETTIMEOUT asked %v, want [%d]", tt.drv.asked, tt.want/time.Second)
			}
			if tt.warns != "" && !strings.Contains(log.String(), tt.warns) {
				t.Errorf("log %q lacks %q", log.String(), tt.warns)
			}
			if tt.warns == "" && log.Len() != 0 {
				t.Errorf("unexpected log %q", log.String())
			}
			// Open pets once: whatever count ran before is restarted.
			if got := written(t, dev); !bytes.Equal(got, []byte{0}) {
				t.Errorf("device got %q after Open, want one pet", got)
			}
		})
	}
}

func TestOpenMissingDevice(t *testing.T) {
	w := &Watchdog{Path: filepath.Join(t.TempDir(), "watchdog"), Timeout: time.Minute, Ioctls: (&fakeIoctls{max: 600}).ioctls()}
	err := w.Open()
	if !errors.Is(err, ErrNoDevice) {
		t.Fatalf("Open of a missing device: %v, want ErrNoDevice", err)
	}
	if !strings.Contains(err.Error(), w.Path) {
		t.Errorf("error %q does not name %s", err, w.Path)
	}
	if err := w.Run(context.Background()); err == nil {
		t.Error("Run without a device: no error")
	}
}

func TestOpenRefusesNoTimeout(t *testing.T) {
	w := &Watchdog{Path: device(t), Timeout: 500 * time.Millisecond, Ioctls: (&fakeIoctls{max: 600}).ioctls()}
	if err := w.Open(); err == nil {
		t.Fatal("Open with a timeout under 1 s: no error")
	}
	if got := written(t, w.Path); len(got) != 0 {
		t.Errorf("device touched: %q", got)
	}
}

// TestPetsOnSchedule runs the pet loop on a fake ticker: one pet per tick
// at a third of the timeout while PID 1 beats, none once its heartbeat is
// older than two and a half intervals although the loop still ticks, and never a 'V'.
func TestPetsOnSchedule(t *testing.T) {
	tests := []struct {
		name string
		beat bool
		pets int // of 9 ticks
	}{
		{"heartbeat", true, 9},
		{"no heartbeat", false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			dev := device(t)
			w := &Watchdog{Path: dev, Timeout: 30 * time.Second, Ioctls: (&fakeIoctls{max: 600}).ioctls(), Clock: clk}
			if err := w.Open(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- w.Run(ctx) }()
			for i := 0; i < 9; i++ {
				now := clk.advance(10 * time.Second)
				if tt.beat {
					w.Alive()
				}
				clk.tick <- now
			}
			// The tick sent last was received, so it is handled before
			// Run sees the cancel.
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v", err)
			}
			if clk.period != 10*time.Second {
				t.Errorf("ticker period %v, want 10s (a third of 30 s)", clk.period)
			}
			got := written(t, dev)
			if len(got) != 1+tt.pets {
				t.Errorf("%d pets, want %d (Open's and %d of the ticks)", len(got), 1+tt.pets, tt.pets)
			}
			if bytes.ContainsRune(got, 'V') {
				t.Errorf("magic close written: %q", got)
			}
		})
	}
}

// TestStaleHeartbeatStopsPetting: the loop goroutine keeps running, but
// without PID 1's heartbeat it stops petting; it says so once, and pets
// again when the heartbeat comes back.
func TestStaleHeartbeatStopsPetting(t *testing.T) {
	tests := []struct {
		name       string
		maxSilence time.Duration
		beats      []bool // per tick of 10 s: did PID 1 beat before it?
		pets       []bool // did the tick pet?
	}{
		{"one missed beat is tolerated", 0, []bool{true, false, true, true}, []bool{true, true, true, true}},
		{"two missed beats are the limit", 0, []bool{true, false, false, false, false}, []bool{true, true, true, false, false}},
		{"back after a stall", 0, []bool{false, false, false, true, true}, []bool{true, true, false, true, true}},
		{"MaxSilence", 5 * time.Second, []bool{true, false, true}, []bool{true, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			clk := newFakeClock()
			dev := device(t)
			w := &Watchdog{Path: dev, Timeout: 30 * time.Second, MaxSilence: tt.maxSilence,
				Ioctls: (&fakeIoctls{max: 600}).ioctls(), Clock: clk, Log: logger(&log)}
			if err := w.Open(); err != nil {
				t.Fatal(err)
			}
			want := 1
			for i, beat := range tt.beats {
				now := clk.advance(10 * time.Second)
				if beat {
					w.Alive()
				}
				if got := w.Tick(now); got != tt.pets[i] {
					t.Errorf("tick %d: petted %v, want %v", i, got, tt.pets[i])
				}
				if tt.pets[i] {
					want++
				}
			}
			if got := written(t, dev); len(got) != want || bytes.ContainsRune(got, 'V') {
				t.Errorf("device got %q, want %d pets and no 'V'", got, want)
			}
			stops := strings.Count(log.String(), "no longer petting")
			backs := strings.Count(log.String(), "petting again")
			wantStops, wantBacks := 0, 0
			for i := range tt.pets {
				if i > 0 && tt.pets[i-1] && !tt.pets[i] || i == 0 && !tt.pets[0] {
					wantStops++
				}
				if i > 0 && !tt.pets[i-1] && tt.pets[i] {
					wantBacks++
				}
			}
			if stops != wantStops || backs != wantBacks {
				t.Errorf("logged %d stops and %d recoveries, want %d and %d:\n%s", stops, backs, wantStops, wantBacks, log.String())
			}
		})
	}
}

// TestPetFailure: a device that stops taking writes is logged once, not
// every tick.
func TestPetFailure(t *testing.T) {
	var log bytes.Buffer
	clk := newFakeClock()
	w := &Watchdog{Path: device(t), Timeout: 30 * time.Second, Ioctls: (&fakeIoctls{max: 600}).ioctls(), Clock: clk, Log: logger(&log)}
	if err := w.Open(); err != nil {
		t.Fatal(err)
	}
	w.f.Close()
	for i := 0; i < 3; i++ {
		now := clk.advance(10 * time.Second)
		w.Alive()
		if w.Tick(now) {
			t.Fatal("pet on a closed device succeeded")
		}
	}
	if n := strings.Count(log.String(), "pet failed"); n != 1 {
		t.Errorf("%d pet failures logged, want 1:\n%s", n, log.String())
	}
}

// TestMissedBeatOutOfPhase: a heartbeat that ticks just after the pet
// loop, then misses one beat, is 2 intervals and a little old at the pet
// that follows: still fresh. Half an interval more is not.
func TestMissedBeatOutOfPhase(t *testing.T) {
	clk := newFakeClock()
	w := &Watchdog{Path: device(t), Timeout: 30 * time.Second, Ioctls: (&fakeIoctls{max: 600}).ioctls(), Clock: clk}
	if err := w.Open(); err != nil {
		t.Fatal(err)
	}
	// Open beat at 0; the pet loop ticks at 10.05 and 20.05 s.
	if now := clk.advance(20*time.Second + 50*time.Millisecond); !w.Tick(now) {
		t.Error("a heartbeat 20.05 s old (one missed, out of phase) stopped the petting")
	}
	if now := clk.advance(5 * time.Second); w.Tick(now) {
		t.Error("a heartbeat 25.05 s old (more than 2.5 intervals) still petted")
	}
}
