package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zeroboot/zeroboot/pkg/chunkcache"
	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/fetch"
	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/handoff"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/supervise"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

// components fetches every component of the verified release into a fresh
// tmpfs root. Each attempt starts from an empty root, so a half-written
// component from a failed attempt is never used.
func (n *node) components(ctx context.Context) error {
	root := n.root()
	if n.rootMounted {
		if err := root.Release(); err != nil {
			return err
		}
		n.rootMounted = false
	}
	if err := root.Prepare(); err != nil {
		return err
	}
	n.rootMounted = true
	src := &fetch.HTTP{URLs: n.boot.Stores, Client: n.client.HTTP, Log: n.log.Warn}
	var chunks flist.ChunkSource = src
	if dev, cache := n.openCache(); cache != nil {
		defer n.closeCache(dev, cache)
		chunks = chunkcache.Source{Cache: cache, Next: src}
	}
	for _, c := range n.rel.Components {
		dir, err := root.ComponentDir(c.Mount)
		if err != nil {
			return fmt.Errorf("component %s: %w", c.Name, err)
		}
		meta, err := src.FlistBytes(ctx, c.Flist)
		if err != nil {
			return fmt.Errorf("component %s: %w", c.Name, err)
		}
		fl, err := flist.Decode(meta)
		if err != nil {
			return fmt.Errorf("component %s: flist %s: %w", c.Name, c.Flist, err)
		}
		// Setuid files and device nodes only where the signed release
		// allows them for this component.
		pol := flist.Policy{AllowSetuid: c.AllowSetuid, AllowDevices: c.AllowDevices}
		x := &flist.Extractor{Source: chunks, Chown: true, Policy: pol, Progress: n.progress(c.Name)}
		if err := x.Extract(ctx, fl, dir); err != nil {
			return fmt.Errorf("component %s: %w", c.Name, err)
		}
		if err := n.measured.Measure(measure.TypeComponent, measure.ComponentValue(c.Name, c.Flist.String(), c.Mount)); err != nil {
			return err
		}
		n.log.Info(fmt.Sprintf("component %s: %s verified and written to %s", c.Name, c.Flist.Short(), c.Mount))
	}
	return nil
}

// openCache opens zeroboot.cache, if given. A cache that cannot be used
// is a warning: the components come from the network.
func (n *node) openCache() (string, *chunkcache.Cache) {
	dev, wipe, from := n.cfg.Cache, n.cfg.CacheWipe, "zeroboot.cache"
	if c := n.boot.Cache; dev == "" && c != nil {
		// The registry checked the device's grammar, and so did the
		// client when the answer arrived.
		dev, wipe, from = c.Device, c.Wipe, "the farm's setting"
	}
	if dev == "" {
		return "", nil
	}
	c, err := chunkcache.Open(dev, chunkcache.Options{Wipe: wipe, Log: n.log.Warn})
	if err != nil {
		n.log.Warn("chunk cache not used, fetching every chunk", "from", from, "err", err)
		return "", nil
	}
	s := c.Stats()
	n.log.Info(fmt.Sprintf("chunk cache %s (from %s): %d entries", dev, from, s.Entries))
	return dev, c
}

func (n *node) closeCache(dev string, c *chunkcache.Cache) {
	s := c.Stats()
	n.log.Info(fmt.Sprintf("chunk cache %s: %d hits (%d bytes), %d stored, %d corrupt found, %d entries",
		dev, s.Hits, s.BytesRead, s.Puts, s.Corrupt, s.Entries))
	if err := c.Close(); err != nil {
		n.log.Warn("chunk cache", "err", err)
	}
}

func (n *node) root() *handoff.Root { return &handoff.Root{Dir: newRoot} }

// progress prints at most one line a second per component.
func (n *node) progress(name string) func(done, total int64) {
	return flist.Throttled(time.Second, func(done, total int64) {
		n.log.Info(fmt.Sprintf("component %s: %d/%d bytes", name, done, total))
	})
}

