package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/atomicfile"
	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/repo"
	"github.com/zeroboot/zeroboot/pkg/strictjson"
	"github.com/zeroboot/zeroboot/pkg/trust"
)

func cmdRelease(args []string) error {
	return subcommand("release", map[string]func([]string) error{
		"create":   func(a []string) error { return cmdReleaseCreate(a, false) },
		"publish":  func(a []string) error { return cmdReleaseCreate(a, true) },
		"sign":     cmdReleaseSign,
		"show":     cmdReleaseShow,
		"push":     cmdReleasePush,
		"withdraw": cmdReleaseWithdraw,
		"list":     cmdReleaseList,
		"diff":     cmdReleaseDiff,
		"verify":   cmdReleaseVerify,
	}, args)
}

// releaseFlags are the contents of a release on the command line.
type releaseFlags struct {
	keys, components, args, env listFlag
	channel, entry, out         string
	services                    string
	version                     uint64
	expires                     time.Duration
}

func (r *releaseFlags) register(fs *flag.FlagSet) {
	fs.Var(&r.keys, "key", "private release key to sign with (repeatable; required)")
	fs.StringVar(&r.channel, "channel", "", "release channel (required)")
	fs.Uint64Var(&r.version, "version", 0, "release version (the TUF targets version); must exceed every earlier one on the channel (required)")
	fs.DurationVar(&r.expires, "expires", 720*time.Hour, "validity from now; nodes refuse the release after it")
	fs.Var(&r.components, "component", "component as name=NAME,flist=sha256:HEX,mount=/PATH[,setuid=yes][,devices=yes] (repeatable; required)")
	fs.StringVar(&r.entry, "entry", "", "Core-0 entrypoint path inside the assembled root (required)")
	fs.Var(&r.args, "arg", "argument for the entrypoint (repeatable, in order)")
	fs.Var(&r.env, "env", "KEY=VALUE environment for the entrypoint (repeatable)")
	fs.StringVar(&r.services, "services", "", "JSON file with the services Core-0 runs: the release's \"services\" array (docs/services.md); makes a zeroboot-release/3")
}

// describeService is one line of what a signer signs for a service:
// where its binary comes from, what it waits for, how it is judged ready.
func describeService(s release.Service) string {
	d := fmt.Sprintf("%s: %s %s (component %s)", s.Name, s.Exec.Path, strings.Join(s.Exec.Args, " "), s.Component)
	if len(s.After) > 0 {
		d += ", after " + strings.Join(s.After, " ")
	}
	if p := s.Ready; p != nil {
		switch {
		case len(p.Exec) > 0:
			d += ", ready when " + strings.Join(p.Exec, " ") + " succeeds"
		case p.TCP != "":
			d += ", ready when tcp " + p.TCP + " accepts"
		case p.HTTP != "":
			d += ", ready when " + p.HTTP + " answers 2xx"
		case p.Notify:
			d += ", ready when it notifies"
		}
	}
	if s.Optional {
		d += ", optional"
	}
	if s.Restart != "" {
		d += ", restart " + s.Restart
	}
	for _, e := range s.Exec.Env {
		d += ", env " + e
	}
	return console.Sanitize(d, 8192)
}

// readServices reads the --services file strictly: a field misspelt in a
// file that gets signed would otherwise vanish silently.
func readServices(file string) ([]release.Service, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--services: %w", err)
	}
	var ss []release.Service
	if err := strictjson.Decode(b, release.MaxSize, &ss); err != nil {
		return nil, fmt.Errorf("--services %s: %w", file, err)
	}
	if len(ss) == 0 {
		return nil, fmt.Errorf("--services %s: no services in the file", file)
	}
	return ss, nil
}

