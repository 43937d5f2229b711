package qemu

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"testing"
	"time"
)

func TestWaitForStopsAtLivelock(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  error // nil: WaitFor waits out its context
	}{
		{"stuck long", []string{"[  300.552091] watchdog: BUG: soft lockup - CPU#0 stuck for 279s! [init:92]"}, ErrLivelock},
		{"stuck at the bound", []string{"watchdog: BUG: soft lockup - CPU#1 stuck for 60s! [kworker/1:0:20]"}, ErrLivelock},
		// A loaded host gives short lockups that pass.
		{"stuck briefly", []string{"[   44.1] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [init:1]"}, context.DeadlineExceeded},
		{"other kernel lines", []string{"rcu: INFO: rcu_sched self-detected stall on CPU", "clocksource: Switched to clocksource tsc"}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &VM{lines: tc.lines, seen: make(chan struct{}), done: make(chan struct{})}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			_, err := v.WaitFor(ctx, regexp.MustCompile(`identity: node`))
			if !errors.Is(err, tc.want) {
				t.Errorf("WaitFor = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestFreshKeepsConfiguration(t *testing.T) {
	v := &VM{Kernel: "k", Initrd: "i", Append: "a", Memory: "2G", CPUs: 1, UUID: "u", NIC: "e1000",
		Monitor: "m", NICs: []NIC{{"n", "d"}}, Extra: []string{"-x"}, Embedded: true}
	v.lines = []string{"old"}
	f := v.Fresh()
	if got, want := f.Args(), v.Args(); !slices.Equal(got, want) {
		t.Errorf("Fresh().Args() = %q, want %q", got, want)
	}
	if len(f.Lines()) != 0 {
		t.Errorf("a fresh VM has console lines %q", f.Lines())
	}
}
