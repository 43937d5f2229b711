package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"github.com/zeroboot/zeroboot/pkg/clock"
	"github.com/zeroboot/zeroboot/pkg/cmdline"
	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/handoff"
	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/panics"
	"github.com/zeroboot/zeroboot/pkg/prove"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/supervise"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

// Paths inside the initramfs and the assembled root.
const (
	rootPath     = "/etc/zeroboot/root.json"
	channelsPath = "/etc/zeroboot/channels.json"
	caPath       = "/etc/zeroboot/ca.pem"
	newRoot      = "/zeroboot/root"
	runDir       = "/run/zeroboot"
	bootInfo     = runDir + "/boot.json"
	modulesBase  = "/lib/modules"
	cgroupRoot   = "/sys/fs/cgroup"
)

// node holds what one step learns for the next. Steps run in order; only
// the supervisor and the signal handler run beside them.
type node struct {
	tl     *timeline.Timeline
	out    *console.Fanout // /dev/console, then every console= device
	log    *slog.Logger
	logs   *logSwitch // the handler behind log
	level  *slog.LevelVar
	clock  *clock.Clock
	reaper *supervise.Reaper
	retry  backoff.Policy
	sleep  func(time.Duration) // time.Sleep; tests swap it
	halt   func()              // failedForever; tests swap it
	sup    atomic.Pointer[supervise.Supervisor]

	cfg cmdline.Config
	net *registry.NetworkChoice // which link won, for the reports
	// dhcpNTP are the winning source's NTP servers (host:port), used when
	// the command line names none.
	dhcpNTP []string
	ident   identity.Identity
	// kind is the identity's registry.Kind*; prover is set for a TPM
	// node, tpmErr says why a node has none. measured is the boot's
	// measurement log, extended into the TPM when there is one.
	kind     string
	prover   *prove.Prover
	tpmErr   string
	measured *measure.Measurer
	rawCmd   string // /proc/cmdline, as measured
	client   *registry.Client
	boot     *registry.BootResponse
	rel      *release.Release
	// fallback is the release to boot if rel is not ready in time;
	// fellBack is set once this boot fell back to it.
	fallback *lastGood
	fellBack *registry.FellBack
	info     handoff.BootInfo
	panicked bool               // zeroboot.debug.panic fired (debug builds)
	entry    handoff.Entrypoint // the hashed file Core-0 is started from
	// rootMounted tells a retried components step to discard the
	// previous attempt's tmpfs.
	rootMounted bool
	// builtinDrivers: the initramfs has no modules for this kernel
	// (make kernel builds every driver in), so 8021q and bonding are
	// used as the kernel has them, not loaded.
	builtinDrivers bool

	mu     sync.Mutex
	failed string // the step and reason shown while the node is failed
}

func newNode(start time.Time) *node {
	level := new(slog.LevelVar)
	n := &node{
		tl:    timeline.New(start),
		level: level,
		retry: backoff.Policy{Base: time.Second, Cap: 30 * time.Second},
		sleep: time.Sleep,
	}
	n.halt = n.failedForever
	// The console exists before any mount: the initramfs carries
	// /dev/console. /dev/kmsg joins once devtmpfs is up (see mount).
	n.out = console.NewFanout(os.Stdout)
	n.logs = newLogSwitch(console.NewHandler(n.out, nil, start, level))
	n.log = slog.New(n.logs)
	bt, err := clock.ParseBuildTime(buildTime)
	if err != nil {
		n.log.Warn("build time not embedded; clock floor disabled", "err", err)
	}
	n.clock = &clock.Clock{Now: time.Now, BuildTime: bt, Log: n.log}
	return n
}

// step is one named boot step.
type step struct {
	name string
	fn   func(context.Context) error
}

// run runs steps in order until all of them succeed. Each attempt of each
// step is timed on the timeline; a failure is shown with its reason,
// reported to the registry when one is known, and the sequence starts again
// from its first step after a backoff wait. A panic inside a step is a
// failure like any other; a permanent failure stops in the failed state.
func (n *node) run(steps ...step) {
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		name, err := n.attempt(ctx, steps)
		if err == nil {
			n.setFailed("")
			return
		}
		var perm permanent
		if errors.As(err, &perm) {
			n.fail(name, perm.err)
			n.halt()
			return
		}
		wait := n.retry.Delay(attempt)
		n.fail(name, err)
		n.log.Error(fmt.Sprintf("%s failed (attempt %d); retrying in %s", name, attempt+1, wait.Round(100*time.Millisecond)), "err", err)
		n.sleep(wait)
	}
}

