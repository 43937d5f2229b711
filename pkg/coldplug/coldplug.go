// Package coldplug loads the drivers for the devices present at boot: it
// reads every device's modalias under /sys, matches it against
// modules.alias and loads the matching modules, then looks again, because
// loading a bus driver (virtio_pci) makes new devices appear (the virtio
// network device that needs virtio_net).
package coldplug

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// ErrNotShipped is returned (wrapped) by a loader when the module is named
// by modules.alias but is not in the module tree: the initramfs carries a
// subset of the kernel's modules, so this is expected and not a failure.
var ErrNotShipped = errors.New("module not shipped")

// Coldplug holds the configuration of a coldplug run. Zero fields take
// the documented defaults.
type Coldplug struct {
	SysRoot   string             // default "/sys"
	Aliases   []Alias            // from modules.alias
	Load      func(string) error // loads one module with its dependencies
	Parallel  int                // concurrent loads, default 4
	Log       *slog.Logger       // default: discard
	Settle    time.Duration      // pause before each rescan, default 100ms
	MaxRounds int                // scans at most, default 5
}

// Result says what a run did.
type Result struct {
	Modaliases int              // distinct modaliases seen over all scans
	Loaded     []string         // modules loaded (or already there), sorted
	Missing    []string         // matched but not shipped, sorted
	Failed     map[string]error // modules that failed to load
	Rounds     int              // scans made
}

func (c *Coldplug) defaults() Coldplug {
	d := *c
	if d.SysRoot == "" {
		d.SysRoot = "/sys"
	}
	if d.Parallel <= 0 {
		d.Parallel = 4
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Settle == 0 {
		d.Settle = 100 * time.Millisecond
	}
	if d.MaxRounds <= 0 {
		d.MaxRounds = 5
	}
	return d
}

// Run scans, loads and rescans until a round has nothing new to load or
// MaxRounds scans were made. A module that fails to load is recorded in
// Result.Failed and the boot goes on; only an unreadable sysfs or a
// cancelled ctx is an error.
func (c *Coldplug) Run(ctx context.Context) (Result, error) {
	cfg := c.defaults()
	if cfg.Load == nil {
		return Result{}, errors.New("coldplug: no module loader")
	}
	res := Result{Failed: map[string]error{}}
	seen := map[string]bool{}      // modaliases
	attempted := map[string]bool{} // modules
	for res.Rounds < cfg.MaxRounds {
		if res.Rounds > 0 {
			if err := backoff.Sleep(ctx, cfg.Settle); err != nil {
				return finish(res), err
			}
		}
		res.Rounds++
		aliases, err := scan(filepath.Join(cfg.SysRoot, "devices"), cfg.Log)
		if err != nil {
			return finish(res), err
		}
		var todo []string
		for _, ma := range aliases {
			if !seen[ma] {
				seen[ma] = true
				res.Modaliases++
			}
			for _, m := range Match(cfg.Aliases, ma) {
				if !attempted[m] {
					attempted[m] = true
					todo = append(todo, m)
				}
			}
		}
		cfg.Log.Debug("coldplug scan", "round", res.Rounds, "modaliases", len(aliases), "new_modules", len(todo))
		if len(todo) == 0 {
			break
		}
		if err := cfg.loadAll(ctx, todo, &res); err != nil {
			return finish(res), err
		}
	}
	return finish(res), nil
}

func finish(r Result) Result {
	slices.Sort(r.Loaded)
	slices.Sort(r.Missing)
	return r
}

func (c Coldplug) loadAll(ctx context.Context, mods []string, res *Result) error {
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(c.Parallel)
	for _, m := range mods {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			start := time.Now()
			err := c.Load(m)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil || errors.Is(err, unix.EEXIST):
				res.Loaded = append(res.Loaded, m)
				c.Log.Debug("module loaded", "module", m, "took", time.Since(start).Round(time.Millisecond))
			case errors.Is(err, ErrNotShipped):
				res.Missing = append(res.Missing, m)
				c.Log.Debug("module not shipped", "module", m)
			default:
				res.Failed[m] = err
				c.Log.Warn("module failed to load", "module", m, "err", err)
			}
			return nil
		})
	}
	g.Wait()
	return ctx.Err()
}

// scan returns the distinct modaliases under root, sorted. It does not
// follow symlinks: /sys/devices is the real tree, and the links in it
// (subsystem, driver, ...) lead back into it, in loops.
func scan(root string, log *slog.Logger) ([]string, error) {
	set := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			log.Debug("coldplug walk", "path", p, "err", err)
			return nil // a device vanishing mid-walk is not our problem
		}
		if d.Name() != "modalias" || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			log.Debug("coldplug read", "path", p, "err", err)
			return nil
		}
		if ma := strings.TrimSpace(string(b)); ma != "" {
			set[ma] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	out := make([]string, 0, len(set))
	for ma := range set {
		out = append(out, ma)
	}
	slices.Sort(out)
	return out, nil
}
