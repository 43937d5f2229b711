// Command zgrid is the zeroboot grid registry: it creates a registry's data
// directory, builds and stores flists, signs and publishes releases, and
// serves nodes and admins over HTTPS. See docs/zgrid.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// buildTime is set by the Makefile (-X main.buildTime=<unix seconds>).
var buildTime string

type command struct {
	summary string
	run     func(args []string) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"init":       {"create a data directory: database, store, TLS CA and certificate, admin token", cmdInit},
		"serve":      {"run the HTTPS registry and content store", cmdServe},
		"key":        {"root and release signing keys (key new)", cmdKey},
		"root":       {"the TUF root nodes carry: init, rotate keys, show", cmdRoot},
		"flist":      {"pack, extract, list, inspect and diff flists (flist build|extract|ls|inspect|diff)", cmdFlist},
		"release":    {"create, sign, show, publish, withdraw and list signed releases", cmdRelease},
		"farm":       {"create, change, show, list and delete farms and their enrollment policy", cmdFarm},
		"node":       {"list nodes, show one node's boot report and identity, approve, deny and allow nodes", cmdNode},
		"backup":     {"write a consistent copy of the database, while serve runs or not", cmdBackup},
		"context":    {"remember registries and switch between them (context add|use|list|remove)", cmdContext},
		"tls":        {"show the CA and server certificate, reissue it for more names, rotate the CA (tls show|reissue|rotate)", cmdTLS},
		"store":      {"check every stored flist and chunk, remove chunks no flist references (store verify|gc)", cmdStore},
		"restore":    {"replace a stopped registry's database with a checked backup", cmdRestore},
		"version":    {"print this zgrid's version and revision, and a running server's", cmdVersion},
		"completion": {"print a shell completion script (completion bash|zsh|fish)", cmdCompletion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: zgrid COMMAND [flags] [args]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'zgrid COMMAND --help' for a command's flags and examples.\n")
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		return 0
	}
	if args[0] == "__complete" { // hidden: the completion scripts' helper
		if err := cmdComplete(args[1:]); err != nil {
			fmt.Fprintf(os.Stderr, "zgrid __complete: %v\n", err)
			return 1
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "zgrid: unknown command %q\n\n", args[0])
		usage(os.Stderr)
		return 2
	}
	err := c.run(args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(os.Stderr, "zgrid %s: %v\n", args[0], err)
	return 1
}

// errUsage marks an error already explained by a usage message.
var errUsage = errors.New("usage")

// newFlags makes a flag set whose --help prints synopsis, flags and
// examples.
func newFlags(name, synopsis, about, examples string) *flag.FlagSet {
	if probing != nil {
		probing.synopsis = synopsis
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: %s\n\n%s\n", synopsis, strings.TrimSpace(about))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(w, "\nflags:\n")
			fs.PrintDefaults()
		}
		fmt.Fprintf(w, "\nexamples:\n%s\n", strings.TrimRight(examples, "\n"))
	}
	return fs
}

// parse parses flags that may come before, between or after positional
// arguments ("farm create demo --channel stable") and returns the
// positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	if probing != nil { // completion reads the flags, nothing runs
		probing.fs = fs
		return nil, errProbe
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// fs.Parse consumed a "--" if it stopped there: everything after
		// is positional.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageErr prints fs's usage after a message and returns errUsage.
// oneArg parses args for a command that takes exactly one argument, what.
func oneArg(fs *flag.FlagSet, args []string, what string) (string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usageErr(fs, "need one %s", what)
	}
	return pos[0], nil
}

func usageErr(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), "zgrid %s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return errUsage
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// subcommand dispatches "zgrid GROUP SUB ..." commands.
func subcommand(group string, subs map[string]func([]string) error, args []string) error {
	if probing != nil { // completion reads the subcommands, nothing runs
		probing.subs = subs
		return errProbe
	}
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		w := os.Stderr
		fmt.Fprintf(w, "usage: zgrid %s {%s} [flags]\nRun 'zgrid %s SUBCOMMAND --help' for details.\n", group, strings.Join(names, "|"), group)
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	f, ok := subs[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "zgrid %s: unknown subcommand %q (want one of %s)\n", group, args[0], strings.Join(names, ", "))
		return errUsage
	}
	return f(args[1:])
}
