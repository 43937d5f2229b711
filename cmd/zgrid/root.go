package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/server"
	"github.com/zeroboot/zeroboot/pkg/atomicfile"
	"github.com/zeroboot/zeroboot/pkg/repo"
	"github.com/zeroboot/zeroboot/pkg/trust"
)

// Layout of DATA/tuf: the root chain, the channels nodes accept, and the
// online key (the only key the registry holds).
const (
	tufDir       = "tuf"
	rootsDir     = "tuf/root"
	channelsFile = "tuf/channels.json"
	onlineKey    = "tuf/online.key"
)

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o644)
}

// defaultFreshness is how long a snapshot/timestamp signature lasts.
const defaultFreshness = time.Hour

func cmdRoot(args []string) error {
	return subcommand("root", map[string]func([]string) error{
		"init":   cmdRootInit,
		"rotate": cmdRootRotate,
		"show":   cmdRootShow,
	}, args)
}

// rootFlags are the key sets of a root on the command line.
type rootFlags struct {
	sign, rootPubs, releasePubs, channels listFlag
	rootThreshold, releaseThreshold       int
	expires                               time.Duration
	data                                  string
}

func (f *rootFlags) register(fs *flag.FlagSet, rotate bool) {
	fs.StringVar(&f.data, "data", "", "registry data directory (required)")
	fs.Var(&f.sign, "sign", "private root key that signs the new root (repeatable; a threshold of the current and of the new root keys)")
	fs.Var(&f.rootPubs, "root-key", "public root key of the new root (repeatable)")
	fs.Var(&f.releasePubs, "release-key", "public release key: signs releases (repeatable)")
	fs.IntVar(&f.rootThreshold, "root-threshold", 0, "root keys that must sign the next root (default: as before, or 1)")
	fs.IntVar(&f.releaseThreshold, "release-threshold", 0, "release keys that must sign a release (default: as before, or 1)")
	fs.DurationVar(&f.expires, "expires", 365*24*time.Hour, "validity of the new root; nodes refuse an expired root")
	if !rotate {
		fs.Var(&f.channels, "channel", "channel nodes accept (repeatable; default stable); written to channels.json")
	}
}