func parseComponent(s string) (release.Component, error) {
	var c release.Component
	seen := map[string]bool{}
	usage := fmt.Errorf("--component %q: want name=NAME,flist=sha256:HEX,mount=/PATH[,setuid=yes][,devices=yes]", s)
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || seen[k] {
			return c, usage
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
		case "setuid", "devices":
			if v != "yes" && v != "no" {
				return c, fmt.Errorf("--component %q: %s=%s: want yes or no", s, k, v)
			}
			if k == "setuid" {
				c.AllowSetuid = v == "yes"
			} else {
				c.AllowDevices = v == "yes"
			}
		default:
			return c, fmt.Errorf("--component %q: unknown key %q (want name, flist, mount, setuid, devices)", s, k)
		}
	}
	if !seen["name"] || !seen["flist"] || !seen["mount"] {
		return c, fmt.Errorf("--component %q: name, flist and mount are all required", s)
	}
	return c, nil
}

// upload makes the signed upload of the release the flags describe.
func (r *releaseFlags) upload(now time.Time) ([]byte, error) {
	rel := &release.Release{
		Format:     release.Format,
		Channel:    r.channel,
		Entrypoint: release.Entrypoint{Path: r.entry, Args: nonNilS(r.args), Env: nonNilS(r.env)},
	}
	for _, s := range r.components {
		c, err := parseComponent(s)
		if err != nil {
			return nil, err
		}
		rel.Components = append(rel.Components, c)
	}
	if r.services != "" {
		ss, err := readServices(r.services)
		if err != nil {
			return nil, err
		}
		rel.Services = ss
	}
	doc, err := rel.Marshal()
	if err != nil {
		return nil, err
	}
	return signedUpload(r.channel, r.version, now.Add(r.expires), doc, r.keys)
}

