package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// outputFlag is the -o flag of the list and show commands: a table for
// people, JSON or YAML for scripts.
type outputFlag struct{ v *string }

func registerOutput(fs *flag.FlagSet) outputFlag {
	return outputFlag{fs.String("o", "table", "output: table, json or yaml")}
}

// check refuses anything but table, json and yaml, as a usage error.
func (o outputFlag) check(fs *flag.FlagSet) error {
	switch *o.v {
	case "table", "json", "yaml":
		return nil
	}
	return usageErr(fs, "-o %q: want table, json or yaml", *o.v)
}

// table says whether the command prints its own table.
func (o outputFlag) table() bool { return *o.v == "table" }

// print writes v as JSON or YAML. YAML is made from the JSON, so both
// have the same keys (the API's).
func (o outputFlag) print(v any) error {
	var b []byte
	var err error
	if *o.v == "json" {
		b, err = terminalJSON(v)
	} else {
		b, err = terminalYAML(v)
	}
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

// unsafeRune is a rune console.Sanitize replaces that encoding/json (and,
// for format characters such as the bidi overrides, YAML) writes raw: C1
// controls like CSI that a terminal acts on, and invisible characters
// that make a name read as another. Below DEL both encoders escape
// already, so a raw one there is their own layout (newlines).
func unsafeRune(r rune) bool {
	return r >= 0x7f && (unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp))
}

// terminalJSON is printJSON's indented JSON with every unsafe rune
// escaped: scripts decode the exact value, a terminal sees only "\u…".
func terminalJSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	// Outside strings JSON is ASCII, so every unsafe rune is in a string.
	return append(escapeUnsafe(b, func(r rune) string {
		if r > 0xffff {
			r1, r2 := utf16.EncodeRune(r)
			return fmt.Sprintf(`\u%04x\u%04x`, r1, r2)
		}
		return fmt.Sprintf(`\u%04x`, r)
	}), '\n'), nil
}

// terminalYAML is v as YAML with the JSON's keys, unsafe runes escaped.
// yaml.v3 escapes controls but writes format characters raw, even in
// double quotes; so every scalar holding an unsafe rune is double-quoted,
// where "\u…" is an escape, and the runes are replaced after.
func terminalYAML(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return nil, err
	}
	var n yaml.Node
	if err := n.Encode(generic); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	quoteUnsafe(&n)
	y, err := yaml.Marshal(&n)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	return escapeUnsafe(y, func(r rune) string {
		if r > 0xffff {
			return fmt.Sprintf(`\U%08x`, r)
		}
		return fmt.Sprintf(`\u%04x`, r)
	}), nil
}

func quoteUnsafe(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && strings.IndexFunc(n.Value, unsafeRune) >= 0 {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		quoteUnsafe(c)
	}
}

// escapeUnsafe replaces every unsafe rune of b by its escape.
func escapeUnsafe(b []byte, escape func(rune) string) []byte {
	if !strings.ContainsFunc(string(b), unsafeRune) {
		return b
	}
	out := make([]byte, 0, len(b)+64)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if unsafeRune(r) {
			out = append(out, escape(r)...)
		} else {
			out = append(out, b[:size]...)
		}
		b = b[size:]
	}
	return out
}
