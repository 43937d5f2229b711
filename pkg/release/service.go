package release

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// A release may declare services for Core-0 to run (format
// FormatServices). PID 1 does not run them: it hashes each service's
// executable in the finished root and hands the declarations to Core-0 in
// boot.json (docs/services.md).
type Service struct {
	Name string `json:"name"`
	// Component is the component whose mount holds Exec.Path, so the
	// binary is bound to one flist digest of this release.
	Component string     `json:"component"`
	Exec      Entrypoint `json:"exec"`
	// After names services that must be ready before this one starts.
	After []string `json:"after,omitempty"`
	// Optional services do not hold back the node's readiness.
	Optional bool `json:"optional,omitempty"`
	// Restart is RestartAlways (empty means it), RestartOnFailure or
	// RestartNever.
	Restart     string     `json:"restart,omitempty"`
	Ready       *Probe     `json:"ready,omitempty"`
	StopTimeout Duration   `json:"stop_timeout,omitempty"`
	CrashLoop   *CrashLoop `json:"crash_loop,omitempty"`
}

// Restart policies.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// Probe says when a started service is ready: exactly one of Exec (a
// command that exits 0), TCP (host:port accepts a connection), HTTP (a
// GET answers 2xx) or Notify (the service creates the file named by
// $ZEROBOOT_NOTIFY). No probe: ready once started.
type Probe struct {
	Exec     []string `json:"exec,omitempty"`
	TCP      string   `json:"tcp,omitempty"`
	HTTP     string   `json:"http,omitempty"`
	Notify   bool     `json:"notify,omitempty"`
	Timeout  Duration `json:"timeout,omitempty"`
	Interval Duration `json:"interval,omitempty"`
}

// CrashLoop overrides how many exits within a window make a crash loop.
type CrashLoop struct {
	Exits  int      `json:"exits"`
	Window Duration `json:"window"`
}

// Duration is a time.Duration written as Go's duration text ("30s"), so
// a signed document reads the way an operator wrote it.
type Duration time.Duration

// MarshalJSON writes d as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads Go's duration text.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", clip(s), err)
	}
	*d = Duration(v)
	return nil
}

// Limits on services, shared by the release, boot.json and the registry's
// status reports.
const (
	MaxServices = 64
	// A service's output as Core-0 keeps it and reports it: at most
	// MaxServiceOutput lines of at most MaxServiceLine bytes.
	MaxServiceOutput = 40
	MaxServiceLine   = 512
	MaxAfter         = 16
	maxProbeTimeout  = time.Hour
	minProbeEvery    = 10 * time.Millisecond
	maxStopTimeout   = 10 * time.Minute
	maxCrashExits    = 1000
	maxCrashWindow   = 24 * time.Hour
)

// CheckServiceName accepts a service name: [a-z0-9._-]{1,64}, not "." or
// "..", the grammar of every name in a release. The registry checks
// reported services with it too.
func CheckServiceName(s string) error { return checkName("service name", s) }

// checkServices validates the services of r against its components.
func (r *Release) checkServices() error {
	if len(r.Services) == 0 {
		return nil
	}
	if r.Format != FormatServices {
		return fmt.Errorf("release: services need format %q, not %q", FormatServices, clip(r.Format))
	}
	if len(r.Services) > MaxServices {
		return fmt.Errorf("release: %d services, at most %d", len(r.Services), MaxServices)
	}
	mounts := make(map[string]string, len(r.Components))
	for _, c := range r.Components {
		mounts[c.Name] = c.Mount
	}
	names := make(map[string]bool, len(r.Services))
	for i, s := range r.Services {
		if err := CheckServiceName(s.Name); err != nil {
			return fmt.Errorf("%w (service %d)", err, i)
		}
		if names[s.Name] {
			return fmt.Errorf("release: service name %q appears twice", s.Name)
		}
		names[s.Name] = true
		if err := s.check(mounts); err != nil {
			return fmt.Errorf("release: service %q: %w", s.Name, err)
		}
	}
	return CheckOrder(r.Services)
}

