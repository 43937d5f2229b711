package initramfs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultModules are the drivers a node needs to reach the network: the QEMU
// devices (virtio, e1000) and the NICs common in servers; and the common
// watchdogs, which PID 1 pets (docs/boot.md, "Watchdog"). Names use the
// kernel's module names; '-' and '_' are interchangeable.
var DefaultModules = []string{
	"virtio_net", "virtio_pci", "virtio_blk", "virtio_rng",
	"e1000", "e1000e", "igb", "ixgbe", "i40e", "ice",
	"r8169", "tg3", "bnx2x", "mlx5_core", "bnxt_en",
	"af_packet",
	// EFI variables (the boot loader's times, systemd-stub's StubInfo):
	// PID 1 loads it by name after its mount step on EFI machines.
	"efivarfs",
	// vlan= and bond= on the command line; PID 1 loads them only then.
	"8021q", "bonding",
	// Hardware watchdogs, each loaded by its device's modalias: QEMU's
	// i6300esb, Intel's TCO (behind lpc_ich), AMD's, and ACPI WDAT.
	"i6300esb", "lpc_ich", "iTCO_wdt", "sp5100_tco", "wdat_wdt",
}

// RequiredModules must be present (as a module or built in): without them
// the QEMU demo cannot reach the network, so an image lacking them is
// refused at build time rather than discovered at boot.
var RequiredModules = []string{"virtio_net", "virtio_pci", "e1000"}

// modName gives the kernel's name for a module file or a user-given name:
// no directory, no .ko[.xz|.gz|.zst] suffix, '-' folded to '_'.
func modName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// depTree is a kernel module directory's modules.dep, modules.builtin and
// the order of modules.dep lines (kept so the filtered copy reads like the
// original).
type depTree struct {
	dir     string
	deps    map[string][]string // relative path -> relative paths it needs
	byName  map[string]string   // module name -> relative path
	order   []string            // relative paths in modules.dep order
	builtin map[string]bool     // module names built into the kernel
}

func readDepTree(dir string) (*depTree, error) {
	t := &depTree{dir: dir, deps: map[string][]string{}, byName: map[string]string{}, builtin: map[string]bool{}}
	depFile := filepath.Join(dir, "modules.dep")
	f, err := os.Open(depFile)
	if err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, needs, ok := strings.Cut(line, ":")
		mod = strings.TrimSpace(mod)
		if !ok || mod == "" {
			return nil, fmt.Errorf("parse %s line %d: want \"path: deps...\", got %q", depFile, n, line)
		}
		if err := checkRel(mod); err != nil {
			return nil, fmt.Errorf("parse %s line %d: %w", depFile, n, err)
		}
		deps := strings.Fields(needs)
		for _, d := range deps {
			if err := checkRel(d); err != nil {
				return nil, fmt.Errorf("parse %s line %d: %w", depFile, n, err)
			}
		}
		if _, dup := t.deps[mod]; !dup {
			t.order = append(t.order, mod)
		}
		t.deps[mod] = deps
		t.byName[modName(mod)] = mod
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", depFile, err)
	}
	if err := t.readBuiltin(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *depTree) readBuiltin() error {
	b, err := os.ReadFile(filepath.Join(t.dir, "modules.builtin"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read modules.builtin: %w", err)
	}
	for _, l := range strings.Fields(string(b)) {
		t.builtin[modName(l)] = true
	}
	return nil
}

// checkRel refuses module paths that would land outside the module
// directory in the archive.
func checkRel(p string) error {
	if path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("module path %q: must be relative, clean and inside the module directory", p)
	}
	return nil
}

// resolution is the outcome of resolving module names.
type resolution struct {
	files   []string // relative paths, sorted, with every dependency
	builtin []string // requested names built into the kernel
	missing []string // requested names neither modules nor built in
}

// resolve finds each name and the transitive closure of its dependencies.
func (t *depTree) resolve(names []string) (resolution, error) {
	var r resolution
	seen := map[string]bool{}
	var visit func(rel string, chain []string) error
	visit = func(rel string, chain []string) error {
		if seen[rel] {
			return nil
		}
		deps, ok := t.deps[rel]
		if !ok {
			return fmt.Errorf("module %s needs %s, which modules.dep does not list", strings.Join(chain, " -> "), rel)
		}
		seen[rel] = true
		for _, d := range deps {
			if err := visit(d, append(chain, modName(d))); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range names {
		name := modName(n)
		rel, ok := t.byName[name]
		switch {
		case ok:
			if err := visit(rel, []string{name}); err != nil {
				return r, err
			}
		case t.builtin[name]:
			r.builtin = append(r.builtin, name)
		default:
			r.missing = append(r.missing, name)
		}
	}
	for rel := range seen {
		r.files = append(r.files, rel)
	}
	sort.Strings(r.files)
	sort.Strings(r.builtin)
	sort.Strings(r.missing)
	return r, nil
}

// filteredDep renders modules.dep restricted to the included files.
func (t *depTree) filteredDep(included map[string]bool) []byte {
	var b strings.Builder
	for _, rel := range t.order {
		if !included[rel] {
			continue
		}
		b.WriteString(rel + ":")
		if deps := t.deps[rel]; len(deps) > 0 {
			b.WriteString(" " + strings.Join(deps, " "))
		}
		b.WriteString("\n")
	}
	return []byte(b.String())
}

// filteredAlias copies the lines of modules.alias whose module is included.
// A missing modules.alias is an error: coldplug cannot match devices
// without it.
func filteredAlias(dir string, names map[string]bool) ([]byte, error) {
	p := filepath.Join(dir, "modules.alias")
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read modules.alias: %w", err)
	}
	defer f.Close()
	return filterAliasLines(f, names, p)
}

func filterAliasLines(r io.Reader, names map[string]bool, name string) ([]byte, error) {
	var b strings.Builder
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; s.Scan(); n++ {
		line := s.Text()
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 3 || f[0] != "alias" {
			return nil, fmt.Errorf("parse %s line %d: want \"alias PATTERN MODULE\", got %q", name, n, line)
		}
		if names[modName(f[2])] {
			b.WriteString(line + "\n")
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return []byte(b.String()), nil
}
