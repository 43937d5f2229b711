package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
)

// Shell completion is read from the command table itself: each group's
// subcommands as subcommand dispatches them, each command's flags as its
// flag set defines them. A command is probed by running it while probing
// is set: subcommand and parse record what they were given and return
// errProbe before anything is parsed or done.

var (
	probing  *probe
	errProbe = errors.New("probed")
)

type probe struct {
	subs     map[string]func([]string) error
	fs       *flag.FlagSet
	synopsis string
}

// cliNode is one command: a group (subs) or a command with flags (fs).
type cliNode struct {
	path     string // "farm set"
	subs     map[string]*cliNode
	fs       *flag.FlagSet
	synopsis string
}

// probeCommand learns what run is without running it.
func probeCommand(path string, run func([]string) error) (*cliNode, error) {
	p := &probe{}
	probing = p
	err := run(nil)
	probing = nil
	if !errors.Is(err, errProbe) {
		return nil, fmt.Errorf("completion: probe %q: it ran (%v) instead of stopping at its flags", path, err)
	}
	n := &cliNode{path: path, fs: p.fs, synopsis: p.synopsis}
	if p.subs == nil {
		return n, nil
	}
	n.subs = map[string]*cliNode{}
	for name, f := range p.subs {
		sub, err := probeCommand(path+" "+name, f)
		if err != nil {
			return nil, err
		}
		n.subs[name] = sub
	}
	return n, nil
}

// cliTree is every visible command.
func cliTree() (*cliNode, error) {
	root := &cliNode{subs: map[string]*cliNode{}}
	for name, c := range commands {
		n, err := probeCommand(name, c.run)
		if err != nil {
			return nil, err
		}
		root.subs[name] = n
	}
	return root, nil
}

// shells are the shells zgrid completion writes a script for.
var shells = map[string]string{"bash": bashCompletion, "zsh": zshCompletion, "fish": fishCompletion}

