package coldplug

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

// KmoduleLoader returns a Coldplug.Load function backed by u-root's
// kmodule: modules.dep under rootDir/lib/modules/$(uname -r) (or
// rootDir/usr/lib/modules/...) gives each module's dependencies, which are
// loaded first. rootDir is "/" in the initramfs.
func KmoduleLoader(rootDir string) func(string) error {
	return newLoader(kmodule.ProbeOpts{RootDir: rootDir})
}

// loader reads modules.dep once and shares one Prober, which is safe for
// concurrent use and remembers what it already loaded.
type loader struct {
	opts    kmodule.ProbeOpts
	mu      sync.Mutex
	prober  *kmodule.Prober
	shipped map[string]bool
}

func newLoader(opts kmodule.ProbeOpts) func(string) error {
	l := &loader{opts: opts}
	return l.load
}

func (l *loader) init() (*kmodule.Prober, map[string]bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.prober != nil {
		return l.prober, l.shipped, nil
	}
	dir, err := moduleDir(l.opts)
	if err != nil {
		return nil, nil, err
	}
	shipped, err := shippedModules(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, nil, err
	}
	p, err := kmodule.NewProber(l.opts)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", dir, err)
	}
	l.prober, l.shipped = p, shipped
	return p, shipped, nil
}

func (l *loader) load(module string) error {
	p, shipped, err := l.init()
	if err != nil {
		return fmt.Errorf("load %s: %w", module, err)
	}
	if !shipped[normalize(module)] {
		return fmt.Errorf("load %s: %w", module, ErrNotShipped)
	}
	if err := p.Probe(module, ""); err != nil {
		return fmt.Errorf("load %s: %w", module, err)
	}
	return nil
}

// moduleDir finds the module tree the way kmodule does.
func moduleDir(opts kmodule.ProbeOpts) (string, error) {
	rel := opts.KVer
	if rel == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return "", fmt.Errorf("uname: %w", err)
		}
		rel = unix.ByteSliceToString(u.Release[:])
	}
	var tried []string
	for _, d := range []string{"/lib/modules", "/usr/lib/modules"} {
		dir := filepath.Join(opts.RootDir, d, rel)
		if _, err := os.Stat(dir); err == nil {
			return dir, nil
		}
		tried = append(tried, dir)
	}
	return "", fmt.Errorf("no module tree for kernel %s (tried %s)", rel, strings.Join(tried, ", "))
}

// shippedModules returns the normalized names of the modules in modules.dep.
func shippedModules(depFile string) (map[string]bool, error) {
	f, err := os.Open(depFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		p, _, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		base := filepath.Base(strings.TrimSpace(p))
		if i := strings.Index(base, ".ko"); i > 0 {
			names[normalize(base[:i])] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", depFile, err)
	}
	return names, nil
}
