package release

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func serviceRelease() *Release {
	r := testRelease()
	r.Services = []Service{
		{Name: "db", Component: "core0", Exec: Entrypoint{Path: "/opt/core0/bin/db", Args: []string{"-p", "5432"}},
			Ready: &Probe{TCP: "127.0.0.1:5432", Timeout: Duration(20 * time.Second)}},
		{Name: "api", Component: "base", Exec: Entrypoint{Path: "/usr/bin/api"}, After: []string{"db"},
			Restart: RestartOnFailure, Ready: &Probe{HTTP: "http://127.0.0.1:8080/healthz"},
			CrashLoop: &CrashLoop{Exits: 3, Window: Duration(time.Minute)}},
		{Name: "log", Component: "base", Exec: Entrypoint{Path: "/usr/bin/log"}, Optional: true,
			Ready: &Probe{Notify: true}, StopTimeout: Duration(3 * time.Second)},
	}
	return r
}

// A release with services is written in FormatServices and reads back
// the same; one without stays in Format, so older nodes boot it.
func TestServicesFormat(t *testing.T) {
	b, err := serviceRelease().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"format": "`+FormatServices+`"`) || !strings.Contains(string(b), `"timeout": "20s"`) {
		t.Fatalf("document:\n%s", b)
	}
	r, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(Marshal) = %v", err)
	}
	if len(r.Services) != 3 || r.Services[1].CrashLoop.Window != Duration(time.Minute) || !r.Services[2].Ready.Notify {
		t.Fatalf("round trip changed the services: %+v", r.Services)
	}
	b, err = testRelease().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"format": "`+Format+`"`) || strings.Contains(string(b), "services") {
		t.Fatalf("a release without services:\n%s", b)
	}
}

func TestServicesRefused(t *testing.T) {
	tests := []struct {
		name string
		edit func(r *Release)
		want string
	}{
		{"services in format 2", func(r *Release) { r.Format = Format }, `services need format "zeroboot-release/3"`},
		{"format 3 without services", func(r *Release) { r.Services = nil }, "declares no services"},
		{"duplicate name", func(r *Release) { r.Services[1].Name = "db" }, `service name "db" appears twice`},
		{"bad name", func(r *Release) { r.Services[0].Name = "DB" }, "outside [a-z0-9._-]"},
		{"unknown component", func(r *Release) { r.Services[0].Component = "nope" }, `component "nope" is not a component`},
		{"exec outside its component", func(r *Release) { r.Services[0].Exec.Path = "/usr/bin/db" }, "not under component core0's mount /opt/core0"},
		{"exec under a prefix only", func(r *Release) { r.Services[0].Exec.Path = "/opt/core0x/db" }, "not under component core0's mount"},
		{"exec relative", func(r *Release) { r.Services[0].Exec.Path = "bin/db" }, "exec path"},
		{"exec in /run", func(r *Release) { r.Services[1].Exec.Path = "/run/api" }, "inside /run"},
		{"exec env", func(r *Release) { r.Services[0].Exec.Env = []string{"1X=y"} }, "exec env 0"},
		{"unknown after", func(r *Release) { r.Services[1].After = []string{"cache"} }, `after "cache": no such service`},
		{"after itself", func(r *Release) { r.Services[0].After = []string{"db"} }, "after itself"},
		{"cycle", func(r *Release) { r.Services[0].After = []string{"log"}; r.Services[2].After = []string{"api"} },
			"cycle db -> log -> api -> db"},
		{"restart", func(r *Release) { r.Services[0].Restart = "sometimes" }, `restart "sometimes"`},
		{"two probes", func(r *Release) { r.Services[0].Ready.Notify = true }, "exactly one of"},
		{"empty probe", func(r *Release) { r.Services[0].Ready = &Probe{} }, "exactly one of"},
		{"tcp without port", func(r *Release) { r.Services[0].Ready.TCP = "127.0.0.1" }, "want host:port"},
		{"tcp port 0", func(r *Release) { r.Services[0].Ready.TCP = "127.0.0.1:0" }, "port must be 1 to 65535"},
		{"http scheme", func(r *Release) { r.Services[1].Ready.HTTP = "ftp://x/" }, "http:// or https://"},
		{"exec probe relative", func(r *Release) { r.Services[0].Ready = &Probe{Exec: []string{"check"}} }, "absolute path"},
		{"probe timeout", func(r *Release) { r.Services[0].Ready.Timeout = Duration(2 * time.Hour) }, "ready timeout 2h0m0s"},
		{"probe interval", func(r *Release) { r.Services[0].Ready.Interval = Duration(time.Millisecond) }, "ready interval 1ms"},
		{"negative stop", func(r *Release) { r.Services[0].StopTimeout = Duration(-time.Second) }, "stop_timeout"},
		{"crash loop exits", func(r *Release) { r.Services[1].CrashLoop.Exits = 0 }, "crash_loop exits 0"},
		{"crash loop window", func(r *Release) { r.Services[1].CrashLoop.Window = 0 }, "crash_loop window"},
		{"too many", func(r *Release) {
			for len(r.Services) <= MaxServices {
				s := r.Services[0]
				s.Name = "s" + strings.Repeat("x", len(r.Services))
				r.Services = append(r.Services, s)
			}
		}, "at most 64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := serviceRelease()
			r.Format = FormatServices
			tc.edit(r)
			err := r.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// Durations are Go's duration text on the wire; anything else is refused
// when the document is read.
func TestDurationJSON(t *testing.T) {
	var p Probe
	if err := json.Unmarshal([]byte(`{"tcp":"a:1","timeout":"1m30s"}`), &p); err != nil || p.Timeout != Duration(90*time.Second) {
		t.Fatalf("got %v, %v", p.Timeout, err)
	}
	for _, in := range []string{`{"timeout":30}`, `{"timeout":"soon"}`} {
		if err := json.Unmarshal([]byte(in), &p); err == nil {
			t.Errorf("%s: accepted", in)
		}
	}
}
