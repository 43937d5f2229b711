package handoff

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestWaitReady(t *testing.T) {
	for _, tc := range []struct {
		name    string
		markIn  time.Duration // -1: never
		want    error
		cancel  bool
		minWait time.Duration
	}{
		{"ready before the deadline", 50 * time.Millisecond, nil, false, 50 * time.Millisecond},
		{"already ready", 0, nil, false, 0},
		{"never ready", -1, ErrDeadline, false, 300 * time.Millisecond},
		{"cancelled", -1, context.Canceled, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "ready")
			if tc.markIn == 0 {
				if err := MarkReady(file); err != nil {
					t.Fatal(err)
				}
			} else if tc.markIn > 0 {
				time.AfterFunc(tc.markIn, func() { MarkReady(file) })
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			start := time.Now()
			err := WaitReady(ctx, file, 300*time.Millisecond, 5*time.Millisecond)
			if !errors.Is(err, tc.want) && err != tc.want {
				t.Fatalf("WaitReady = %v, want %v", err, tc.want)
			}
			if took := time.Since(start); took < tc.minWait {
				t.Errorf("returned after %v, before %v", took, tc.minWait)
			}
		})
	}
	if err := MarkReady(filepath.Join(t.TempDir(), "no", "dir")); err == nil {
		t.Error("MarkReady into a missing directory: no error")
	}
}
