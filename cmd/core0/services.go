package main

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/handoff"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/services"
)

// specs turns boot.json's services into the manager's, each with a Verify
// that hashes its binary again before every start.
func (c *core0) specs(bi handoff.BootInfo) []services.Spec {
	comps := make(map[string]handoff.ComponentInfo, len(bi.Components))
	for _, ci := range bi.Components {
		comps[ci.Name] = ci
	}
	out := make([]services.Spec, 0, len(bi.Services))
	for _, s := range bi.Services {
		sp := services.Spec{
			Name: s.Name,
			// The file PID 1 hashed, symlinks resolved: the bytes
			// verified are the bytes run.
			Path:     filepath.Join("/", c.Root, s.File),
			Args:     s.Exec.Args,
			Env:      s.Exec.Env,
			After:    s.After,
			Optional: s.Optional,
			Restart:  restartPolicy(s.Restart),
			Ready:    probe(s.Ready),
			Verify:   c.verifier(comps, s),
		}
		sp.StopTimeout = time.Duration(s.StopTimeout)
		if cl := s.CrashLoop; cl != nil {
			sp.CrashLoopExits, sp.CrashLoopWindow = cl.Exits, time.Duration(cl.Window)
		}
		out = append(out, sp)
	}
	return out
}

func restartPolicy(r string) services.Restart {
	switch r {
	case release.RestartOnFailure:
		return services.RestartOnFailure
	case release.RestartNever:
		return services.RestartNever
	}
	return services.RestartAlways
}

func probe(p *release.Probe) services.Probe {
	if p == nil {
		return services.Probe{}
	}
	out := services.Probe{Timeout: time.Duration(p.Timeout), Interval: time.Duration(p.Interval)}
	switch {
	case len(p.Exec) > 0:
		out.Kind, out.Command = services.ProbeExec, p.Exec
	case p.TCP != "":
		out.Kind, out.Address = services.ProbeTCP, p.TCP
	case p.HTTP != "":
		out.Kind, out.URL = services.ProbeHTTP, p.HTTP
	case p.Notify:
		out.Kind = services.ProbeNotify
	}
	return out
}

// verifier is a service's self-verification: its component is one PID 1
// verified and measured, its executable lies in that component's mount,
// and the file still has the digest PID 1 recorded after the binds.
func (c *core0) verifier(comps map[string]handoff.ComponentInfo, s handoff.ServiceInfo) func() error {
	return func() error {
		ci, ok := comps[s.Component]
		if !ok {
			return fmt.Errorf("component %s is not one PID 1 verified (boot.json lists %d components)", s.Component, len(comps))
		}
		if !under(s.File, ci.Mount) {
			return fmt.Errorf("%s is not under component %s's mount %s", s.File, s.Component, ci.Mount)
		}
		want, err := digest.Parse(s.Digest)
		if err != nil {
			return fmt.Errorf("boot info digest of %s: %w", s.File, err)
		}
		got, err := handoff.FileDigest(filepath.Join(c.Root, s.File))
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s has digest %s, PID 1 verified %s (component %s, flist %s): the binary changed after verification", s.File, got, want, s.Component, ci.Flist)
		}
		return nil
	}
}

func under(p, mount string) bool {
	p, mount = path.Clean(p), path.Clean(mount)
	return mount == "/" || p == mount || strings.HasPrefix(p, mount+"/")
}

// selfVerify checks every service before anything starts and says on the
// console which one is refused and why; the manager checks again before
// each start and reports a refused service as failed with the reason.
func (c *core0) selfVerify(specs []services.Spec) (refused int) {
	for _, sp := range specs {
		if err := sp.Verify(); err != nil {
			c.Log.Printf("self-verification: service %s REFUSED: %v", sp.Name, err)
			refused++
		}
	}
	c.Log.Printf("self-verification: %d of %d services match what PID 1 verified", len(specs)-refused, len(specs))
	return refused
}

// nodeState is the node's state from its services: ready when the
// manager says every required one is; failed while a required one has
// failed or is crash-looping; booting otherwise, naming what it waits for.
func nodeState(ss []services.Status, ready bool) (state, reason string) {
	if ready {
		return registry.StateReady, ""
	}
	var failed, waiting []string
	for _, s := range ss {
		if s.Optional {
			continue
		}
		switch s.State {
		case services.StateFailed, services.StateCrashLooping:
			failed = append(failed, fmt.Sprintf("service %s %s: %s", s.Name, s.State, s.Reason))
		case services.StateReady:
		default:
			waiting = append(waiting, fmt.Sprintf("%s (%s)", s.Name, s.State))
		}
	}
	if len(failed) > 0 {
		return registry.StateFailed, clipReason(strings.Join(failed, "; "))
	}
	return registry.StateBooting, clipReason("waiting for services: " + strings.Join(waiting, ", "))
}

// clipReason fits s in a report's reason: cut on a character boundary,
// with the "..." of the cut inside the limit, so the registry never
// refuses the whole report for one long reason.
func clipReason(s string) string { return console.Sanitize(s, registry.MaxReasonLen-3) }

// serviceStates is what a protocol 5 report carries: every service, with
// its last lines only when it is not ready, to keep reports small.
func serviceStates(ss []services.Status) []registry.ServiceState {
	out := make([]registry.ServiceState, 0, len(ss))
	for _, s := range ss {
		st := registry.ServiceState{Name: s.Name, State: string(s.State), Reason: clipReason(s.Reason),
			Restarts: s.Restarts, Optional: s.Optional, Since: s.Since.UTC()}
		if s.State != services.StateReady {
			lines := s.Output
			if n := len(lines); n > release.MaxServiceOutput {
				lines = lines[n-release.MaxServiceOutput:]
			}
			for _, l := range lines {
				st.Output = append(st.Output, console.Sanitize(l, release.MaxServiceLine-3))
			}
		}
		out = append(out, st)
	}
	return out
}
