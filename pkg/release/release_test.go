package release

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

func testRelease() *Release {
	return &Release{
		Format:  Format,
		Channel: "stable",
		Components: []Component{
			{Name: "base", Flist: digest.Of([]byte("base")), Mount: "/", AllowSetuid: true},
			{Name: "core0", Flist: digest.Of([]byte("core0")), Mount: "/opt/core0"},
		},
		Entrypoint: Entrypoint{Path: "/sbin/core0", Args: []string{"--node"}, Env: []string{"PATH=/bin:/sbin", "LANG=C"}},
	}
}

func TestMarshalDecodeRoundTrip(t *testing.T) {
	b, err := testRelease().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(Marshal) = %v", err)
	}
	if !r.Components[0].AllowSetuid || r.Components[1].AllowSetuid || r.Entrypoint.Path != "/sbin/core0" {
		t.Fatalf("round trip changed the release: %+v", r)
	}
	// Version and expiry belong to the targets metadata: the document has
	// no field that could say something else.
	if bytes.Contains(b, []byte(`"version"`)) || bytes.Contains(b, []byte(`"expires"`)) {
		t.Fatalf("document carries version or expiry:\n%s", b)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, err := json.Marshal(testRelease())
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	comp := func(m map[string]any, i int) map[string]any { return m["components"].([]any)[i].(map[string]any) }
	entry := func(m map[string]any) map[string]any { return m["entrypoint"].(map[string]any) }
	raw := func(s string) []byte { return bytes.Replace(good, []byte(`"entrypoint":{`), []byte(s), 1) }
	for _, tc := range []struct {
		name    string
		payload []byte
		want    string
	}{
		// One meaning per signed byte: a second entrypoint, or a key that
		// differs from the schema only in case, is refused, not resolved.
		{"second entrypoint", bytes.Replace(good, []byte(`}}`), []byte(`},"entrypoint":{"path":"/bin/sh"}}`), 1), `key "entrypoint" appears twice`},
		{"case twin", raw(`"entrypoint":{"path":"/bin/sh"},"Entrypoint":{`), "differ only in case"},
		{"case only", bytes.Replace(good, []byte(`"channel"`), []byte(`"CHANNEL"`), 1), `the field is "channel"`},
		{"nested duplicate", raw(`"entrypoint":{"path":"/bin/sh",`), `key "path" appears twice`},
		{"version in the document", edit(func(m map[string]any) { m["version"] = 99999 }), `unknown field "version"`},
		{"unknown field", edit(func(m map[string]any) { m["debug_shell"] = true }), `unknown field "debug_shell"`},
		{"newer format", edit(func(m map[string]any) { m["format"] = "zeroboot-release/4"; m["new_thing"] = 1 }),
			`format "zeroboot-release/4" is a version this node does not understand`},
		{"older format", edit(func(m map[string]any) { m["format"] = "zeroboot-release/1" }), "is a version this node does not understand"},
		{"foreign format", edit(func(m map[string]any) { m["format"] = "other/1" }), "is not a zeroboot release"},
		{"trailing data", append(bytes.Clone(good), []byte(` {}`)...), "trailing data"},
		{"not json", []byte("hello"), "release"},
		{"no components", edit(func(m map[string]any) { m["components"] = []any{} }), "no components"},
		{"bad component name", edit(func(m map[string]any) { comp(m, 0)["name"] = "Base" }), `character 'B' outside [a-z0-9._-]`},
		{"dot-dot name", edit(func(m map[string]any) { comp(m, 0)["name"] = ".." }), "not a name"},
		{"long name", edit(func(m map[string]any) { comp(m, 0)["name"] = strings.Repeat("a", 65) }), "1 to 64 characters"},
		{"duplicate name", edit(func(m map[string]any) { comp(m, 1)["name"] = "base" }), `component name "base" appears twice`},
		{"zero digest", edit(func(m map[string]any) { comp(m, 0)["flist"] = "sha256:" + strings.Repeat("0", 64) }), `component "base": no flist digest`},
		{"malformed digest", edit(func(m map[string]any) { comp(m, 0)["flist"] = "sha256:abc" }), "want 64 hex digits"},
		{"relative mount", edit(func(m map[string]any) { comp(m, 1)["mount"] = "opt/core0" }), "not an absolute path"},
		{"unclean mount", edit(func(m map[string]any) { comp(m, 1)["mount"] = "/opt/../etc" }), `not clean (want "/etc")`},
		{"duplicate mount", edit(func(m map[string]any) { comp(m, 1)["mount"] = "/" }), `components "base" and "core0" both mount at /`},
		{"entrypoint in a runtime mount", edit(func(m map[string]any) { entry(m)["path"] = "/proc/self/exe" }), "inside /proc"},
		{"component over a runtime mount", edit(func(m map[string]any) { comp(m, 1)["mount"] = "/run/core0" }), "inside /run"},
		{"relative entrypoint", edit(func(m map[string]any) { entry(m)["path"] = "core0" }), "entrypoint path"},
		{"bad env", edit(func(m map[string]any) { entry(m)["env"] = []any{"NOEQUALS"} }), "want KEY=VALUE"},
		{"env twice", edit(func(m map[string]any) { entry(m)["env"] = []any{"A=1", "A=2"} }), "sets A twice"},
		{"nul in arg", edit(func(m map[string]any) { entry(m)["args"] = []any{"a\x00b"} }), "NUL byte"},
		{"bad channel", edit(func(m map[string]any) { m["channel"] = "" }), "channel"},
		{"terminal controls in channel", edit(func(m map[string]any) { m["channel"] = "\x1b[2J\u009b" }), `channel "?[2J?"`},
		{"too big", append(bytes.Clone(good), bytes.Repeat([]byte(" "), MaxSize)...), "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Decode(tc.payload)
			if err == nil {
				t.Fatalf("Decode accepted %+v", r)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestMarshalRefusesInvalid(t *testing.T) {
	r := testRelease()
	r.Components[1].Mount = "relative"
	if _, err := r.Marshal(); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Fatalf("Marshal of an invalid release = %v", err)
	}
}
