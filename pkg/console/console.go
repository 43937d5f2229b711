// Package console is PID 1's log: an slog.Handler writing readable lines
// to the console and the same lines to /dev/kmsg, so they survive in the
// kernel log (dmesg, netconsole, a serial capture).
//
// Console writes can block for ever (a serial line with flow control held,
// a hung framebuffer): every destination is written by its own goroutine
// from a bounded queue, and a line that does not fit is dropped and counted,
// so logging never stops the boot.
//
// The kernel rate-limits writes to /dev/kmsg (10 records per 5 s) unless
// booted with printk.devkmsg=on; the console gets every line regardless.
package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// StepKey is the attribute shown as a prefix of the message rather than as
// key=value: log.With(console.StepKey, "network").Info("lease ...") prints
// "network: lease ...".
const StepKey = "step"

// QueueLines is how many lines each destination holds before dropping.
const QueueLines = 1024

// kmsgMax keeps a record under the kernel's per-record limit (1024 bytes
// including its own header); longer ones would be cut or refused.
const kmsgMax = 976

// New returns a logger writing to console and, if not nil, kmsg (usually
// OpenKmsg()). Timestamps are seconds since start (PID 1's start, with a
// monotonic reading); records below level are discarded.
func New(console, kmsg io.Writer, start time.Time, level slog.Leveler) *slog.Logger {
	return slog.New(NewHandler(console, kmsg, start, level))
}

// OpenKmsg opens /dev/kmsg for writing.
func OpenKmsg() (*os.File, error) {
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/kmsg: %w", err)
	}
	return f, nil
}

// Handler is the slog.Handler behind New.
type Handler struct {
	out   *outputs
	level slog.Leveler
	step  string
	attrs string // preformatted " k=v" of WithAttrs
	group string // "a.b." prefix of WithGroup
}

type outputs struct {
	start   time.Time
	console *sink
	kmsg    *sink // nil without kmsg
	// echoBelow is the kernel's console_loglevel: kmsg records with a
	// priority below it are printed on the console by the kernel itself,
	// so writing them there too would show every line twice.
	echoBelow atomic.Int32
}

// KernelEchoesBelow tells the handler that the kernel prints kmsg records
// with a syslog priority below level on the console (console_loglevel, the
// first field of /proc/sys/kernel/printk); those go to the console only
// through kmsg.
func (h *Handler) KernelEchoesBelow(level int) { h.out.echoBelow.Store(int32(level)) }

// KmsgUnlimited asks the kernel not to rate-limit writes to /dev/kmsg (the
// sysctl behind printk.devkmsg, at path) and reports whether that holds.
// The default limit keeps 10 records per 5 s and drops the rest while
// reporting success, so lines left to the kernel's echo would vanish; a
// command line with printk.devkmsg=off or =ratelimit locks the setting.
func KmsgUnlimited(path string) bool {
	// Refused when locked; never create it: the read-back says.
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0); err == nil {
		f.WriteString("on\n")
		f.Close()
	}
	b, err := os.ReadFile(path)
	return err == nil && strings.TrimSpace(string(b)) == "on"
}

// KernelConsoleLevel reads console_loglevel from printk (a path so tests
// can use a file; PID 1 passes /proc/sys/kernel/printk).
func KernelConsoleLevel(printk string) (int, error) {
	b, err := os.ReadFile(printk)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("%s: empty", printk)
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0, fmt.Errorf("%s: console level %q: %w", printk, f[0], err)
	}
	return n, nil
}

// NewHandler is New without the slog.Logger wrapper; its Flush lets PID 1
// push out the last lines before a reboot.
func NewHandler(console, kmsg io.Writer, start time.Time, level slog.Leveler) *Handler {
	if level == nil {
		level = slog.LevelInfo
	}
	o := &outputs{start: start, console: newSink(console, func(n uint64) string {
		return fmt.Sprintf("[ %d log lines dropped on the console ]\n", n)
	})}
	if kmsg != nil {
		o.kmsg = newSink(kmsg, func(n uint64) string {
			return fmt.Sprintf("<4>zeroboot: %d log lines dropped on kmsg\n", n)
		})
	}
	return &Handler{out: o, level: level}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range as {
		h2.step = appendAttr(&b, h.group, a, h2.step)
	}
	h2.attrs = b.String()
	return &h2
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group = h.group + name + "."
	return &h2
}

