package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/server"
	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

func cmdFarm(args []string) error {
	return subcommand("farm", map[string]func([]string) error{"create": cmdFarmCreate, "set": cmdFarmSet, "list": cmdFarmList, "show": cmdFarmShow, "delete": cmdFarmDelete}, args)
}

const policyHelp = `Enrollment (how a node never seen joins the farm):
  open       the first boot enrolls it (default)
  approval   it waits, shown as pending, until zgrid node approve ID
  listed     only node IDs or EK fingerprints listed with zgrid node allow
--require-tpm refuses nodes without a TPM identity; --allow-ephemeral takes
nodes that found no identity (QEMU without SMBIOS UUID) under a random ID
for the boot. See docs/identity.md.
--cache DEVICE gives the farm's nodes a verified chunk cache on that block
device (as zeroboot.cache=DEVICE would; a node's own command line wins),
--cache-wipe formats it even when it holds other data. See
docs/chunkcache.md.
--pin VERSION serves that version of the channel instead of the newest;
--rollout PERCENT (1-99) gives the newest release to that share of the
farm's nodes, always the same ones, and the release before it to the rest:
raise it, then set it back to 100 (everyone). Nodes that already ran a
newer release refuse an older one. farm set replaces the whole policy, so
a farm set without --pin unpins.
--ready-deadline D (10s to 24h) gives each node a last known good release
with its own: a node whose release is not ready D after Core-0 starts
boots that one instead (the release it last reached ready on, else the
newest good one before), and is served it until a newer release comes.
See docs/services.md.`

// policyFlags are a farm's enrollment policy on the command line.
type policyFlags struct {
	enroll     *string
	requireTPM *bool
	ephemeral  *bool
	cache      *string
	cacheWipe  *bool
	pin        *uint64
	rollout    *int
	deadline   *time.Duration
}

func registerPolicy(fs *flag.FlagSet) policyFlags {
	return policyFlags{
		enroll:     fs.String("enroll", records.EnrollOpen, "enrollment of new nodes: open, approval or listed"),
		requireTPM: fs.Bool("require-tpm", false, "refuse nodes without a TPM identity"),
		ephemeral:  fs.Bool("allow-ephemeral", false, "take nodes that have no identity of their own under a per-boot ID"),
		cache:      fs.String("cache", "", "chunk cache block device for the farm's nodes, /dev/NAME (default: none)"),
		cacheWipe:  fs.Bool("cache-wipe", false, "format the --cache device even when it holds other data"),
		pin:        fs.Uint64("pin", 0, "serve this version of the channel instead of the newest (default: the newest)"),
		rollout:    fs.Int("rollout", 100, "give the channel's newest release to this percentage of the farm's nodes, the release before it to the rest"),
		deadline:   fs.Duration("ready-deadline", 0, "boot the node's last known good release when its release is not ready this long after Core-0 starts (10s to 24h; default: no deadline)"),
	}
}

// check refuses a rollout share the farm cannot have, here where the flag
// can be named (the server's record keeps 0 for everyone).
func (p policyFlags) check(fs *flag.FlagSet) error {
	if *p.rollout < 1 || *p.rollout > 100 {
		return usageErr(fs, "--rollout %d: want a percentage of nodes, 1 to 100", *p.rollout)
	}
	if d := *p.deadline; d%time.Second != 0 || registry.CheckReadyDeadline(int(d/time.Second)) != nil {
		return usageErr(fs, "--ready-deadline %v: want whole seconds from %ds to %ds", d, registry.MinReadyDeadline, registry.MaxReadyDeadline)
	}
	return nil
}

func (p policyFlags) farm(name, channel string) records.Farm {
	f := records.Farm{Name: name, Channel: channel, Enroll: *p.enroll, RequireTPM: *p.requireTPM, AllowEphemeral: *p.ephemeral, Pin: *p.pin,
		ReadyDeadline: int(*p.deadline / time.Second)}
	if *p.rollout != 100 {
		f.Rollout = *p.rollout // 100 is everyone, stored as 0
	}
	if *p.cache != "" || *p.cacheWipe {
		f.Cache = &registry.Cache{Device: *p.cache, Wipe: *p.cacheWipe}
	}
	return f
}

