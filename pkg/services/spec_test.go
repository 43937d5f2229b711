package services

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := func(name string, after ...string) Spec {
		return Spec{Name: name, Path: "/bin/true", After: after}
	}
	probe := func(p Probe) Spec {
		s := ok("p")
		s.Ready = p
		return s
	}
	tests := []struct {
		name  string
		specs []Spec
		want  []string // substrings of the error; none: valid
	}{
		{"empty", nil, nil},
		{"chain and diamond", []Spec{ok("a"), ok("b", "a"), ok("c", "a"), ok("d", "b", "c")}, nil},
		{"every probe kind", []Spec{
			probe(Probe{}),
			func() Spec {
				s := probe(Probe{Kind: ProbeExec, Command: []string{"/bin/true", "x"}})
				s.Name = "e"
				return s
			}(),
			func() Spec { s := probe(Probe{Kind: ProbeTCP, Address: "[::1]:80"}); s.Name = "t"; return s }(),
			func() Spec {
				s := probe(Probe{Kind: ProbeHTTP, URL: "http://127.0.0.1:8080/health"})
				s.Name = "h"
				return s
			}(),
			func() Spec {
				s := probe(Probe{Kind: ProbeNotify, Timeout: time.Second, Interval: time.Millisecond})
				s.Name = "n"
				return s
			}(),
		}, nil},
		{"two-cycle", []Spec{ok("a", "b"), ok("b", "a")}, []string{"services: cycle a -> b -> a"}},
		{"three-cycle behind a root", []Spec{ok("root"), ok("x", "root", "y"), ok("y", "z"), ok("z", "x")},
			[]string{"services: cycle x -> y -> z -> x"}},
		{"after itself", []Spec{ok("a", "a")}, []string{`"a": after itself`}},
		{"unknown dependency", []Spec{ok("a", "nope")}, []string{`services: a is after "nope", which is not declared`}},
		{"duplicate", []Spec{ok("a"), ok("a")}, []string{`"a" declared twice`}},
		{"bad names", []Spec{ok(""), ok("A"), ok("-x"), ok("a/b"), ok(strings.Repeat("a", 64))}, []string{
			`name ""`, `name "A"`, `name "-x"`, `name "a/b"`, `name "aaaa`}},
		{"relative path", []Spec{{Name: "a", Path: "bin/true"}}, []string{`path "bin/true"`}},
		{"unclean path", []Spec{{Name: "a", Path: "/bin/../bin/true"}}, []string{`not an absolute clean path`}},
		{"bad env", []Spec{{Name: "a", Path: "/bin/true", Env: []string{"NOEQUALS", EnvNotify + "=/x"}}},
			[]string{`env "NOEQUALS"`, `env "ZEROBOOT_NOTIFY=/x"`}},
		{"unknown restart", []Spec{{Name: "a", Path: "/bin/true", Restart: 7}}, []string{"restart restart(7): unknown"}},
		{"negative stop timeout", []Spec{{Name: "a", Path: "/bin/true", StopTimeout: -1}}, []string{"must not be negative"}},
		{"exec without command", []Spec{probe(Probe{Kind: ProbeExec})}, []string{"probe exec: command []"}},
		{"exec relative command", []Spec{probe(Probe{Kind: ProbeExec, Command: []string{"true"}})}, []string{"want an absolute clean path"}},
		{"tcp without port", []Spec{probe(Probe{Kind: ProbeTCP, Address: "localhost"})}, []string{"probe tcp: address \"localhost\""}},
		{"tcp port 0", []Spec{probe(Probe{Kind: ProbeTCP, Address: "localhost:0"})}, []string{"port 1-65535"}},
		{"http ftp", []Spec{probe(Probe{Kind: ProbeHTTP, URL: "ftp://x/"})}, []string{"probe http: url \"ftp://x/\""}},
		{"http with url and address", []Spec{probe(Probe{Kind: ProbeHTTP, URL: "http://x/", Address: "x:1"})},
			[]string{"probe http: address set, which only a tcp probe takes"}},
		{"none with a command", []Spec{probe(Probe{Command: []string{"/bin/true"}})}, []string{"probe none: command set"}},
		{"notify with url", []Spec{probe(Probe{Kind: ProbeNotify, URL: "http://x/"})}, []string{"probe notify: url set"}},
		{"unknown kind", []Spec{probe(Probe{Kind: 9})}, []string{"probe kind probe(9): unknown"}},
		{"negative probe timeout", []Spec{probe(Probe{Timeout: -time.Second})}, []string{"probe timeout and interval"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.specs)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, want it to say %q", err, w)
				}
			}
		})
	}
}

// Run refuses an invalid set before starting anything.
func TestRunValidates(t *testing.T) {
	m := &Manager{Specs: []Spec{{Name: "a", Path: "/bin/true", After: []string{"b"}}, {Name: "b", Path: "/bin/true", After: []string{"a"}}}, Reaper: reaper}
	err := m.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "services: cycle a -> b -> a") {
		t.Fatalf("Run = %v, want the cycle", err)
	}
	if m.Statuses() != nil {
		t.Errorf("Statuses after a refused Run = %v, want nil", m.Statuses())
	}
	noDir := &Manager{Specs: []Spec{{Name: "n", Path: "/bin/true", Ready: Probe{Kind: ProbeNotify}}}, Reaper: reaper}
	if err := noDir.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "RunDir") {
		t.Errorf("Run with a notify probe and no RunDir = %v, want an error naming RunDir", err)
	}
}