// signedUpload signs targets naming doc (nil: a withdrawal) with every key.
func signedUpload(channel string, version uint64, expires time.Time, doc []byte, keyFiles []string) ([]byte, error) {
	if version > math.MaxInt64 {
		return nil, fmt.Errorf("--version %d: too large", version)
	}
	m, err := repo.NewTargets(int64(version), expires, doc)
	if err != nil {
		return nil, err
	}
	keys, err := readKeys(keyFiles)
	if err != nil {
		return nil, err
	}
	if err := repo.Sign(m, keys...); err != nil {
		return nil, err
	}
	tb, err := repo.Encode(m)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(records.ReleaseUpload{Format: records.UploadFormat, Channel: channel, Targets: tb, Release: doc}, "", "  ")
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
		k, err := repo.ReadPrivateKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func cmdReleaseCreate(args []string, push bool) error {
	name, synopsis, about := "release create", "zgrid release create --out FILE --key KEY [--key KEY2] --channel C --version N [--expires D] --component name=N,flist=sha256:H,mount=/P... --entry PATH [--arg A]... [--env K=V]...",
		`Create and sign a release offline and write it to FILE (a zeroboot-upload/1
file: the channel's TUF targets metadata and the release document it names),
for co-signing (zgrid release sign) and pushing later (zgrid release push).`
	examples := `  zgrid release create --out v7.json --key alice.key --channel stable --version 7 \
    --component name=core0,flist=sha256:3f5a...,mount=/ --entry /bin/core0 --arg --heartbeat --arg 5s
  zgrid release sign --in v7.json --key bob.key && zgrid release push --data ./grid v7.json`
	if push {
		name, synopsis, about = "release publish", "zgrid release publish [--data DIR | --server URL ...] --key KEY [--key KEY2] --channel C --version N [--expires D] --component name=N,flist=sha256:H,mount=/P... --entry PATH [--arg A]... [--env K=V]...",
			`Create a release, sign it locally with every --key (the server never
holds release keys) and publish it: to the running server, or with --data
alone into the data directory's database when no server holds it. Either
way it is verified against the registry's root first, and refused when
nodes would refuse it: too few or untrusted signatures, expired, a channel
not in channels.json, a version not above the channel's highest, flists not
in the store, an entrypoint that is not an executable file of a component,
setuid/setgid files or device nodes in a component without setuid=yes or
devices=yes.

`+connHelp
		examples = `  zgrid release publish --data ./grid --key release.key --channel stable --version 1 --expires 720h \
    --component name=core0,flist=sha256:3f5a...,mount=/ --entry /bin/core0
  zgrid release publish --server https://192.0.2.2:8443 --token-file admin.token --ca ca.pem \
    --key alice.key --key bob.key --channel stable --version 8 \
    --component name=base,flist=sha256:91c0...,mount=/,setuid=yes --component name=core0,flist=sha256:3f5a...,mount=/opt/core0 \
    --entry /opt/core0/bin/core0 --arg --verbose --env LANG=C.UTF-8`
	}
	fs := newFlags(name, synopsis, about, examples)
	var rf releaseFlags
	rf.register(fs)
	var c conn
	if push {
		c.register(fs)
	}
	out := "write the signed release to FILE (required)"
	if push {
		out = "also write the signed release to FILE"
	}
	fs.StringVar(&rf.out, "out", "", out)
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
	b, err := rf.upload(time.Now())
	if err != nil {
		return err
	}
	if rf.out != "" {
		if err := atomicfile.Write(rf.out, b, 0o644); err != nil {
			return err
		}
		fmt.Printf("release written to %s (%d signature(s))\n", rf.out, len(rf.keys))
	}
	if !push {
		return nil
	}
	return pushUpload(&c, b)
}

func pushUpload(c *conn, b []byte) error {
	var info records.ReleaseInfo
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
	what := "published"
	if info.Withdrawn {
		what = "withdrawal published:"
	}
	fmt.Printf("%s %s version %d (%d component(s), %d signature(s), expires %s)\n",
		what, info.Channel, info.Version, len(info.Components), len(info.KeyIDs), info.Expires.UTC().Format(time.RFC3339))
	if info.NodeProtocol > registry.MinNodeProtocol {
		fmt.Fprintf(os.Stderr, "warning: nodes of boot protocol below %d cannot read this release's components (flist version 3): the registry refuses it to them\n", info.NodeProtocol)
	}
	return nil
}

// readUpload reads an upload file and its targets.
func readUpload(path string) (*records.ReleaseUpload, *metadata.Metadata[metadata.TargetsType], error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	up, err := records.DecodeUpload(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	m, err := metadata.Targets().FromBytes(up.Targets)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: targets: %w", path, err)
	}
	return up, m, nil
}

// matchesTargets checks a release document against the target its
// targets name for it. A file whose targets name none (made by hand, or
// damaged) is an error here, not a nil dereference in go-tuf.
func matchesTargets(m *metadata.Metadata[metadata.TargetsType], doc []byte) error {
	tf := m.Signed.Targets[release.TargetName]
	if tf == nil {
		return fmt.Errorf("the targets name no %s", release.TargetName)
	}
	if err := tf.VerifyLengthHashes(doc); err != nil {
		return fmt.Errorf("the release document does not match the targets: %w", err)
	}
	return nil
}

// summary is what a signer reads before signing: every field that nodes
// act on, as nodes will read it (the same strict decoders), made safe for
// a terminal.
func summary(w io.Writer, up *records.ReleaseUpload, m *metadata.Metadata[metadata.TargetsType]) error {
	fmt.Fprintf(w, "channel     %s\nversion     %d\nexpires     %s\n", up.Channel, m.Signed.Version, m.Signed.Expires.UTC().Format(time.RFC3339))
	if len(up.Release) == 0 {
		fmt.Fprintf(w, "WITHDRAWAL  nodes of %s boot nothing until a newer release\n", up.Channel)
	} else {
		r, err := release.Decode(up.Release)
		if err != nil {
			return err
		}
		if err := matchesTargets(m, up.Release); err != nil {
			return err
		}
		for _, c := range r.Components {
			var allow []string
			if c.AllowSetuid {
				allow = append(allow, "setuid allowed")
			}
			if c.AllowDevices {
				allow = append(allow, "devices allowed")
			}
			fmt.Fprintf(w, "component   %s %s at %s %s\n", c.Name, c.Flist, c.Mount, strings.Join(allow, ", "))
		}
		fmt.Fprintf(w, "entrypoint  %s %s\n", r.Entrypoint.Path, console.Sanitize(strings.Join(r.Entrypoint.Args, " "), 4096))
		for _, e := range r.Entrypoint.Env {
			fmt.Fprintf(w, "env         %s\n", console.Sanitize(e, 4096))
		}
		for _, sv := range r.Services {
			fmt.Fprintf(w, "service     %s\n", describeService(sv))
		}
	}
	for _, s := range m.Signatures {
		fmt.Fprintf(w, "signed by   %s\n", s.KeyID)
	}
	return nil
}

func cmdReleaseShow(args []string) error {
	fs := newFlags("release show", "zgrid release show FILE [-o table|json|yaml]",
		"Show what a release upload file says, exactly as nodes will read it.\n-o json gives the release document as nodes decode it, with the\ntargets' channel, version, expiry and signing key IDs.",
		"  zgrid release show v7.json\n  zgrid release show v7.json -o json")
	out := registerOutput(fs)
	arg, err := oneArg(fs, args, "release file")
	if err != nil {
		return err
	}
	if err := out.check(fs); err != nil {
		return err
	}
	up, m, err := readUpload(arg)
	if err != nil {
		return err
	}
	if out.table() {
		return summary(os.Stdout, up, m)
	}
	v, err := releaseViewOf(up, m)
	if err != nil {
		return fmt.Errorf("%s: %w", arg, err)
	}
	return out.print(v)
}

// releaseView is release show -o json: what summary prints, with the
// release document whole (null for a withdrawal).
type releaseView struct {
	Channel   string           `json:"channel"`
	Version   int64            `json:"version"`
	Expires   time.Time        `json:"expires"`
	Withdrawn bool             `json:"withdrawn"`
	Release   *release.Release `json:"release"`
	KeyIDs    []string         `json:"key_ids"`
}

// releaseViewOf reads the release document as summary does, with the
// strict decoder and checked against the targets, so a script is shown
// only what nodes would act on.
func releaseViewOf(up *records.ReleaseUpload, m *metadata.Metadata[metadata.TargetsType]) (releaseView, error) {
	v := releaseView{Channel: up.Channel, Version: m.Signed.Version, Expires: m.Signed.Expires.UTC(), Withdrawn: len(up.Release) == 0, KeyIDs: []string{}}
	if !v.Withdrawn {
		r, err := release.Decode(up.Release)
		if err != nil {
			return v, err
		}
		if err := matchesTargets(m, up.Release); err != nil {
			return v, err
		}
		v.Release = r
	}
	for _, s := range m.Signatures {
		v.KeyIDs = append(v.KeyIDs, s.KeyID)
	}
	return v, nil
}

func cmdReleaseVerify(args []string) error {
	fs := newFlags("release verify", "zgrid release verify FILE (--root ROOT.json [--root NEWER.json]... | --data DIR)",
		`Check a release file offline as a node holding the given root would:
the root chain (each newer root signed by the one before), the targets
signed by a threshold of the root's release keys, unexpired, and the
release document matching its signed length and hashes. --root takes the
root files in order (the first is what nodes carry); --data uses DIR's
chain. Exit status 1, with the reason, when a node would refuse it.
Freshness (snapshot, timestamp) is the registry's and is not checked here.`,
		`  zgrid release verify v7.json --root /etc/zeroboot/root.json
  zgrid release verify v7.json --data ./grid`)
	var rootFiles listFlag
	fs.Var(&rootFiles, "root", "a TUF root file, oldest first (repeatable)")
	data := fs.String("data", "", "use the root chain of this data directory")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (len(rootFiles) == 0) == (*data == "") {
		return usageErr(fs, "need one release FILE, and --root files or --data DIR")
	}
	var roots [][]byte
	if *data != "" {
		if roots, err = readRoots(*data); err != nil {
			return err
		}
	}
	for _, f := range rootFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		roots = append(roots, b)
	}
	up, m, err := readUpload(pos[0])
	if err != nil {
		return err
	}
	if len(up.Release) == 0 {
		return fmt.Errorf("%s: a withdrawal of %s, not a release; nothing to verify against", pos[0], up.Channel)
	}
	r, err := trust.VerifyRelease(roots, up.Targets, up.Release, time.Now())
	if err != nil {
		return fmt.Errorf("%s: nodes would refuse it: %w", pos[0], err)
	}
	fmt.Printf("%s: verified: channel %s version %d, %d components, %d signatures, expires %s\n",
		pos[0], up.Channel, m.Signed.Version, len(r.Components), len(m.Signatures), m.Signed.Expires.UTC().Format(time.RFC3339))
	return nil
}

