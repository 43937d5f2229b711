// Package kernelconfig reads Linux kconfig fragments (the CONFIG_X=y lines
// of a .config) and checks a fragment against a full kernel config, so the
// project can tell whether a given kernel (Debian's for the demo) has what a
// zeroboot node needs.
package kernelconfig

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Option is one setting. Value is "y", "m", "n" (also for "# CONFIG_X is
// not set"), a quoted string including its quotes, or a number.
type Option struct {
	Name  string // without the CONFIG_ prefix
	Value string
	Line  int
}

// Config maps option names to settings.
type Config map[string]Option

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	valueRE  = regexp.MustCompile(`^(y|m|n|"([^"\\]|\\.)*"|-?[0-9]+|0x[0-9a-fA-F]+)$`)
	notSetRE = regexp.MustCompile(`^# CONFIG_([A-Za-z0-9_]+) is not set$`)
)

// Parse reads a fragment or a full .config. name is used in errors.
func Parse(r io.Reader, name string) (Config, error) {
	c := Config{}
	s := bufio.NewScanner(r)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		var opt Option
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "#"):
			m := notSetRE.FindStringSubmatch(line)
			if m == nil {
				continue // a comment
			}
			opt = Option{Name: m[1], Value: "n", Line: n}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || !strings.HasPrefix(k, "CONFIG_") || !nameRE.MatchString(k[len("CONFIG_"):]) {
				return nil, fmt.Errorf("%s line %d: want CONFIG_NAME=VALUE or a comment, got %q", name, n, line)
			}
			if !valueRE.MatchString(v) {
				return nil, fmt.Errorf("%s line %d: %s: value %q is not y, m, n, a quoted string or a number", name, n, k, v)
			}
			opt = Option{Name: k[len("CONFIG_"):], Value: v, Line: n}
		}
		if prev, dup := c[opt.Name]; dup {
			return nil, fmt.Errorf("%s line %d: CONFIG_%s already set on line %d", name, n, opt.Name, prev.Line)
		}
		c[opt.Name] = opt
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return c, nil
}

// Finding is the outcome of checking one option.
type Finding struct {
	Name      string
	Want, Got string // Got is "n" when the base does not set it
	// Mismatch means the base cannot give what the fragment needs; false
	// means it differs in a way that still works (a module instead of
	// built in: the initramfs carries it).
	Mismatch bool
}

func (f Finding) String() string {
	kind := "differs (fine)"
	if f.Mismatch {
		kind = "MISMATCH"
	}
	return fmt.Sprintf("CONFIG_%s: want %s, have %s: %s", f.Name, f.Want, f.Got, kind)
}

// Check compares every option of frag with base and returns the options
// that differ, in fragment line order.
func Check(frag, base Config) []Finding {
	var out []Finding
	for _, name := range frag.sorted() {
		want := frag[name].Value
		got := "n"
		if o, ok := base[name]; ok {
			got = o.Value
		}
		if got == want {
			continue
		}
		f := Finding{Name: name, Want: want, Got: got, Mismatch: true}
		switch {
		case want == "y" && got == "m":
			f.Mismatch = false
		case want == "m" && got == "y":
			f.Mismatch = false
		}
		out = append(out, f)
	}
	return out
}

// sorted gives option names in line order.
func (c Config) sorted() []string {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && c[names[j]].Line < c[names[j-1]].Line; j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
	return names
}