func cmdFarmCreate(args []string) error {
	fs := newFlags("farm create", "zgrid farm create NAME --channel CHANNEL [--enroll POLICY] [--require-tpm] [--allow-ephemeral] [--cache DEVICE [--cache-wipe]] [--pin V | --rollout P] [--ready-deadline D] [--data DIR | --server URL ...]",
		"Create a farm: nodes booting with zeroboot.farm=NAME get the newest\nrelease of CHANNEL.\n\n"+policyHelp+"\n\n"+connHelp,
		`  zgrid farm create demo --channel stable --data ./grid
  zgrid farm create lab --channel stable --enroll approval --require-tpm --data ./grid
  ZGRID_SERVER=https://registry.example.net:8443 ZGRID_TOKEN_FILE=admin.token ZGRID_CA=ca.pem \
    zgrid farm create ci --channel beta --allow-ephemeral`)
	var c conn
	c.register(fs)
	channel := fs.String("channel", "", "release channel the farm follows (required)")
	pol := registerPolicy(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *channel == "" {
		return usageErr(fs, "need one farm NAME and --channel")
	}
	if err := pol.check(fs); err != nil {
		return err
	}
	f, err := apply(&c, "POST", "/v1/admin/farms", pol.farm(pos[0], *channel), func(s *server.Server) (records.Farm, error) {
		return s.CreateFarm(pol.farm(pos[0], *channel))
	})
	if err != nil {
		return err
	}
	fmt.Printf("farm %s created, channel %s, %s\n", f.Name, f.Channel, policyText(f))
	return nil
}

func cmdFarmSet(args []string) error {
	fs := newFlags("farm set", "zgrid farm set NAME --channel CHANNEL [--enroll POLICY] [--require-tpm] [--allow-ephemeral] [--cache DEVICE [--cache-wipe]] [--pin V | --rollout P] [--ready-deadline D] [--data DIR | --server URL ...]",
		"Replace a farm's channel and enrollment policy (flags not given take\ntheir defaults, as in farm create).\n\n"+policyHelp+"\n\n"+connHelp,
		"  zgrid farm set ci --channel stable --allow-ephemeral --data ./grid")
	var c conn
	c.register(fs)
	channel := fs.String("channel", "", "release channel the farm follows (required)")
	pol := registerPolicy(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *channel == "" {
		return usageErr(fs, "need one farm NAME and --channel")
	}
	if err := pol.check(fs); err != nil {
		return err
	}
	f, err := apply(&c, "PUT", "/v1/admin/farms/"+url.PathEscape(pos[0]), pol.farm(pos[0], *channel), func(s *server.Server) (records.Farm, error) {
		return s.UpdateFarm(pol.farm(pos[0], *channel))
	})
	if err != nil {
		return err
	}
	fmt.Printf("farm %s: channel %s, %s\n", f.Name, f.Channel, policyText(f))
	return nil
}

func cmdFarmShow(args []string) error {
	fs := newFlags("farm show", "zgrid farm show NAME [-o table|json|yaml] [--data DIR | --server URL ...]",
		"Show one farm: its channel and policy, how many of its nodes are in each\nstate, and which release its nodes get now (two under a rollout, with\ntheir shares), or why they get none.\n\n"+connHelp,
		"  zgrid farm show lab --data ./grid\n  zgrid farm show lab -o json --server https://192.0.2.2:8443 --token-file admin.token --ca ca.pem")
	var c conn
	c.register(fs)
	out := registerOutput(fs)
	name, err := oneArg(fs, args, "farm name")
	if err != nil {
		return err
	}
	if err := out.check(fs); err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	v, err := query(&c, "/v1/admin/farms/"+url.PathEscape(name), func(d *db.DB) (server.FarmView, error) {
		return (&server.Server{DB: d}).ShowFarm(name)
	})
	if err != nil {
		return err
	}
	if !out.table() {
		return out.print(v)
	}
	printFarm(v)
	return nil
}

func printFarm(v server.FarmView) {
	fmt.Printf("farm        %s\nchannel     %s\ncreated     %s\npolicy      %s\n", v.Name, v.Channel, v.Created.UTC().Format(time.RFC3339), policyText(v.Farm))
	for _, s := range v.Serves {
		what := ""
		if s.Withdrawn {
			what = ", a withdrawal"
		}
		fmt.Printf("serves      version %d to %d%% of nodes (expires %s%s)\n", s.Version, s.Percent, s.Expires.UTC().Format(time.RFC3339), what)
	}
	if v.Problem != "" {
		fmt.Printf("serves      nothing: %s\n", console.Sanitize(v.Problem, 512))
	}
	total, parts := 0, []string{}
	for _, st := range registry.NodeStates {
		if k := v.Nodes[st]; k > 0 {
			total += k
			parts = append(parts, fmt.Sprintf("%d %s", k, st))
		}
	}
	if total == 0 {
		fmt.Println("nodes       none")
		return
	}
	fmt.Printf("nodes       %d: %s\n", total, strings.Join(parts, ", "))
}

func cmdFarmDelete(args []string) error {
	fs := newFlags("farm delete", "zgrid farm delete NAME [--force] [--data DIR | --server URL ...]",
		"Delete a farm. Refused while nodes are assigned to it, unless --force:\ntheir records stay (zgrid node delete removes them) and their boots are\nrefused until a farm of that name exists again.\n\n"+connHelp,
		"  zgrid farm delete old-lab --data ./grid\n  zgrid farm delete old-lab --force --data ./grid")
	var c conn
	c.register(fs)
	force := fs.Bool("force", false, "delete even while nodes are assigned to the farm")
	arg, err := oneArg(fs, args, "farm NAME")
	if err != nil {
		return err
	}
	path := "/v1/admin/farms/" + url.PathEscape(arg)
	if *force {
		path += "?force=true"
	}
	d, err := apply(&c, "DELETE", path, nil, func(s *server.Server) (server.FarmDeleted, error) {
		return s.DeleteFarm(arg, *force)
	})
	if err != nil {
		if strings.Contains(err.Error(), "in use") {
			return fmt.Errorf("%w; zgrid farm delete %s --force deletes it anyway", err, arg)
		}
		return err
	}
	fmt.Printf("farm %s deleted", d.Farm)
	if d.Nodes > 0 {
		fmt.Printf("; %d nodes still name it and are refused until it exists again", d.Nodes)
	}
	fmt.Println()
	return nil
}

func policyText(f records.Farm) string {
	t := "enroll " + f.Enroll
	if f.Enroll == "" {
		t = "enroll " + records.EnrollOpen
	}
	if f.RequireTPM {
		t += ", TPM required"
	}
	if f.AllowEphemeral {
		t += ", ephemeral nodes allowed"
	}
	if f.Pin != 0 {
		t += fmt.Sprintf(", pinned to version %d", f.Pin)
	}
	if f.Rollout != 0 {
		t += fmt.Sprintf(", newest release to %d%% of nodes", f.Rollout)
	}
	if f.ReadyDeadline != 0 {
		t += fmt.Sprintf(", ready within %s or last known good", time.Duration(f.ReadyDeadline)*time.Second)
	}
	if c := f.Cache; c != nil {
		t += ", chunk cache " + c.Device
		if c.Wipe {
			t += " (wiped if it holds other data)"
		}
	}
	return t
}

// apply runs a change against the local database (through the server's
// checks) or the running server.
func apply[T any](c *conn, method, path string, body any, local func(*server.Server) (T, error)) (T, error) {
	var out T
	if err := c.check(); err != nil {
		return out, err
	}
	d, ok, err := c.local()
	if err != nil {
		return out, err
	}
	if ok {
		defer d.Close()
		s, err := c.localServer(d)
		if err != nil {
			return out, err
		}
		return local(s)
	}
	a, err := c.admin()
	if err != nil {
		return out, err
	}
	err = a.call(method, path, body, &out)
	return out, err
}

// query runs a read against the local database or the running server.
func query[T any](c *conn, path string, local func(*db.DB) (T, error)) (T, error) {
	var out T
	d, ok, err := c.localRead()
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
	fs := newFlags("farm list", "zgrid farm list [-o table|json|yaml] [--data DIR | --server URL ...]", "List farms, their channels and policies.\n\n"+connHelp,
		"  zgrid farm list --data ./grid\n  zgrid farm list -o json --data ./grid")
	var c conn
	c.register(fs)
	out := registerOutput(fs)
	if err := noArgs(fs, args, &c); err != nil {
		return err
	}
	if err := out.check(fs); err != nil {
		return err
	}
	farms, err := query(&c, "/v1/admin/farms", func(d *db.DB) ([]records.Farm, error) { return d.Farms() })
	if err != nil {
		return err
	}
	if !out.table() {
		return out.print(append([]records.Farm{}, farms...))
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tCHANNEL\tPOLICY\tCREATED")
	for _, f := range farms {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.Name, f.Channel, policyText(f), f.Created.UTC().Format(time.RFC3339))
	}
	return w.Flush()
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

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
