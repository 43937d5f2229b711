// Command core0 is the demo Core-0: the program a release names as its
// entrypoint and PID 1 starts, chrooted into the assembled root, and
// supervises. It checks that it is the executable the release promised,
// tells the registry the node is ready, then logs a heartbeat until it is
// asked to stop.
//
// Exit status: 0 after SIGTERM or SIGINT; 2 when boot.json, the CA or the
// flags are unusable; 125 (handoff.ExitNoRestart: PID 1 does not restart
// it) when its own digest does not match boot.json, since a restart would
// run the same file.
//
// boot.json's restarts field says how many times PID 1 restarted it in
// this boot; a restarted Core-0 logs it.
//
// --crash-after is for demos and tests only: it makes Core-0 kill itself
// with SIGKILL that long after reporting ready, to show that PID 1 restarts
// it with backoff.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/handoff"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// Exit statuses.
const (
	exitOK    = 0
	exitSetup = 2
	// exitMismatch asks PID 1 not to restart Core-0: the verification
	// failure is in the file itself.
	exitMismatch = handoff.ExitNoRestart
)

// core0 holds what a run depends on; tests fill it with temp paths, a fake
// clock and an httptest client.
type core0 struct {
	BootInfo   string        // path of boot.json
	Exe        string        // the running executable, /proc/self/exe
	CA         string        // registry CA, PEM
	Heartbeat  time.Duration // interval between heartbeat lines
	CrashAfter time.Duration // 0: never; else SIGKILL self this long after ready
	Backoff    backoff.Policy
	HTTP       *http.Client // nil: TLS 1.3 client trusting only CA
	Log        *log.Logger
	Now        func() time.Time
	Kill       func() // called for --crash-after; defaults to SIGKILL self
}

func main() {
	c, err := parseFlags(os.Args[1:], os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "core0:", err)
		os.Exit(exitSetup)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(c.run(ctx))
}

func parseFlags(args []string, getenv func(string) string) (*core0, error) {
	fs := flag.NewFlagSet("core0", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &core0{
		BootInfo: handoff.BootInfoPath,
		Exe:      "/proc/self/exe",
		Backoff:  backoff.Default,
		Log:      log.New(os.Stderr, "core0: ", 0),
		Now:      time.Now,
	}
	if p := getenv(handoff.EnvBootInfo); p != "" {
		c.BootInfo = p
	}
	fs.StringVar(&c.CA, "ca", handoff.CAPath, "registry CA certificate (PEM)")
	fs.DurationVar(&c.Heartbeat, "heartbeat", 10*time.Second, "interval between heartbeat lines")
	fs.DurationVar(&c.CrashAfter, "crash-after", 0, "demo/test only: SIGKILL self this long after reporting ready")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.Heartbeat <= 0 {
		return nil, fmt.Errorf("--heartbeat %v: must be positive", c.Heartbeat)
	}
	if c.CrashAfter < 0 {
		return nil, fmt.Errorf("--crash-after %v: must not be negative", c.CrashAfter)
	}
	return c, nil
}

// run is Core-0's life; it returns the exit status.
func (c *core0) run(ctx context.Context) int {
	start := c.Now()
	bi, err := handoff.ReadBootInfo(c.BootInfo)
	if err != nil {
		c.Log.Printf("%v", err)
		return exitSetup
	}
	if bi.Restarts > 0 {
		c.Log.Printf("restarted by PID 1: restart %d in this boot", bi.Restarts)
	}
	if err := c.selfCheck(bi); err != nil {
		c.Log.Printf("refusing to run: %v; exiting %d so that PID 1 does not restart me", err, exitMismatch)
		return exitMismatch
	}
	client, err := c.client(bi)
	if err != nil {
		c.Log.Printf("%v", err)
		return exitSetup
	}
	if err := c.reportReady(ctx, client, bi); err != nil {
		c.Log.Printf("stopping before ready was reported: %v", err)
		return exitOK
	}
	c.Log.Printf("ready (node %s, release %d)", bi.NodeID, bi.ReleaseVersion)
	return c.serve(ctx, start)
}

// selfCheck compares the running executable with the digest PID 1 recorded
// when it wrote the file, so a root changed after verification is caught.
func (c *core0) selfCheck(bi handoff.BootInfo) error {
	want, err := digest.Parse(bi.EntrypointDigest)
	if err != nil {
		return fmt.Errorf("boot info entrypoint_digest: %w", err)
	}
	got, err := handoff.FileDigest(c.Exe)
	if err != nil {
		return fmt.Errorf("self check: %w", err)
	}
	if got != want {
		return fmt.Errorf("self check: %s has digest %s, boot info promises %s", c.Exe, got, want)
	}
	return nil
}

func (c *core0) client(bi handoff.BootInfo) (*registry.Client, error) {
	if bi.Registry == "" {
		return nil, errors.New("boot info: no registry URL")
	}
	hc := c.HTTP
	if hc == nil {
		ca, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("registry CA: %w", err)
		}
		if hc, err = registry.NewHTTPClient(ca, c.Now); err != nil {
			return nil, fmt.Errorf("registry CA %s: %w", c.CA, err)
		}
	}
	return &registry.Client{URLs: []string{bi.Registry}, HTTP: hc, Backoff: c.Backoff}, nil
}

// reportReady retries until the registry takes the report or ctx ends: a
// node whose readiness the registry never learns is not in service.
func (c *core0) reportReady(ctx context.Context, client *registry.Client, bi handoff.BootInfo) error {
	rep := registry.StatusReport{
		NodeID:         bi.NodeID,
		Source:         registry.SourceCore0,
		State:          registry.StateReady,
		ReleaseVersion: bi.ReleaseVersion,
		Token:          bi.Token,
	}
	// A report the registry can never accept (no token in boot.json) is
	// an error now, not a retry loop.
	if err := rep.Validate(); err != nil {
		return fmt.Errorf("ready report: %w", err)
	}
	return backoff.Retry(ctx, c.Backoff, func(ctx context.Context) error {
		return client.Status(ctx, rep)
	}, func(attempt int, err error, wait time.Duration) {
		c.Log.Printf("report ready, attempt %d: %v; retrying in %s", attempt, err, wait.Round(time.Millisecond))
	})
}

// serve logs a heartbeat until ctx ends.
func (c *core0) serve(ctx context.Context, start time.Time) int {
	tick := time.NewTicker(c.Heartbeat)
	defer tick.Stop()
	var crash <-chan time.Time
	if c.CrashAfter > 0 {
		t := time.NewTimer(c.CrashAfter)
		defer t.Stop()
		crash = t.C
	}
	for {
		select {
		case <-ctx.Done():
			c.Log.Printf("stopping")
			return exitOK
		case <-tick.C:
			c.Log.Printf("heartbeat, up %s", c.Now().Sub(start).Round(time.Second))
		case <-crash:
			c.Log.Printf("crashing on purpose (--crash-after %s)", c.CrashAfter)
			c.kill()
		}
	}
}

func (c *core0) kill() {
	if c.Kill != nil {
		c.Kill()
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}
