package console

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxShown bounds how much text from a server or a peer an error message
// repeats.
const MaxShown = 200

// Sanitize makes text from outside (a server's reply, a node's report, a
// signed but careless release) safe to print on a terminal: invalid UTF-8
// and control characters (C0, DEL, C1) become '?', so the text cannot move
// the cursor, recolour or clear the screen, or fake extra log lines; so do
// invisible format characters (Unicode Cf, such as the bidi overrides that
// make "exe.txt" read "txt.exe") and the line and paragraph separators
// U+2028/U+2029, so what is shown is what is there; and it
// is cut to at most limit bytes, on a character boundary, followed by "..."
// when cut, so it cannot flood the console.
func Sanitize(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if c := cut(s, max(limit, 0)); len(c) < len(s) {
		return c + "..."
	}
	return s
}

// Clip cuts s to at most limit bytes of valid UTF-8, on a character
// boundary. Invalid bytes become U+FFFD first, as JSON encoding would
// make them (growing the string), so what is clipped is what is stored
// or sent.
func Clip(s string, limit int) string {
	return cut(strings.ToValidUTF8(s, string(utf8.RuneError)), max(limit, 0))
}