func (s *Service) check(mounts map[string]string) error {
	m, ok := mounts[s.Component]
	if !ok {
		return fmt.Errorf("component %q is not a component of this release", clip(s.Component))
	}
	if err := s.Exec.check("exec"); err != nil {
		return strip(err)
	}
	if !inside(s.Exec.Path, m) {
		return fmt.Errorf("exec %s is not under component %s's mount %s", clip(s.Exec.Path), s.Component, m)
	}
	switch s.Restart {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		return fmt.Errorf("restart %q: want %q, %q or %q", clip(s.Restart), RestartAlways, RestartOnFailure, RestartNever)
	}
	if len(s.After) > MaxAfter {
		return fmt.Errorf("%d after entries, at most %d", len(s.After), MaxAfter)
	}
	if err := checkSpan("stop_timeout", s.StopTimeout, 0, maxStopTimeout); err != nil {
		return err
	}
	if s.CrashLoop != nil {
		if s.CrashLoop.Exits < 1 || s.CrashLoop.Exits > maxCrashExits {
			return fmt.Errorf("crash_loop exits %d: want 1 to %d", s.CrashLoop.Exits, maxCrashExits)
		}
		if w := time.Duration(s.CrashLoop.Window); w < time.Second || w > maxCrashWindow {
			return fmt.Errorf("crash_loop window %s: want 1s to %s", w, maxCrashWindow)
		}
	}
	if s.Ready != nil {
		return s.Ready.check()
	}
	return nil
}

func (p *Probe) check() error {
	kinds := 0
	for _, set := range []bool{len(p.Exec) > 0, p.TCP != "", p.HTTP != "", p.Notify} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return errors.New("ready: want exactly one of exec, tcp, http, notify")
	}
	if err := checkSpan("ready timeout", p.Timeout, 0, maxProbeTimeout); err != nil {
		return err
	}
	if p.Interval != 0 {
		if err := checkSpan("ready interval", p.Interval, minProbeEvery, maxProbeTimeout); err != nil {
			return err
		}
	}
	switch {
	case len(p.Exec) > 0:
		return checkProbeExec(p.Exec)
	case p.TCP != "":
		return checkHostPort(p.TCP)
	case p.HTTP != "":
		return checkProbeURL(p.HTTP)
	}
	return nil
}

func checkProbeExec(argv []string) error {
	if len(argv) > MaxArgs {
		return fmt.Errorf("ready exec: %d words, at most %d", len(argv), MaxArgs)
	}
	if !path.IsAbs(argv[0]) {
		return fmt.Errorf("ready exec %q: want an absolute path", clip(argv[0]))
	}
	for i, a := range argv {
		if err := checkString(fmt.Sprintf("ready exec word %d", i), a); err != nil {
			return strip(err)
		}
	}
	return nil
}

func checkHostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil || host == "" {
		return fmt.Errorf("ready tcp %q: want host:port", clip(hp))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("ready tcp %q: port must be 1 to 65535", clip(hp))
	}
	return nil
}

func checkProbeURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(s) > maxPathLen {
		return fmt.Errorf("ready http %q: want an http:// or https:// URL with a host", clip(s))
	}
	return nil
}

func checkSpan(what string, d Duration, lo, hi time.Duration) error {
	if v := time.Duration(d); v != 0 && (v < lo || v > hi) {
		return fmt.Errorf("%s %s: want %s to %s", what, v, lo, hi)
	}
	if d < 0 {
		return fmt.Errorf("%s %s: negative", what, time.Duration(d))
	}
	return nil
}

// CheckOrder refuses After entries that name no service of ss, and
// dependency cycles, naming the cycle ("a -> b -> a"). Core-0 runs the
// same check on what it is given.
func CheckOrder(ss []Service) error {
	after := make(map[string][]string, len(ss))
	for _, s := range ss {
		after[s.Name] = s.After
	}
	for _, s := range ss {
		for _, a := range s.After {
			if _, ok := after[a]; !ok {
				return fmt.Errorf("release: service %q: after %q: no such service", s.Name, clip(a))
			}
			if a == s.Name {
				return fmt.Errorf("release: service %q: after itself", s.Name)
			}
		}
	}
	const (
		unseen = iota
		onPath
		done
	)
	state := make(map[string]int, len(ss))
	var stack []string
	var visit func(n string) error
	visit = func(n string) error {
		switch state[n] {
		case done:
			return nil
		case onPath:
			i := indexOf(stack, n)
			return fmt.Errorf("release: services: cycle %s -> %s", strings.Join(stack[i:], " -> "), n)
		}
		state[n] = onPath
		stack = append(stack, n)
		for _, a := range after[n] {
			if err := visit(a); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		return nil
	}
	for _, s := range ss {
		if err := visit(s.Name); err != nil {
			return err
		}
	}
	return nil
}

func indexOf(ss []string, s string) int {
	for i, v := range ss {
		if v == s {
			return i
		}
	}
	return -1
}

// inside reports whether p is mount or below it.
func inside(p, mount string) bool {
	return mount == "/" || p == mount || strings.HasPrefix(p, mount+"/")
}

// strip drops the "release: " prefix of an error from a shared check, for
// use under a "release: service X: " prefix.
func strip(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "release: "))
}
