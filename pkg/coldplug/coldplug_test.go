package coldplug

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

// Lines copied from Debian 12's /lib/modules/6.1.0-*-amd64/modules.alias.
const debianAliases = `# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias virtio:d00000002v* virtio_blk
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias pci:v000015B3d0000100Esv*sd*bc*sc*i* mlx4_core
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias usb:v13FDp3940d0[0-2]*dc*dsc*dp*ic*isc*ip*in* uas
alias usb:v13FDp3940d0[0-2]*dc*dsc*dp*ic*isc*ip*in* usb_storage
alias usb:v1645p0007d013[0-3]dc*dsc*dp*ic*isc*ip*in* usb_storage
alias acpi*:INTC1085:* pinctrl_alderlake
alias cpu:type:x86,ven*fam*mod*:feature:*0081* ghash_clmulni_intel
alias cpu:type:x86,ven*fam*mod*:feature:*0081* crc32_pclmul
`

// Modaliases as QEMU's devices show them.
const (
	virtioNetPCI = "pci:v00001AF4d00001041sv00001AF4sd00001041bc02sc00i00"
	virtioNet    = "virtio:d00000001v00001AF4"
	e1000PCI     = "pci:v00008086d0000100Esv00008086sd0000001Ebc02sc00i00"
)

func aliases(t *testing.T) []Alias {
	t.Helper()
	as, err := ParseAliases(strings.NewReader(debianAliases))
	if err != nil {
		t.Fatal(err)
	}
	return as
}

func TestParseAliases(t *testing.T) {
	as := aliases(t)
	if len(as) != 12 {
		t.Fatalf("%d aliases, want 12", len(as))
	}
	if as[0].Pattern != "pci:v00001AF4d*sv*sd*bc*sc*i*" || as[0].Module != "virtio_pci" {
		t.Errorf("first alias %+v", as[0])
	}
	as, err := ParseAliases(strings.NewReader("alias a:* snd-hda-intel\n"))
	if err != nil || as[0].Module != "snd_hda_intel" {
		t.Errorf("dash module: %+v %v", as, err)
	}
}

func TestParseAliasesErrors(t *testing.T) {
	for in, want := range map[string]string{
		"alias a b\nalias onlypattern\n":  "line 2",
		"# c\n\nalias a b c\n":            "line 3",
		"options virtio_net napi_tx=1\n":  "line 1",
		"alias a b\n\n\nblacklist floppy": "line 4",
	} {
		_, err := ParseAliases(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
}

func TestFnmatch(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abc", "ab", false},
		{"a*", "a", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"*", "", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*a*b*", "xxaxxbxx", true},
		{"*a*b", "xxaxxbxxb", true},
		{"*a*b", "xxaxxbxxc", false},
		{"d0[0-2]*", "d01x", true},
		{"d0[0-2]*", "d03x", false},
		{"[!a]x", "bx", true},
		{"[!a]x", "ax", false},
		{"[^a]x", "ax", false},
		{"[]]", "]", true},
		{"[a-]", "-", true},
		{"[", "[", true},
		{"a[b", "a[b", true},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{"v*d*sv*", "v1d2sv3", true},
		{"acpi*:INTC1085:*", "acpi:INTC1085:", true},
		{"cpu:type:x86,ven*fam*mod*:feature:*0081*", "cpu:type:x86,ven0000fam0006mod0055:feature:,0000,0081,0089", true},
	}
	for _, tt := range tests {
		if got := fnmatch(tt.p, tt.s); got != tt.want {
			t.Errorf("fnmatch(%q, %q) = %v, want %v", tt.p, tt.s, got, tt.want)
		}
	}
}

func TestMatch(t *testing.T) {
	as := aliases(t)
	tests := []struct {
		modalias string
		want     []string
	}{
		{virtioNetPCI, []string{"virtio_pci"}},
		{virtioNet, []string{"virtio_net"}},
		{e1000PCI, []string{"e1000"}},
		{"pci:v000015B3d0000100Esv000015B3sd00000001bc02sc00i00", []string{"mlx4_core"}},
		{"usb:v13FDp3940d0150dc00dsc00dp00ic08isc06ip50in00", []string{"uas", "usb_storage"}},
		{"usb:v13FDp3940d0350dc00dsc00dp00ic08isc06ip50in00", nil},
		{"usb:v1645p0007d0133dc00dsc00dp00ic08isc06ip50in00", []string{"usb_storage"}},
		{"cpu:type:x86,ven0000fam0006mod0055:feature:,0000,0081", []string{"ghash_clmulni_intel", "crc32_pclmul"}},
		{"platform:rtc_cmos", nil},
	}
	for _, tt := range tests {
		if got := Match(as, tt.modalias); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Match(%q) = %v, want %v", tt.modalias, got, tt.want)
		}
	}
	// Duplicate lines and dash/underscore spellings give one module.
	dup := []Alias{NewAlias("x:*", "a-b"), NewAlias("x:1*", "a_b"), {Pattern: "x:?", Module: "c"}}
	if got := Match(dup, "x:1"); !reflect.DeepEqual(got, []string{"a_b", "c"}) {
		t.Errorf("dedupe: %v", got)
	}
}

// sysfs builds a fake /sys with QEMU's PCI devices. Symlinks point back up
// the tree (like sysfs's subsystem links) and outside /sys/devices, so a
// walker that follows them loops or reads what it should not.
func sysfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	write(t, root, "devices/pci0000:00/0000:00:03.0/modalias", virtioNetPCI+"\n")
	write(t, root, "devices/pci0000:00/0000:00:04.0/modalias", e1000PCI+"\n")
	write(t, root, "devices/pci0000:00/0000:00:05.0/modalias", e1000PCI+"\n") // second NIC, same driver
	write(t, root, "devices/platform/rtc_cmos/modalias", "platform:rtc_cmos\n")
	write(t, root, "devices/platform/empty/modalias", "")
	write(t, root, "bus/fake/modalias", "virtio:d00000002v00001AF4\n") // not under devices: must not count
	must(t, os.Symlink("../../..", filepath.Join(root, "devices/pci0000:00/0000:00:03.0/subsystem")))
	must(t, os.Symlink("../../bus/fake", filepath.Join(root, "devices/platform/link")))
	return root
}

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(content), 0o444))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// recorder is a fake loader; onLoad may change the fake sysfs like a driver
// binding would.
type recorder struct {
	mu     sync.Mutex
	calls  []string
	fail   map[string]error
	onLoad func(string)
}

