package strictjson_test

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/strictjson"
)

// fuzzNames is the schema the fuzzed documents are checked against.
var fuzzNames = []string{"version", "path", "keyid", "Extra"}

// FuzzCheck: whatever the bytes, a document Check accepts has one reading.
// encoding/json decodes it into any (with UseNumber, as Check reads
// numbers) without error and with nothing after it, it nests no deeper than
// MaxDepth, no object in it has two keys equal under strings.EqualFold, and
// no key equals a schema name under strings.EqualFold without being it.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		`{"version":7,"path":"/a","items":[{"path":"/b"},{"keyid":"x"}],"Extra":{"x":1,"y":2}}`,
		`[1,"two",null,true,{"a":{}},[]]`,
		`"just a string"`,
		`{"version":7,"version":9}`,
		`{"version":7,"VERSION":99999}`,
		`{"VERSION":99999}`,
		`{"verſion":99999}`,
		`{"keyid":"a","Kyid":"b"}`,
		`{"a":{"path":"/a","path":"/b"}}`,
		`{"items":[{"path":"/a"},{"path":"/a","Path":"/b"}]}`,
		`{"x":1,"X":2}`,
		`{"\u0076ersion":1,"version":2}`,
		`{"k":1,"\u212a":2}`, // KELVIN SIGN folds to k
		`{"version":1} {}`,
		`{"version":}`,
		`{"version":1`,
		strings.Repeat("[", strictjson.MaxDepth) + strings.Repeat("]", strictjson.MaxDepth),
		strings.Repeat("[", strictjson.MaxDepth+1) + strings.Repeat("]", strictjson.MaxDepth+1),
		"{\"a\xff\":1,\"a\xfe\":2}",
		``,
		`1797693134862315708145274237317043567981e300`, // beyond float64: syntax, not keys
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := strictjson.Check(b, fuzzNames); err != nil {
			if err.Error() == "" {
				t.Fatal("refusal without a message")
			}
			return
		}
		// UseNumber, as Check reads numbers: Check judges keys and
		// syntax, and a number beyond float64 is the decoding type's
		// business (a struct field refuses it).
		var v any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("Check accepted %q, encoding/json refuses it: %v", b, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			t.Fatalf("Check accepted %q, encoding/json finds more after the value", b)
		}
		dec = json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		walk(t, b, dec, 0)
	})
}

// walk reads one value from dec and fails t on any object with two keys
// equal under strings.EqualFold, any key that is a schema name but for
// case, and nesting deeper than strictjson.MaxDepth.
func walk(t *testing.T, b []byte, dec *json.Decoder, depth int) {
	tok, err := dec.Token()
	if err != nil {
		t.Fatalf("Check accepted %q, the tokenizer refuses it: %v", b, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return
	}
	if depth >= strictjson.MaxDepth {
		t.Fatalf("Check accepted %q, nested deeper than %d", b, strictjson.MaxDepth)
	}
	var keys []string
	for dec.More() {
		if d == '{' {
			tok, err := dec.Token()
			if err != nil {
				t.Fatalf("Check accepted %q, the tokenizer refuses it: %v", b, err)
			}
			k := tok.(string)
			for _, prev := range keys {
				if strings.EqualFold(prev, k) {
					t.Fatalf("Check accepted %q: keys %q and %q are equal under EqualFold", b, prev, k)
				}
			}
			for _, n := range fuzzNames {
				if k != n && strings.EqualFold(k, n) {
					t.Fatalf("Check accepted %q: key %q reads as field %q", b, k, n)
				}
			}
			keys = append(keys, k)
		}
		walk(t, b, dec, depth+1)
	}
	if _, err := dec.Token(); err != nil {
		t.Fatalf("Check accepted %q, the tokenizer refuses its end: %v", b, err)
	}
}
