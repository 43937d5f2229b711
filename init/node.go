package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"github.com/zeroboot/zeroboot/pkg/clock"
	"github.com/zeroboot/zeroboot/pkg/cmdline"
	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/handoff"
	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/supervise"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

// Paths inside the initramfs and the assembled root.
const (
	trustPath   = "/etc/zeroboot/trust.json"
	caPath      = "/etc/zeroboot/ca.pem"
	newRoot     = "/zeroboot/root"
	runDir      = "/run/zeroboot"
	bootInfo    = runDir + "/boot.json"
	modulesBase = "/lib/modules"
)

// node holds what one step learns for the next. Steps run in order; only
// the supervisor and the signal handler run beside them.
type node struct {
	tl     *timeline.Timeline
	log    *slog.Logger
	level  *slog.LevelVar
	clock  *clock.Clock
	reaper *supervise.Reaper
	retry  backoff.Policy

	cfg      cmdline.Config
	ident    identity.Identity
	client   *registry.Client
	answered string // registry URL that gave the release
	boot     *registry.BootResponse
	rel      *release.Release
	info     handoff.BootInfo
	// rootMounted tells a retried components step to discard the
	// previous attempt's tmpfs.
	rootMounted bool

	mu     sync.Mutex
	failed string // the step and reason shown while the node is failed
}

func newNode(start time.Time) *node {
	level := new(slog.LevelVar)
	n := &node{
		tl:    timeline.New(start),
		level: level,
		retry: backoff.Policy{Base: time.Second, Cap: 30 * time.Second},
	}
	// The console exists before any mount: the initramfs carries
	// /dev/console. /dev/kmsg joins once devtmpfs is up (see mount).
	n.log = console.New(os.Stdout, nil, start, level)
	bt, err := clock.ParseBuildTime(buildTime)
	if err != nil {
		n.log.Warn("build time not embedded; clock floor disabled", "err", err)
	}
	n.clock = &clock.Clock{Now: time.Now, BuildTime: bt, Log: n.log}
	return n
}

// step runs one boot step until it succeeds. Each attempt is timed on the
// timeline; a failure is shown with its reason, reported to the registry
// when one is known, and retried with backoff. A panic inside a step is a
// failure like any other.
func (n *node) step(name string, fn func(context.Context) error) {
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		end := n.tl.Begin(name)
		err := n.protect(ctx, fn)
		end(err)
		if err == nil {
			n.setFailed("")
			n.log.Debug("step done", "step", name)
			return
		}
		var perm permanent
		if asPermanent(err, &perm) {
			n.fail(name, perm.err)
			n.failedForever()
		}
		wait := n.retry.Delay(attempt)
		n.fail(name, err)
		n.log.Error(fmt.Sprintf("%s failed (attempt %d); retrying in %s", name, attempt+1, wait.Round(100*time.Millisecond)), "err", err)
		time.Sleep(wait)
	}
}

func (n *node) protect(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return fn(ctx)
}

// fail records the failed state, shows the rescue banner and reports it.
func (n *node) fail(stepName string, err error) {
	reason := fmt.Sprintf("%s: %v", stepName, err)
	n.setFailed(reason)
	fmt.Fprintf(os.Stdout, "\n"+
		"=================== zeroboot: BOOT FAILED ===================\n"+
		"step:   %s\nreason: %v\n"+
		"The node keeps retrying. Rescue: fix the cause on the registry or store side,\n"+
		"add zeroboot.debug to the kernel command line for details,\n"+
		"Ctrl-Alt-Del reboots.\n"+
		"=============================================================\n\n", stepName, err)
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
	if n.client == nil || n.ident.NodeID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep := registry.StatusReport{
		NodeID:   n.ident.NodeID,
		Source:   "pid1",
		State:    state,
		Reason:   reason,
		Timeline: n.tl.Steps(),
	}
	if n.rel != nil {
		rep.ReleaseVersion = n.rel.Version
	}
	if err := n.client.Status(ctx, rep); err != nil {
		n.log.Warn("status report not delivered", "state", state, "err", err)
	}
}

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

func asPermanent(err error, p *permanent) bool {
	pp, ok := err.(permanent)
	if ok {
		*p = pp
	}
	return ok
}
