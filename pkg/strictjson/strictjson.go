// Package strictjson gives signed and untrusted JSON exactly one reading.
//
// encoding/json keeps the last of two equal keys and matches keys to
// struct fields case-insensitively, so `"version":7,"VERSION":99999` reads
// as 99999 here and may read as 7 in another tool. A signer who reviews one
// reading and a node that boots the other is the attack. Check refuses
// every such document before anything decodes it: a key twice, two keys
// equal but for case, a key equal to a schema name but for case, nesting
// beyond MaxDepth, anything after the value.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"unicode"
)

// MaxDepth bounds nesting; no format of ours nests deeper than a few levels.
const MaxDepth = 32

// Check reads b as one JSON value and refuses duplicate keys (also equal
// but for case) at every depth, keys that differ from one of names only in
// case, nesting deeper than MaxDepth and trailing data.
func Check(b []byte, names []string) error {
	folded := make(map[string]string, len(names))
	for _, n := range names {
		folded[fold(n)] = n
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := checkValue(dec, folded, 0, "$"); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("json: trailing data after the value")
	}
	return nil
}

func checkValue(dec *json.Decoder, names map[string]string, depth int, at string) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("json: at %s: %w", at, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= MaxDepth {
		return fmt.Errorf("json: at %s: nested deeper than %d", at, MaxDepth)
	}
	if d == '[' {
		for i := 0; dec.More(); i++ {
			if err := checkValue(dec, names, depth+1, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	} else {
		if err := checkObject(dec, names, depth, at); err != nil {
			return err
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

func checkObject(dec *json.Decoder, names map[string]string, depth int, at string) error {
	seen := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("json: at %s: %w", at, err)
		}
		k := tok.(string)
		low := fold(k)
		if prev, ok := seen[low]; ok {
			if prev == k {
				return fmt.Errorf("json: at %s: key %q appears twice", at, clip(k))
			}
			return fmt.Errorf("json: at %s: keys %q and %q differ only in case", at, clip(prev), clip(k))
		}
		seen[low] = k
		if n, ok := names[low]; ok && n != k {
			return fmt.Errorf("json: at %s: key %q: the field is %q (keys are case-sensitive)", at, clip(k), n)
		}
		if err := checkValue(dec, names, depth+1, at+"."+clip(k)); err != nil {
			return err
		}
	}
	return nil
}

// fold maps s to one representative of its case-folding class, so that
// fold(a) == fold(b) exactly when strings.EqualFold(a, b): encoding/json
// matches field names at least that loosely, and strings.ToLower does not
// (it leaves U+017F, long s, which EqualFold takes for "s").
func fold(s string) string {
	var b strings.Builder
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// clip keeps hostile keys short in messages; callers sanitise for terminals.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Decode checks b (at most max bytes) against the field names of v's type
// and decodes it into v, refusing unknown fields.
func Decode(b []byte, max int, v any) error {
	if len(b) > max {
		return fmt.Errorf("json: %d bytes, at most %d", len(b), max)
	}
	if err := Check(b, Names(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("json: %w", err)
	}
	return nil
}

var namesCache sync.Map // reflect.Type -> []string

// Names lists the JSON field names of v's type and of every struct type it
// reaches, for Check.
func Names(v any) []string {
	t := reflect.TypeOf(v)
	if n, ok := namesCache.Load(t); ok {
		return n.([]string)
	}
	set := map[string]bool{}
	collect(t, set, map[reflect.Type]bool{})
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	namesCache.Store(t, names)
	return names
}

var unmarshaler = reflect.TypeFor[json.Unmarshaler]()

func collect(t reflect.Type, set map[string]bool, done map[reflect.Type]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || done[t] || reflect.PointerTo(t).Implements(unmarshaler) {
		return
	}
	done[t] = true
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			collect(f.Type, set, done)
			continue
		}
		if name == "" {
			name = f.Name
		}
		set[name] = true
		collect(f.Type, set, done)
	}
}
