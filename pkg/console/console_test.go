package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// buffer is a bytes.Buffer safe for the sink goroutine; it records each
// Write separately, as /dev/kmsg sees them.
type buffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes []string
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes = append(b.writes, string(p))
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *buffer) Writes() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.writes...)
}

func flush(t *testing.T, l *slog.Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Handler().(*Handler).Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// at logs a record at start+d through h's full chain (With, groups).
func at(t *testing.T, l *slog.Logger, d time.Duration, level slog.Level, msg string, args ...any) {
	t.Helper()
	r := slog.NewRecord(start.Add(d), level, msg, 0)
	r.Add(args...)
	if !l.Handler().Enabled(context.Background(), level) {
		return
	}
	if err := l.Handler().Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func TestFormat(t *testing.T) {
	var con, km buffer
	l := New(&con, &km, start, slog.LevelInfo)
	net := l.With(StepKey, "network")
	at(t, net, 3214*time.Millisecond, slog.LevelInfo, "lease 192.0.2.15 on eth0", "iface", "eth0", "took", 1500*time.Millisecond)
	at(t, l, 12*time.Second, slog.LevelWarn, "retrying", "err", errors.New("dial tcp 203.0.113.1:443: connection refused"), "empty", "")
	at(t, l.WithGroup("dhcp").With("link", "eth1"), 1234567*time.Millisecond, slog.LevelError, "no lease", slog.Group("opt", "rapid", true), "n", 3)
	at(t, l, time.Second, slog.LevelDebug, "hidden")
	at(t, l, -time.Second, slog.LevelInfo, "before start", StepKey, "early")
	flush(t, l)
	want := "" +
		"[   3.214] INFO  network: lease 192.0.2.15 on eth0 iface=eth0 took=1.5s\n" +
		"[  12.000] WARN  retrying err=\"dial tcp 203.0.113.1:443: connection refused\" empty=\"\"\n" +
		"[1234.567] ERROR no lease dhcp.link=eth1 dhcp.opt.rapid=true dhcp.n=3\n" +
		"[   0.000] INFO  early: before start\n"
	if got := con.String(); got != want {
		t.Errorf("console:\n%s\nwant:\n%s", got, want)
	}
	wantK := []string{
		"<6>zeroboot: INFO  network: lease 192.0.2.15 on eth0 iface=eth0 took=1.5s\n",
		"<4>zeroboot: WARN  retrying err=\"dial tcp 203.0.113.1:443: connection refused\" empty=\"\"\n",
		"<3>zeroboot: ERROR no lease dhcp.link=eth1 dhcp.opt.rapid=true dhcp.n=3\n",
		"<6>zeroboot: INFO  early: before start\n",
	}
	if got := km.Writes(); strings.Join(got, "") != strings.Join(wantK, "") || len(got) != len(wantK) {
		t.Errorf("kmsg writes:\n%q\nwant:\n%q", got, wantK)
	}
}

func TestLevelThreshold(t *testing.T) {
	var con buffer
	var lv slog.LevelVar
	l := New(&con, nil, time.Now(), &lv)
	l.Debug("one")
	lv.Set(slog.LevelDebug) // zeroboot.debug
	l.Debug("two", "k", "a b")
	flush(t, l)
	got := con.String()
	if strings.Contains(got, "one") || !strings.Contains(got, "DEBUG two k=\"a b\"") {
		t.Errorf("console %q", got)
	}
}

func TestKmsgRecords(t *testing.T) {
	var con, km buffer
	l := New(&con, &km, start, slog.LevelDebug)
	at(t, l, 0, slog.LevelDebug, "step   ms\nmounts 12\nnet    340")
	at(t, l, 0, slog.LevelInfo, strings.Repeat("x", 5000))
	flush(t, l)
	w := km.Writes()
	if len(w) != 4 {
		t.Fatalf("kmsg writes %q, want one per line", w)
	}
	for _, rec := range w[:3] {
		if !strings.HasPrefix(rec, "<7>zeroboot: ") {
			t.Errorf("record %q lacks the debug priority", rec)
		}
	}
	if len(w[3]) > kmsgMax+1 || !strings.HasSuffix(w[3], "x\n") {
		t.Errorf("long record: %d bytes", len(w[3]))
	}
	if !strings.Contains(con.String(), "x\n") || len(con.String()) < 5000 {
		t.Error("console line was cut")
	}
}

// stuck is a console whose writes block until released: a serial line
// with flow control held.
type stuck struct {
	release chan struct{}
	buffer
}

func (s *stuck) Write(p []byte) (int, error) {
	<-s.release
	return s.buffer.Write(p)
}

func TestBlockedConsoleDoesNotBlock(t *testing.T) {
	con := &stuck{release: make(chan struct{})}
	var km buffer
	h := NewHandler(con, &km, time.Now(), slog.LevelInfo)
	l := slog.New(h)
	done := make(chan struct{})
	go func() {
		for i := range 3 * QueueLines {
			l.Info("line", "i", i)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("logging blocked on a stuck console")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.out.kmsg.flush(ctx); err != nil {
		t.Fatal(err)
	}
	// kmsg has its own queue and writer: the stuck console does not hold
	// it up (it may drop under this burst only by its own overflow).
	conDropped, kmDropped := h.Dropped()
	n := uint64(0)
	for _, w := range km.Writes() {
		if strings.Contains(w, "INFO  line") {
			n++
		}
	}
	if n+kmDropped != 3*QueueLines || n < QueueLines {
		t.Errorf("kmsg wrote %d and dropped %d of %d lines", n, kmDropped, 3*QueueLines)
	}
	if conDropped < 2*QueueLines-1 {
		t.Errorf("console dropped %d, want at least %d", conDropped, 2*QueueLines-1)
	}
	l.Info("after the burst")
	if err := h.out.kmsg.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if w := km.Writes(); !strings.Contains(w[len(w)-1], "after the burst") && !strings.Contains(w[len(w)-2], "after the burst") {
		t.Errorf("kmsg stalled behind the console: last %q", w[len(w)-1])
	}
	close(con.release)
	flush(t, l)
	conDropped, _ = h.Dropped() // "after the burst" found the queue full too
	if !strings.Contains(con.String(), fmt.Sprintf("[ %d log lines dropped on the console ]", conDropped)) {
		t.Errorf("no drop note for %d on the console after it recovered; head %q", conDropped, con.String()[:200])
	}
}

type failing struct {
	mu   sync.Mutex
	fail bool
	buffer
}

func (f *failing) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return 0, errors.New("input/output error")
	}
	return f.buffer.Write(p)
}

func TestFailingWritesDropped(t *testing.T) {
	con := &failing{fail: true}
	h := NewHandler(con, nil, start, slog.LevelInfo)
	l := slog.New(h)
	l.Info("lost 1")
	l.Info("lost 2")
	flush(t, l)
	con.mu.Lock()
	con.fail = false
	con.mu.Unlock()
	l.Info("back")
	flush(t, l)
	if d, _ := h.Dropped(); d != 2 {
		t.Errorf("dropped %d, want 2", d)
	}
	got := con.String()
	if strings.Contains(got, "lost") || !strings.Contains(got, "INFO  back\n[ 2 log lines dropped on the console ]\n") {
		t.Errorf("console %q", got)
	}
}

func TestConcurrent(t *testing.T) {
	var con, km buffer
	l := New(&con, &km, time.Now(), slog.LevelInfo)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				l.With(StepKey, fmt.Sprint("g", g)).Info("msg", "i", i)
			}
		})
	}
	wg.Wait()
	flush(t, l)
	if n := strings.Count(con.String(), "\n"); n != 400 {
		t.Errorf("%d console lines, want 400", n)
	}
	if n := len(km.Writes()); n != 400 {
		t.Errorf("%d kmsg records, want 400", n)
	}
}

