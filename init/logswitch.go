package main

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// logSwitch is the handler behind PID 1's one logger. PID 1 logs before
// /dev/kmsg exists; when the mount step opens it, the switch moves every
// holder of the logger (reaper, signal handler, supervisor) to the new
// handler at once, instead of leaving some on the console-only one.
type logSwitch struct{ h atomic.Pointer[slog.Handler] }

func newLogSwitch(h slog.Handler) *logSwitch {
	s := &logSwitch{}
	s.set(h)
	return s
}

func (s *logSwitch) set(h slog.Handler) { s.h.Store(&h) }
func (s *logSwitch) cur() slog.Handler  { return *s.h.Load() }

func (s *logSwitch) Enabled(ctx context.Context, l slog.Level) bool {
	return s.cur().Enabled(ctx, l)
}
func (s *logSwitch) Handle(ctx context.Context, r slog.Record) error {
	return s.cur().Handle(ctx, r)
}

// WithAttrs and WithGroup bind to the handler current at the time; PID 1
// derives no loggers before the switch.
func (s *logSwitch) WithAttrs(as []slog.Attr) slog.Handler { return s.cur().WithAttrs(as) }
func (s *logSwitch) WithGroup(name string) slog.Handler    { return s.cur().WithGroup(name) }
