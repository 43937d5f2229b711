package digest

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseRoundTrip(t *testing.T) {
	d := Of([]byte("hello"))
	const want = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	if d.String() != want {
		t.Fatalf("String() = %s, want %s", d, want)
	}
	for _, s := range []string{want, strings.TrimPrefix(want, "sha256:")} {
		p, err := Parse(s)
		if err != nil || p != d {
			t.Errorf("Parse(%q) = %v, %v", s, p, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{"", "sha256:", "sha256:abc", strings.Repeat("g", 64), strings.Repeat("A", 64), "md5:" + strings.Repeat("a", 64)} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}

func TestJSON(t *testing.T) {
	type doc struct{ D Digest }
	in := doc{Of([]byte("x"))}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Fatalf("round trip: %v %v", out, err)
	}
	if _, err := json.Marshal(doc{}); err == nil {
		t.Error("zero digest encoded")
	}
	if err := json.Unmarshal([]byte(`{"D":"sha256:00"}`), &out); err == nil {
		t.Error("short digest decoded")
	}
}
