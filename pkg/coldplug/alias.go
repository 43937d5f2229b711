package coldplug

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Alias is one line of modules.alias: devices whose modalias matches
// Pattern are driven by Module.
type Alias struct {
	Pattern string
	Module  string // normalized: '-' replaced by '_'
	prefix  string // literal start of Pattern, for a cheap rejection
}

// ParseAliases reads modules.alias ("alias PATTERN MODULE" lines, '#'
// comments, blank lines).
func ParseAliases(r io.Reader) ([]Alias, error) {
	var as []Alias
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" {
			return nil, fmt.Errorf("modules.alias line %d: want \"alias PATTERN MODULE\", got %q", n, line)
		}
		as = append(as, NewAlias(f[1], f[2]))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.alias: %w", err)
	}
	return as, nil
}

// NewAlias builds an Alias, normalizing the module name.
func NewAlias(pattern, module string) Alias {
	return Alias{Pattern: pattern, Module: normalize(module), prefix: literalPrefix(pattern)}
}

func normalize(module string) string { return strings.ReplaceAll(module, "-", "_") }

func literalPrefix(p string) string {
	if i := strings.IndexAny(p, `*?[\`); i >= 0 {
		return p[:i]
	}
	return p
}

// Match returns the modules whose alias pattern matches modalias, each
// once, in the order of the aliases.
func Match(aliases []Alias, modalias string) []string {
	var mods []string
	seen := map[string]bool{}
	for _, a := range aliases {
		prefix := a.prefix
		if prefix == "" && a.Pattern != "" { // built by hand, not NewAlias
			prefix = literalPrefix(a.Pattern)
		}
		if !strings.HasPrefix(modalias, prefix) || !fnmatch(a.Pattern, modalias) {
			continue
		}
		m := normalize(a.Module)
		if !seen[m] {
			seen[m] = true
			mods = append(mods, m)
		}
	}
	return mods
}

// fnmatch matches like fnmatch(3) with no flags, as kmod does: '*' and '?'
// match any character (modaliases contain no '/'), "[...]" sets with ranges
// and '!' or '^' negation, '\' escapes. An unterminated '[' is literal.
func fnmatch(pattern, s string) bool {
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(s) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				starP, starI = p, i
				p++
				continue
			case '?':
				p++
				i++
				continue
			case '[':
				if ok, next, valid := matchSet(pattern, p, s[i]); valid {
					if ok {
						p, i = next, i+1
						continue
					}
					break
				}
				if s[i] == '[' {
					p, i = p+1, i+1
					continue
				}
			case '\\':
				if p+1 < len(pattern) && pattern[p+1] == s[i] {
					p, i = p+2, i+1
					continue
				}
				if p+1 == len(pattern) && s[i] == '\\' {
					p, i = p+1, i+1
					continue
				}
			default:
				if c == s[i] {
					p, i = p+1, i+1
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last '*' swallow one more character and retry.
		starI++
		p, i = starP+1, starI
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchSet matches c against the set starting at pattern[p] == '['. valid
// is false when the set is not terminated.
func matchSet(pattern string, p int, c byte) (ok bool, next int, valid bool) {
	j := p + 1
	negate := false
	if j < len(pattern) && (pattern[j] == '!' || pattern[j] == '^') {
		negate = true
		j++
	}
	first := true
	for j < len(pattern) {
		if pattern[j] == ']' && !first {
			return ok != negate, j + 1, true
		}
		first = false
		lo := pattern[j]
		if lo == '\\' && j+1 < len(pattern) {
			j++
			lo = pattern[j]
		}
		j++
		hi := lo
		if j+1 < len(pattern) && pattern[j] == '-' && pattern[j+1] != ']' {
			hi = pattern[j+1]
			if hi == '\\' && j+2 < len(pattern) {
				hi = pattern[j+2]
				j++
			}
			j += 2
		}
		if lo <= c && c <= hi {
			ok = true
		}
	}
	return false, 0, false
}
