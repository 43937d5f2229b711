package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// hostile is a file name that, printed raw, moves a terminal's cursor
// (CSI as a C1 control) and reverses what follows (a bidi override).
const hostile = "etc/x\u009b2J\u202egpj.exe"

// field is one value the JSON of a command must hold: at path (object
// keys and list indexes; "#" is the length of what is there), the value
// as fmt.Sprint prints it.
type field struct {
	path []any
	want string
}

// TestOutputFormats runs every offline list and show command with -o json,
// -o yaml and -o bogus against one data directory, flist, release file,
// root and context config.
func TestOutputFormats(t *testing.T) {
	dir := t.TempDir()
	c := cli{t: t, bin: zgrid(t), config: filepath.Join(dir, "config.json")}
	data := filepath.Join(dir, "grid")
	key := filepath.Join(dir, "release.key")
	c.run(0, "init", "--data", data, "--san", "203.0.113.5")
	keyOut, _ := c.run(0, "key", "new", "--out", key)
	fp := regexp.MustCompile(`ed25519:([0-9a-f]{16})`).FindStringSubmatch(keyOut)
	if fp == nil {
		t.Fatalf("key new printed no fingerprint: %s", keyOut)
	}
	c.run(0, "root", "init", "--data", data, "--root-key", key+".pub", "--sign", key, "--release-key", key+".pub")

	tree := filepath.Join(dir, "tree")
	for name, b := range map[string]string{"bin/tool": "tool\n", hostile: "x"} {
		os.MkdirAll(filepath.Join(tree, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(tree, name), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("tool", filepath.Join(tree, "bin", "alias"))
	fixTimes(t, tree)
	fl := lastLine(c.run(0, "flist", "build", "--data", data, tree))

	rel := filepath.Join(dir, "v3.json")
	c.run(0, "release", "create", "--out", rel, "--key", key, "--channel", "stable", "--version", "3", "--expires", "24h",
		"--component", "name=core0,flist="+fl+",mount=/", "--entry", "/bin/core0", "--arg", "--heartbeat", "--env", "LANG=C")
	withdrawal := filepath.Join(dir, "w4.json")
	c.run(0, "release", "withdraw", "--key", key, "--channel", "stable", "--version", "4", "--out", withdrawal)

	c.run(0, "context", "add", "local", "--data", data)
	c.run(0, "context", "add", "lab", "--server", "https://192.0.2.2:8443", "--token-file", filepath.Join(dir, "lab.token"), "--ca", filepath.Join(dir, "lab-ca.pem"))

	mtime := time.Unix(1_700_000_000, 0).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name    string
		args    []string
		yamlKey string // a key of the object (or the first one of a list) that YAML must give the same value
		fields  []field
	}{
		{"release show", []string{"release", "show", rel}, "channel", []field{
			{[]any{"channel"}, "stable"},
			{[]any{"version"}, "3"},
			{[]any{"withdrawn"}, "false"},
			{[]any{"release", "format"}, "zeroboot-release/2"},
			{[]any{"release", "components", "#"}, "1"},
			{[]any{"release", "components", 0, "name"}, "core0"},
			{[]any{"release", "components", 0, "flist"}, fl},
			{[]any{"release", "components", 0, "mount"}, "/"},
			{[]any{"release", "entrypoint", "path"}, "/bin/core0"},
			{[]any{"release", "entrypoint", "args"}, "[--heartbeat]"},
			{[]any{"release", "entrypoint", "env"}, "[LANG=C]"},
			{[]any{"key_ids", "#"}, "1"},
		}},
		{"release show withdrawal", []string{"release", "show", withdrawal}, "withdrawn", []field{
			{[]any{"channel"}, "stable"},
			{[]any{"version"}, "4"},
			{[]any{"withdrawn"}, "true"},
			{[]any{"release"}, "<nil>"},
		}},
		{"flist ls", []string{"flist", "ls", "--data", data, fl}, "path", []field{
			{[]any{"#"}, "5"},
			{[]any{0, "path"}, "bin"},
			{[]any{0, "type"}, "dir"},
			{[]any{0, "mode"}, "0755"},
			{[]any{1, "path"}, "bin/alias"},
			{[]any{1, "type"}, "symlink"},
			{[]any{1, "target"}, "tool"},
			{[]any{2, "path"}, "bin/tool"},
			{[]any{2, "size"}, "5"},
			{[]any{2, "mtime"}, mtime},
			{[]any{2, "uid"}, fmt.Sprint(os.Getuid())},
			{[]any{3, "path"}, "etc"},
			{[]any{4, "path"}, hostile},
			{[]any{4, "mode"}, "0644"},
			{[]any{4, "size"}, "1"},
		}},
		{"flist inspect", []string{"flist", "inspect", "--data", data, fl}, "entries", []field{
			{[]any{"entries"}, "5"},
			{[]any{"by_type"}, "map[dir:2 file:2 symlink:1]"},
			{[]any{"bytes"}, "6"},
			{[]any{"setuid"}, "0"},
			{[]any{"hash"}, "sha256"},
		}},
		{"root show", []string{"root", "show", "--data", data}, "version", []field{
			{[]any{"#"}, "1"},
			{[]any{0, "version"}, "1"},
			{[]any{0, "signed_by", "#"}, "1"},
			{[]any{0, "roles", "#"}, "4"},
			{[]any{0, "roles", "targets", "threshold"}, "1"},
			{[]any{0, "roles", "targets", "key_ids", "#"}, "1"},
			{[]any{0, "roles", "snapshot", "key_ids", "#"}, "1"},
		}},
		{"tls show", []string{"tls", "show", "--data", data}, "rotating", []field{
			{[]any{"ca", "#"}, "1"},
			{[]any{"ca", 0, "subject"}, "zgrid registry CA"},
			{[]any{"ca", 0, "names"}, "[]"},
			{[]any{"rotating"}, "false"},
			{[]any{"next_ca"}, "<nil>"},
		}},
		{"context list", []string{"context", "list"}, "name", []field{
			{[]any{"#"}, "2"},
			{[]any{0, "name"}, "lab"},
			{[]any{0, "current"}, "false"},
			{[]any{0, "server"}, "https://192.0.2.2:8443"},
			{[]any{0, "token_file"}, filepath.Join(dir, "lab.token")},
			{[]any{1, "name"}, "local"},
			{[]any{1, "current"}, "true"},
			{[]any{1, "data"}, data},
		}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			c := cli{t: t, bin: c.bin, config: c.config}
			js, _ := c.run(0, append(tc.args, "-o", "json")...)
			var v any
			if err := json.Unmarshal([]byte(js), &v); err != nil {
				t.Fatalf("-o json: %v\n%s", err, js)
			}
			for _, f := range tc.fields {
				if got := fmt.Sprint(at(t, v, f.path...)); got != f.want {
					t.Errorf("-o json: %v = %q, want %q", f.path, got, f.want)
				}
			}
			ys, _ := c.run(0, append(tc.args, "-o", "yaml")...)
			var y any
			if err := yaml.Unmarshal([]byte(ys), &y); err != nil || y == nil {
				t.Fatalf("-o yaml: %v\n%s", err, ys)
			}
			if got, want := fmt.Sprint(at(t, first(y), tc.yamlKey)), fmt.Sprint(at(t, first(v), tc.yamlKey)); got != want {
				t.Errorf("-o yaml: %s = %q, JSON has %q", tc.yamlKey, got, want)
			}
			if _, errs := c.run(2, append(tc.args, "-o", "bogus")...); !strings.Contains(errs, `-o "bogus": want table, json or yaml`) {
				t.Errorf("-o bogus: %s", errs)
			}
		})
	}

	// What the values must agree with elsewhere: the signer's key, the
	// expiry asked for, the CA that issued the server's certificate.
	var r map[string]any
	mustJSON(t, c, &r, "release", "show", rel, "-o", "json")
	if id := fmt.Sprint(at(t, r, "key_ids", 0)); !strings.HasPrefix(id, fp[1]) || len(id) != 64 {
		t.Errorf("release show key_ids[0] = %q, want the release key's ID (ed25519:%s...)", id, fp[1])
	}
	if exp, err := time.Parse(time.RFC3339, fmt.Sprint(at(t, r, "expires"))); err != nil || time.Until(exp) < 23*time.Hour || time.Until(exp) > 25*time.Hour {
		t.Errorf("release show expires %v (%v), want RFC 3339, 24h from now", at(t, r, "expires"), err)
	}
	var roots []any
	mustJSON(t, c, &roots, "root", "show", "--data", data, "-o", "json")
	if got, want := fmt.Sprint(at(t, roots, 0, "roles", "targets", "key_ids", 0)), fmt.Sprint(at(t, r, "key_ids", 0)); got != want {
		t.Errorf("root show: release key %s, release show signed by %s", got, want)
	}
	var ts map[string]any
	mustJSON(t, c, &ts, "tls", "show", "--data", data, "-o", "json")
	if issuer, ca := at(t, ts, "server", "issuer"), at(t, ts, "ca", 0, "subject"); issuer != ca {
		t.Errorf("tls show: server issued by %v, ca.pem holds %v", issuer, ca)
	}
	if names := fmt.Sprint(at(t, ts, "server", "names")); !strings.Contains(names, " 203.0.113.5 ") {
		t.Errorf("tls show: server names %s lack init's --san 203.0.113.5", names)
	}
	c.run(0, "tls", "rotate", "begin", "--data", data)
	mustJSON(t, c, &ts, "tls", "show", "--data", data, "-o", "json")
	if got := fmt.Sprintf("%v %v", at(t, ts, "ca", "#"), at(t, ts, "rotating")); got != "2 true" || at(t, ts, "next_ca", "subject") != at(t, ts, "ca", 1, "subject") {
		t.Errorf("tls show during a rotation: %v", ts)
	}

	// The hostile name reaches scripts exactly and a terminal only escaped.
	for _, tc := range []struct {
		o, escaped string
		decode     func([]byte, any) error
	}{
		{"json", `"etc/x\u009b2J\u202egpj.exe"`, json.Unmarshal},
		{"yaml", `"etc/x\x9B2J\u202egpj.exe"`, yaml.Unmarshal},
	} {
		out, _ := c.run(0, "flist", "ls", "--data", data, "-o", tc.o, fl)
		if strings.ContainsAny(out, "\u009b\u202e") || !strings.Contains(out, tc.escaped) {
			t.Errorf("flist ls -o %s: want the name escaped as %s, not raw:\n%q", tc.o, tc.escaped, out)
		}
		var es []struct{ Path string }
		if err := tc.decode([]byte(out), &es); err != nil || len(es) != 5 || es[4].Path != hostile {
			t.Errorf("flist ls -o %s decodes to %q (%v), want %q last", tc.o, es, err, hostile)
		}
	}

	// A release file whose targets name no release document, as only a
	// hand-made or damaged file has: an error, in the table and in JSON.
	var up map[string]any
	b, err := os.ReadFile(withdrawal)
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &up)
	rb, _ := os.ReadFile(rel)
	var full map[string]any
	json.Unmarshal(rb, &full)
	up["release"] = full["release"]
	bad := filepath.Join(dir, "bad.json")
	b, _ = json.Marshal(up)
	os.WriteFile(bad, b, 0o644)
	for _, o := range []string{"table", "json"} {
		if _, errs := c.run(1, "release", "show", bad, "-o", o); !strings.Contains(errs, "the targets name no release.json") {
			t.Errorf("release show -o %s of targets without release.json: %s", o, errs)
		}
	}

	// Nothing to list is an empty list, not null.
	empty := cli{t: t, bin: c.bin, config: filepath.Join(dir, "none.json")}
	if out, _ := empty.run(0, "context", "list", "-o", "json"); out != "[]\n" {
		t.Errorf("context list -o json with no contexts: %q, want []", out)
	}
	if out, _ := empty.run(0, "context", "list", "-o", "yaml"); out != "[]\n" {
		t.Errorf("context list -o yaml with no contexts: %q, want []", out)
	}
}

