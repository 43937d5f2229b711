package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/server"
	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

func cmdNode(args []string) error {
	return subcommand("node", map[string]func([]string) error{"list": cmdNodeList, "show": cmdNodeShow, "approve": cmdNodeApprove, "deny": cmdNodeDeny, "allow": cmdNodeAllow, "delete": cmdNodeDelete}, args)
}

func cmdNodeList(args []string) error {
	fs := newFlags("node list", "zgrid node list [--farm NAME] [--state STATE] [--seen-within DURATION] [-o table|json|yaml] [--data DIR | --server URL ...]",
		"List nodes: ID, farm, identity (tpm-attested, tpm, dmi, ephemeral; with\nthe attestation state), release version (served, and reported when it\ndiffers), state, and when the registry last heard from it. Failed nodes\ncome first, then by ID. The filters combine.\n\n"+connHelp,
		"  zgrid node list --data ./grid\n  zgrid node list --state failed --farm lab -o json\n  zgrid node list --seen-within 10m --server https://192.0.2.2:8443 --token-file admin.token --ca ca.pem")
	var c conn
	c.register(fs)
	farm := fs.String("farm", "", "only nodes of this farm")
	state := fs.String("state", "", "only nodes in this state ("+strings.Join(registry.NodeStates, ", ")+")")
	within := fs.Duration("seen-within", 0, "only nodes the registry heard from within this long (e.g. 10m)")
	out := registerOutput(fs)
	if err := noArgs(fs, args, &c); err != nil {
		return err
	}
	if err := out.check(fs); err != nil {
		return err
	}
	if *within < 0 {
		return usageErr(fs, "--seen-within must not be negative")
	}
	if *state != "" && !slices.Contains(registry.NodeStates, *state) {
		return usageErr(fs, "--state %q: not a node state (%s)", *state, strings.Join(registry.NodeStates, ", "))
	}
	nodes, err := query(&c, "/v1/admin/nodes", func(d *db.DB) ([]records.Node, error) {
		ns, err := d.Nodes()
		return records.WithoutBoots(ns), err
	})
	if err != nil {
		return err
	}
	nodes = filterNodes(nodes, *farm, *state, *within, time.Now())
	if !out.table() {
		return out.print(nodes)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tFARM\tIDENTITY\tRELEASE\tSTATE\tLAST SEEN")
	for _, n := range nodes {
		rel := releaseText(n.ReleaseServed, n.ReleaseReported)
		state := n.State
		if n.Reason != "" {
			state += ": " + console.Sanitize(n.Reason, 60)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, n.Farm, identityText(n.Identity), rel, state, n.LastSeen.UTC().Format(time.RFC3339))
	}
	return w.Flush()
}

// filterNodes keeps the nodes that match every filter given, failed ones
// first: those are the ones an operator is looking for.
func filterNodes(nodes []records.Node, farm, state string, within time.Duration, now time.Time) []records.Node {
	out := []records.Node{}
	for _, n := range nodes {
		if (farm == "" || n.Farm == farm) && (state == "" || n.State == state) && (within == 0 || now.Sub(n.LastSeen) <= within) {
			out = append(out, n)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		fi, fj := out[i].State == registry.StateFailed, out[j].State == registry.StateFailed
		if fi != fj {
			return fi
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func cmdNodeShow(args []string) error {
	fs := newFlags("node show", "zgrid node show ID [--boots N] [-o table|json|yaml] [--data DIR | --server URL ...]",
		fmt.Sprintf("Show one node's record and boot timeline, then its boot history: the\nearlier boots the registry keeps (up to %d), one line each, and the\ntimelines of the newest --boots of them.\n\n", records.KeepBoots)+connHelp,
		"  zgrid node show 4c4c4544-0042 --data ./grid\n  zgrid node show 4c4c4544-0042 --boots 8 --data ./grid\n  zgrid node show 4c4c4544-0042 --data ./grid -o json")
	var c conn
	c.register(fs)
	out := registerOutput(fs)
	asJSON := fs.Bool("json", false, "the same as -o json")
	boots := fs.Int("boots", 2, fmt.Sprintf("earlier boots to show with their timelines (0 to %d)", records.KeepBoots))
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *asJSON {
		*out.v = "json"
	}
	if err := out.check(fs); err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr(fs, "need one node ID")
	}
	if *boots < 0 || *boots > records.KeepBoots {
		return usageErr(fs, "--boots %d: want 0 to %d", *boots, records.KeepBoots)
	}
	if err := c.check(); err != nil {
		return err
	}
	n, err := query(&c, "/v1/admin/nodes/"+url.PathEscape(pos[0]), func(d *db.DB) (records.Node, error) { return d.Node(pos[0]) })
	if err != nil {
		return err
	}
	if !out.table() {
		return out.print(n)
	}
	fmt.Printf("node        %s\nfarm        %s\nagent       %s\nfirst seen  %s\nlast seen   %s\nrelease     served %d, reported %d\nstate       %s (from %s)\n",
		n.ID, n.Farm, console.Sanitize(n.Agent, 80), n.FirstSeen.UTC().Format(time.RFC3339), n.LastSeen.UTC().Format(time.RFC3339),
		n.ReleaseServed, n.ReleaseReported, n.State, orDash(n.Source))
	fmt.Printf("booted      %s\n", bootTime(n.BootAt))
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
	fmt.Printf("highest     release %d ever reported running\n", n.HighestRelease)
	if fb := n.Fallback; fb != nil {
		fmt.Printf("fallback    from release %d to %d at %s: %s; served %d until a newer release than %d\n", fb.From, fb.To,
			fb.At.UTC().Format(time.RFC3339), console.Sanitize(fb.Reason, registry.MaxReasonLen), fb.To, fb.From)
	}
	printIdentity(n.Identity)
	printServices(os.Stdout, n.Services)
	if len(n.Timeline) > 0 {
		fmt.Printf("\n%s", timeline.Table(safeSteps(n.Timeline)))
	}
	printBoots(os.Stdout, n.Boots, *boots)
	return nil
}

// printBoots lists a node's earlier boots, newest first, and the
// timelines of the first withTimelines of them.
func printBoots(w io.Writer, boots []records.Boot, withTimelines int) {
	if len(boots) == 0 {
		return
	}
	fmt.Fprintf(w, "\nEARLIER BOOTS         RELEASE  STATE     PID 1 ms  REASON\n")
	for _, b := range boots {
		fmt.Fprintf(w, "%-21s %7s  %-8s %9s  %s\n", bootTime(b.At), releaseText(b.Release, b.Reported), console.Sanitize(b.State, 8),
			reachedText(b), orDash(console.Sanitize(b.Reason, 120)))
	}
	for _, b := range boots[:min(withTimelines, len(boots))] {
		if len(b.Timeline) > 0 {
			fmt.Fprintf(w, "\nboot of %s, release %d:\n%s", bootTime(b.At), b.Release, timeline.Table(safeSteps(b.Timeline)))
		}
	}
}

func bootTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// releaseText is a release column: the version served, and the one the
// node said it ran when that differs.
func releaseText(served, reported uint64) string {
	s := fmt.Sprint(served)
	if reported != 0 && reported != served {
		s += fmt.Sprintf(" (runs %d)", reported)
	}
	return s
}

func reachedText(b records.Boot) string {
	if ms := b.Reached(); ms > 0 {
		return fmt.Sprintf("%.0f", ms)
	}
	return "-"
}

// safeSteps is steps with the node's text made safe for a terminal.
func safeSteps(steps []timeline.Step) []timeline.Step {
	out := make([]timeline.Step, len(steps))
	for i, s := range steps {
		s.Name, s.Error = console.Sanitize(s.Name, records.MaxKeptStepName), console.Sanitize(s.Error, records.MaxKeptStepError)
		out[i] = s
	}
	return out
}

// printServices shows each service Core-0 reported, and the last output
// lines of one that is not ready, so an operator sees why without a
// console.
func printServices(w io.Writer, ss []registry.ServiceState) {
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(w, "\nSERVICE          STATE          RESTARTS  SINCE                 REASON\n")
	for _, s := range ss {
		name := s.Name
		if s.Optional {
			name += " (opt)"
		}
		since := "-"
		if !s.Since.IsZero() {
			since = s.Since.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%-16s %-14s %8d  %-21s %s\n", name, console.Sanitize(s.State, 14), s.Restarts, since, orDash(console.Sanitize(s.Reason, 160)))
	}
	for _, s := range ss {
		if s.State == "ready" || len(s.Output) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nlast output of %s:\n", s.Name)
		for _, l := range s.Output {
			fmt.Fprintf(w, "  %s\n", console.Sanitize(l, release.MaxServiceLine))
		}
	}
}

// identityText is the IDENTITY column: the kind, attested or not.
func identityText(id records.Identity) string {
	k := id.Kind
	if k == "" {
		k = registry.KindDMI
	}
	if a := id.Attestation; a != nil {
		if a.State == records.AttestOK {
			return k + "-attested"
		}
		k += " (" + a.State + ")"
	}
	switch {
	case id.Denied:
		k += ", denied"
	case !id.Approved:
		k += ", unapproved"
	}
	return k
}

func printIdentity(id records.Identity) {
	approved := "not approved"
	switch {
	case id.Denied:
		approved = "denied (zgrid node approve lets it boot)"
	case id.Approved:
		approved = "approved"
	}
	fmt.Printf("identity    %s from %s, %s\n", identityText(id), orDash(console.Sanitize(id.Source, 64)), approved)
	if id.TPMError != "" {
		fmt.Printf("tpm         %s\n", console.Sanitize(id.TPMError, registry.MaxTPMErrText))
	}
	if id.EKFingerprint != "" {
		fmt.Printf("ek          %s %s (identity key activated: %v)\n", id.EKKind, id.EKFingerprint, id.Bound)
	}
	if id.EKCert != "" {
		fmt.Printf("ek cert     %s; chains to a manufacturer CA: %v\n", console.Sanitize(id.EKCert, 256), id.EKCertVerified)
	}
	a := id.Attestation
	if a == nil {
		return
	}
	fmt.Printf("attested    %s at %s", a.State, a.Time.UTC().Format(time.RFC3339))
	if a.Detail != "" {
		fmt.Printf(": %s", console.Sanitize(a.Detail, registry.MaxReasonLen))
	}
	fmt.Printf("\nfirmware    log %s (%d events); TPM resets %d, restarts %d\n", a.FirmwareLog, a.FirmwareEvents, a.ResetCount, a.RestartCount)
	for _, p := range a.PCRs {
		fmt.Printf("pcr %-7d %x\n", p.Index, p.Digest)
	}
	for i, e := range a.Events {
		fmt.Printf("event %-5d pcr %d %-11s %s\n", i, e.PCR, e.Type, console.Sanitize(e.Value, 160))
	}
}

func cmdNodeApprove(args []string) error {
	fs := newFlags("node approve", "zgrid node approve ID [--data DIR | --server URL ...]",
		"Let a node that an approval farm holds, or that zgrid node deny refused,\nboot: it does on its next attempt (within seconds when held, after its\nretry backoff when denied), without a reboot. Also resets the node's\nmeasurement baseline: its next boot's trust root and command line become\nthe expected ones.\n\n"+connHelp,
		"  zgrid node approve n0123456789abcdef0123456789abcdef --data ./grid")
	n, err := nodeAction(fs, args, "approve", (*server.Server).Approve)
	if err != nil {
		return err
	}
	fmt.Printf("node %s approved (farm %s, %s identity)\n", n.ID, n.Farm, identityText(n.Identity))
	return nil
}

func cmdNodeDeny(args []string) error {
	fs := newFlags("node deny", "zgrid node deny ID [--data DIR | --server URL ...]",
		"Refuse a node: its boot requests get 403 naming the denial, and so do the\nstatus reports of the boot it is in (a running Core-0 is not stopped;\nits node retries its boot with backoff). The record stays, listed as\ndenied, so that the node is not enrolled anew as a deleted one would\nbe. zgrid node approve lifts the denial.\n\n"+connHelp,
		"  zgrid node deny n0123456789abcdef0123456789abcdef --data ./grid\n  zgrid node list --state denied")
	n, err := nodeAction(fs, args, "deny", (*server.Server).Deny)
	if err != nil {
		return err
	}
	fmt.Printf("node %s denied (farm %s, %s identity); zgrid node approve %s lifts it\n", n.ID, n.Farm, identityText(n.Identity), n.ID)
	return nil
}

// nodeAction runs an operator's change of one node (approve, deny), here
// or at a server.
func nodeAction(fs *flag.FlagSet, args []string, verb string, change func(*server.Server, string) (records.Node, error)) (records.Node, error) {
	var c conn
	c.register(fs)
	arg, err := oneArg(fs, args, "node ID")
	if err != nil {
		return records.Node{}, err
	}
	return apply(&c, "POST", "/v1/admin/nodes/"+url.PathEscape(arg)+"/"+verb, struct{}{}, func(s *server.Server) (records.Node, error) {
		return change(s, arg)
	})
}

func cmdNodeDelete(args []string) error {
	fs := newFlags("node delete", "zgrid node delete ID [--data DIR | --server URL ...]",
		"Forget a node: its record, boot history and tokens. Its Core-0 can no\nlonger report; if it boots again it is a new node to its farm's\nenrollment policy (an approval farm holds it again).\n\n"+connHelp,
		"  zgrid node delete n0123456789abcdef0123456789abcdef --data ./grid")
	var c conn
	c.register(fs)
	arg, err := oneArg(fs, args, "node ID")
	if err != nil {
		return err
	}
	n, err := apply(&c, "DELETE", "/v1/admin/nodes/"+url.PathEscape(arg), nil, func(s *server.Server) (records.Node, error) {
		return s.DeleteNode(arg)
	})
	if err != nil {
		return err
	}
	fmt.Printf("node %s deleted (farm %s, was %s)\n", n.ID, n.Farm, n.State)
	return nil
}

func cmdNodeAllow(args []string) error {
	fs := newFlags("node allow", "zgrid node allow ID|EK-FINGERPRINT [--data DIR | --server URL ...]",
		"List a node ID, or the fingerprint of a TPM's endorsement key, for farms\nthat enroll listed nodes only (--enroll listed). The fingerprint is\nsha256: and the hex SHA-256 of the EK's public key in PKIX DER:\n  openssl x509 -in ek.pem -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum\n\n"+connHelp,
		"  zgrid node allow sha256:3f7a...e1 --data ./grid")
	var c conn
	c.register(fs)
	arg, err := oneArg(fs, args, "node ID or EK fingerprint")
	if err != nil {
		return err
	}
	_, err = apply(&c, "POST", "/v1/admin/allowed", records.Allowed{Key: arg}, func(s *server.Server) (records.Allowed, error) {
		return records.Allowed{Key: arg}, s.Allow(arg)
	})
	if err != nil {
		return err
	}
	fmt.Printf("%s allowed\n", arg)
	return nil
}