func TestKernelEchoNotDuplicated(t *testing.T) {
	var con, kmsg buffer
	h := NewHandler(&con, &kmsg, time.Now(), slog.LevelDebug)
	h.KernelEchoesBelow(4) // like "quiet": the kernel prints err and worse
	log := slog.New(h)
	log.Info("lease applied")
	log.Error("registry unreachable")
	if err := h.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(con.String(), "lease applied") {
		t.Errorf("info line missing on the console:\n%s", con.String())
	}
	if strings.Contains(con.String(), "registry unreachable") {
		t.Errorf("error line written to the console although the kernel echoes it:\n%s", con.String())
	}
	for _, want := range []string{"<6>zeroboot: INFO  lease applied", "<3>zeroboot: ERROR registry unreachable"} {
		if !strings.Contains(kmsg.String(), want) {
			t.Errorf("kmsg lacks %q:\n%s", want, kmsg.String())
		}
	}
}

func TestKernelConsoleLevel(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		content string
		want    int
		ok      bool
	}{{"7\t4\t1\t7\n", 7, true}, {"4 4 1 7", 4, true}, {"", 0, false}, {"x 4 1 7", 0, false}} {
		p := filepath.Join(dir, "printk")
		os.WriteFile(p, []byte(tc.content), 0o644)
		got, err := KernelConsoleLevel(p)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("KernelConsoleLevel(%q) = %d, %v; want %d ok=%v", tc.content, got, err, tc.want, tc.ok)
		}
	}
}

