package console

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSanitize(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		limit int
		want  string
	}{
		{"plain", "disk full", 20, "disk full"},
		{"empty", "", 20, ""},
		{"exactly the limit", "abcde", 5, "abcde"},
		{"cut", "abcdef", 5, "abcde..."},
		{"ANSI escape", "ok\x1b[2J\x1b]0;owned\a", 40, "ok?[2J?]0;owned?"},
		{"newline and tab cannot fake lines or columns", "a\nb\tc\r", 20, "a?b?c?"},
		{"DEL", "a\x7fb", 20, "a?b"},
		{"C1 CSI", "a\u009b31mb", 20, "a?31mb"},
		{"invalid UTF-8", "a\xff\xfeb", 20, "a?b"},
		{"bidi override", "ok ‮gnp.exe", 40, "ok ?gnp.exe"},
		{"zero-width and line separator", "a‍b c", 40, "a?b?c"},
		{"printable non-ASCII kept", "grüße, 東京", 40, "grüße, 東京"},
		{"cut never splits a character", "ab東京", 4, "ab..."},
		{"cut after a whole character", "ab東京", 5, "ab東..."},
		{"negative limit", "abc", -1, "..."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Sanitize(tc.in, tc.limit)
			if got != tc.want {
				t.Fatalf("Sanitize(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Fatalf("Sanitize(%q, %d) = %q: not valid UTF-8", tc.in, tc.limit, got)
			}
		})
	}
}

func TestSanitizeBoundsLargeInput(t *testing.T) {
	got := Sanitize(strings.Repeat("\x1bé", 1<<16), 200)
	if len(got) > 200+len("...") || strings.ContainsRune(got, 0x1b) {
		t.Fatalf("Sanitize of 192 KiB: %d bytes, %q...", len(got), got[:20])
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc"},
		{"aéé", 4, "aé"},           // the second é would be cut in half
		{"a\xffb", 10, "a\uFFFDb"}, // as JSON would store it
		{"a\xffb", 3, "a"},         // U+FFFD is 3 bytes
		{"abc", -1, ""},
		{"\x1b[2J", 10, "\x1b[2J"}, // clipping is not sanitising
	} {
		if got := Clip(tc.in, tc.limit); got != tc.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
	}
}
