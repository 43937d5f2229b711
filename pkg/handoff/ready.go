package handoff

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// ReadyFile is where Core-0 tells PID 1 the node is ready: it creates the
// file once every required service is ready. PID 1 judges the farm's
// ready deadline by it (docs/services.md, "Last known good"); boot.json
// names it (ready_file) for a Core-0 of the operator's own.
const ReadyFile = "/run/zeroboot/ready"

// ErrDeadline is WaitReady's answer when the deadline passed first.
var ErrDeadline = errors.New("not ready by the deadline")

// WaitReady waits until file exists or deadline passes (ErrDeadline), or
// ctx ends. It polls every poll: the file comes once per boot, and a
// quarter of a second is nothing against a deadline of seconds.
func WaitReady(ctx context.Context, file string, deadline, poll time.Duration) error {
	t := time.NewTimer(deadline)
	defer t.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		_, err := os.Stat(file)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("ready file %s: %w", file, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return ErrDeadline
		case <-tick.C:
		}
	}
}

// MarkReady creates file (Core-0's side of WaitReady).
func MarkReady(file string) error {
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		return fmt.Errorf("mark ready: %w", err)
	}
	return nil
}
