package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/internal/testenv"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// Every command of the table probes (stops at its flags without running),
// and every command and flag the dynamic values name exists: completion
// cannot drift from the commands.
func TestCompletionTree(t *testing.T) {
	tree, err := cliTree()
	if err != nil {
		t.Fatal(err)
	}
	var walk func(n *cliNode)
	paths := map[string]*cliNode{}
	walk = func(n *cliNode) {
		paths[n.path] = n
		if n.subs == nil && n.fs == nil {
			t.Errorf("%q is neither a group nor a command with flags", n.path)
		}
		for _, s := range n.subs {
			walk(s)
		}
	}
	for _, s := range tree.subs {
		walk(s)
	}
	for p := range dynamicValues.args {
		if paths[p] == nil || paths[p].fs == nil {
			t.Errorf("dynamic values for the arguments of %q, which is no command", p)
		}
	}
	for f := range dynamicValues.flags {
		found := false
		for _, n := range paths {
			if n.fs != nil && n.fs.Lookup(f) != nil {
				found = true
			}
		}
		if !found {
			t.Errorf("dynamic values for --%s, which no command has", f)
		}
	}
	if _, ok := tree.subs["__complete"]; ok {
		t.Error("__complete is listed")
	}
}

func TestComplete(t *testing.T) {
	tree, err := cliTree()
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamic{
		flags: map[string]valueSource{"farm": func([]string) []string { return []string{"demo", "edge", "bad\x1b[2Jname", "two words"} }},
		args:  map[string]valueSource{"farm set": func(w []string) []string { return []string{"demo", "edge"} }},
	}
	for _, tc := range []struct {
		words     string // space-separated; a trailing space is an empty current word
		want      []string
		wantNot   []string
		exactWant bool
	}{
		{words: "", want: []string{"farm", "node", "completion", "tls"}, wantNot: []string{"__complete"}},
		{words: "fa", want: []string{"farm"}, exactWant: true},
		{words: "farm ", want: []string{"create", "delete", "list", "set", "show"}, exactWant: true},
		{words: "tls r", want: []string{"reissue"}},
		{words: "node list --", want: []string{"--farm", "--state", "--data", "--server", "--context"}},
		{words: "node list -", want: []string{"-o"}},
		{words: "node list -o ", want: []string{"table", "json", "yaml"}, exactWant: true},
		{words: "node list -o=j", want: []string{"-o=json"}, exactWant: true},
		{words: "node list --farm ", want: []string{"demo", "edge"}, exactWant: true},
		{words: "node list --farm e", want: []string{"edge"}, exactWant: true},
		{words: "node list --farm=d", want: []string{"--farm=demo"}, exactWant: true},
		{words: "node list --farm demo --st", want: []string{"--state"}, exactWant: true},
		{words: "farm set ", want: []string{"demo", "edge"}, exactWant: true},
		{words: "farm set demo ", want: []string{filesDirective}, exactWant: true},
		{words: "farm create x --enroll ", want: []string{"open", "approval", "listed"}, exactWant: true},
		{words: "farm create x --require-tpm ", want: []string{filesDirective}, exactWant: true}, // a bool takes no value
		{words: "serve --log-format ", want: []string{"text", "json"}, exactWant: true},
		{words: "flist build --format ", want: []string{"1", "2", "3"}, exactWant: true},
		{words: "tls show --data ", want: []string{filesDirective}, exactWant: true},
		{words: "completion ", want: []string{"bash", "fish", "zsh"}, exactWant: true},
		{words: "nosuch ", want: nil, exactWant: true},
		{words: "farm set -- --", want: nil, exactWant: true}, // after --, an argument: no farm starts with --
	} {
		got := complete(tree, strings.Split(tc.words, " "), dyn)
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("%q: %q lacks %q", tc.words, got, w)
			}
		}
		for _, w := range tc.wantNot {
			if slices.Contains(got, w) {
				t.Errorf("%q: %q has %q", tc.words, got, w)
			}
		}
		if tc.exactWant && len(got) != len(tc.want) {
			t.Errorf("%q: %q, want only %q", tc.words, got, tc.want)
		}
	}
}

