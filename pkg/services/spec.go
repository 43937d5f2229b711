package services

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Spec declares one service. The zero values of the optional fields are
// the defaults.
type Spec struct {
	Name string
	// Path is the absolute path of the executable; Args follow argv[0],
	// which is Path. Env is the whole environment: nothing of Core-0's is
	// inherited, so a service runs the same whatever Core-0 was started
	// with. The working directory is /.
	Path string
	Args []string
	Env  []string
	// After names the services that must be ready before this one starts.
	After []string
	// Optional services do not count for Manager.Ready.
	Optional bool
	Restart  Restart
	Ready    Probe
	// StopTimeout is the wait between SIGTERM and SIGKILL when the service
	// is stopped; 0 means 10 s.
	StopTimeout time.Duration
	// CrashLoopExits exits within CrashLoopWindow make the state
	// StateCrashLooping; 0 means pkg/supervise's defaults (5 in 5 min).
	CrashLoopExits  int
	CrashLoopWindow time.Duration
	// Verify is called before every start, the first and each restart. An
	// error refuses the start for good: the state becomes StateFailed
	// with the error as reason, and nothing restarts it, since a restart
	// would run the same bytes.
	Verify func() error
}

// Restart says when a service that exited is started again.
type Restart int

const (
	// RestartAlways restarts after any exit (the default).
	RestartAlways Restart = iota
	// RestartOnFailure restarts unless the service exited 0.
	RestartOnFailure
	// RestartNever never restarts.
	RestartNever
)

func (r Restart) String() string {
	switch r {
	case RestartAlways:
		return "always"
	case RestartOnFailure:
		return "on-failure"
	case RestartNever:
		return "never"
	}
	return "restart(" + strconv.Itoa(int(r)) + ")"
}

// ProbeKind is how a service's readiness is checked.
type ProbeKind int

const (
	// ProbeNone: ready as soon as the process has started.
	ProbeNone ProbeKind = iota
	// ProbeExec: ready once Command (absolute path first) exits 0.
	ProbeExec
	// ProbeTCP: ready once a TCP connection to Address (host:port) opens.
	ProbeTCP
	// ProbeHTTP: ready once a GET of URL answers 2xx.
	ProbeHTTP
	// ProbeNotify: ready once the service has created the file named by
	// its environment variable ZEROBOOT_NOTIFY (under Manager.RunDir).
	ProbeNotify
)

func (k ProbeKind) String() string {
	switch k {
	case ProbeNone:
		return "none"
	case ProbeExec:
		return "exec"
	case ProbeTCP:
		return "tcp"
	case ProbeHTTP:
		return "http"
	case ProbeNotify:
		return "notify"
	}
	return "probe(" + strconv.Itoa(int(k)) + ")"
}

// Probe is a readiness check, repeated every Interval after each start
// until it passes or Timeout has gone by since the start.
type Probe struct {
	Kind    ProbeKind
	Command []string // ProbeExec
	Address string   // ProbeTCP
	URL     string   // ProbeHTTP
	// Timeout is how long after a start the service may take to become
	// ready (default 30 s). When it runs out the process group is killed
	// and the service restarted as after a crash.
	Timeout time.Duration
	// Interval is the wait between attempts (default 500 ms).
	Interval time.Duration
}

// EnvNotify is the environment variable that gives a ProbeNotify service
// the path of the file to create once it is ready.
const EnvNotify = "ZEROBOOT_NOTIFY"

const (
	defaultProbeTimeout  = 30 * time.Second
	defaultProbeInterval = 500 * time.Millisecond
	defaultStopTimeout   = 10 * time.Second
)

func (p Probe) timeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return defaultProbeTimeout
}

func (p Probe) interval() time.Duration {
	if p.Interval > 0 {
		return p.Interval
	}
	return defaultProbeInterval
}

func (s Spec) stopTimeout() time.Duration {
	if s.StopTimeout > 0 {
		return s.StopTimeout
	}
	return defaultStopTimeout
}

