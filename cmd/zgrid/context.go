package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"github.com/zeroboot/zeroboot/pkg/atomicfile"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// clientConfig is zgrid's remembered registries, like talosctl's contexts:
// an operator with several grids names each once and switches with
// "zgrid context use".
type clientConfig struct {
	Current  string                   `json:"current,omitempty"`
	Contexts map[string]clientContext `json:"contexts"`
}

// clientContext is one registry: a data directory, or a server with its
// token file and CA. Paths are stored absolute.
type clientContext struct {
	Data      string `json:"data,omitempty"`
	Server    string `json:"server,omitempty"`
	TokenFile string `json:"token_file,omitempty"`
	CA        string `json:"ca,omitempty"`
}

// configPath is $ZGRID_CONFIG, else zgrid/config.json under the user's
// configuration directory ($XDG_CONFIG_HOME or ~/.config).
func configPath() (string, error) {
	if p := os.Getenv("ZGRID_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("client config: %w (set ZGRID_CONFIG)", err)
	}
	return filepath.Join(dir, "zgrid", "config.json"), nil
}

// loadConfig reads the config; a missing file is an empty config.
func loadConfig() (*clientConfig, string, error) {
	p, err := configPath()
	if err != nil {
		return nil, "", err
	}
	cfg := &clientConfig{Contexts: map[string]clientContext{}}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, p, nil
	}
	if err != nil {
		return nil, p, fmt.Errorf("client config: %w", err)
	}
	if err := json.Unmarshal(b, cfg); err != nil {
		return nil, p, fmt.Errorf("client config %s: %w", p, err)
	}
	if cfg.Contexts == nil {
		cfg.Contexts = map[string]clientContext{}
	}
	return cfg, p, nil
}

func (cfg *clientConfig) save(p string) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("client config: %w", err)
	}
	return atomicfile.Write(p, append(b, '\n'), 0o600)
}

// applyContext fills c from the context named by --context, or the
// current one, when neither --data nor --server (nor $ZGRID_SERVER) was
// given: flags and environment always win.
func (c *conn) applyContext() error {
	if c.contextDone {
		return nil
	}
	c.contextDone = true
	if c.data != "" || c.server != "" {
		if c.context != "" {
			return fmt.Errorf("--context %s and --data/--server: give one", c.context)
		}
		return nil
	}
	cfg, p, err := loadConfig()
	if err != nil {
		return err
	}
	name := c.context
	if name == "" {
		name = cfg.Current
	}
	if name == "" {
		return nil
	}
	x, ok := cfg.Contexts[name]
	if !ok {
		return fmt.Errorf("context %q is not in %s (zgrid context list)", name, p)
	}
	c.data, c.server = x.Data, x.Server
	if c.tokenFile == "" {
		c.tokenFile = x.TokenFile
	}
	if c.ca == "" {
		c.ca = x.CA
	}
	return nil
}

func cmdContext(args []string) error {
	return subcommand("context", map[string]func([]string) error{
		"add": cmdContextAdd, "use": cmdContextUse, "list": cmdContextList, "remove": cmdContextRemove,
	}, args)
}

func cmdContextAdd(args []string) error {
	fs := newFlags("context add", "zgrid context add NAME (--data DIR | --server URL --token-file F --ca F)",
		`Remember a registry under NAME in the client config ($ZGRID_CONFIG, or
~/.config/zgrid/config.json, mode 0600): admin commands given neither
--data nor --server use the current context (zgrid context use), or the
one --context names. The first context added becomes current.`,
		`  zgrid context add lab --server https://192.0.2.2:8443 --token-file ~/lab.token --ca ~/lab-ca.pem
  zgrid context add local --data ./grid`)
	var x clientContext
	fs.StringVar(&x.Data, "data", "", "registry data directory")
	fs.StringVar(&x.Server, "server", "", "registry URL")
	fs.StringVar(&x.TokenFile, "token-file", "", "file holding the admin token")
	fs.StringVar(&x.CA, "ca", "", "registry CA certificate")
	arg, err := oneArg(fs, args, "context NAME")
	if err != nil {
		return err
	}
	if err := registry.CheckName("context name", arg); err != nil {
		return usageErr(fs, "%v", err)
	}
	if (x.Data == "") == (x.Server == "") {
		return usageErr(fs, "need --data DIR or --server URL, not both")
	}
	if x.Server != "" && (x.TokenFile == "" || x.CA == "") {
		return usageErr(fs, "--server needs --token-file and --ca")
	}
	for _, p := range []*string{&x.Data, &x.TokenFile, &x.CA} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return err
			}
		}
	}
	cfg, p, err := loadConfig()
	if err != nil {
		return err
	}
	cfg.Contexts[arg] = x
	if cfg.Current == "" {
		cfg.Current = arg
	}
	if err := cfg.save(p); err != nil {
		return err
	}
	fmt.Printf("context %s saved in %s (current: %s)\n", arg, p, cfg.Current)
	return nil
}

func cmdContextUse(args []string) error {
	fs := newFlags("context use", "zgrid context use NAME", "Make NAME the current context.", "  zgrid context use lab")
	return changeContext(fs, args, func(cfg *clientConfig, name string) {
		cfg.Current = name
		fmt.Printf("current context: %s\n", name)
	})
}

func cmdContextRemove(args []string) error {
	fs := newFlags("context remove", "zgrid context remove NAME", "Forget a context (the current one leaves no current context).", "  zgrid context remove old-lab")
	return changeContext(fs, args, func(cfg *clientConfig, name string) {
		delete(cfg.Contexts, name)
		if cfg.Current == name {
			cfg.Current = ""
		}
	})
}

// changeContext applies change to the context named by the one argument,
// which must exist, and saves the config.
func changeContext(fs *flag.FlagSet, args []string, change func(*clientConfig, string)) error {
	name, err := oneArg(fs, args, "context NAME")
	if err != nil {
		return err
	}
	cfg, p, err := loadConfig()
	if err != nil {
		return err
	}
	if _, ok := cfg.Contexts[name]; !ok {
		return fmt.Errorf("context %q is not in %s (zgrid context list)", name, p)
	}
	change(cfg, name)
	return cfg.save(p)
}

func cmdContextList(args []string) error {
	fs := newFlags("context list", "zgrid context list [-o table|json|yaml]",
		"List the remembered registries; * marks the current one. -o json gives\nan array of contexts, each with its name and whether it is current.",
		"  zgrid context list\n  zgrid context list -o json")
	out := registerOutput(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := out.check(fs); err != nil {
		return err
	}
	cfg, _, err := loadConfig()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(cfg.Contexts))
	for n := range cfg.Contexts {
		names = append(names, n)
	}
	sort.Strings(names)
	if !out.table() {
		return out.print(contextViews(cfg, names))
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CURRENT\tNAME\tREGISTRY")
	for _, n := range names {
		x, mark := cfg.Contexts[n], ""
		if n == cfg.Current {
			mark = "*"
		}
		where := x.Server
		if x.Data != "" {
			where = "--data " + x.Data
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", mark, n, where)
	}
	return w.Flush()
}

// contextView is one context of context list -o json: its config entry
// under its name. The config holds the token's file, never the token.
type contextView struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	clientContext
}

func contextViews(cfg *clientConfig, names []string) []contextView {
	vs := make([]contextView, 0, len(names))
	for _, n := range names {
		vs = append(vs, contextView{Name: n, Current: n == cfg.Current, clientContext: cfg.Contexts[n]})
	}
	return vs
}
