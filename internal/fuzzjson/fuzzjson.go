// Package fuzzjson seeds the fuzz corpora of JSON wire formats, on both
// sides of the protocol: a good value and malformed versions of it.
package fuzzjson

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Marshal is v as JSON; a value that does not encode stops the test.
func Marshal(f *testing.F, v any) []byte {
	f.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// Variants adds good to f's corpus with malformed versions of it: cut in
// half, trailing data, an unknown first key, and each edit (old, new)
// applied once.
func Variants(f *testing.F, good []byte, edits ...[2]string) {
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(append(bytes.Clone(good), " {}"...))
	f.Add(append([]byte(`{"nope":1,`), good[1:]...))
	for _, e := range edits {
		f.Add(bytes.Replace(good, []byte(e[0]), []byte(e[1]), 1))
	}
}
