package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/netup"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

func testNode(t *testing.T) (*node, *[]time.Duration, *int) {
	t.Helper()
	n := newNode(time.Now())
	var sleeps []time.Duration
	halts := 0
	n.sleep = func(d time.Duration) { sleeps = append(sleeps, d) }
	n.halt = func() { halts++ }
	n.retry.Rand = func() float64 { return 0 }
	return n, &sleeps, &halts
}

func TestRunRetriesWholeSequence(t *testing.T) {
	n, sleeps, halts := testNode(t)
	var calls []string
	failures := 3
	n.run(
		step{"registry", func(context.Context) error { calls = append(calls, "registry"); return nil }},
		step{"components", func(context.Context) error {
			calls = append(calls, "components")
			if failures > 0 {
				failures--
				return errors.New("chunk sha256:abc: content hash mismatch")
			}
			return nil
		}},
		step{"handoff", func(context.Context) error { calls = append(calls, "handoff"); return nil }},
	)
	want := "registry components registry components registry components registry components handoff"
	if got := strings.Join(calls, " "); got != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", got, want)
	}
	if *halts != 0 {
		t.Fatalf("halted %d times on retryable errors", *halts)
	}
	if len(*sleeps) != 3 || !((*sleeps)[0] < (*sleeps)[1] && (*sleeps)[1] < (*sleeps)[2]) {
		t.Fatalf("waits %v: want 3 growing waits", *sleeps)
	}
	steps := n.tl.Steps()
	if len(steps) != 9 || steps[1].Error == "" || steps[8].Name != "handoff" || steps[8].Error != "" {
		t.Fatalf("timeline does not record every attempt:\n%s", timeline.Table(steps))
	}
	if n.failed != "" {
		t.Fatalf("failed state %q kept after success", n.failed)
	}
}

func TestRunRecoversPanics(t *testing.T) {
	n, sleeps, _ := testNode(t)
	tries := 0
	n.run(step{"modules", func(context.Context) error {
		tries++
		if tries == 1 {
			var m map[string]int
			m["boom"]++ // a nil map write panics
		}
		return nil
	}})
	steps := n.tl.Steps()
	if tries != 2 || len(*sleeps) != 1 || !strings.Contains(steps[0].Error, "panic: assignment to entry in nil map") {
		t.Fatalf("tries=%d sleeps=%v first error %q", tries, *sleeps, steps[0].Error)
	}
}

func TestRunHaltsOnPermanentFailure(t *testing.T) {
	n, sleeps, halts := testNode(t)
	tries := 0
	n.run(step{"cmdline", func(context.Context) error {
		tries++
		return permanent{fmt.Errorf("kernel command line: zeroboot.farm repeated")}
	}})
	if tries != 1 || *halts != 1 || len(*sleeps) != 0 {
		t.Fatalf("tries=%d halts=%d sleeps=%v; a permanent failure must not be retried", tries, *halts, *sleeps)
	}
	if !strings.Contains(n.failed, "cmdline: kernel command line: zeroboot.farm repeated") {
		t.Fatalf("failed state %q", n.failed)
	}
}

func TestReportStaysWithinRegistryLimits(t *testing.T) {
	// A node that has been failing for days: many attempts, long errors
	// with control characters, recorded the way PID 1 records them.
	tl := timeline.New(time.Now())
	for i := 0; i < 3*registry.MaxTimelineSteps; i++ {
		tl.Begin(fmt.Sprint("s", i))(errors.New(strings.Repeat("é\x1b", registry.MaxReasonLen)))
	}
	rep := registry.StatusReport{NodeID: "n1", Token: strings.Repeat("ab", registry.TokenSize), Source: "pid1", State: "failed", Reason: clip(strings.Repeat("x", 10*registry.MaxReasonLen)), Timeline: recent(tl.Steps())}
	if err := rep.Validate(); err != nil {
		t.Fatalf("clipped report refused: %v", err)
	}
	if b, _ := json.Marshal(rep); len(b) > registry.MaxBodySize {
		t.Fatalf("report of %d bytes, over the registry's body limit %d", len(b), registry.MaxBodySize)
	}
	if last := rep.Timeline[len(rep.Timeline)-1].Name; last != fmt.Sprint("s", 3*registry.MaxTimelineSteps-1) {
		t.Fatalf("last step %s: the most recent steps must be kept", last)
	}
	if strings.ContainsRune(rep.Timeline[0].Error, 0x1b) {
		t.Fatal("a control character reached the report")
	}
	if !strings.HasSuffix(rep.Reason, "...") {
		t.Fatalf("clipped reason does not say so: ...%s", rep.Reason[len(rep.Reason)-20:])
	}
}

func TestRegistryAddrs(t *testing.T) {
	var urls []*url.URL
	for _, s := range []string{"https://192.0.2.2:8443", "https://registry.example", "https://[2001:db8::1]/x"} {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, u)
	}
	got := strings.Join(registryAddrs(urls), " ")
	if want := "192.0.2.2:8443 registry.example:443 [2001:db8::1]:443"; got != want {
		t.Fatalf("registryAddrs = %s, want %s", got, want)
	}
}

func TestLogSwitchMovesEveryHolder(t *testing.T) {
	var before, after strings.Builder
	sw := newLogSwitch(slog.NewTextHandler(&before, nil))
	held := slog.New(sw) // e.g. the reaper's copy, taken before the switch
	held.Info("early")
	sw.set(slog.NewTextHandler(&after, nil))
	held.Info("late")
	if !strings.Contains(before.String(), "early") || strings.Contains(before.String(), "late") || !strings.Contains(after.String(), "late") {
		t.Fatalf("before=%q after=%q", before.String(), after.String())
	}
}

func TestNetworkChoiceFitsTheReport(t *testing.T) {
	long := strings.Repeat("nak from a rogue server \x1b[2J ", 100)
	res := &netup.Result{Link: "eth0", Family: netup.IPv4, Source: "dhcp4", Why: long}
	for i := 0; i < registry.MaxNetworkOthers+5; i++ {
		res.Others = append(res.Others, long)
	}
	c := networkChoice(res)
	rep := registry.StatusReport{NodeID: "n1", Source: registry.SourcePID1, State: registry.StateBooting,
		Token: strings.Repeat("ab", registry.TokenSize), Network: c}
	if err := rep.Validate(); err != nil {
		t.Fatalf("report with a clipped network choice refused: %v", err)
	}
	if strings.Contains(c.Why, "\x1b") || len(c.Others) != registry.MaxNetworkOthers {
		t.Errorf("choice not sanitised or not capped: why %q, %d others", c.Why[:40], len(c.Others))
	}
}