func TestKmsgUnlimited(t *testing.T) {
	dir := t.TempDir()
	writable := filepath.Join(dir, "printk_devkmsg")
	os.WriteFile(writable, []byte("ratelimit\n"), 0o644)
	if !KmsgUnlimited(writable) {
		t.Error("a writable setting was not turned on")
	}
	locked := filepath.Join(dir, "locked")
	os.WriteFile(locked, []byte("ratelimit\n"), 0o444)
	if os.Geteuid() != 0 && KmsgUnlimited(locked) { // root writes through 0444
		t.Error("a locked rate limit reported as off")
	}
	if KmsgUnlimited(filepath.Join(dir, "missing")) {
		t.Error("a missing sysctl reported as on")
	}
}

// hostile is outside text that would clear the screen, move the cursor to
// the line start, ring the bell, start a C1 CSI and break UTF-8.
const hostile = "\x1b[2J\r[   1.000] INFO  boot: all good\a\u009b31m\xff\xfe"

// terminalSafe fails unless s holds no control character but the newline
// ending each line, and is valid UTF-8.
func terminalSafe(t *testing.T, where, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("%s: invalid UTF-8 in %q", where, s)
	}
	for _, r := range s {
		if r != '\n' && unicode.IsControl(r) {
			t.Errorf("%s: control character %U reached the output: %q", where, r, s)
			return
		}
	}
}

type valuer struct{}

func (valuer) LogValue() slog.Value { return slog.StringValue("lv" + hostile) }

func TestHandlerSanitizesOutsideText(t *testing.T) {
	var con, km buffer
	l := New(&con, &km, start, slog.LevelDebug)
	at(t, l.With(StepKey, "step"+hostile).WithGroup("g"+hostile).With("with"+hostile, hostile),
		time.Second, slog.LevelInfo, "msg"+hostile,
		"err", errors.New("mirror said "+hostile),
		"key"+hostile, "value"+hostile,
		slog.Group("grp"+hostile, "inner"+hostile, hostile, slog.Group("deeper", "x", hostile)),
		"valuer", valuer{},
		"any", []string{hostile})
	at(t, l, 2*time.Second, slog.LevelWarn, "table\n"+hostile+"\nend")
	flush(t, l)
	terminalSafe(t, "console", con.String())
	for _, rec := range km.Writes() {
		terminalSafe(t, "kmsg", strings.TrimSuffix(rec, "\n"))
	}
	// A line of a message never passes for a record of its own.
	for _, line := range strings.Split(strings.TrimSuffix(con.String(), "\n"), "\n") {
		if !strings.HasPrefix(line, "[") && !strings.HasPrefix(line, strings.Repeat(" ", len("[   2.000] WARN  "))) {
			t.Errorf("console continuation line not indented: %q", line)
		}
	}
	for _, rec := range km.Writes() {
		body := strings.TrimPrefix(strings.TrimPrefix(rec, "<6>zeroboot: "), "<4>zeroboot: ")
		if !strings.HasPrefix(body, "INFO  ") && !strings.HasPrefix(body, "WARN  ") && !strings.HasPrefix(body, "      ") {
			t.Errorf("kmsg record %q could pass for another", rec)
		}
	}
	for _, want := range []string{"INFO  step?[2J?[   1.000] INFO  boot: all good??31m?: msg?[2J", `err="mirror said ?[2J`, `valuer="lv?[2J`, "table\n"} {
		if !strings.Contains(con.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, con.String())
		}
	}
}

func TestKmsgRecordCutOnCharacter(t *testing.T) {
	var km buffer
	l := New(io.Discard, &km, start, slog.LevelInfo)
	at(t, l, 0, slog.LevelInfo, strings.Repeat("é", 1000))
	flush(t, l)
	w := km.Writes()
	if len(w) != 1 || len(w[0]) > kmsgMax+1 || !utf8.ValidString(w[0]) {
		t.Errorf("kmsg record of %d bytes, valid UTF-8 %v", len(w[0]), utf8.ValidString(w[0]))
	}
}
