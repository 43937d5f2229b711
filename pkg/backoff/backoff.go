// Package backoff computes retry delays: exponential growth with jitter and a
// cap, so that a fleet of nodes retrying against one registry spreads out
// instead of arriving in waves, and a failing step never spins.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy describes a retry schedule. The zero value is not useful; use
// Default or fill Base and Cap.
type Policy struct {
	Base time.Duration // delay before the second attempt, before jitter
	Cap  time.Duration // delay never exceeds this
	// Rand returns a number in [0,1); nil means math/rand/v2. Tests swap it.
	Rand func() float64
}

// Default is the schedule for boot steps and registry calls: 0.5 s doubling
// to 30 s.
var Default = Policy{Base: 500 * time.Millisecond, Cap: 30 * time.Second}

// Delay is the wait after failed attempt n (0-based): a uniformly random
// value in [d/2, d] where d = min(Cap, Base*2^n). Keeping half the delay
// fixed means the schedule still grows visibly while jitter de-synchronises
// nodes.
func (p Policy) Delay(n int) time.Duration {
	d := p.Base
	for i := 0; i < n && d < p.Cap; i++ {
		d *= 2
	}
	if d > p.Cap {
		d = p.Cap
	}
	r := rand.Float64
	if p.Rand != nil {
		r = p.Rand
	}
	half := d / 2
	return half + time.Duration(r()*float64(d-half))
}

// Retry calls op until it succeeds or ctx ends, waiting Delay(n) between
// attempts. report, if not nil, is told of every failure and the wait that
// follows, so the caller can show it on the console.
func Retry(ctx context.Context, p Policy, op func(ctx context.Context) error, report func(attempt int, err error, wait time.Duration)) error {
	for n := 0; ; n++ {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		wait := p.Delay(n)
		if report != nil {
			report(n+1, err, wait)
		}
		if Sleep(ctx, wait) != nil {
			return err
		}
	}
}

// Sleep waits d or until ctx ends, whichever comes first, and returns
// ctx.Err() in the second case. A ctx that has already ended wins even over
// a zero d, so a cancelled caller never takes one more round.
func Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
