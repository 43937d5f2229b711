package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

func cmdFarm(args []string) error {
	return subcommand("farm", map[string]func([]string) error{"create": cmdFarmCreate, "list": cmdFarmList}, args)
}

func cmdFarmCreate(args []string) error {
	fs := newFlags("farm create", "zgrid farm create NAME --channel CHANNEL [--data DIR | --server URL ...]",
		"Create a farm: nodes booting with zeroboot.farm=NAME get the newest\nrelease of CHANNEL.\n\n"+connHelp,
		`  zgrid farm create demo --channel stable --data ./grid
  ZGRID_SERVER=https://registry.example.net:8443 ZGRID_TOKEN_FILE=admin.token ZGRID_CA=ca.pem \
    zgrid farm create lab --channel beta`)
	var c conn
	c.register(fs)
	channel := fs.String("channel", "", "release channel the farm follows (required)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *channel == "" {
		return usageErr(fs, "need one farm NAME and --channel")
	}
	if err := c.check(); err != nil {
		return err
	}
	var f registry.Farm
	d, ok, err := c.local()
	if err != nil {
		return err
	}
	if ok {
		defer d.Close()
		s, serr := c.localServer(d)
		if serr != nil {
			return serr
		}
		f, err = s.CreateFarm(pos[0], *channel)
	} else {
		a, aerr := c.admin()
		if aerr != nil {
			return aerr
		}
		err = a.call("POST", "/v1/admin/farms", registry.Farm{Name: pos[0], Channel: *channel}, &f)
	}
	if err != nil {
		return err
	}
	fmt.Printf("farm %s created, channel %s\n", f.Name, f.Channel)
	return nil
}

// query runs a read against the local database or the running server.
func query[T any](c *conn, path string, local func(*db.DB) (T, error)) (T, error) {
	var out T
	d, ok, err := c.local()
	if err != nil {
		return out, err
	}
	if ok {
		defer d.Close()
		return local(d)
	}
	a, err := c.admin()
	if err != nil {
		return out, err
	}
	err = a.call("GET", path, nil, &out)
	return out, err
}

func cmdFarmList(args []string) error {
	fs := newFlags("farm list", "zgrid farm list [--data DIR | --server URL ...]", "List farms and their channels.\n\n"+connHelp,
		"  zgrid farm list --data ./grid")
	var c conn
	c.register(fs)
	if err := noArgs(fs, args, &c); err != nil {
		return err
	}
	farms, err := query(&c, "/v1/admin/farms", func(d *db.DB) ([]registry.Farm, error) { return d.Farms() })
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tCHANNEL\tCREATED")
	for _, f := range farms {
		fmt.Fprintf(w, "%s\t%s\t%s\n", f.Name, f.Channel, f.Created.UTC().Format(time.RFC3339))
	}
	return w.Flush()
}

func cmdNode(args []string) error {
	return subcommand("node", map[string]func([]string) error{"list": cmdNodeList, "show": cmdNodeShow}, args)
}

func cmdNodeList(args []string) error {
	fs := newFlags("node list", "zgrid node list [--data DIR | --server URL ...]",
		"List nodes: ID, farm, release version (served, and reported when it\ndiffers), state, and when the registry last heard from it.\n\n"+connHelp,
		"  zgrid node list --data ./grid\n  zgrid node list --server https://192.0.2.2:8443 --token-file admin.token --ca ca.pem")
	var c conn
	c.register(fs)
	if err := noArgs(fs, args, &c); err != nil {
		return err
	}
	nodes, err := query(&c, "/v1/admin/nodes", func(d *db.DB) ([]registry.Node, error) { return d.Nodes() })
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tFARM\tRELEASE\tSTATE\tLAST SEEN")
	for _, n := range nodes {
		rel := fmt.Sprint(n.ReleaseServed)
		if n.ReleaseReported != 0 && n.ReleaseReported != n.ReleaseServed {
			rel += fmt.Sprintf(" (runs %d)", n.ReleaseReported)
		}
		state := n.State
		if n.Reason != "" {
			state += ": " + console.Sanitize(n.Reason, 60)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", n.ID, n.Farm, rel, state, n.LastSeen.UTC().Format(time.RFC3339))
	}
	return w.Flush()
}

func cmdNodeShow(args []string) error {
	fs := newFlags("node show", "zgrid node show ID [--json] [--data DIR | --server URL ...]",
		"Show one node's record and boot timeline.\n\n"+connHelp,
		"  zgrid node show 4c4c4544-0042 --data ./grid\n  zgrid node show 4c4c4544-0042 --data ./grid --json")
	var c conn
	c.register(fs)
	asJSON := fs.Bool("json", false, "print the record as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr(fs, "need one node ID")
	}
	if err := c.check(); err != nil {
		return err
	}
	n, err := query(&c, "/v1/admin/nodes/"+url.PathEscape(pos[0]), func(d *db.DB) (registry.Node, error) { return d.Node(pos[0]) })
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(n)
	}
	fmt.Printf("node        %s\nfarm        %s\nagent       %s\nfirst seen  %s\nlast seen   %s\nrelease     served %d, reported %d\nstate       %s (from %s)\n",
		n.ID, n.Farm, console.Sanitize(n.Agent, 80), n.FirstSeen.UTC().Format(time.RFC3339), n.LastSeen.UTC().Format(time.RFC3339),
		n.ReleaseServed, n.ReleaseReported, n.State, orDash(n.Source))
	if n.Reason != "" {
		fmt.Printf("reason      %s\n", console.Sanitize(n.Reason, registry.MaxReasonLen))
	}
	if nw := n.Network; nw != nil {
		fmt.Printf("network     %s on %s (%s, %s) via %s: %s\n", console.Sanitize(nw.Addr, 64), console.Sanitize(nw.Link, 32),
			console.Sanitize(nw.Family, 8), console.Sanitize(nw.Source, 16), orDash(console.Sanitize(nw.Router, 64)), console.Sanitize(nw.Why, 128))
		for _, o := range nw.Others {
			fmt.Printf("            also %s\n", console.Sanitize(o, registry.MaxNetworkText))
		}
	}
	if len(n.Timeline) > 0 {
		fmt.Printf("\n%s", timeline.Table(n.Timeline))
	}
	return nil
}

// noArgs parses flags of a command that takes no arguments.
func noArgs(fs *flag.FlagSet, args []string, c *conn) error {
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr(fs, "unexpected arguments %q", pos)
	}
	return c.check()
}

func printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