func shellNames() []string {
	names := make([]string, 0, len(shells))
	for n := range shells {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func cmdCompletion(args []string) error {
	fs := newFlags("completion", "zgrid completion bash|zsh|fish",
		`Print a shell completion script: subcommands, their flags, flag values
with a fixed set of choices, and, asked of the registry when a line is
completed, farm names (--farm, farm set|delete), node IDs (node
show|approve|deny|delete) and contexts (--context, context use|remove). The script calls the hidden "zgrid __complete WORD..."
command, which reads zgrid's own command table, so completion matches the
binary it runs.`,
		`  source <(zgrid completion bash)                        # this shell
  zgrid completion bash > /etc/bash_completion.d/zgrid   # every bash
  zgrid completion zsh > "${fpath[1]}/_zgrid"            # zsh, with compinit
  zgrid completion fish > ~/.config/fish/completions/zgrid.fish`)
	shell, err := oneArg(fs, args, "shell ("+strings.Join(shellNames(), ", ")+")")
	if err != nil {
		return err
	}
	script, ok := shells[shell]
	if !ok {
		return usageErr(fs, "no completion for shell %q (want %s)", shell, strings.Join(shellNames(), ", "))
	}
	_, err = io.WriteString(os.Stdout, script)
	return err
}

// cmdComplete is "zgrid __complete WORD... CURRENT": one candidate a line
// for CURRENT, and the line ":files" when file names fit there too.
func cmdComplete(args []string) error {
	tree, err := cliTree()
	if err != nil {
		return err
	}
	for _, c := range complete(tree, args, dynamicValues) {
		fmt.Println(c)
	}
	return nil
}

// filesDirective tells the shell script to complete file names as well.
const filesDirective = ":files"

// valueSource lists values for a flag or argument; words are the words
// typed so far (for the registry they name).
type valueSource func(words []string) []string

// dynamic are the values asked of the registry or the client config:
// by flag name, and by command path for its first argument.
type dynamic struct {
	flags, args map[string]valueSource
}

var dynamicValues = dynamic{
	flags: map[string]valueSource{"farm": farmNames, "context": contextNames},
	args: map[string]valueSource{
		"farm set": farmNames, "farm show": farmNames, "farm delete": farmNames,
		"node show": nodeNames, "node approve": nodeNames, "node deny": nodeNames, "node delete": nodeNames,
		"context use": contextNames, "context remove": contextNames,
	},
}

// complete returns the candidates for the last of words.
func complete(root *cliNode, words []string, dyn dynamic) []string {
	if len(words) == 0 {
		words = []string{""}
	}
	cur, done := words[len(words)-1], words[:len(words)-1]
	n := root
	for len(done) > 0 && n.subs != nil {
		sub, ok := n.subs[done[0]]
		if !ok {
			return nil
		}
		n, done = sub, done[1:]
	}
	if n.subs != nil {
		return withPrefix(sortedKeys(n.subs), cur)
	}
	if n.fs == nil {
		return nil
	}
	return completeFlags(n, done, cur, words, dyn)
}

// completeFlags completes cur after the command's words done.
func completeFlags(n *cliNode, done []string, cur string, words []string, dyn dynamic) []string {
	positional, afterDashes := 0, false
	for i := 0; i < len(done); i++ {
		w := done[i]
		switch {
		case afterDashes || w == "-" || !strings.HasPrefix(w, "-"):
			positional++
		case w == "--":
			afterDashes = true
		case !strings.Contains(w, "="):
			if f := n.fs.Lookup(strings.TrimLeft(w, "-")); f != nil && !isBool(f) {
				if i == len(done)-1 {
					return flagValues(n, f, cur, "", words, dyn)
				}
				i++ // its value
			}
		}
	}
	if !afterDashes && strings.HasPrefix(cur, "-") {
		if name, val, ok := strings.Cut(cur, "="); ok {
			f := n.fs.Lookup(strings.TrimLeft(name, "-"))
			if f == nil || isBool(f) {
				return nil
			}
			return flagValues(n, f, val, name+"=", words, dyn)
		}
		return withPrefix(flagNames(n.fs), cur)
	}
	if positional == 0 {
		if vals := argChoices(n); vals != nil {
			return withPrefix(vals, cur)
		}
		if src, ok := dyn.args[n.path]; ok {
			return withPrefix(src(words), cur)
		}
	}
	return []string{filesDirective}
}

// flagValues completes the value of f; prefix ("--farm=") is put before
// each candidate.
func flagValues(n *cliNode, f *flag.Flag, cur, prefix string, words []string, dyn dynamic) []string {
	vals := choices(n.synopsis, f)
	if vals == nil {
		if src, ok := dyn.flags[f.Name]; ok {
			vals = src(words)
		}
	}
	if vals == nil {
		if prefix != "" {
			return nil // the shells complete files only as whole words
		}
		return []string{filesDirective}
	}
	var out []string
	for _, v := range withPrefix(vals, cur) {
		out = append(out, prefix+v)
	}
	return out
}

var (
	synopsisChoice = regexp.MustCompile(`(?:^|[\s\[])--?([\w-]+)[ =]([\w.]+(?:\|[\w.]+)+)`)
	argChoice      = regexp.MustCompile(`^[\w.]+(?:\|[\w.]+)+$`)
	usageChoice    = []*regexp.Regexp{
		regexp.MustCompile(`\((\w+(?:, \w+)+)\)$`),      // "... (booting, ready, failed)"
		regexp.MustCompile(`: (\w+(?:, \w+)* or \w+)$`), // "...: table, json or yaml"
	}
)

// choices are the fixed values of a flag, as the command's synopsis
// ("-o table|json|yaml") or the flag's usage ("(a, b, c)", ": a, b or c")
// lists them.
func choices(synopsis string, f *flag.Flag) []string {
	for _, m := range synopsisChoice.FindAllStringSubmatch(synopsis, -1) {
		if m[1] == f.Name {
			return strings.Split(m[2], "|")
		}
	}
	for _, re := range usageChoice {
		if m := re.FindStringSubmatch(f.Usage); m != nil {
			return strings.FieldsFunc(strings.ReplaceAll(m[1], " or ", ","), func(r rune) bool { return r == ',' || r == ' ' })
		}
	}
	return nil
}

// argChoices are the fixed values of a command's first argument, as its
// synopsis lists them ("zgrid completion bash|zsh|fish").
func argChoices(n *cliNode) []string {
	rest, ok := strings.CutPrefix(n.synopsis, "zgrid "+n.path+" ")
	if !ok {
		return nil
	}
	first, _, _ := strings.Cut(rest, " ")
	if !argChoice.MatchString(first) {
		return nil
	}
	return strings.Split(first, "|")
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// flagNames are "-o" for a one-letter flag, "--name" for the others.
func flagNames(fs *flag.FlagSet) []string {
	var out []string
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 {
			out = append(out, "-"+f.Name)
		} else {
			out = append(out, "--"+f.Name)
		}
	})
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// withPrefix keeps the candidates that start with prefix and are safe to
// hand a shell: values from a registry are outside text, and one with a
// control character, a space or a quote is left out rather than printed.
func withPrefix(cands []string, prefix string) []string {
	var out []string
	for _, c := range cands {
		if strings.HasPrefix(c, prefix) && safeWord(c) && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func safeWord(s string) bool {
	if s == "" || s == filesDirective {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || strings.ContainsRune("'\"`\\$;&|<>()", r) {
			return false
		}
	}
	return true
}

// contextNames are the contexts of the client config.
func contextNames([]string) []string {
	cfg, _, err := loadConfig()
	if err != nil {
		return nil
	}
	return sortedKeys(cfg.Contexts)
}

// completionTimeout bounds asking a registry while a line is completed.
const completionTimeout = 2 * time.Second

// farmNames are the farms of the registry the words name (--data,
// --server, --context, as the command would use), or of the current
// context; nothing when it cannot be asked within completionTimeout.
func farmNames(words []string) []string {
	return askNames(words, "/v1/admin/farms", func(d *db.DB) ([]records.Farm, error) { return d.Farms() },
		func(f records.Farm) string { return f.Name })
}

// nodeNames are the node IDs of that registry, as farmNames.
func nodeNames(words []string) []string {
	return askNames(words, "/v1/admin/nodes", func(d *db.DB) ([]records.Node, error) { return d.Nodes() },
		func(n records.Node) string { return n.ID })
}

// askNames lists the records at path (or from the local database) by
// name, within completionTimeout.
func askNames[T any](words []string, path string, local func(*db.DB) ([]T, error), name func(T) string) []string {
	c, ok := connOf(words)
	if !ok || c.check() != nil {
		return nil
	}
	got := make(chan []string, 1)
	go func() {
		recs, err := query(c, path, local)
		if err != nil {
			got <- nil
			return
		}
		var names []string
		for _, r := range recs {
			names = append(names, name(r))
		}
		got <- names
	}()
	select {
	case names := <-got:
		return names
	case <-time.After(completionTimeout):
		return nil
	}
}

// connOf reads the connection flags out of words, with the defaults
// conn.register gives them.
func connOf(words []string) (*conn, bool) {
	fs := flag.NewFlagSet("complete", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &conn{}
	c.register(fs)
	for i, w := range words {
		name, val, hasVal := strings.Cut(strings.TrimLeft(w, "-"), "=")
		if !strings.HasPrefix(w, "-") || fs.Lookup(name) == nil {
			continue
		}
		if !hasVal {
			if i+2 >= len(words) { // no value, or the value is being typed
				continue
			}
			val = words[i+1]
		}
		if err := fs.Set(name, val); err != nil {
			return nil, false
		}
	}
	return c, true
}

const bashCompletion = `# bash completion for zgrid: source <(zgrid completion bash)
_zgrid() {
	local i w strip="" out c
	local -a words=()
	# bash splits "--farm=de" into "--farm" "=" "de"; zgrid gets it whole.
	for ((i = 1; i <= COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		if [[ ${#words[@]} -gt 0 && ( $w == "=" || ${COMP_WORDS[i-1]} == "=" ) ]]; then
			words[-1]+=$w
		else
			words+=("$w")
		fi
	done
	if [[ ${words[-1]} == -*=* ]]; then
		strip=${words[-1]%%=*}=
	fi
	out=$("${COMP_WORDS[0]}" __complete "${words[@]}" 2>/dev/null) || return
	COMPREPLY=()
	local IFS=$'\n'
	for c in $out; do
		if [[ $c == ` + filesDirective + ` ]]; then
			compopt -o default 2>/dev/null
			continue
		fi
		COMPREPLY+=("${c#"$strip"}")
	done
}
complete -F _zgrid zgrid
`

const zshCompletion = `#compdef zgrid
# zsh completion for zgrid: zgrid completion zsh > "${fpath[1]}/_zgrid"
_zgrid() {
	local -a out vals
	local c files=0
	out=("${(@f)$(${words[1]} __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
	for c in $out; do
		if [[ $c == ` + filesDirective + ` ]]; then
			files=1
		elif [[ -n $c ]]; then
			vals+=("$c")
		fi
	done
	(( ${#vals} )) && compadd -a vals
	(( files )) && _files
	return 0
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
	_zgrid "$@"
else
	compdef _zgrid zgrid
fi
`

const fishCompletion = `# fish completion for zgrid: zgrid completion fish > ~/.config/fish/completions/zgrid.fish
function __zgrid_complete
	set -l words (commandline -opc)
	set -l cur (commandline -ct)
	for c in ($words[1] __complete $words[2..-1] "$cur" 2>/dev/null)
		if test "$c" = ` + filesDirective + `
			__fish_complete_path "$cur"
		else
			echo $c
		end
	end
end
complete -c zgrid -f -a '(__zgrid_complete)'
`