func readPubs(paths []string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for _, p := range paths {
		k, err := repo.ReadPublicKey(p)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

func cmdRootInit(args []string) error {
	fs := newFlags("root init", "zgrid root init --data DIR --root-key ROOT.pub... --sign ROOT.key... --release-key REL.pub... [--root-threshold N] [--release-threshold N] [--channel C]... [--expires D]",
		`Create the TUF root (version 1) of a registry: the root keys and how many
must sign the next root, the release keys and how many must sign a release,
and the registry's online key (DATA/tuf/online.key, made by zgrid init) for
freshness. Writes DATA/tuf/root/1.root.json and DATA/tuf/channels.json (the
channels nodes accept, each with version floor 0). Both go into every node's
initramfs: /etc/zeroboot/root.json and /etc/zeroboot/channels.json. Keep the
private root and release keys off the registry host.`,
		`  zgrid key new --out root.key && zgrid key new --out release.key
  zgrid root init --data ./grid --root-key root.key.pub --sign root.key --release-key release.key.pub
  zgrid root init --data /var/lib/zgrid --root-key a.pub --root-key b.pub --root-key c.pub --root-threshold 2 \
    --sign a.key --sign b.key --release-key r1.pub --release-key r2.pub --release-threshold 2 --channel stable --channel beta`)
	var f rootFlags
	f.register(fs, false)
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if f.data == "" || len(pos) > 0 || len(f.rootPubs) == 0 || len(f.sign) == 0 || len(f.releasePubs) == 0 {
		return usageErr(fs, "need --data, --root-key, --sign and --release-key")
	}
	if roots, _ := readRoots(f.data); len(roots) > 0 {
		return fmt.Errorf("%s already has root version %d; use zgrid root rotate", f.data, len(roots))
	}
	online, err := repo.ReadPrivateKey(filepath.Join(f.data, onlineKey))
	if err != nil {
		return fmt.Errorf("online key: %w (made by zgrid init)", err)
	}
	r := repo.Roles{RootThreshold: max(f.rootThreshold, 1), TargetThreshold: max(f.releaseThreshold, 1), Online: online.Public().(ed25519.PublicKey)}
	if r.Root, err = readPubs(f.rootPubs); err != nil {
		return err
	}
	if r.Targets, err = readPubs(f.releasePubs); err != nil {
		return err
	}
	if err := writeRoot(f.data, nil, r, 1, f.expires, f.sign); err != nil {
		return err
	}
	chans := trust.Channels{Format: trust.ChannelsFormat, Channels: map[string]trust.Channel{}}
	if len(f.channels) == 0 {
		f.channels = listFlag{"stable"}
	}
	for _, c := range f.channels {
		chans.Channels[c] = trust.Channel{}
	}
	if err := writeJSON(filepath.Join(f.data, channelsFile), &chans); err != nil {
		return err
	}
	fmt.Printf(`Put into every node's initramfs:
  %s -> /etc/zeroboot/root.json
  %s -> /etc/zeroboot/channels.json   (channels: %s)
`, filepath.Join(f.data, rootsDir, "1.root.json"), filepath.Join(f.data, channelsFile), strings.Join(chans.Names(), ", "))
	return nil
}

func cmdRootRotate(args []string) error {
	fs := newFlags("root rotate", "zgrid root rotate --data DIR --sign KEY... [--root-key NEW.pub]... [--release-key NEW.pub]... [--root-threshold N] [--release-threshold N] [--expires D]",
		`Sign the next root (version N+1) and add it to DATA's chain. Key sets not
given stay as they are; a set given replaces the old one, so a release key
left out is revoked: nodes refuse releases signed by it once they see the
new root, which every boot answer carries. The new root must be signed by
a threshold of the current root keys and a threshold of its own; it is
verified the way nodes verify it before it is stored. A running zgrid serve
picks the new root up on restart.`,
		`  zgrid root rotate --data ./grid --sign root.key --release-key release-2.key.pub
  zgrid root rotate --data ./grid --sign old-root.key --sign new-root.key --root-key new-root.key.pub --expires 8760h`)
	var f rootFlags
	f.register(fs, true)
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if f.data == "" || len(pos) > 0 || len(f.sign) == 0 {
		return usageErr(fs, "need --data and --sign")
	}
	roots, err := readRoots(f.data)
	if err != nil {
		return err
	}
	cur, err := metadata.Root().FromBytes(roots[len(roots)-1])
	if err != nil {
		return err
	}
	r, err := repo.RolesOf(cur)
	if err != nil {
		return err
	}
	if len(f.rootPubs) > 0 {
		if r.Root, err = readPubs(f.rootPubs); err != nil {
			return err
		}
	}
	if len(f.releasePubs) > 0 {
		if r.Targets, err = readPubs(f.releasePubs); err != nil {
			return err
		}
	}
	if f.rootThreshold > 0 {
		r.RootThreshold = f.rootThreshold
	}
	if f.releaseThreshold > 0 {
		r.TargetThreshold = f.releaseThreshold
	}
	return writeRoot(f.data, roots, r, cur.Signed.Version+1, f.expires, f.sign)
}

// writeRoot signs root version v, checks the chain with it the way a node
// would, and stores it.
func writeRoot(data string, chain [][]byte, r repo.Roles, v int64, expires time.Duration, signers []string) error {
	m, err := repo.NewRoot(r, v, time.Now().Add(expires))
	if err != nil {
		return err
	}
	keys, err := readKeys(signers)
	if err != nil {
		return err
	}
	if err := repo.Sign(m, keys...); err != nil {
		return err
	}
	b, err := repo.Encode(m)
	if err != nil {
		return err
	}
	chain = append(chain, b)
	if _, err := trust.Chain(chain, time.Now()); err != nil {
		return fmt.Errorf("new root refused: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(data, rootsDir), 0o755); err != nil {
		return err
	}
	p := filepath.Join(data, rootsDir, fmt.Sprintf("%d.root.json", v))
	if _, err := os.Stat(p); err == nil {
		return fmt.Errorf("%s exists", p)
	}
	if err := atomicfile.Write(p, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("root version %d written to %s: %d root key(s), threshold %d; %d release key(s), threshold %d; expires %s\n",
		v, p, len(r.Root), r.RootThreshold, len(r.Targets), r.TargetThreshold, m.Signed.Expires.Format(time.RFC3339))
	return nil
}

func cmdRootShow(args []string) error {
	fs := newFlags("root show", "zgrid root show --data DIR [-o table|json|yaml]",
		"Show the root chain: versions, expiry, keys of each role. -o json gives\nan array of roots with whole key IDs.",
		"  zgrid root show --data ./grid\n  zgrid root show --data ./grid -o json")
	data := fs.String("data", "", "registry data directory (required)")
	out := registerOutput(fs)
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if *data == "" || len(pos) > 0 {
		return usageErr(fs, "need --data")
	}
	if err := out.check(fs); err != nil {
		return err
	}
	roots, err := readRoots(*data)
	if err != nil {
		return err
	}
	if !out.table() {
		vs, err := rootViews(roots)
		if err != nil {
			return err
		}
		return out.print(vs)
	}
	for _, b := range roots {
		m, err := metadata.Root().FromBytes(b)
		if err != nil {
			return err
		}
		fmt.Printf("root version %d, expires %s, signed by %d key(s)\n", m.Signed.Version, m.Signed.Expires.Format(time.RFC3339), len(m.Signatures))
		for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
			ro := m.Signed.Roles[role]
			ids := make([]string, len(ro.KeyIDs))
			for i, id := range ro.KeyIDs {
				ids[i] = id[:16]
			}
			fmt.Printf("  %-9s threshold %d of %s\n", role, ro.Threshold, strings.Join(ids, " "))
		}
	}
	return nil
}

// rootView is one root of the chain in root show -o json.
type rootView struct {
	Version  int64               `json:"version"`
	Expires  time.Time           `json:"expires"`
	SignedBy []string            `json:"signed_by"` // key IDs of its signatures
	Roles    map[string]roleView `json:"roles"`     // root, targets, snapshot, timestamp
}

type roleView struct {
	Threshold int      `json:"threshold"`
	KeyIDs    []string `json:"key_ids"`
}

func rootViews(roots [][]byte) ([]rootView, error) {
	vs := []rootView{}
	for i, b := range roots {
		m, err := metadata.Root().FromBytes(b)
		if err != nil {
			return nil, fmt.Errorf("root version %d: %w", i+1, err)
		}
		v := rootView{Version: m.Signed.Version, Expires: m.Signed.Expires.UTC(), SignedBy: []string{}, Roles: map[string]roleView{}}
		for _, s := range m.Signatures {
			v.SignedBy = append(v.SignedBy, s.KeyID)
		}
		for name, ro := range m.Signed.Roles {
			if ro == nil {
				continue
			}
			v.Roles[name] = roleView{Threshold: ro.Threshold, KeyIDs: append([]string{}, ro.KeyIDs...)}
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// readRoots reads DATA/tuf/root/1.root.json, 2.root.json, ... in order.
func readRoots(data string) ([][]byte, error) {
	var roots [][]byte
	for v := 1; ; v++ {
		b, err := os.ReadFile(filepath.Join(data, rootsDir, strconv.Itoa(v)+".root.json"))
		if errors.Is(err, fs.ErrNotExist) {
			break
		} else if err != nil {
			return nil, err
		}
		roots = append(roots, b)
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%s has no root: run zgrid root init --data %s", data, data)
	}
	return roots, nil
}

// loadTUF is the registry's TUF state from DATA/tuf, checked as a node
// would check it.
func loadTUF(data string, window time.Duration) (*server.TUF, error) {
	roots, err := readRoots(data)
	if err != nil {
		return nil, err
	}
	if _, err := trust.Chain(roots, time.Now()); err != nil {
		return nil, fmt.Errorf("%s: root chain: %w", data, err)
	}
	cb, err := os.ReadFile(filepath.Join(data, channelsFile))
	if err != nil {
		return nil, err
	}
	chans, err := trust.ParseChannels(cb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", channelsFile, err)
	}
	key, err := repo.ReadPrivateKey(filepath.Join(data, onlineKey))
	if err != nil {
		return nil, err
	}
	return &server.TUF{Roots: roots, Channels: chans, Fresh: repo.Freshness{Key: key, Window: window}}, nil
}