func cmdReleaseDiff(args []string) error {
	fs := newFlags("release diff", "zgrid release diff A.json B.json",
		`List what changed from release file A to B, each read with the strict
decoders nodes use: components added (+), removed (-) and changed (~:
flist, mount, setuid or device permission), then the entrypoint, its
arguments and environment. No output means both run the same thing. To
see what changed inside a component, run zgrid flist diff on its two
flists.`,
		`  zgrid release diff v6.json v7.json`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErr(fs, "need two release files")
	}
	var rs [2]*release.Release
	for i, p := range pos {
		up, m, err := readUpload(p)
		if err != nil {
			return err
		}
		if len(up.Release) == 0 {
			return fmt.Errorf("%s: a withdrawal, not a release", p)
		}
		if err := matchesTargets(m, up.Release); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if rs[i], err = release.Decode(up.Release); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	for _, l := range release.Diff(rs[0], rs[1]) {
		fmt.Println(console.Sanitize(l, 8192))
	}
	return nil
}

func cmdReleaseSign(args []string) error {
	fs := newFlags("release sign", "zgrid release sign --in FILE --key KEY [--out FILE]",
		`Add a co-signature to a release upload file, offline. It first shows what is
being signed (channel, version, expiry, every component and digest, the
entrypoint), read with the same strict decoders nodes use; it refuses an
expired release and a key that already signed.`,
		`  zgrid release sign --in v7.json --key bob.key
  zgrid release sign --in v7.json --key carol.key --out v7-signed.json`)
	in := fs.String("in", "", "release file (required)")
	key := fs.String("key", "", "private key to sign with (required)")
	out := fs.String("out", "", "where to write the result (default: replace --in)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *in == "" || *key == "" || len(pos) > 0 {
		return usageErr(fs, "need --in FILE and --key KEY")
	}
	up, m, err := readUpload(*in)
	if err != nil {
		return err
	}
	fmt.Println("signing:")
	if err := summary(os.Stdout, up, m); err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	if m.Signed.IsExpired(time.Now()) {
		return fmt.Errorf("%s: version %d expired at %s: refusing to co-sign an expired release", *in, m.Signed.Version, m.Signed.Expires.UTC().Format(time.RFC3339))
	}
	k, err := repo.ReadPrivateKey(*key)
	if err != nil {
		return err
	}
	if err := repo.Sign(m, k); err != nil {
		return err
	}
	if up.Targets, err = repo.Encode(m); err != nil {
		return err
	}
	b, err := json.MarshalIndent(up, "", "  ")
	if err != nil {
		return err
	}
	if *out == "" {
		*out = *in
	}
	if err := atomicfile.Write(*out, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("signed by %s; %s now has %d signature(s)\n", repo.Fingerprint(k.Public().(ed25519.PublicKey)), *out, len(m.Signatures))
	return nil
}

func cmdReleasePush(args []string) error {
	fs := newFlags("release push", "zgrid release push [--data DIR | --server URL ...] FILE",
		"Publish a signed release file made by zgrid release create (and sign).\n\n"+connHelp,
		"  zgrid release push --data ./grid v7.json\n  zgrid release push --server https://192.0.2.2:8443 --token-file admin.token --ca ca.pem v7.json")
	var c conn
	c.register(fs)
	arg, err := oneArg(fs, args, "release file")
	if err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	b, err := os.ReadFile(arg)
	if err != nil {
		return err
	}
	if len(b) > registry.MaxBodySize {
		return errors.New(arg + ": larger than a release upload can be")
	}
	return pushUpload(&c, b)
}

func cmdReleaseWithdraw(args []string) error {
	fs := newFlags("release withdraw", "zgrid release withdraw [--data DIR | --server URL ...] --key KEY... --channel C --version N [--expires D] [--out FILE]",
		`Withdraw a channel's current release: sign (with the release keys, so the
registry cannot fake it) targets of version N naming no release, and
publish them. Nodes of the channel then boot nothing and say the release
was withdrawn, until a release of a higher version is published. To go back
to an earlier release instead, publish its contents again as a new version.

`+connHelp,
		`  zgrid release withdraw --data ./grid --key release.key --channel stable --version 8
  zgrid release withdraw --key alice.key --channel stable --version 8 --out w8.json  (co-sign, then push)`)
	var c conn
	c.register(fs)
	var keys listFlag
	fs.Var(&keys, "key", "private release key to sign with (repeatable; required)")
	channel := fs.String("channel", "", "channel to withdraw (required)")
	version := fs.Uint64("version", 0, "version of the withdrawal; above the channel's current one (required)")
	expires := fs.Duration("expires", 720*time.Hour, "validity of the withdrawal")
	out := fs.String("out", "", "write the signed withdrawal to FILE instead of publishing it")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || len(keys) == 0 || *channel == "" || *version == 0 {
		return usageErr(fs, "need --key, --channel and --version")
	}
	b, err := signedUpload(*channel, *version, time.Now().Add(*expires), nil, keys)
	if err != nil {
		return err
	}
	if *out != "" {
		if err := atomicfile.Write(*out, b, 0o644); err != nil {
			return err
		}
		fmt.Printf("withdrawal of %s written to %s (%d signature(s)); co-sign with zgrid release sign, publish with zgrid release push\n", *channel, *out, len(keys))
		return nil
	}
	if err := c.check(); err != nil {
		return err
	}
	return pushUpload(&c, b)
}

func cmdReleaseList(args []string) error {
	fs := newFlags("release list", "zgrid release list [--channel C] [-o table|json|yaml] [--data DIR | --server URL ...]",
		"List published releases by channel and version, with their state for\nnodes: current, superseded, expired or withdrawal.\n\n"+connHelp,
		"  zgrid release list --data ./grid\n  zgrid release list --channel stable --server https://192.0.2.2:8443 --token-file admin.token --ca ca.pem")
	var c conn
	c.register(fs)
	channel := fs.String("channel", "", "only this channel")
	out := registerOutput(fs)
	if err := noArgs(fs, args, &c); err != nil {
		return err
	}
	if err := out.check(fs); err != nil {
		return err
	}
	path := "/v1/admin/releases"
	if *channel != "" {
		path += "?channel=" + url.QueryEscape(*channel)
	}
	rs, err := query(&c, path, func(d *db.DB) ([]records.ReleaseInfo, error) { return d.Releases(*channel) })
	if err != nil {
		return err
	}
	now := time.Now()
	if !out.table() {
		type withState struct {
			records.ReleaseInfo
			State string `json:"state"`
		}
		js := []withState{}
		for i, r := range rs {
			js = append(js, withState{r, releaseState(rs, i, now)})
		}
		return out.print(js)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CHANNEL\tVERSION\tSTATE\tPUBLISHED\tEXPIRES\tSIGNATURES\tCOMPONENTS")
	for i, r := range rs {
		var cs []string
		for _, c := range r.Components {
			cs = append(cs, fmt.Sprintf("%s=%s@%s", c.Name, c.Flist.Short(), c.Mount))
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%d\t%s\n", r.Channel, r.Version, releaseState(rs, i, now), r.Published.UTC().Format(time.RFC3339),
			r.Expires.UTC().Format(time.RFC3339), len(r.KeyIDs), strings.Join(cs, " "))
	}
	return w.Flush()
}

// releaseState says what nodes make of rs[i] (rs sorted by channel and
// version): the newest of its channel is current unless it is a withdrawal
// or expired; nothing older is ever served.
func releaseState(rs []records.ReleaseInfo, i int, now time.Time) string {
	r := rs[i]
	newest := i == len(rs)-1 || rs[i+1].Channel != r.Channel
	switch {
	case r.Withdrawn:
		return "withdrawal"
	case !newest:
		return "superseded"
	case !r.Expires.After(now):
		return "expired"
	}
	return "current"
}
