package kernelconfig

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	in := `# a comment
CONFIG_A=y

CONFIG_B=m
# CONFIG_C is not set
CONFIG_D="ttyS0,115200"
CONFIG_E=-3
CONFIG_F=0x1f
  CONFIG_G=n
# CONFIG_H: a remark, not a setting
`
	c, err := Parse(strings.NewReader(in), "frag")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		"A": {"A", "y", 2}, "B": {"B", "m", 4}, "C": {"C", "n", 5},
		"D": {"D", `"ttyS0,115200"`, 6}, "E": {"E", "-3", 7}, "F": {"F", "0x1f", 8}, "G": {"G", "n", 9},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse:\n got %v\nwant %v", c, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"CONFIG_A=yes\n", `line 1: CONFIG_A: value "yes"`},
		{"CONFIG_A=\n", `value ""`},
		{"CONFIG_A=\"open\n", "not y, m, n, a quoted string"},
		{"A=y\n", "want CONFIG_NAME=VALUE"},
		{"CONFIG_A-B=y\n", "want CONFIG_NAME=VALUE"},
		{"just text\n", "line 1: want CONFIG_NAME=VALUE"},
		{"CONFIG_A=y\n# CONFIG_A is not set\n", "line 2: CONFIG_A already set on line 1"},
	} {
		if _, err := Parse(strings.NewReader(tc.in), "frag"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	frag := Config{
		"SAME": {"SAME", "y", 1}, "MOD": {"MOD", "y", 2}, "MODOK": {"MODOK", "m", 3},
		"ABSENT": {"ABSENT", "y", 4}, "OFF": {"OFF", "n", 5}, "STR": {"STR", `"a"`, 6},
		"OFFOK": {"OFFOK", "n", 7}, "WANTMOD": {"WANTMOD", "m", 8},
	}
	base := Config{
		"SAME": {"SAME", "y", 1}, "MOD": {"MOD", "m", 1}, "MODOK": {"MODOK", "y", 1},
		"OFF": {"OFF", "y", 1}, "STR": {"STR", `"b"`, 1},
	}
	want := []Finding{
		{"MOD", "y", "m", false},
		{"MODOK", "m", "y", false},
		{"ABSENT", "y", "n", true},
		{"OFF", "n", "y", true},
		{"STR", `"a"`, `"b"`, true},
		{"WANTMOD", "m", "n", true},
	}
	if got := Check(frag, base); !reflect.DeepEqual(got, want) {
		t.Errorf("Check:\n got %v\nwant %v", got, want)
	}
}

// ownKernel is what make kernel adds for our own kernel. It is not
// checked against Debian's kernel, which has modules where it has none.
const ownKernel = "own-kernel.config"

func fragments(t *testing.T) map[string]Config {
	t.Helper()
	out := map[string]Config{}
	for _, name := range []string{"stateless-node.config", "qemu.config"} {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(f, name)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) == 0 {
			t.Fatalf("%s sets no option", name)
		}
		out[name] = c
	}
	return out
}

// TestFragmentsCommented holds the fragments to their promise that every
// block says why: each option follows a comment, directly or within its
// group (no blank line in between).
func TestFragmentsCommented(t *testing.T) {
	names := []string{ownKernel}
	for name := range fragments(t) {
		names = append(names, name)
	}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(strings.NewReader(string(b)), name); err != nil {
			t.Fatal(err)
		}
		commented := false
		for i, line := range strings.Split(string(b), "\n") {
			switch {
			case strings.TrimSpace(line) == "":
				commented = false
			case strings.HasPrefix(line, "#"):
				commented = true
			case !commented:
				t.Errorf("%s line %d: %q has no comment above its group", name, i+1, line)
			}
		}
	}
}

// TestFragmentsAgainstInstalledKernel checks that the kernels installed on
// this machine (Debian's, for the demo) give every option the fragments
// ask for. A module where the fragment says built in is fine and logged.
func TestFragmentsAgainstInstalledKernel(t *testing.T) {
	frags := fragments(t)
	configs, _ := filepath.Glob("/boot/config-*")
	if len(configs) == 0 {
		t.Skip("NO KERNEL CONFIG: /boot/config-* does not exist, so the fragments cannot be checked against the demo kernel; install linux-image-amd64 (make deps)")
	}
	for _, cfg := range configs {
		f, err := os.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		base, err := Parse(f, cfg)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for name, frag := range frags {
			for _, fd := range Check(frag, base) {
				if fd.Mismatch {
					t.Errorf("%s vs %s: %v", name, cfg, fd)
				} else {
					t.Logf("%s vs %s: %v", name, cfg, fd)
				}
			}
		}
	}
}