// The bash script, loaded in a real bash, completes through the binary:
// subcommands, flags, choices, contexts from the client config and farms
// from the data directory, with "--farm=" split as bash splits it.
func TestCompletionBash(t *testing.T) {
	bash := testenv.NeedTool(t, "bash")
	dir := t.TempDir()
	c := cli{t: t, bin: zgrid(t), config: filepath.Join(dir, "config.json")}
	data := filepath.Join(dir, "grid")
	key := filepath.Join(dir, "k")
	c.run(0, "init", "--data", data)
	c.run(0, "key", "new", "--out", key)
	c.run(0, "root", "init", "--data", data, "--root-key", key+".pub", "--sign", key, "--release-key", key+".pub")
	c.run(0, "farm", "create", "demo", "--channel", "stable", "--data", data)
	c.run(0, "farm", "create", "edge", "--channel", "stable", "--data", data)
	c.run(0, "context", "add", "lab", "--data", data)
	c.run(0, "context", "add", "local", "--data", data)
	script, _ := c.run(0, "completion", "bash")
	sf := filepath.Join(dir, "zgrid.bash")
	if err := os.WriteFile(sf, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	// t WORD... sets COMP_WORDS as bash would for the line "zgrid WORD..."
	// and prints COMPREPLY, one a line, then whether file names were
	// asked for.
	const helper = `source "$1"; shift
complete -p zgrid >/dev/null || { echo "not registered"; exit 3; }
COMP_WORDS=("$ZG" "$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_zgrid
printf '%s\n' "${COMPREPLY[@]}"`
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"fa"}, "farm"},
		{[]string{"farm", ""}, "create delete list set show"},
		{[]string{"farm", "show", "e"}, "edge"},
		{[]string{"context", "use", ""}, "lab local"},
		{[]string{"context", "use", "la"}, "lab"},
		{[]string{"node", "list", "--farm", ""}, "demo edge"},
		{[]string{"node", "list", "--farm", "e"}, "edge"},
		{[]string{"node", "list", "--farm", "=", ""}, "demo edge"}, // "--farm=" as bash splits it
		{[]string{"node", "list", "--farm", "=", "d"}, "demo"},
		{[]string{"farm", "delete", "--data", data, ""}, "demo edge"},
		{[]string{"node", "list", "-o", ""}, "table json yaml"},
		{[]string{"node", "list", "--con"}, "--context"},
		{[]string{"node", "list", "--context", "lo"}, "local"},
		{[]string{"tls", "show", "--data", ""}, ""}, // file names: bash's own
	} {
		cmd := exec.Command(bash, append([]string{"--norc", "--noprofile", "-c", helper, "bash", sf}, tc.words...)...)
		cmd.Env = append(os.Environ(), "ZG="+c.bin, "ZGRID_CONFIG="+c.config, "ZGRID_SERVER=", "ZGRID_CONTEXT=", "ZGRID_CA=", "ZGRID_TOKEN_FILE=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash %q: %v\n%s", tc.words, err, out)
		}
		if got := strings.Join(strings.Fields(string(out)), " "); got != tc.want {
			t.Errorf("zgrid %s<TAB>: %q, want %q", strings.Join(tc.words, " "), got, tc.want)
		}
	}
}

// The zsh and fish scripts parse, where those shells are installed.
func TestCompletionScriptsParse(t *testing.T) {
	for _, tc := range []struct{ shell, check string }{{"bash", "-n"}, {"zsh", "-n"}, {"fish", "--no-execute"}} {
		t.Run(tc.shell, func(t *testing.T) {
			sh, err := exec.LookPath(tc.shell)
			if err != nil {
				t.Skipf("%s not installed", tc.shell)
			}
			f := filepath.Join(t.TempDir(), "zgrid."+tc.shell)
			if err := os.WriteFile(f, []byte(shells[tc.shell]), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(sh, tc.check, f).CombinedOutput(); err != nil {
				t.Errorf("%s %s: %v\n%s", tc.shell, tc.check, err, out)
			}
		})
	}
}

// Node IDs complete from the registry's records, as farm names do.
func TestCompleteNodeIDs(t *testing.T) {
	dir := t.TempDir()
	c := cli{t: t, bin: zgrid(t), config: filepath.Join(dir, "config.json")}
	t.Setenv("ZGRID_CONFIG", c.config)
	data := filepath.Join(dir, "grid")
	c.run(0, "init", "--data", data)
	d, err := db.Open(filepath.Join(data, dbFile), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n1aa", "n1ab", "n2zz"} {
		b := db.Boot{Request: registry.BootRequest{NodeID: id, Farm: "demo"}, Token: strings.Repeat("0", 64)}
		if err := d.RecordBoot(b, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
	tree, err := cliTree()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ words, want string }{
		{"node show --data " + data + " ", "n1aa n1ab n2zz"},
		{"node approve --data " + data + " n1", "n1aa n1ab"},
		{"node delete --data " + data + " n2", "n2zz"},
		{"node deny --data " + data + " n1a", "n1aa n1ab"},
		{"node show --data " + filepath.Join(dir, "none") + " ", ""},
	} {
		got := complete(tree, strings.Split(tc.words, " "), dynamicValues)
		if strings.Join(slices.DeleteFunc(got, func(s string) bool { return s == filesDirective }), " ") != tc.want {
			t.Errorf("%q: %q, want %q", tc.words, got, tc.want)
		}
	}
}