func (n *node) attempt(ctx context.Context, steps []step) (string, error) {
	for _, s := range steps {
		end := n.tl.Begin(s.name)
		err := n.protect(ctx, func(ctx context.Context) error {
			n.panicAt(s.name)
			return s.fn(ctx)
		})
		end(err)
		if err != nil {
			return s.name, err
		}
		n.log.Debug("step done", "step", s.name)
	}
	return "", nil
}

func (n *node) protect(ctx context.Context, fn func(context.Context) error) error {
	return panics.Catch(func() error { return fn(ctx) })()
}

// fail records the failed state, shows the rescue banner and reports it.
// The banner goes to the consoles raw, so its step and reason (a mirror's
// status line, a command-line parameter's name) are sanitised: they must
// not clear the screen and print a fake success.
func (n *node) fail(stepName string, err error) {
	reason := fmt.Sprintf("%s: %v", stepName, err)
	n.setFailed(reason)
	fmt.Fprintf(n.out, "\n"+
		"=================== zeroboot: BOOT FAILED ===================\n"+
		"step:   %s\nreason: %s\n"+
		"The node keeps retrying. Rescue: fix the cause on the registry or store side,\n"+
		"add zeroboot.debug to the kernel command line for details,\n"+
		"Ctrl-Alt-Del reboots.\n"+
		"=============================================================\n\n", console.Sanitize(stepName, 80), clip(fmt.Sprint(err)))
	n.report("failed", reason)
}

func (n *node) setFailed(reason string) {
	n.mu.Lock()
	n.failed = reason
	n.mu.Unlock()
}

// report sends the node's state and timeline to the registry, once per
// registry URL; it never blocks the boot for long and never fails it.
func (n *node) report(state, reason string) {
	n.send(n.statusReport(state, reason), state)
}

func (n *node) send(rep *registry.StatusReport, state string) {
	// Before the registry's first answer there is no boot token, and the
	// registry would refuse the report: it does not know this boot yet.
	if rep == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.client.Status(ctx, *rep); err != nil {
		n.log.Warn("status report not delivered", "state", state, "err", err)
	}
}

// statusReport is the report of state now, nil before the registry's first
// answer.
func (n *node) statusReport(state, reason string) *registry.StatusReport {
	if n.client == nil || n.boot == nil {
		return nil
	}
	rep := &registry.StatusReport{
		NodeID:   n.ident.NodeID,
		Token:    n.boot.Token,
		Source:   "pid1",
		State:    state,
		Reason:   clip(reason),
		Timeline: recent(n.tl.Steps()),
		Network:  n.net,
	}
	if n.rel != nil {
		rep.ReleaseVersion = n.rel.Version
	}
	return rep
}

// recent keeps a report within the registry's limits however long a node
// has been retrying: the latest steps, each error clipped.
// The timeline clips each error when it records it.
func recent(steps []timeline.Step) []timeline.Step {
	if max := min(registry.MaxTimelineSteps, timeline.MaxSteps); len(steps) > max {
		steps = steps[len(steps)-max:]
	}
	return steps
}

// clip bounds a reason to what the registry accepts (panics carry stacks,
// failover errors grow with the number of stores) and makes it safe for a
// terminal.
func clip(s string) string { return console.Sanitize(s, registry.MaxReasonLen-len("...")) }

// failedForever is the end of the road for a failure no retry can fix (a
// malformed command line, a missing trust root): PID 1 stays up, keeps
// reaping and answering signals, and repeats why.
func (n *node) failedForever() {
	for {
		n.mu.Lock()
		reason := n.failed
		n.mu.Unlock()
		n.log.Error("node is in the failed state; fix the cause and reboot (Ctrl-Alt-Del)", "reason", reason)
		time.Sleep(time.Minute)
	}
}

// permanent marks an error that retrying cannot fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// addEvidence puts the measurement log into PID 1's last report before
// hand-off: quoted for a TPM node (over the boot answer's nonce, good
// once), as a plain record otherwise.
func (n *node) addEvidence(rep *registry.StatusReport) {
	if rep == nil {
		return
	}
	if n.prover == nil || n.boot.QuoteNonce == "" {
		rep.Measured = n.measured.Events()
		return
	}
	ev, err := n.prover.Final(n.boot.QuoteNonce)
	if err != nil {
		n.log.Error("no final quote for the registry: the node will not count as attested", "err", err)
		rep.Measured = n.measured.Events()
		return
	}
	rep.TPM = ev
}
