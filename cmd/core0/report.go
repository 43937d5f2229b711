package main

import (
	"context"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"github.com/zeroboot/zeroboot/pkg/handoff"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/services"
)

// reporter tells the registry the node's state: at once when a service
// changes, and every ReportEvery as a heartbeat. Each attempt sends the
// state as it is then, so a retry never delivers a stale report.
type reporter struct {
	c      *core0
	client *registry.Client
	bi     handoff.BootInfo
	mgr    *services.Manager
	n      int // services in the release
	kick   chan struct{}
	start  time.Time
	// ready is closed once the registry took the first ready report.
	ready chan struct{}
	// marked is set once PID 1 was told the node is ready.
	marked bool
}

func newReporter(c *core0, client *registry.Client, bi handoff.BootInfo, mgr *services.Manager, n int, start time.Time) *reporter {
	return &reporter{c: c, client: client, bi: bi, mgr: mgr, n: n, kick: make(chan struct{}, 1), ready: make(chan struct{}), start: start}
}

// changed asks for a report soon; it never blocks a service transition.
func (r *reporter) changed() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// report is the node's state now.
func (r *reporter) report() registry.StatusReport {
	rep := registry.StatusReport{
		NodeID:         r.bi.NodeID,
		Source:         registry.SourceCore0,
		ReleaseVersion: r.bi.ReleaseVersion,
		Token:          r.bi.Token,
	}
	ss := r.mgr.Statuses()
	rep.State, rep.Reason = nodeState(ss, r.n == 0 || r.mgr.Ready())
	// An older registry's strict decoder refuses the field: it gets the
	// node's state alone.
	if r.bi.RegistryProtocol >= registry.ProtocolServices {
		rep.Services = serviceStates(ss)
	}
	return rep
}

// run reports until ctx ends.
func (r *reporter) run(ctx context.Context) {
	every := time.NewTicker(r.c.ReportEvery)
	defer every.Stop()
	for {
		var sent registry.StatusReport
		err := backoff.Retry(ctx, r.c.Backoff, func(ctx context.Context) error {
			sent = r.report()
			r.markReady(sent.State)
			return r.client.Status(ctx, sent)
		}, func(attempt int, err error, wait time.Duration) {
			r.c.Log.Printf("report %s, attempt %d: %v; retrying in %s", sent.State, attempt, err, wait.Round(time.Millisecond))
		})
		if err == nil && sent.State == registry.StateReady && !closed(r.ready) {
			close(r.ready)
			r.c.Log.Printf("ready (node %s, release %d): %d services ready, reported %s after Core-0 started",
				r.bi.NodeID, r.bi.ReleaseVersion, r.n, r.c.Now().Sub(r.start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-every.C:
		}
	}
}

// markReady tells PID 1, once, that the node is ready: it judges the
// farm's ready deadline by this, not by the registry, which may be the
// one that is down.
func (r *reporter) markReady(state string) {
	if r.marked || state != registry.StateReady || r.bi.ReadyFile == "" {
		return
	}
	r.marked = true
	if err := handoff.MarkReady(r.bi.ReadyFile); err != nil {
		r.c.Log.Printf("telling PID 1 the node is ready: %v", err)
	}
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