// nameRE is the grammar of service names: short, lower case, safe in a
// file name (the notify file), a log line and a registry report.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Validate checks a set of services: every spec on its own, names unique,
// every After name declared, and no dependency cycle. It reports every
// problem it finds, joined.
func Validate(specs []Spec) error {
	var errs []error
	index := map[string]int{}
	for i, s := range specs {
		if err := s.validate(); err != nil {
			errs = append(errs, err)
		}
		if _, dup := index[s.Name]; dup {
			errs = append(errs, fmt.Errorf("services: %q declared twice", s.Name))
		}
		index[s.Name] = i
	}
	unknown := false
	for _, s := range specs {
		for _, dep := range s.After {
			if _, ok := index[dep]; !ok {
				errs = append(errs, fmt.Errorf("services: %s is after %q, which is not declared", s.Name, dep))
				unknown = true
			}
		}
	}
	if !unknown {
		if cycle := findCycle(specs, index); cycle != nil {
			errs = append(errs, fmt.Errorf("services: cycle %s", strings.Join(cycle, " -> ")))
		}
	}
	return errors.Join(errs...)
}

func (s Spec) validate() error {
	var errs []error
	if !nameRE.MatchString(s.Name) {
		errs = append(errs, fmt.Errorf("name %q: want 1-63 of a-z 0-9 . _ -, starting with a letter or digit", s.Name))
	}
	if !absClean(s.Path) {
		errs = append(errs, fmt.Errorf("path %q: not an absolute clean path", s.Path))
	}
	for _, kv := range s.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || k == EnvNotify {
			errs = append(errs, fmt.Errorf("env %q: want NAME=value, NAME not %s", kv, EnvNotify))
		}
	}
	for _, dep := range s.After {
		if dep == s.Name {
			errs = append(errs, errors.New("after itself"))
		}
	}
	if s.Restart < RestartAlways || s.Restart > RestartNever {
		errs = append(errs, fmt.Errorf("restart %v: unknown", s.Restart))
	}
	if s.StopTimeout < 0 || s.CrashLoopExits < 0 || s.CrashLoopWindow < 0 {
		errs = append(errs, errors.New("stop timeout and crash-loop settings must not be negative"))
	}
	if err := s.Ready.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("services: %q: %w", s.Name, err)
	}
	return nil
}

// validate checks that exactly the fields of the probe's kind are set,
// so that a declaration that meant another kind is not silently ignored.
func (p Probe) validate() error {
	if p.Timeout < 0 || p.Interval < 0 {
		return errors.New("probe timeout and interval must not be negative")
	}
	if p.Kind < ProbeNone || p.Kind > ProbeNotify {
		return fmt.Errorf("probe kind %v: unknown", p.Kind)
	}
	fields := []struct {
		kind ProbeKind
		name string
		set  bool
	}{
		{ProbeExec, "command", len(p.Command) > 0},
		{ProbeTCP, "address", p.Address != ""},
		{ProbeHTTP, "url", p.URL != ""},
	}
	for _, f := range fields {
		if f.set && f.kind != p.Kind {
			return fmt.Errorf("probe %v: %s set, which only a %v probe takes", p.Kind, f.name, f.kind)
		}
	}
	switch p.Kind {
	case ProbeExec:
		if len(p.Command) == 0 || !absClean(p.Command[0]) {
			return fmt.Errorf("probe exec: command %q: want an absolute clean path first", p.Command)
		}
	case ProbeTCP:
		return checkAddress(p.Address)
	case ProbeHTTP:
		return checkURL(p.URL)
	}
	return nil
}

func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("probe tcp: address %q: %w", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
		return fmt.Errorf("probe tcp: address %q: want host:port, port 1-65535", addr)
	}
	return nil
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("probe http: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("probe http: url %q: want http(s)://host/..., no user info", raw)
	}
	return nil
}

func absClean(p string) bool {
	return filepath.IsAbs(p) && filepath.Clean(p) == p
}

// findCycle returns the first dependency cycle found, as a path that ends
// where it starts ("a", "b", "a"), or nil. Specs and After are walked in
// their declared order, so the cycle reported is stable.
func findCycle(specs []Spec, index map[string]int) []string {
	const (
		unseen = iota
		onPath
		done
	)
	mark := make([]int, len(specs))
	var path []string
	var visit func(i int) []string
	visit = func(i int) []string {
		mark[i] = onPath
		path = append(path, specs[i].Name)
		for _, dep := range specs[i].After {
			j := index[dep]
			switch mark[j] {
			case onPath:
				start := 0
				for path[start] != dep {
					start++
				}
				return append(append([]string(nil), path[start:]...), dep)
			case unseen:
				if c := visit(j); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		mark[i] = done
		return nil
	}
	for i := range specs {
		if mark[i] == unseen {
			if c := visit(i); c != nil {
				return c
			}
		}
	}
	return nil
}
