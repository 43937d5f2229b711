package strictjson

import (
	"strings"
	"testing"
	"time"
)

type inner struct {
	Path string   `json:"path"`
	Args []string `json:"args"`
}

type doc struct {
	Version    uint64    `json:"version"`
	Entrypoint inner     `json:"entrypoint"`
	Items      []inner   `json:"items"`
	When       time.Time `json:"when"`
	Extra      map[string]int
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name, in, err string
	}{
		{"ok", `{"version":7,"entrypoint":{"path":"/a"},"items":[{"path":"/b"}],"Extra":{"x":1,"y":2}}`, ""},
		{"duplicate", `{"version":7,"version":9}`, `key "version" appears twice`},
		{"case twin", `{"version":7,"VERSION":99999}`, `differ only in case`},
		{"case only", `{"VERSION":99999}`, `the field is "version"`},
		// encoding/json takes U+017F (long s) for "s" and U+212A (Kelvin)
		// for "k"; strings.ToLower does not.
		{"long s", `{"verſion":99999}`, `the field is "version"`},
		{"long s twin", `{"Extra":{"s":1,"ſ":2}}`, `differ only in case`},
		{"nested duplicate", `{"entrypoint":{"path":"/a","path":"/b"}}`, `at $.entrypoint: key "path" appears twice`},
		{"duplicate in array", `{"items":[{"path":"/a"},{"path":"/a","Path":"/b"}]}`, `at $.items[1]`},
		{"map keys are data, duplicates still refused", `{"Extra":{"x":1,"x":2}}`, `appears twice`},
		{"unknown field", `{"version":1,"nope":1}`, `unknown field`},
		{"trailing", `{"version":1} {}`, `trailing data`},
		{"syntax", `{"version":}`, `invalid character`},
		{"too deep", `{"Extra":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, `nested deeper`},
		{"too big", `{"version":1` + strings.Repeat(" ", 200) + `}`, `bytes, at most`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d doc
			err := Decode([]byte(tc.in), 128, &d)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if d.Version != 7 || d.Entrypoint.Path != "/a" || d.Extra["y"] != 2 {
					t.Fatalf("decoded %+v", d)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Decode(%s) = %v, want error containing %q", tc.in, err, tc.err)
			}
		})
	}
}

func TestNames(t *testing.T) {
	got := map[string]bool{}
	for _, n := range Names(&doc{}) {
		got[n] = true
	}
	for _, want := range []string{"version", "entrypoint", "path", "args", "items", "when", "Extra"} {
		if !got[want] {
			t.Errorf("Names lacks %q (got %v)", want, got)
		}
	}
	// time.Time decodes itself: its Go fields are not JSON names.
	if got["wall"] || len(got) != 7 {
		t.Errorf("Names = %v, want exactly the 7 JSON field names", got)
	}
}
