package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/zeroboot/zeroboot/pkg/handoff"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/timeline"
	"github.com/zeroboot/zeroboot/pkg/trust"
)

// lastGood is the last known good release the registry sent with this
// boot's (protocol 6): PID 1 boots it instead when Core-0 does not say the
// node is ready within deadline of its first start.
type lastGood struct {
	rel      *release.Release
	fresh    time.Time // when its signed freshness (TUF timestamp) ends
	deadline time.Duration
}

// readyPoll is how often PID 1 looks for Core-0's ready file.
const readyPoll = 250 * time.Millisecond

// takeFallback verifies the answer's fallback as the release itself was
// verified, against the same root and clock. A fallback that does not
// verify is no reason to refuse the release: the boot goes on without one.
func (n *node) takeFallback(tn *trust.Node, channel string, fb *registry.Fallback) {
	n.fallback = nil
	if fb == nil {
		return
	}
	v, err := tn.Verify(channel, fb.TUF)
	if err == nil && v.Release.Version >= n.rel.Version {
		err = fmt.Errorf("version %d is not before the release's %d", v.Release.Version, n.rel.Version)
	}
	if err != nil {
		n.log.Warn("fallback release refused; this boot has none", "err", err)
		return
	}
	n.fallback = &lastGood{rel: v.Release, fresh: v.Freshness, deadline: time.Duration(fb.DeadlineSeconds) * time.Second}
	n.log.Info(fmt.Sprintf("release: falls back to %s v%d unless ready within %s of Core-0's start (the farm's deadline)", v.Release.Channel, v.Release.Version, n.fallback.deadline))
}

// watchReady waits, beside Core-0's supervision, for the node to be ready.
// The channel says true, after stop has been called, when the deadline
// passed and the fallback is to be booted; false in every other case,
// once ctx ends or the question is settled.
func (n *node) watchReady(ctx context.Context, stop context.CancelFunc) <-chan bool {
	late := make(chan bool, 1)
	fb := n.fallback
	if fb == nil {
		late <- false
		return late
	}
	go func() {
		start := time.Now()
		err := handoff.WaitReady(ctx, handoff.ReadyFile, fb.deadline, readyPoll)
		switch {
		case err == nil:
			n.log.Info(fmt.Sprintf("node ready %s after Core-0 started, within the farm's deadline of %s", time.Since(start).Round(time.Millisecond), fb.deadline))
		case errors.Is(err, handoff.ErrDeadline):
			if n.canFallBack(fb) {
				stop()
				late <- true
				return
			}
		case ctx.Err() == nil:
			n.log.Warn("not watching the ready deadline", "err", err)
		}
		late <- false
	}()
	return late
}

// canFallBack checks that the fallback still holds now: a node that
// waited past its freshness or its expiry keeps the release it has.
func (n *node) canFallBack(fb *lastGood) bool {
	now := n.clock.Trusted()
	var why string
	switch {
	case now.After(fb.fresh):
		why = "its signed freshness ended at " + fb.fresh.UTC().Format(time.RFC3339)
	case now.After(fb.rel.Expires):
		why = "it expired at " + fb.rel.Expires.UTC().Format(time.RFC3339)
	default:
		n.log.Warn(fmt.Sprintf("release %s v%d not ready within %s of Core-0's start; falling back to v%d", n.rel.Channel, n.rel.Version, fb.deadline, fb.rel.Version))
		return true
	}
	reason := fmt.Sprintf("release v%d not ready within %s; no fallback to v%d: %s", n.rel.Version, fb.deadline, fb.rel.Version, why)
	n.log.Error(reason)
	n.report("failed", reason)
	return false
}

// bootFallback assembles the fallback release in a fresh root, in place
// of the one whose Core-0 was stopped (and everything it started, with its
// cgroup), and tells the registry, which records it.
func (n *node) bootFallback() {
	fb := n.fallback
	from := n.rel
	n.fallback = nil
	n.rel = fb.rel
	n.fellBack = &registry.FellBack{From: from.Version, Reason: fmt.Sprintf("release %s v%d not ready within %s of Core-0's start", from.Channel, from.Version, fb.deadline)}
	if err := n.measured.Measure(measure.TypeRelease, measure.ReleaseValue(fb.rel.Channel, fb.rel.Version)); err != nil {
		n.log.Error("measure the fallback release", "err", err)
	}
	if err := os.Remove(handoff.ReadyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		n.log.Warn("remove the ready file of the release fallen back from", "err", err)
	}
	n.run(step{"fallback", n.components}, step{"handoff", n.handoff})
	fmt.Fprintf(n.out, "\nzeroboot: boot timeline (ms since PID 1 started), fallen back from v%d to v%d\n%s\n", from.Version, fb.rel.Version, timeline.Table(n.tl.Steps()))
	// No quote: the registry's nonce for this boot was spent on the first
	// release's; the measurement log still holds both.
	rep := n.statusReport("booting", "")
	if rep != nil {
		rep.FellBack = n.fellBack
		rep.Measured = n.measured.Events()
	}
	n.send(rep, "booting")
}

// fellBackFrom is the release this boot fell back from, 0 if none.
func (n *node) fellBackFrom() uint64 {
	if n.fellBack == nil {
		return 0
	}
	return n.fellBack.From
}
