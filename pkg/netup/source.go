package netup

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// source is one method configuring one family on one link.
type source struct {
	link   *link
	method method

	mu    sync.Mutex
	state string // for Result.Others: "trying", then what it came to
}

func (src *source) name() string { return src.link.name + " " + string(src.method) }

func (src *source) fail(err error) *LinkError {
	return &LinkError{Link: src.link.name, Source: string(src.method), Err: err}
}

func (src *source) setStatus(o outcome) {
	if o.err != nil {
		src.mark(o.err.Error())
	} else {
		src.mark(fmt.Sprintf("%s: %s configured, probe passed", src.name(), o.res.Addr.String()))
	}
}

func (src *source) mark(state string) {
	src.mu.Lock()
	defer src.mu.Unlock()
	src.state = state
}

func (src *source) status() string {
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.state == "" {
		return src.name() + ": still trying"
	}
	return src.state
}

// run takes one source from a link that is down to configured (and probed,
// if asked), reports the outcome once, then keeps its configuration alive
// until ctx ends.
func (s *state) run(ctx context.Context, src *source, report func(outcome)) {
	if err := src.link.ready(ctx); err != nil {
		s.cfg.Log.Warn("link not configured", "link", src.link.name, "err", err)
		report(outcome{err: &LinkError{Link: src.link.name, Err: err}})
		return
	}
	switch src.method {
	case mDHCP4:
		s.runDHCP4(ctx, src, report)
	case mAuto6, mDHCP6:
		s.runIPv6(ctx, src, report)
	case mStatic:
		s.runStatic(ctx, src, report)
	}
}

// settle applies a source's first configuration, probes it when a probe is
// set, and reports the outcome. It returns false when applying failed (the
// source has nothing to keep).
func (s *state) settle(ctx context.Context, src *source, c *conf, report func(outcome)) bool {
	lk := src.link
	metric, err := s.apply(lk, c)
	if err != nil {
		s.cfg.Log.Warn("link not configured", "link", lk.name, "source", c.source, "err", err)
		report(outcome{err: src.fail(err)})
		return false
	}
	res := c.result(lk.name)
	s.cfg.Log.Info("configured", "link", lk.name, "family", c.family.String(), "source", c.source,
		"addr", res.Addr.String(), "router", res.Router, "dns", res.DNS, "lease", res.Lease,
		"metric", metric, "rapid_commit", res.RapidCommit, "took", sinceMS(s.start))
	res.Why = "first configured (no probe)"
	if s.cfg.Probe != nil {
		src.mark(fmt.Sprintf("%s: %s configured, probing", src.name(), res.Addr.String()))
		if err := s.probe(ctx, res); err != nil {
			// The address stays, kept alive, with its unproven metric:
			// it is the node's, only its route must not win.
			s.cfg.Log.Warn("link not chosen", "link", lk.name, "family", c.family.String(), "metric", metric, "err", err)
			report(outcome{err: src.fail(err)})
			return true
		}
		if metric, err = s.promote(lk, c); err != nil {
			report(outcome{err: src.fail(err)})
			return true
		}
		s.cfg.Log.Info("default route promoted", "link", lk.name, "family", c.family.String(), "addr", res.Addr.String(), "metric", metric)
		res.Why = "first to pass the probe"
	}
	res.Took = time.Since(s.start)
	report(outcome{res: res})
	return true
}

// sinceMS rounds for the log.
func sinceMS(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// runStatic applies the ip= address: no server to wait for. Static
// addresses are forever; there is nothing to renew.
func (s *state) runStatic(ctx context.Context, src *source, report func(outcome)) {
	c, err := staticConf(src.link.ip)
	if err != nil {
		report(outcome{err: src.fail(err)})
		return
	}
	if s.settle(ctx, src, c, report) {
		<-ctx.Done()
	}
}
