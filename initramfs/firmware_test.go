package initramfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/internal/testenv"
)

// elfModule compiles a relocatable ELF object whose .modinfo section holds
// the given key=value entries, as a kernel module's does.
func elfModule(t *testing.T, out string, modinfo ...string) {
	t.Helper()
	gcc := testenv.NeedTool(t, "gcc")
	var src strings.Builder
	for i, kv := range modinfo {
		src.WriteString("__attribute__((section(\".modinfo\"), used)) static const char m" + string(rune('a'+i)) + "[] = \"" + kv + "\";\n")
	}
	c := filepath.Join(t.TempDir(), "mod.c")
	if err := os.WriteFile(c, []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(gcc, "-c", "-o", out, c).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, b)
	}
}

func TestFirmware(t *testing.T) {
	spec := testSpec(t)
	spec.Modules, spec.Required = []string{"lone"}, []string{}
	elfModule(t, filepath.Join(spec.KernelModules, "kernel/drivers/net/lone.ko"),
		"license=GPL", "firmware=vendor/lone-1.fw", "firmware=vendor/absent.fw", "firmware=vendor/lone-1.fw")
	fw := t.TempDir()
	for _, f := range []string{"vendor/lone-1.fw", "vendor/unrelated.fw"} {
		os.MkdirAll(filepath.Join(fw, filepath.Dir(f)), 0o755)
		if err := os.WriteFile(filepath.Join(fw, f), []byte("blob "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec.Firmware = fw
	img, rep := build(t, spec)
	got, _ := decode(t, img)
	if m, ok := got["lib/firmware/vendor/lone-1.fw"]; !ok || m.data != "blob vendor/lone-1.fw" {
		t.Errorf("named firmware not in the image: %+v", m)
	}
	if _, ok := got["lib/firmware/vendor/unrelated.fw"]; ok {
		t.Error("firmware no module names was copied")
	}
	if !slices.Equal(rep.Firmware, []string{"vendor/lone-1.fw"}) || !slices.Equal(rep.FirmwareMissing, []string{"lone: vendor/absent.fw"}) {
		t.Errorf("report: firmware %v, missing %v", rep.Firmware, rep.FirmwareMissing)
	}

	for _, tc := range []struct {
		name    string
		modinfo []string
		dir     string
		want    string
	}{
		{"escaping name", []string{"firmware=../../etc/shadow"}, fw, `firmware name "../../etc/shadow": must be relative`},
		{"no directory", []string{"firmware=x.fw"}, filepath.Join(fw, "nope"), "firmware directory"},
	} {
		spec := testSpec(t)
		spec.Modules, spec.Required, spec.Firmware = []string{"lone"}, []string{}, tc.dir
		elfModule(t, filepath.Join(spec.KernelModules, "kernel/drivers/net/lone.ko"), tc.modinfo...)
		if _, err := Build(spec, new(strings.Builder)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A module that is not ELF (or is compressed) cannot say what it needs.
	spec = testSpec(t)
	spec.Modules, spec.Required, spec.Firmware = []string{"lone"}, []string{}, fw
	if _, err := Build(spec, new(strings.Builder)); err == nil || !strings.Contains(err.Error(), "lone.ko") {
		t.Errorf("non-ELF module: %v", err)
	}
}
