package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestFlistReadCommands builds two flists into a data dir, serves its
// store from a plain file server, and drives extract, ls, inspect and diff
// against both the server and the data dir.
func TestFlistReadCommands(t *testing.T) {
	c := cli{t: t, bin: zgrid(t)}
	dir := t.TempDir()
	data := filepath.Join(dir, "grid")
	c.run(0, "init", "--data", data)
	tree := filepath.Join(dir, "tree")
	big := bytes.Repeat([]byte("zeroboot chunk "), 300_000) // several chunks
	files := map[string][]byte{"bin/tool": big, "etc/motd": []byte("hello\n"), "etc/empty": nil, "etc/x\u009b2J\u202egpj.exe": []byte("x")}
	for name, b := range files {
		os.MkdirAll(filepath.Join(tree, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(tree, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("tool", filepath.Join(tree, "bin", "alias"))
	fixTimes(t, tree)
	a := lastLine(c.run(0, "flist", "build", "--data", data, tree))
	os.WriteFile(filepath.Join(tree, "etc", "motd"), []byte("changed\n"), 0o644)
	os.Remove(filepath.Join(tree, "etc", "empty"))
	os.WriteFile(filepath.Join(tree, "etc", "new"), []byte("new\n"), 0o644)
	fixTimes(t, tree)
	b := lastLine(c.run(0, "flist", "build", "--data", data, tree))

	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(data, "store"))))
	defer srv.Close()
	// The first mirror has nothing: every object falls through to the second.
	empty := httptest.NewServer(http.NotFoundHandler())
	defer empty.Close()

	out := filepath.Join(dir, "out")
	_, errs := c.run(0, "flist", "extract", "--store", empty.URL, "--store", srv.URL+"/", a, out)
	if !regexp.MustCompile(`extracted 7 entries, 4\.5 MB in .* MB/s`).MatchString(errs) {
		t.Errorf("extract summary:\n%s", errs)
	}
	for name, want := range files {
		if got, err := os.ReadFile(filepath.Join(out, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("extracted %s: %d bytes, %v; want %d bytes", name, len(got), err, len(want))
		}
	}
	if target, err := os.Readlink(filepath.Join(out, "bin", "alias")); err != nil || target != "tool" {
		t.Errorf("symlink: %q %v", target, err)
	}
	// The same tree again into the same place: files in the way are refused.
	_, errs = c.run(1, "flist", "extract", "--data", data, a, out)
	if !strings.Contains(errs, "extract bin/alias") || !strings.Contains(errs, "file exists") {
		t.Errorf("extract over an existing tree: %s", errs)
	}

	ls, _ := c.run(0, "flist", "ls", "--store", srv.URL, a)
	if strings.ContainsAny(ls, "\u009b\u202e") {
		t.Errorf("ls printed a terminal control or bidi override raw:\n%q", ls)
	}
	for _, want := range []string{"dir      0755", "file     0644", " 4500000 ", " bin/tool\n", "symlink", "bin/alias -> tool", ` "etc/x\u009b2J\u202egpj.exe"`} {
		if !strings.Contains(ls, want) {
			t.Errorf("ls lacks %q:\n%s", want, ls)
		}
	}
	inspect, _ := c.run(0, "flist", "inspect", "--data", data, a)
	for _, want := range []string{"entries:        7", "file:         4", "content:        4500007 bytes", "setuid/setgid:  0"} {
		if !strings.Contains(inspect, want) {
			t.Errorf("inspect lacks %q:\n%s", want, inspect)
		}
	}
	diff, _ := c.run(0, "flist", "diff", "--data", data, a, b)
	want := "- etc/empty\n~ etc/motd (content)\n+ etc/new\n"
	if diff != want {
		t.Errorf("diff:\n%s\nwant:\n%s", diff, want)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"extract", a, out}, 2, "no store"},
		{[]string{"extract", "--store", "ftp://x", a, out}, 2, `"ftp://x": not an http`},
		{[]string{"extract", "--store", srv.URL, "--data", data, a, out}, 2, "not both"},
		{[]string{"ls", "--store", srv.URL, "sha256:zz"}, 1, `flist "sha256:zz"`},
		{[]string{"ls", "--store", empty.URL, a}, 1, "all 1 stores failed"},
		{[]string{"extract", "--store", srv.URL, "--ca", filepath.Join(dir, "nope.pem"), a, out}, 2, "--ca"},
	} {
		_, errs := c.run(tc.code, append([]string{"flist"}, tc.args...)...)
		if !strings.Contains(errs, tc.want) {
			t.Errorf("flist %v: want %q in:\n%s", tc.args, tc.want, errs)
		}
	}
	for _, sub := range []string{"extract", "ls", "inspect", "diff"} {
		if _, errs := c.run(0, "flist", sub, "--help"); !strings.Contains(errs, "usage: zgrid flist "+sub) || !strings.Contains(errs, "examples:") {
			t.Errorf("flist %s --help:\n%s", sub, errs)
		}
	}
}

func lastLine(out, _ string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// fixTimes gives every file and directory under dir one mtime, so a diff
// shows only what the test changed.
func fixTimes(t *testing.T, dir string) {
	t.Helper()
	when := time.Unix(1_700_000_000, 0)
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink == 0 {
			err = os.Chtimes(p, when, when)
		}
		if err != nil {
			t.Fatal(err)
		}
		return nil
	})
}
