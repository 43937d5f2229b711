package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/handoff"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/services"
)

// serviceRoot writes shell-script services under root/opt/app and returns
// boot.json's services for them, with the digests PID 1 would record.
func serviceRoot(t *testing.T, root string, scripts map[string]string, decl []release.Service) []handoff.ServiceInfo {
	t.Helper()
	bin := filepath.Join(root, "opt", "app", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	var out []handoff.ServiceInfo
	for _, s := range decl {
		body := []byte("#!/bin/sh\n" + scripts[s.Name])
		if err := os.WriteFile(filepath.Join(bin, s.Name), body, 0o755); err != nil {
			t.Fatal(err)
		}
		s.Component = "app"
		s.Exec.Path = "/opt/app/bin/" + s.Name
		s.Exec.Env = append(s.Exec.Env, "PATH=/usr/bin:/bin")
		out = append(out, handoff.ServiceInfo{Service: s, File: s.Exec.Path, Digest: digest.Of(body).String()})
	}
	return out
}

// serviceCore is a Core-0 whose boot.json carries svcs and the registry
// protocol proto.
func serviceCore(t *testing.T, rsURL, ca string, proto int, svcs func(root string) []handoff.ServiceInfo) (*core0, *syncBuffer, string) {
	t.Helper()
	exe, bj := setup(t, []byte("core0 executable"), rsURL, false)
	bi, err := handoff.ReadBootInfo(bj)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	bi.RegistryProtocol = proto
	bi.Components = []handoff.ComponentInfo{{Name: "app", Flist: digest.Of([]byte("app")).String(), Mount: "/opt/app"}}
	bi.Services = svcs(root)
	if err := handoff.WriteBootInfo(bj, bi); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	c := testCore(exe, bj, ca, out)
	c.Root, c.RunDir = root, t.TempDir()
	return c, out, root
}

var threeServices = map[string]string{
	"db":  "echo db up; touch \"$ZEROBOOT_NOTIFY\"; exec sleep 60\n",
	"api": "echo api up; exec sleep 60\n",
	"log": "echo log up; exec sleep 60\n",
}

func threeDecl(dir string) []release.Service {
	return []release.Service{
		{Name: "db", Ready: &release.Probe{Notify: true}},
		{Name: "api", After: []string{"db"}, Ready: &release.Probe{Exec: []string{"/bin/test", "-d", dir}}},
		{Name: "log", Optional: true},
	}
}

// TestServicesReady: three services, one after another, come up in order;
// the node is reported ready with each service's state once all required
// ones are, and stopping Core-0 stops them.
func TestServicesReady(t *testing.T) {
	rs, ca := newRegistry(t, 0)
	c, out, _ := serviceCore(t, rs.URL, ca, registry.ProtocolServices, func(root string) []handoff.ServiceInfo {
		return serviceRoot(t, root, threeServices, threeDecl(root))
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- c.run(ctx) }()
	waitFor(t, out, "services: all 3 required ready")
	waitFor(t, out, "ready (node node-7, release 42): 3 services ready")
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d\n%s", code, out)
	}
	log := out.String()
	for _, w := range []string{"self-verification: 3 of 3 services match", "service db: ready", "service api: ready", "db: db up", "api: api up", "service api: stopped"} {
		if !strings.Contains(log, w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
	if strings.Index(log, "service db: ready") > strings.Index(log, "api: api up") {
		t.Errorf("api started before db was ready:\n%s", log)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	last := lastWithState(rs.all, "ready")
	if last == nil {
		t.Fatalf("no ready report among %v", rs.all)
	}
	ss, _ := last["services"].([]any)
	if len(ss) != 3 {
		t.Fatalf("ready report services: %v", last["services"])
	}
	for _, s := range ss {
		m := s.(map[string]any)
		if m["name"] != "log" && m["state"] != "ready" {
			t.Errorf("ready report with service %v", m)
		}
	}
}

func lastWithState(all []map[string]any, state string) map[string]any {
	for i := len(all) - 1; i >= 0; i-- {
		if all[i]["state"] == state {
			return all[i]
		}
	}
	return nil
}

// TestServiceBinaryChanged: a service whose binary differs from what PID 1
// hashed is never started; the console and the registry say which and why,
// and the node is failed, not ready.
func TestServiceBinaryChanged(t *testing.T) {
	rs, ca := newRegistry(t, 0)
	c, out, _ := serviceCore(t, rs.URL, ca, registry.ProtocolServices, func(root string) []handoff.ServiceInfo {
		ss := serviceRoot(t, root, threeServices, threeDecl(root))
		// Changed after PID 1 hashed it.
		if err := os.WriteFile(filepath.Join(root, "opt/app/bin/db"), []byte("#!/bin/sh\necho evil\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return ss
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- c.run(ctx) }()
	waitFor(t, out, "self-verification: service db REFUSED: /opt/app/bin/db has digest")
	waitFor(t, out, "services cannot all be ready")
	deadline := time.Now().Add(10 * time.Second)
	var failed map[string]any
	for failed == nil && time.Now().Before(deadline) {
		rs.mu.Lock()
		failed = lastWithState(rs.all, "failed")
		rs.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if failed == nil || !strings.Contains(fmt.Sprint(failed["reason"]), "service db failed: refused: /opt/app/bin/db has digest") {
		t.Fatalf("failed report: %v\nlog:\n%s", failed, out)
	}
	log := out.String()
	if strings.Contains(log, "evil") || strings.Contains(log, "api: api up") {
		t.Fatalf("a refused binary, or a service after it, ran:\n%s", log)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if lastWithState(rs.all, "ready") != nil {
		t.Fatal("node reported ready with a refused service")
	}
}

// TestOlderRegistryGetsNoServices: a registry whose boot answer was
// protocol 4 would refuse the services field; it gets the state alone.
func TestOlderRegistryGetsNoServices(t *testing.T) {
	rs, ca := newRegistry(t, 0)
	c, out, _ := serviceCore(t, rs.URL, ca, registry.ProtocolCache, func(root string) []handoff.ServiceInfo {
		return serviceRoot(t, root, threeServices, threeDecl(root))
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- c.run(ctx) }()
	waitFor(t, out, "ready (node node-7")
	cancel()
	<-done
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, r := range rs.all {
		if _, ok := r["services"]; ok {
			t.Fatalf("report to a protocol 4 registry carries services: %v", r)
		}
	}
}

func TestNodeState(t *testing.T) {
	tests := []struct {
		name         string
		ss           []services.Status
		ready        bool
		state, cause string
	}{
		{"ready", nil, true, "ready", ""},
		{"waiting", []services.Status{{Name: "db", State: services.StateReady}, {Name: "api", State: services.StateStarting}, {Name: "log", State: services.StateWaiting, Optional: true}},
			false, "booting", "waiting for services: api (starting)"},
		{"failed", []services.Status{{Name: "db", State: services.StateCrashLooping, Reason: "exited with status 1"}, {Name: "api", State: services.StateWaiting}},
			false, "failed", "service db crash-looping: exited with status 1"},
		{"optional failure is not the node's", []services.Status{{Name: "log", State: services.StateFailed, Optional: true, Reason: "x"}, {Name: "db", State: services.StateStarting}},
			false, "booting", "waiting for services: db (starting)"},
	}
	for _, tc := range tests {
		st, why := nodeState(tc.ss, tc.ready)
		if st != tc.state || why != tc.cause {
			t.Errorf("%s: nodeState = %q, %q; want %q, %q", tc.name, st, why, tc.state, tc.cause)
		}
	}
}

// The verifier refuses a service whose component PID 1 did not verify, or
// whose binary lies outside that component's mount.
func TestVerifierRefuses(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/bin/x"), []byte("x"), 0o755)
	c := &core0{Root: root}
	comps := map[string]handoff.ComponentInfo{"app": {Name: "app", Mount: "/opt/app"}}
	for _, tc := range []struct {
		s    handoff.ServiceInfo
		want string
	}{
		{handoff.ServiceInfo{Service: release.Service{Name: "x", Component: "nope"}, File: "/usr/bin/x"}, "component nope is not one PID 1 verified"},
		{handoff.ServiceInfo{Service: release.Service{Name: "x", Component: "app"}, File: "/usr/bin/x"}, "not under component app's mount /opt/app"},
		{handoff.ServiceInfo{Service: release.Service{Name: "x", Component: "app"}, File: "/opt/app/x", Digest: "md5:1"}, "boot info digest"},
	} {
		if err := c.verifier(comps, tc.s)(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.s, err, tc.want)
		}
	}
}

// Whatever a service prints, the report stays within the registry's
// limits: a refused report would hold back every later one.
func TestServiceStatesFitTheRegistry(t *testing.T) {
	long := strings.Repeat("é", 600) // 1200 bytes, cut on a character boundary
	var out []string
	for range release.MaxServiceOutput + 5 {
		out = append(out, long)
	}
	ss := []services.Status{{Name: "api", State: services.StateFailed, Reason: strings.Repeat("x", 5000), Output: out}}
	rep := registry.StatusReport{NodeID: "n", Source: "core0", State: "failed", Token: bootToken, Services: serviceStates(ss)}
	rep.Reason = rep.Services[0].Reason
	if err := rep.Validate(); err != nil {
		t.Fatal(err)
	}
	if n := len(rep.Services[0].Output); n != release.MaxServiceOutput {
		t.Fatalf("%d output lines, want the last %d", n, release.MaxServiceOutput)
	}
}
