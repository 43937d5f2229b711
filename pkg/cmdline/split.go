package cmdline

import "strings"

type arg struct {
	key, val string
	hasVal   bool // key=value (possibly empty value), not a bare key
}

// split tokenizes like the kernel's next_arg (lib/cmdline.c): arguments are
// separated by spaces outside double quotes, the first '=' splits key from
// value, quotes around the value or around the whole argument are removed,
// and "--" ends the kernel's part (what follows is for init's argv).
func split(s string) []arg {
	var out []arg
	s = strings.TrimLeft(s, spaces)
	for s != "" {
		var raw string
		var quoted bool
		raw, quoted, s = next(s)
		if raw == "--" && !quoted {
			break
		}
		out = append(out, cut(raw, quoted))
	}
	return out
}

const spaces = " \t\n\v\f\r"

// next returns the raw next argument, whether it began with a quote (which
// is removed), and the rest.
func next(s string) (raw string, quoted bool, rest string) {
	if s[0] == '"' {
		s = s[1:]
		quoted = true
	}
	inQuote := quoted
	i := 0
	for ; i < len(s); i++ {
		if !inQuote && strings.IndexByte(spaces, s[i]) >= 0 {
			break
		}
		if s[i] == '"' {
			inQuote = !inQuote
		}
	}
	return s[:i], quoted, strings.TrimLeft(s[i:], spaces)
}

// cut splits key=value. Like the kernel, at most one trailing quote is
// removed, whether it closes a quoted value or a quoted whole argument.
func cut(raw string, quoted bool) arg {
	k, v, ok := strings.Cut(raw, "=")
	if ok && strings.HasPrefix(v, `"`) {
		v = v[1:]
		quoted = true
	}
	if quoted {
		if ok {
			v = strings.TrimSuffix(v, `"`)
		} else {
			k = strings.TrimSuffix(k, `"`)
		}
	}
	if !ok {
		return arg{key: k}
	}
	return arg{key: k, val: v, hasVal: true}
}
