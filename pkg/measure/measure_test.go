package measure

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestEventDigest(t *testing.T) {
	want := sha256.Sum256([]byte("zeroboot-event-v1\x00cmdline\x00console=ttyS0"))
	if got := EventDigest(TypeCmdline, "console=ttyS0"); got != want {
		t.Fatalf("EventDigest = %x, want %x", got, want)
	}
	if EventDigest("ab", "c") == EventDigest("a", "bc") {
		t.Fatal("EventDigest does not separate type from value")
	}
}

func TestCheck(t *testing.T) {
	good := NewEvent(TypeRelease, "stable v3 targets sha256:00")
	relabelled := good
	relabelled.Type = TypeComponent
	otherPCR := good
	otherPCR.PCR = 7
	for _, tc := range []struct {
		name string
		e    Event
		want string // "" for no error
	}{
		{"good", good, ""},
		{"relabelled", relabelled, `"component" event: digest`},
		{"other PCR", otherPCR, "PCR is 7, not 15"},
		{"unknown type", NewEvent("kernel", "x"), `unknown type "kernel"`},
		{"too long", NewEvent(TypeCmdline, strings.Repeat("a", MaxValueLen+1)), "more than 4096"},
		{"newline", NewEvent(TypeCmdline, "a\nb"), "control character U+000A at byte 1"},
		{"escape", NewEvent(TypeCmdline, "\x1b[2J"), "control character U+001B"},
		{"C1", NewEvent(TypeCmdline, "a\u009bb"), "control character U+009B"},
		{"bad UTF-8", NewEvent(TypeCmdline, "a\xffb"), "not valid UTF-8"},
		{"empty digest", Event{PCR: PCR, Type: TypeCmdline, Value: "x"}, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, tc.e.Check(), tc.want)
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func TestReplay(t *testing.T) {
	a := NewEvent(TypeTrustRoot, "sha256:aa of root.json")
	b := NewEvent(TypeCmdline, "console=ttyS0")
	var zero [32]byte
	want := Extend(Extend(zero, EventDigest(a.Type, a.Value)), EventDigest(b.Type, b.Value))
	bad := b
	bad.Value = "console=tty0"
	many := make([]Event, MaxEvents+1)
	for _, tc := range []struct {
		name   string
		events []Event
		want   [32]byte
		err    string
	}{
		{"empty", nil, zero, ""},
		{"two", []Event{a, b}, want, ""},
		{"bad second", []Event{a, bad}, zero, `replay: event 1: "cmdline" event: digest`},
		{"too many", many, zero, "257 events, more than 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Replay(tc.events)
			checkErr(t, err, tc.err)
			if err == nil && got != tc.want {
				t.Fatalf("Replay = %x, want %x", got, tc.want)
			}
		})
	}
	if r, _ := Replay([]Event{b, a}); r == want {
		t.Fatal("reordered log replays to the same value")
	}
}

// tpm is a software PCR 15 that can be told to fail.
type tpm struct {
	mu    sync.Mutex
	pcr   [32]byte
	calls int
	fail  error
}

func (p *tpm) extend(pcr int, d [32]byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if pcr != PCR {
		return fmt.Errorf("extend of PCR %d", pcr)
	}
	if p.fail != nil {
		return p.fail
	}
	p.pcr = Extend(p.pcr, d)
	return nil
}

func TestMeasurer(t *testing.T) {
	p := &tpm{}
	m := &Measurer{Extend: p.extend}
	if !m.Measured() {
		t.Fatal("Measured() = false with an Extend")
	}
	steps := []struct{ typ, value string }{
		{TypeTrustRoot, "sha256:aa of root.json"},
		{TypeCmdline, "console=ttyS0"},
		{TypeTrustRoot, "sha256:aa of root.json"}, // retried step
		{TypeComponent, "core0 sha256:bb"},
		{TypeCmdline, "console=ttyS0"},
	}
	for _, s := range steps {
		if err := m.Measure(s.typ, s.value); err != nil {
			t.Fatal(err)
		}
	}
	if p.calls != 3 {
		t.Fatalf("%d extends, want 3", p.calls)
	}
	checkReplays(t, m, p, 3)

	p.fail = errors.New("TPM_RC_LOCALITY")
	err := m.Measure(TypeRelease, "stable v3 targets sha256:cc")
	checkErr(t, err, "measure release: extend PCR 15: TPM_RC_LOCALITY")
	checkReplays(t, m, p, 3)
	p.fail = nil
	if err := m.Measure(TypeRelease, "stable v3 targets sha256:cc"); err != nil {
		t.Fatal(err)
	}
	checkReplays(t, m, p, 4)

	checkErr(t, m.Measure(TypeCmdline, "a\x00b"), "measure: \"cmdline\" event: value has control character U+0000")
	checkErr(t, m.Measure("nope", "x"), "unknown type")
}

func checkReplays(t *testing.T, m *Measurer, p *tpm, n int) {
	t.Helper()
	ev := m.Events()
	if len(ev) != n {
		t.Fatalf("%d events logged, want %d", len(ev), n)
	}
	got, err := Replay(ev)
	if err != nil {
		t.Fatal(err)
	}
	if got != p.pcr {
		t.Fatalf("log replays to %x, PCR is %x", got, p.pcr)
	}
}

func TestMeasurerConcurrent(t *testing.T) {
	p := &tpm{}
	m := &Measurer{Extend: p.extend}
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := m.Measure(TypeComponent, fmt.Sprintf("core%d sha256:00", i%8)); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if p.calls != 8 {
		t.Fatalf("%d extends, want 8", p.calls)
	}
	checkReplays(t, m, p, 8)
}

func TestMeasurerUnmeasured(t *testing.T) {
	var m Measurer
	if m.Measured() {
		t.Fatal("zero Measurer claims to be measured")
	}
	if err := m.Measure(TypeCmdline, "quiet"); err != nil {
		t.Fatal(err)
	}
	ev := m.Events()
	ev[0].Value = "changed"
	if m.Events()[0].Value != "quiet" {
		t.Fatal("Events does not return a copy")
	}
}

func TestMeasurerFull(t *testing.T) {
	var m Measurer
	for i := 0; i < MaxEvents; i++ {
		if err := m.Measure(TypeComponent, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	checkErr(t, m.Measure(TypeComponent, "one more"), "log is full (256 events)")
}

func FuzzReplay(f *testing.F) {
	f.Add("cmdline", "console=ttyS0", "")
	f.Fuzz(func(t *testing.T, typ, value, digest string) {
		e := NewEvent(typ, value)
		if digest != "" {
			e.Digest = digest
		}
		if _, err := Replay([]Event{e}); err == nil && e.Check() != nil {
			t.Fatal("Replay accepted an event Check rejects")
		}
	})
}