// TestOutputEscapes checks the escaping of what -o json and -o yaml print
// without running a command: C1 controls, bidi overrides and a tag
// character beyond the BMP, in a key and in a value, come out escaped and
// decode to the same text.
func TestOutputEscapes(t *testing.T) {
	const raw = "\u009b\u202e\u0085\u007f\U000E0041\u2028"
	in := map[string]string{"k\u202e": hostile + raw, "plain": "a\tb"}
	for _, tc := range []struct {
		name   string
		encode func(any) ([]byte, error)
		decode func([]byte, any) error
	}{
		{"json", terminalJSON, json.Unmarshal},
		{"yaml", terminalYAML, yaml.Unmarshal},
	} {
		b, err := tc.encode(in)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if i := strings.IndexAny(string(b), raw); i >= 0 {
			t.Errorf("%s: raw %U in %q", tc.name, []rune(string(b[i:]))[0], b)
		}
		var out map[string]string
		if err := tc.decode(b, &out); err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, b)
		}
		if fmt.Sprintf("%q", out) != fmt.Sprintf("%q", in) {
			t.Errorf("%s decodes to %q, want %q\n%s", tc.name, out, in, b)
		}
	}
}

func mustJSON(t *testing.T, c cli, v any, args ...string) {
	t.Helper()
	out, _ := c.run(0, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("zgrid %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// at walks v, decoded JSON or YAML, along path: string keys, int
// indexes, and "#" for the length of the list or object there.
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for i, p := range path {
		switch x := v.(type) {
		case []any:
			if p == "#" {
				return len(x)
			}
			if n, ok := p.(int); ok && n < len(x) {
				v = x[n]
				continue
			}
		case map[string]any:
			if p == "#" {
				return len(x)
			}
			if k, ok := p.(string); ok {
				if next, ok := x[k]; ok {
					v = next
					continue
				}
			}
		}
		t.Errorf("no %v at %v in %v", p, path[:i], v)
		return nil
	}
	return v
}

// first is v's first element when v is a list, else v.
func first(v any) any {
	if l, ok := v.([]any); ok && len(l) > 0 {
		return l[0]
	}
	return v
}