func (r *recorder) load(m string) error {
	r.mu.Lock()
	r.calls = append(r.calls, m)
	r.mu.Unlock()
	if r.onLoad != nil {
		r.onLoad(m)
	}
	return r.fail[m]
}

func TestRunRescansForNewDevices(t *testing.T) {
	root := sysfs(t)
	rec := &recorder{onLoad: func(m string) {
		if m == "virtio_pci" { // the virtio bus driver exposes the net device
			write(t, root, "devices/pci0000:00/0000:00:03.0/virtio0/modalias", virtioNet+"\n")
		}
	}}
	c := Coldplug{SysRoot: root, Aliases: aliases(t), Load: rec.load, Settle: time.Millisecond}
	res, err := c.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"e1000", "virtio_net", "virtio_pci"}; !reflect.DeepEqual(res.Loaded, want) {
		t.Errorf("loaded %v, want %v", res.Loaded, want)
	}
	// Round 1 loads the PCI drivers, round 2 virtio_net, round 3 finds
	// nothing new.
	if res.Rounds != 3 {
		t.Errorf("rounds %d, want 3", res.Rounds)
	}
	// virtio PCI, e1000 PCI, rtc, then the virtio net device.
	if res.Modaliases != 4 {
		t.Errorf("modaliases %d, want 4", res.Modaliases)
	}
	if len(rec.calls) != 3 {
		t.Errorf("load calls %v: each module must be tried once", rec.calls)
	}
	if rec.calls[2] != "virtio_net" {
		t.Errorf("virtio_net loaded before its device appeared: %v", rec.calls)
	}
	if len(res.Failed) != 0 {
		t.Errorf("failed %v", res.Failed)
	}
}

func TestRunFailuresAreNotFatal(t *testing.T) {
	root := sysfs(t)
	write(t, root, "devices/pci0000:00/0000:00:06.0/modalias", "pci:v000015B3d0000100Esv000015B3sd00000001bc02sc00i00\n")
	write(t, root, "devices/pci0000:00/0000:00:07.0/modalias", "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00\n")
	broken := errors.New("exec format error")
	rec := &recorder{fail: map[string]error{
		"e1000":      broken,
		"virtio_pci": fmt.Errorf("load virtio_pci: %w", unix.EEXIST),
		"mlx4_core":  fmt.Errorf("load mlx4_core: %w", ErrNotShipped),
	}}
	c := Coldplug{SysRoot: root, Aliases: aliases(t), Load: rec.load, Settle: time.Millisecond}
	res, err := c.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"e1000e", "virtio_pci"}; !reflect.DeepEqual(res.Loaded, want) {
		t.Errorf("loaded %v, want %v (EEXIST counts as loaded)", res.Loaded, want)
	}
	if want := []string{"mlx4_core"}; !reflect.DeepEqual(res.Missing, want) {
		t.Errorf("missing %v, want %v", res.Missing, want)
	}
	if len(res.Failed) != 1 || !errors.Is(res.Failed["e1000"], broken) {
		t.Errorf("failed %v, want e1000: %v", res.Failed, broken)
	}
	if res.Rounds != 2 {
		t.Errorf("rounds %d, want 2 (a failed module is not retried)", res.Rounds)
	}
}

