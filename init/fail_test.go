package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/zeroboot/zeroboot/pkg/console"
)

// syncBuffer collects what the banner writes through the Fanout's sink
// goroutine; Flush orders its writes before the test reads.
type syncBuffer struct{ b strings.Builder }

func (s *syncBuffer) Write(p []byte) (int, error) { s.b.Write(p); return len(p), nil }

// TestFailBannerSanitized: a failure's step and reason come from outside
// (a mirror's status line, a command-line parameter) and must not reach
// the consoles raw.
func TestFailBannerSanitized(t *testing.T) {
	n, _, _ := testNode(t)
	var out syncBuffer
	n.out = console.NewFanout(&out)
	hostile := "\x1b[2J\r\a\u009b31m\xff\xfe"
	n.fail("registry"+hostile, errors.New("store said: "+hostile+"\n[   9.000] INFO  boot: handed off to Core-0"))
	if err := n.out.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := out.b.String()
	if !utf8.ValidString(got) {
		t.Errorf("banner is not valid UTF-8: %q", got)
	}
	for _, r := range got {
		if r != '\n' && unicode.IsControl(r) {
			t.Fatalf("control character %U in the banner: %q", r, got)
		}
	}
	for _, want := range []string{"step:   registry?[2J???31m?\n", "reason: store said: ?[2J???31m??[   9.000] INFO  boot: handed off to Core-0\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("banner lacks %q:\n%s", want, got)
		}
	}
}
