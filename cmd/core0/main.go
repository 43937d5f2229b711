// Command core0 is zeroboot's default Core-0: the program a release names
// as its entrypoint and PID 1 starts, chrooted into the assembled root, and
// supervises. It checks that it is the executable the release promised,
// checks every service's binary against the digest PID 1 recorded, runs the
// release's services in dependency order (pkg/services), and reports the
// node's state and each service's to the registry: at once on every change
// and every --report-every as a heartbeat. The node is ready when every
// required service is. On SIGTERM it stops the services, dependents first.
// A release without services makes the node ready at once (docs/services.md).
//
// Exit status: 0 after SIGTERM or SIGINT; 2 when boot.json, the CA or the
// flags are unusable; 125 (handoff.ExitNoRestart: PID 1 does not restart
// it) when its own digest does not match boot.json or the services cannot
// be run as declared, since a restart would run the same thing.
//
// boot.json's restarts field says how many times PID 1 restarted it in
// this boot; a restarted Core-0 logs it.
//
// --crash-after is for demos and tests only: it makes Core-0 kill itself
// with SIGKILL that long after reporting ready, to show that PID 1
// restarts it with backoff.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/handoff"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/services"
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
	BootInfo    string        // path of boot.json
	Exe         string        // the running executable, /proc/self/exe
	CA          string        // registry CA, PEM
	Heartbeat   time.Duration // interval between heartbeat lines
	ReportEvery time.Duration // interval between heartbeat reports to the registry
	// Root is where the root boot.json's paths name lie: "" in the
	// chroot PID 1 made; a temporary directory in tests.
	Root string
	// RunDir holds the services' notify files.
	RunDir string
	// Subreaper makes Core-0 the reaper of what its services leave
	// behind (the real main only: it changes the whole process).
	Subreaper  bool
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
		BootInfo:  handoff.BootInfoPath,
		Exe:       "/proc/self/exe",
		RunDir:    "/run/zeroboot/services",
		Subreaper: true,
		Backoff:   backoff.Default,
		Log:       log.New(os.Stderr, "core0: ", 0),
		Now:       time.Now,
	}
	if p := getenv(handoff.EnvBootInfo); p != "" {
		c.BootInfo = p
	}
	fs.StringVar(&c.CA, "ca", handoff.CAPath, "registry CA certificate (PEM)")
	fs.DurationVar(&c.Heartbeat, "heartbeat", 10*time.Second, "interval between heartbeat lines")
	fs.DurationVar(&c.ReportEvery, "report-every", time.Minute, "interval between heartbeat reports to the registry (changes are reported at once)")
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
	if c.ReportEvery <= 0 {
		return nil, fmt.Errorf("--report-every %v: must be positive", c.ReportEvery)
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
	// A report the registry can never accept (no token in boot.json) is
	// an error now, not a retry loop.
	probe := registry.StatusReport{NodeID: bi.NodeID, Source: registry.SourceCore0, State: registry.StateReady, Token: bi.Token}
	if err := probe.Validate(); err != nil {
		c.Log.Printf("status report: %v", err)
		return exitSetup
	}
	specs := c.specs(bi)
	if err := services.Validate(specs); err != nil {
		c.Log.Printf("refusing to run: %v; exiting %d so that PID 1 does not restart me", err, exitMismatch)
		return exitMismatch
	}
	c.selfVerify(specs)
	return c.supervise(ctx, bi, client, specs, start)
}

// supervise runs the services and the reports until ctx ends, then stops
// the services, dependents first.
func (c *core0) supervise(ctx context.Context, bi handoff.BootInfo, client *registry.Client, specs []services.Spec, start time.Time) int {
	mgr := &services.Manager{
		Specs: specs, Console: c.Log.Writer(), RunDir: c.RunDir, Subreaper: c.Subreaper,
		// State changes reach the console through OnChange; the
		// manager's own log adds only what goes wrong.
		Log: slog.New(slog.NewTextHandler(c.Log.Writer(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	rep := newReporter(c, client, bi, mgr, len(specs), start)
	mgr.OnChange = func(s services.Status) {
		line := fmt.Sprintf("service %s: %s", s.Name, s.State)
		if s.Reason != "" {
			line += ": " + s.Reason
		}
		c.Log.Print(line)
		rep.changed()
	}
	svcCtx, stopServices := context.WithCancel(context.Background())
	defer stopServices()
	managed := make(chan error, 1)
	go func() { managed <- mgr.Run(svcCtx) }()
	repCtx, stopReports := context.WithCancel(ctx)
	reported := make(chan struct{})
	go func() { rep.run(repCtx); close(reported) }()
	go c.logReady(repCtx, mgr, len(specs), start)

	code := c.serve(ctx, start, mgr, rep.ready)
	stopReports()
	<-reported
	stopServices()
	if err := <-managed; err != nil {
		c.Log.Printf("services: %v", err)
	}
	return code
}

// logReady says once how long the services took to be ready: the figure
// from Core-0's start to node ready.
func (c *core0) logReady(ctx context.Context, mgr *services.Manager, n int, start time.Time) {
	if n == 0 {
		return
	}
	if err := mgr.WaitReady(ctx); err != nil {
		if ctx.Err() == nil {
			c.Log.Printf("services cannot all be ready: %v", err)
		}
		return
	}
	c.Log.Printf("services: all %d required ready %s after Core-0 started", n, c.Now().Sub(start).Round(time.Millisecond))
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

// serve logs a heartbeat until ctx ends.
// --crash-after counts from the first ready report the registry took.
func (c *core0) serve(ctx context.Context, start time.Time, mgr *services.Manager, ready <-chan struct{}) int {
	tick := time.NewTicker(c.Heartbeat)
	defer tick.Stop()
	var crash <-chan time.Time
	if c.CrashAfter <= 0 {
		ready = nil
	}
	for {
		select {
		case <-ctx.Done():
			c.Log.Printf("stopping")
			return exitOK
		case <-ready:
			ready = nil
			t := time.NewTimer(c.CrashAfter)
			defer t.Stop()
			crash = t.C
		case <-tick.C:
			c.Log.Printf("heartbeat, up %s%s", c.Now().Sub(start).Round(time.Second), summary(mgr.Statuses()))
		case <-crash:
			c.Log.Printf("crashing on purpose (--crash-after %s)", c.CrashAfter)
			c.kill()
		}
	}
}

// summary is the heartbeat's tail: how many services are ready.
func summary(ss []services.Status) string {
	if len(ss) == 0 {
		return ""
	}
	ready := 0
	for _, s := range ss {
		if s.State == services.StateReady {
			ready++
		}
	}
	return fmt.Sprintf(", %d/%d services ready", ready, len(ss))
}

func (c *core0) kill() {
	if c.Kill != nil {
		c.Kill()
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}