func TestRunBoundedParallel(t *testing.T) {
	root := t.TempDir()
	var as []Alias
	for i := range 6 {
		write(t, root, fmt.Sprintf("devices/d%d/modalias", i), fmt.Sprintf("fake:m%d", i))
		as = append(as, NewAlias(fmt.Sprintf("fake:m%d", i), fmt.Sprintf("mod%d", i)))
	}
	var mu sync.Mutex
	inFlight, peak, total := 0, 0, 0
	both := make(chan struct{})
	load := func(string) error {
		mu.Lock()
		inFlight++
		total++
		if inFlight > peak {
			peak = inFlight
		}
		if inFlight == 2 && peak == 2 && total == 2 {
			close(both) // the first two loads overlapped
		}
		mu.Unlock()
		select {
		case <-both:
		case <-time.After(2 * time.Second):
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		return nil
	}
	c := Coldplug{SysRoot: root, Aliases: as, Load: load, Parallel: 2, Settle: time.Millisecond}
	res, err := c.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if total != 6 || len(res.Loaded) != 6 {
		t.Errorf("%d loads, %d loaded, want 6", total, len(res.Loaded))
	}
	if peak != 2 {
		t.Errorf("peak concurrency %d, want exactly Parallel=2", peak)
	}
}

func TestRunStopsAtMaxRounds(t *testing.T) {
	root := t.TempDir()
	write(t, root, "devices/d0/modalias", "chain:0")
	n := 0
	load := func(m string) error { // every driver exposes one more device
		n++
		write(t, root, fmt.Sprintf("devices/d%d/modalias", n), fmt.Sprintf("chain:%d", n))
		return nil
	}
	var as []Alias
	for i := range 10 {
		as = append(as, NewAlias(fmt.Sprintf("chain:%d", i), fmt.Sprintf("m%d", i)))
	}
	c := Coldplug{SysRoot: root, Aliases: as, Load: load, MaxRounds: 3, Settle: time.Millisecond}
	res, err := c.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Rounds != 3 || len(res.Loaded) != 3 {
		t.Errorf("rounds %d loaded %v, want 3 rounds and 3 modules", res.Rounds, res.Loaded)
	}
}

func TestRunErrors(t *testing.T) {
	c := Coldplug{SysRoot: filepath.Join(t.TempDir(), "nosys"), Load: func(string) error { return nil }}
	if _, err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "nosys/devices") {
		t.Errorf("missing sysfs: %v", err)
	}
	if _, err := (&Coldplug{SysRoot: t.TempDir()}).Run(context.Background()); err == nil {
		t.Error("no loader: no error")
	}
	root := sysfs(t)
	ctx, cancel := context.WithCancel(context.Background())
	rec := &recorder{onLoad: func(string) { cancel() }}
	c = Coldplug{SysRoot: root, Aliases: aliases(t), Load: rec.load, Parallel: 1, Settle: time.Hour}
	if _, err := c.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// moduleTree writes a fake lib/modules/KVER with modules.dep.
func moduleTree(t *testing.T) string {
	root := t.TempDir()
	dir := "lib/modules/6.1.0-test"
	write(t, root, dir+"/modules.dep", strings.Join([]string{
		"kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz kernel/net/core/failover.ko.xz",
		"kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz",
		"kernel/net/core/failover.ko.xz:",
		"kernel/drivers/virtio/virtio_pci.ko.xz: kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz",
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko.xz:",
		"kernel/drivers/net/ethernet/intel/e1000/e1000.ko.xz:",
	}, "\n")+"\n")
	return root
}

func TestKmoduleLoader(t *testing.T) {
	root := moduleTree(t)
	var mu sync.Mutex
	var order []string
	opts := kmodule.ProbeOpts{RootDir: root, KVer: "6.1.0-test", IgnoreProcMods: true, DryRunCB: func(p string) {
		mu.Lock()
		order = append(order, filepath.Base(p))
		mu.Unlock()
	}}
	load := newLoader(opts)
	must(t, load("virtio_net"))
	want := []string{"failover.ko.xz", "net_failover.ko.xz", "virtio_net.ko.xz"}
	if !reflect.DeepEqual(order, want) {
		t.Errorf("load order %v, want dependencies first %v", order, want)
	}
	order = nil
	must(t, load("virtio-net")) // already loaded by this prober: nothing to do
	if len(order) != 0 {
		t.Errorf("reloaded %v", order)
	}
	must(t, load("virtio_pci"))
	if !reflect.DeepEqual(order, []string{"virtio_pci_modern_dev.ko.xz", "virtio_pci.ko.xz"}) {
		t.Errorf("virtio_pci order %v", order)
	}
	if err := load("mlx5_core"); !errors.Is(err, ErrNotShipped) {
		t.Errorf("absent module: %v, want ErrNotShipped", err)
	}
	bad := newLoader(kmodule.ProbeOpts{RootDir: root, KVer: "9.9.9", IgnoreProcMods: true})
	if err := bad("e1000"); err == nil || !strings.Contains(err.Error(), "no module tree for kernel 9.9.9") {
		t.Errorf("missing tree: %v", err)
	}
}

func BenchmarkMatchDebianSized(b *testing.B) {
	// About the size of a full modules.alias.
	var as []Alias
	for i := range 26000 {
		as = append(as, NewAlias(fmt.Sprintf("pci:v%08Xd%08Xsv*sd*bc*sc*i*", 0x8086+i%50, i), fmt.Sprintf("m%d", i%900)))
	}
	b.ResetTimer()
	for range b.N {
		Match(as, e1000PCI)
	}
}
