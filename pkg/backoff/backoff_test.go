package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDelayBoundsAndGrowth(t *testing.T) {
	tests := []struct {
		n        int
		r        float64
		min, max time.Duration
	}{
		{0, 0, 50 * time.Millisecond, 50 * time.Millisecond},
		{0, 0.999, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 0, 100 * time.Millisecond, 100 * time.Millisecond},
		{3, 0.5, 400 * time.Millisecond, 800 * time.Millisecond},
		{10, 0.999, 500 * time.Millisecond, time.Second},
		{1000, 0, 500 * time.Millisecond, 500 * time.Millisecond},
	}
	for _, tc := range tests {
		p := Policy{Base: 100 * time.Millisecond, Cap: time.Second, Rand: func() float64 { return tc.r }}
		got := p.Delay(tc.n)
		if got < tc.min || got > tc.max {
			t.Errorf("Delay(%d) with r=%v = %v, want in [%v, %v]", tc.n, tc.r, got, tc.min, tc.max)
		}
	}
}

func TestDelayJitters(t *testing.T) {
	p := Policy{Base: time.Second, Cap: time.Minute}
	seen := map[time.Duration]bool{}
	for i := 0; i < 20; i++ {
		seen[p.Delay(4)] = true
	}
	if len(seen) < 2 {
		t.Fatalf("20 delays gave %d distinct values: no jitter", len(seen))
	}
}

func TestRetryUntilSuccess(t *testing.T) {
	p := Policy{Base: time.Millisecond, Cap: 4 * time.Millisecond}
	calls, reports := 0, 0
	err := Retry(context.Background(), p, func(context.Context) error {
		calls++
		if calls < 4 {
			return errors.New("not yet")
		}
		return nil
	}, func(attempt int, err error, wait time.Duration) {
		reports++
		if attempt != reports || wait <= 0 {
			t.Errorf("report(%d, %v, %v)", attempt, err, wait)
		}
	})
	if err != nil || calls != 4 || reports != 3 {
		t.Fatalf("err=%v calls=%d reports=%d", err, calls, reports)
	}
}

func TestRetryStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := Policy{Base: time.Hour, Cap: time.Hour}
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	err := Retry(ctx, p, func(context.Context) error { return errors.New("down") }, nil)
	if err == nil || err.Error() != "down" {
		t.Fatalf("Retry after cancel = %v, want last error", err)
	}
}

func TestSleep(t *testing.T) {
	expired, stop := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer stop()
	tests := []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		d      time.Duration
		cancel bool // cancel while sleeping
		want   error
	}{
		{"elapses", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, time.Millisecond, false, nil},
		{"zero elapses", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, 0, false, nil},
		{"cancelled while sleeping", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, time.Hour, true, context.Canceled},
		{"already expired beats zero", func() (context.Context, context.CancelFunc) { return expired, func() {} }, 0, false, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			if tc.cancel {
				go func() { time.Sleep(10 * time.Millisecond); cancel() }()
			}
			if err := Sleep(ctx, tc.d); !errors.Is(err, tc.want) {
				t.Fatalf("Sleep(%v) = %v, want %v", tc.d, err, tc.want)
			}
		})
	}
}
