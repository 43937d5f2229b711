package main

import (
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/server"
	"github.com/zeroboot/zeroboot/pkg/atomicfile"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
)

func cmdRelease(args []string) error {
	return subcommand("release", map[string]func([]string) error{
		"create":  func(a []string) error { return cmdReleaseCreate(a, false) },
		"publish": func(a []string) error { return cmdReleaseCreate(a, true) },
		"sign":    cmdReleaseSign,
		"push":    cmdReleasePush,
		"list":    cmdReleaseList,
	}, args)
}

// releaseFlags are the contents of a release on the command line.
type releaseFlags struct {
	keys, components, args, env listFlag
	channel, entry, out         string
	version                     uint64
	expires                     time.Duration
}

func (r *releaseFlags) register(fs *flag.FlagSet) {
	fs.Var(&r.keys, "key", "private release key to sign with (repeatable; required)")
	fs.StringVar(&r.channel, "channel", "", "release channel (required)")
	fs.Uint64Var(&r.version, "version", 0, "release version; must exceed every earlier one on the channel (required)")
	fs.DurationVar(&r.expires, "expires", 720*time.Hour, "validity from now; nodes refuse the release after it")
	fs.Var(&r.components, "component", "component as name=NAME,flist=sha256:HEX,mount=/PATH (repeatable; required)")
	fs.StringVar(&r.entry, "entry", "", "Core-0 entrypoint path inside the assembled root (required)")
	fs.Var(&r.args, "arg", "argument for the entrypoint (repeatable, in order)")
	fs.Var(&r.env, "env", "KEY=VALUE environment for the entrypoint (repeatable)")
}

func parseComponent(s string) (release.Component, error) {
	var c release.Component
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || seen[k] {
			return c, fmt.Errorf("--component %q: want name=NAME,flist=sha256:HEX,mount=/PATH", s)
		}
		seen[k] = true
		switch k {
		case "name":
			c.Name = v
		case "mount":
			c.Mount = v
		case "flist":
			d, err := digest.Parse(v)
			if err != nil {
				return c, fmt.Errorf("--component %q: %w", s, err)
			}
			c.Flist = d
		default:
			return c, fmt.Errorf("--component %q: unknown key %q (want name, flist, mount)", s, k)
		}
	}
	if !seen["name"] || !seen["flist"] || !seen["mount"] {
		return c, fmt.Errorf("--component %q: name, flist and mount are all required", s)
	}
	return c, nil
}

func (r *releaseFlags) sign(now time.Time) (*release.Envelope, error) {
	rel := &release.Release{
		Format:     release.Format,
		Channel:    r.channel,
		Version:    r.version,
		Created:    now.UTC().Truncate(time.Second),
		Expires:    now.Add(r.expires).UTC().Truncate(time.Second),
		Entrypoint: release.Entrypoint{Path: r.entry, Args: nonNilS(r.args), Env: nonNilS(r.env)},
	}
	for _, s := range r.components {
		c, err := parseComponent(s)
		if err != nil {
			return nil, err
		}
		rel.Components = append(rel.Components, c)
	}
	keys, err := readKeys(r.keys)
	if err != nil {
		return nil, err
	}
	return release.Sign(rel, keys...)
}