// handoff checks the entrypoint, binds the kernel filesystems into the new
// root and prepares what Core-0 reads under /run/zeroboot.
func (n *node) handoff(context.Context) error {
	// Hash what the chroot will execute: after the binds, resolved inside
	// the new root, and run that very file.
	e, err := n.root().BindEntrypoint(n.rel.Entrypoint.Path)
	if err != nil {
		return err
	}
	n.entry = e
	services, err := n.findServices()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	// Core-0 lives in the new root and sees PID 1's /run, not its /etc.
	for _, f := range []struct {
		src, dst string
		optional bool // DHCP may name no DNS server
	}{{caPath, "ca.pem", false}, {"/etc/resolv.conf", "resolv.conf", true}} {
		b, err := os.ReadFile(f.src)
		if f.optional && errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(path.Join(runDir, f.dst), b, 0o644); err != nil {
			return fmt.Errorf("write %s/%s: %w", runDir, f.dst, err)
		}
	}
	n.info = handoff.BootInfo{
		NodeID:           n.ident.NodeID,
		Farm:             n.cfg.Farm,
		Registry:         n.boot.Registry,
		RegistryProtocol: n.boot.Protocol,
		Services:         services,
		Token:            n.boot.Token,
		ReleaseChannel:   n.rel.Channel,
		ReleaseVersion:   n.rel.Version,
		Entrypoint:       e.Path,
		EntrypointDigest: e.Digest.String(),
		BootedAt:         n.clock.Now().UTC(),
		IdentityKind:     n.kind,
		Measured:         n.measured.Measured(),
		ReadyFile:        handoff.ReadyFile,
		FellBackFrom:     n.fellBackFrom(),
	}
	for _, c := range n.rel.Components {
		n.info.Components = append(n.info.Components, handoff.ComponentInfo{Name: c.Name, Flist: c.Flist.String(), Mount: c.Mount})
	}
	return nil
}

// findServices hashes every service's executable in the finished root, so
// Core-0 can refuse one that changed after PID 1 verified its component.
func (n *node) findServices() ([]handoff.ServiceInfo, error) {
	var out []handoff.ServiceInfo
	for _, s := range n.rel.Services {
		e, err := n.root().FindService(s.Name, s.Exec.Path)
		if err != nil {
			return nil, err
		}
		out = append(out, handoff.ServiceInfo{Service: s, File: e.File, Digest: e.Digest.String()})
	}
	return out, nil
}

// announce shows the boot timeline and sends it to the registry before
// Core-0 starts, so the registry never sees PID 1's report after Core-0's.
func (n *node) announce() {
	steps := n.tl.Steps()
	fmt.Fprintf(n.out, "\nzeroboot: boot timeline (ms since PID 1 started)\n%s\n", timeline.Table(steps))
	rep := n.statusReport("booting", "")
	n.addEvidence(rep)
	n.send(rep, "booting")
}

// core0Command is called by the supervisor for every start: boot.json is
// rewritten with the timeline so far and the number of earlier starts in
// this boot, so a restarted Core-0 sees both.
func (n *node) core0Command(restarts int) *exec.Cmd {
	n.info.Restarts = restarts
	n.info.Timeline = n.tl.Steps()
	n.info.Events = n.measured.Events()
	if err := handoff.WriteBootInfo(bootInfo, n.info); err != nil {
		n.log.Error("write boot.json", "err", err)
	}
	return n.root().Command(n.entry, n.rel.Entrypoint.Args, n.rel.Entrypoint.Env)
}

// flush writes out queued console lines and syncs before a reboot, so the
// last words of a node reach the console.
func (n *node) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if h, ok := n.logs.cur().(*console.Handler); ok {
		h.Flush(ctx)
	}
	n.out.Flush(ctx)
	unix.Sync()
}

// handleSignals turns Ctrl-Alt-Del and SIGTERM into an orderly reboot and
// SIGUSR2 into a power-off, from the first step on: a node stuck in a
// failed state must still reboot cleanly. Core-0 is stopped first once it
// runs.
func (n *node) handleSignals() {
	if err := supervise.EnableCtrlAltDelSignal(); err != nil {
		n.log.Warn("Ctrl-Alt-Del stays an immediate reboot", "err", err)
	}
	stop := func(timeout time.Duration) error {
		if sup := n.sup.Load(); sup != nil {
			return sup.Stop(timeout)
		}
		return nil
	}
	sd := &supervise.Shutdown{Stop: stop, Log: n.log, Sync: n.flush}
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, supervise.Signals()...)
	go func() {
		for sig := range ch {
			if err := sd.Handle(sig); err != nil {
				n.log.Error("shutdown failed; still running", "signal", sig.String(), "err", err)
			}
		}
	}()
}