// Handle implements slog.Handler. It never blocks on the destinations.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	since := max(t.Sub(h.out.start).Seconds(), 0)
	step := h.step
	var attrs strings.Builder
	attrs.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		step = appendAttr(&attrs, h.group, a, step)
		return true
	})
	level := levelName(r.Level) + " "
	head := level
	if step != "" {
		head += step + ": "
	}
	lines := messageLines(r.Message)
	lines[len(lines)-1] += attrs.String()
	pri := priority(r.Level)
	if h.out.kmsg == nil || int32(pri) >= h.out.echoBelow.Load() {
		stamp := fmt.Sprintf("[%8.3f] ", since)
		h.out.console.put(stamp + head + strings.Join(lines, "\n"+indent(stamp+level)) + "\n")
	}
	if h.out.kmsg != nil {
		// One record per line: the kernel takes one record per write.
		lead := head
		for _, line := range lines {
			rec := fmt.Sprintf("<%d>zeroboot: %s%s", pri, lead, line)
			h.out.kmsg.put(cut(rec, kmsgMax) + "\n")
			lead = indent(level)
		}
	}
	return nil
}

// clean is the one way text reaches the console or kmsg through the
// handler: messages, steps, keys and values alike often carry outside text
// (a mirror's reply, a release's names, a command-line parameter), and the
// kernel echoes kmsg records to the console too. Control characters and
// invalid UTF-8 become '?' (see Sanitize); nothing is cut.
func clean(s string) string { return Sanitize(s, len(s)) }

// messageLines cleans each line of a message on its own, so a multi-line
// message (a table) keeps its lines; the caller indents every line after
// the first, so none of them can pass for a record of its own.
func messageLines(msg string) []string {
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		lines[i] = clean(l)
	}
	return lines
}

// indent is as many spaces as prefix is wide, for continuation lines.
func indent(prefix string) string { return strings.Repeat(" ", len(prefix)) }

// cut shortens s to at most n bytes on a character boundary: a record cut
// inside a character would be invalid UTF-8 on the console.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Flush waits until every line queued so far was written or dropped, or
// ctx ends.
func (h *Handler) Flush(ctx context.Context) error {
	if err := h.out.console.flush(ctx); err != nil {
		return err
	}
	if h.out.kmsg != nil {
		return h.out.kmsg.flush(ctx)
	}
	return nil
}

// Dropped returns how many lines were dropped so far on the console and
// on kmsg (full queue or failed write).
func (h *Handler) Dropped() (console, kmsg uint64) {
	console = h.out.console.dropped.Load()
	if h.out.kmsg != nil {
		kmsg = h.out.kmsg.dropped.Load()
	}
	return console, kmsg
}

func levelName(l slog.Level) string {
	s := l.String()
	return s + strings.Repeat(" ", max(0, 5-len(s)))
}

// priority maps a level to a syslog severity.
func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

// appendAttr writes " key=value" (groups flattened to a.b=value) and
// returns the step, updated when a is the top-level StepKey.
func appendAttr(b *strings.Builder, group string, a slog.Attr, step string) string {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return step
	}
	if group == "" && a.Key == StepKey {
		return clean(a.Value.String())
	}
	if a.Value.Kind() == slog.KindGroup {
		prefix := group
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			appendAttr(b, prefix, ga, "")
		}
		return step
	}
	b.WriteString(" ")
	b.WriteString(clean(group + a.Key))
	b.WriteString("=")
	b.WriteString(quote(clean(value(a.Value))))
	return step
}

func value(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().UTC().Format(time.RFC3339Nano)
	case slog.KindDuration:
		return v.Duration().String()
	}
	return v.String()
}

func quote(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r == ' ' || r == '=' || r == '"' || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// sink writes queued lines to w from one goroutine.
type sink struct {
	note    func(n uint64) string // the line saying n lines were lost
	w       io.Writer
	q       chan item
	dropped atomic.Uint64
}

type item struct {
	line string
	done chan struct{} // flush marker when not nil
}

func newSink(w io.Writer, note func(uint64) string) *sink {
	s := &sink{note: note, w: w, q: make(chan item, QueueLines)}
	go s.run()
	return s
}

func (s *sink) put(line string) {
	select {
	case s.q <- item{line: line}:
	default:
		s.dropped.Add(1)
	}
}

func (s *sink) run() {
	var reported uint64
	for it := range s.q {
		if it.done != nil {
			close(it.done)
			continue
		}
		if _, err := io.WriteString(s.w, it.line); err != nil {
			s.dropped.Add(1)
			continue
		}
		// Say so once the destination works again, so a gap in the log
		// is never silent.
		if d := s.dropped.Load(); d > reported {
			if _, err := io.WriteString(s.w, s.note(d-reported)); err == nil {
				reported = d
			}
		}
	}
}

func (s *sink) flush(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case s.q <- item{done: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var _ slog.Handler = (*Handler)(nil)