func nonNilS(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func readKeys(paths []string) ([]ed25519.PrivateKey, error) {
	var keys []ed25519.PrivateKey
	for _, p := range paths {
		k, err := release.ReadPrivateKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func cmdReleaseCreate(args []string, push bool) error {
	name, synopsis, about := "release create", "zgrid release create --out FILE --key KEY [--key KEY2] --channel C --version N [--expires D] --component name=N,flist=sha256:H,mount=/P... --entry PATH [--arg A]... [--env K=V]...",
		`Create and sign a release offline and write its envelope to FILE, for
co-signing (zgrid release sign) and pushing later (zgrid release push).`
	examples := `  zgrid release create --out v7.json --key alice.key --channel stable --version 7 \
    --component name=core0,flist=sha256:3f5a...,mount=/ --entry /bin/core0 --arg --heartbeat --arg 5s
  zgrid release sign --in v7.json --key bob.key && zgrid release push --data ./grid v7.json`
	if push {
		name, synopsis, about = "release publish", "zgrid release publish [--data DIR | --server URL ...] --key KEY [--key KEY2] --channel C --version N [--expires D] --component name=N,flist=sha256:H,mount=/P... --entry PATH [--arg A]... [--env K=V]...",
			`Create a release, sign it locally with every --key (the server never
holds keys) and publish it: to the running server, or with --data alone into
the data directory's database when no server holds it. The registry refuses
a release whose flists are not in its store, that is expired, whose version
is not above the channel's highest, or (server with --trust) whose
signatures do not meet the trust file.

`+connHelp
		examples = `  zgrid release publish --data ./grid --key release.key --channel stable --version 1 --expires 720h \
    --component name=core0,flist=sha256:3f5a...,mount=/ --entry /bin/core0
  zgrid release publish --server https://192.0.2.2:8443 --token-file admin.token --ca ca.pem \
    --key alice.key --key bob.key --channel stable --version 8 \
    --component name=core0,flist=sha256:3f5a...,mount=/ --component name=tools,flist=sha256:91c0...,mount=/opt/tools \
    --entry /bin/core0 --arg --verbose --env LANG=C.UTF-8`
	}
	fs := newFlags(name, synopsis, about, examples)
	var rf releaseFlags
	rf.register(fs)
	var c conn
	var trustFile string
	if push {
		c.register(fs)
		fs.StringVar(&trustFile, "trust", "", "with --data and no server: also verify against this trust file before storing")
	}
	fs.StringVar(&rf.out, "out", "", "also write the signed envelope to FILE")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageErr(fs, "unexpected arguments %q", pos)
	case len(rf.keys) == 0 || rf.channel == "" || rf.version == 0 || len(rf.components) == 0 || rf.entry == "":
		return usageErr(fs, "need --key, --channel, --version, --component and --entry")
	case !push && rf.out == "":
		return usageErr(fs, "need --out FILE")
	}
	if push {
		if err := c.check(); err != nil {
			return err
		}
	}
	env, err := rf.sign(time.Now())
	if err != nil {
		return err
	}
	b, err := env.Marshal()
	if err != nil {
		return err
	}
	if rf.out != "" {
		if err := atomicfile.Write(rf.out, b, 0o644); err != nil {
			return err
		}
		fmt.Printf("envelope written to %s (%d signature(s))\n", rf.out, len(env.Signatures))
	}
	if !push {
		return nil
	}
	return pushEnvelope(&c, b, trustFile)
}

func pushEnvelope(c *conn, b []byte, trustFile string) error {
	var info registry.ReleaseInfo
	d, ok, err := c.local()
	if err != nil {
		return err
	}
	if ok {
		defer d.Close()
		s := c.localServer(d)
		if trustFile != "" {
			tb, err := os.ReadFile(trustFile)
			if err != nil {
				return err
			}
			t, err := release.ParseTrust(tb)
			if err != nil {
				return fmt.Errorf("%s: %w", trustFile, err)
			}
			s.OpenRelease = server.ReleaseOpener(t)
		}
		info, err = s.Publish(b)
	} else {
		a, aerr := c.admin()
		if aerr != nil {
			return aerr
		}
		err = a.call("POST", "/v1/admin/releases", b, &info)
	}
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	fmt.Printf("published %s version %d (%d component(s), %d signature(s), expires %s)\n",
		info.Channel, info.Version, len(info.Components), len(info.KeyIDs), info.Expires.UTC().Format(time.RFC3339))
	return nil
}

func cmdReleaseSign(args []string) error {
	fs := newFlags("release sign", "zgrid release sign --in FILE --key KEY [--out FILE]",
		`Add a co-signature to a release envelope, offline. The payload is checked
to be a valid release first; a key that already signed is refused.`,
		`  zgrid release sign --in v7.json --key bob.key
  zgrid release sign --in v7.json --key carol.key --out v7-signed.json`)
	in := fs.String("in", "", "envelope file (required)")
	key := fs.String("key", "", "private key to sign with (required)")
	out := fs.String("out", "", "where to write the result (default: replace --in)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *in == "" || *key == "" || len(pos) > 0 {
		return usageErr(fs, "need --in FILE and --key KEY")
	}
	b, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	env, err := release.ParseEnvelope(b)
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	k, err := release.ReadPrivateKey(*key)
	if err != nil {
		return err
	}
	if err := env.AddSignature(k); err != nil {
		return err
	}
	if b, err = env.Marshal(); err != nil {
		return err
	}
	if *out == "" {
		*out = *in
	}
	if err := atomicfile.Write(*out, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("signed by %s; %s now has %d signature(s)\n", release.Fingerprint(k.Public().(ed25519.PublicKey)), *out, len(env.Signatures))
	return nil
}

func cmdReleasePush(args []string) error {
	fs := newFlags("release push", "zgrid release push [--data DIR | --server URL ...] ENVELOPE.json",
		"Publish a signed envelope made by zgrid release create (and sign).\n\n"+connHelp,
		"  zgrid release push --data ./grid v7.json\n  zgrid release push --server https://192.0.2.2:8443 --token-file admin.token --ca ca.pem v7.json")
	var c conn
	c.register(fs)
	trustFile := fs.String("trust", "", "with --data and no server: also verify against this trust file before storing")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr(fs, "need one envelope file")
	}
	if err := c.check(); err != nil {
		return err
	}
	b, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	if len(b) > registry.MaxBodySize {
		return errors.New(pos[0] + ": larger than a release envelope can be")
	}
	return pushEnvelope(&c, b, *trustFile)
}

func cmdReleaseList(args []string) error {
	fs := newFlags("release list", "zgrid release list [--channel C] [--data DIR | --server URL ...]",
		"List published releases by channel and version.\n\n"+connHelp,
		"  zgrid release list --data ./grid\n  zgrid release list --channel stable --server https://192.0.2.2:8443 --token-file admin.token --ca ca.pem")
	var c conn
	c.register(fs)
	channel := fs.String("channel", "", "only this channel")
	if err := noArgs(fs, args, &c); err != nil {
		return err
	}
	path := "/v1/admin/releases"
	if *channel != "" {
		path += "?channel=" + url.QueryEscape(*channel)
	}
	rs, err := query(&c, path, func(d *db.DB) ([]registry.ReleaseInfo, error) { return d.Releases(*channel) })
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CHANNEL\tVERSION\tPUBLISHED\tEXPIRES\tSIGNATURES\tCOMPONENTS")
	for _, r := range rs {
		var cs []string
		for _, c := range r.Components {
			cs = append(cs, fmt.Sprintf("%s=%s@%s", c.Name, c.Flist.Short(), c.Mount))
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\t%s\n", r.Channel, r.Version, r.Published.UTC().Format(time.RFC3339),
			r.Expires.UTC().Format(time.RFC3339), len(r.KeyIDs), strings.Join(cs, " "))
	}
	return w.Flush()
}
