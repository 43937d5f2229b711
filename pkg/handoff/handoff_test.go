package handoff

import (
	"bytes"
	"crypto/sha256"
	"github.com/zeroboot/zeroboot/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/timeline"
	"golang.org/x/sys/unix"
)

func TestBootInfoRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "run", "zeroboot", "boot.json")
	want := BootInfo{
		NodeID: "node-1", Farm: "farm-a", Registry: "https://192.0.2.1:8443",
		ReleaseChannel: "stable", ReleaseVersion: 7,
		Components:       []ComponentInfo{{Name: "core0", Flist: "sha256:" + strings.Repeat("ab", 32), Mount: "/"}},
		Entrypoint:       "/bin/core0",
		EntrypointDigest: "sha256:" + strings.Repeat("cd", 32),
		Timeline:         []timeline.Step{{Name: "mounts", StartMS: 1, EndMS: 2.5}, {Name: "net", StartMS: 2.5, EndMS: 90, Error: "no carrier"}},
		BootedAt:         time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	if err := WriteBootInfo(p, want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("boot.json mode %v, err %v; want 0600 (it holds the boot token)", fi.Mode(), err)
	}
	raw, _ := os.ReadFile(p)
	for _, key := range []string{`"node_id"`, `"release_version": 7`, `"entrypoint_digest"`, `"booted_at"`, `"start_ms"`} {
		if !bytes.Contains(raw, []byte(key)) {
			t.Errorf("boot.json lacks %s:\n%s", key, raw)
		}
	}
	got, err := ReadBootInfo(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	// Rewriting replaces atomically and leaves no temporary files.
	want.ReleaseVersion = 8
	if err := WriteBootInfo(p, want); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("%d entries next to boot.json, want 1", len(entries))
	}
}

func TestReadBootInfoErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, body, want string }{
		{"garbage", "not json", "decode boot info"},
		{"trailing", `{"node_id":"a"} {"node_id":"b"}`, "trailing data"},
		{"wrong type", `{"release_version":"seven"}`, "decode boot info"},
		{"huge", `{"farm":"` + strings.Repeat("x", maxBootInfo) + `"}`, "larger than"},
	} {
		p := filepath.Join(dir, tc.name)
		os.WriteFile(p, []byte(tc.body), 0o644)
		if _, err := ReadBootInfo(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := ReadBootInfo(filepath.Join(dir, "absent")); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("missing file: error %v", err)
	}
}

func TestFileDigest(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	data := bytes.Repeat([]byte("zeroboot"), 100000)
	os.WriteFile(p, data, 0o644)
	d, err := FileDigest(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(data); d != want {
		t.Errorf("FileDigest = %s, want %x", d, want)
	}
	if _, err := FileDigest(p + ".absent"); err == nil {
		t.Error("no error for a missing file")
	}
}

type mountCall struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func fakeRoot(t *testing.T) (*Root, *[]mountCall) {
	var calls []mountCall
	r := &Root{
		Dir: filepath.Join(t.TempDir(), "root-new"),
		Mount: func(source, target, fstype string, flags uintptr, data string) error {
			calls = append(calls, mountCall{source, target, fstype, flags, data})
			return nil
		},
	}
	return r, &calls
}

func TestPrepareAndBind(t *testing.T) {
	r, calls := fakeRoot(t)
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	if err := r.Bind(); err != nil {
		t.Fatal(err)
	}
	d := r.Dir
	want := []mountCall{
		{"tmpfs", d, "tmpfs", 0, "mode=0755"},
		{"/dev", d + "/dev", "", unix.MS_BIND | unix.MS_REC, ""},
		{"/proc", d + "/proc", "", unix.MS_BIND | unix.MS_REC, ""},
		{"/sys", d + "/sys", "", unix.MS_BIND | unix.MS_REC, ""},
		{"/run", d + "/run", "", unix.MS_BIND | unix.MS_REC, ""},
		{"tmpfs", d + "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	}
	if !reflect.DeepEqual(*calls, want) {
		t.Errorf("mounts:\n got %+v\nwant %+v", *calls, want)
	}
	for _, sub := range []string{"dev", "proc", "sys", "run", "tmp"} {
		if fi, err := os.Lstat(filepath.Join(d, sub)); err != nil || !fi.IsDir() {
			t.Errorf("%s not created as a directory: %v", sub, err)
		}
	}
	// Binding twice (a retried boot) reuses the directories.
	if err := r.Bind(); err != nil {
		t.Errorf("second Bind: %v", err)
	}
}

func TestBindRefusesSymlink(t *testing.T) {
	r, calls := fakeRoot(t)
	os.MkdirAll(r.Dir, 0o755)
	os.Symlink("/etc", filepath.Join(r.Dir, "proc"))
	err := r.Bind()
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Bind over a symlinked proc: error %v", err)
	}
	for _, c := range *calls {
		if strings.HasSuffix(c.target, "/proc") {
			t.Errorf("mounted onto the symlink: %+v", c)
		}
	}
}

func TestMountErrorsNamed(t *testing.T) {
	r, _ := fakeRoot(t)
	r.Mount = func(source, target, fstype string, flags uintptr, data string) error {
		if strings.HasSuffix(target, "/sys") {
			return syscall.EPERM
		}
		return nil
	}
	if err := r.Prepare(); err != nil {
		t.Fatal(err)
	}
	err := r.Bind()
	if err == nil || !strings.Contains(err.Error(), "mount /sys on "+r.Dir+"/sys") {
		t.Fatalf("error %v does not name the failing mount", err)
	}
}

func TestRootDirChecked(t *testing.T) {
	for _, dir := range []string{"", "/", "relative/root", "/root-new/../etc"} {
		r := &Root{Dir: dir, Mount: func(string, string, string, uintptr, string) error { t.Fatal("mount called"); return nil }}
		if err := r.Prepare(); err == nil {
			t.Errorf("Prepare with Dir %q succeeded", dir)
		}
	}
}

func TestRelease(t *testing.T) {
	r, _ := fakeRoot(t)
	var got []string
	r.Unmount = func(target string, flags int) error {
		if flags != unix.MNT_DETACH {
			t.Errorf("unmount flags %#x, want MNT_DETACH", flags)
		}
		got = append(got, target)
		return nil
	}
	if err := r.Release(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []string{r.Dir}) {
		t.Errorf("unmounted %v, want [%s]", got, r.Dir)
	}
}

func TestComponentDir(t *testing.T) {
	r, _ := fakeRoot(t)
	os.MkdirAll(r.Dir, 0o755)
	for mount, want := range map[string]string{
		"/":            r.Dir,
		"/opt/app":     r.Dir + "/opt/app",
		"/usr/lib/zos": r.Dir + "/usr/lib/zos",
	} {
		got, err := r.ComponentDir(mount)
		if err != nil || got != want {
			t.Errorf("ComponentDir(%q) = %q, %v; want %q", mount, got, err, want)
			continue
		}
		if fi, err := os.Lstat(got); err != nil || !fi.IsDir() {
			t.Errorf("ComponentDir(%q) did not create %s", mount, got)
		}
	}
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(r.Dir, "escape"))
	os.WriteFile(filepath.Join(r.Dir, "file"), nil, 0o644)
	for mount, wantErr := range map[string]string{
		"relative":      "must be an absolute clean path",
		"/opt/../..":    "must be an absolute clean path",
		"/opt//app":     "must be an absolute clean path",
		"/opt/app/":     "must be an absolute clean path",
		"/a\x00b":       "must be an absolute clean path",
		"/escape/inner": "not a directory",
		"/file/x":       "not a directory",
	} {
		if _, err := r.ComponentDir(mount); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ComponentDir(%q) error %v, want %q", mount, err, wantErr)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("ComponentDir wrote through the symlink: %v", entries)
	}
}

func TestCommandAttributes(t *testing.T) {
	cmd := command("/root-new", "/bin/core0", []string{"--heartbeat", "5s"}, []string{"PATH=/opt/bin", "A=1"})
	if cmd.Err != nil {
		t.Fatal(cmd.Err)
	}
	if cmd.Path != "/bin/core0" || !reflect.DeepEqual(cmd.Args, []string{"/bin/core0", "--heartbeat", "5s"}) {
		t.Errorf("Path %q Args %q", cmd.Path, cmd.Args)
	}
	if cmd.Dir != "/" || cmd.Stdout != os.Stdout || cmd.Stderr != os.Stderr {
		t.Errorf("Dir %q, Stdout/Stderr not the console", cmd.Dir)
	}
	if a := cmd.SysProcAttr; a == nil || a.Chroot != "/root-new" || !a.Setsid {
		t.Errorf("SysProcAttr %+v, want Chroot /root-new and Setsid", a)
	}
	wantEnv := []string{DefaultPath, "PATH=/opt/bin", "A=1", "ZEROBOOT_BOOT_INFO=/run/zeroboot/boot.json"}
	if !reflect.DeepEqual(cmd.Env, wantEnv) {
		t.Errorf("Env %q, want %q", cmd.Env, wantEnv)
	}
	for _, bad := range [][2]string{{"/root-new", "bin/core0"}, {"/root-new", "/bin/../core0"}, {"root-new", "/bin/core0"}} {
		c := command(bad[0], bad[1], nil, nil)
		if c.Err == nil {
			t.Errorf("command(%q, %q) has no error", bad[0], bad[1])
		} else if err := c.Run(); err == nil {
			t.Errorf("command(%q, %q) ran", bad[0], bad[1])
		}
	}
}

// TestCommandChroot really starts a static program chrooted into a
// directory and reads what it saw. Needs root (chroot) and the go tool.
func TestCommandChroot(t *testing.T) {
	testenv.NeedRoot(t, "chroot")
	gobin := testenv.NeedTool(t, "go")
	root := t.TempDir()
	buildHelper(t, gobin, filepath.Join(root, "bin", "helper"))
	os.WriteFile(filepath.Join(root, "marker"), []byte("inside"), 0o644)

	cmd := command(root, "/bin/helper", []string{"one", "two"}, []string{"CORE=1"})
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"marker=inside\n", "wd=/\n", "setsid=true\n", `args=["one" "two"]` + "\n",
		"env=CORE=1\n", "env=ZEROBOOT_BOOT_INFO=/run/zeroboot/boot.json\n", "env=" + DefaultPath + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("helper output lacks %q:\n%s", want, got)
		}
	}
}

// buildHelper builds testdata/helper, static, at dst.
func buildHelper(t *testing.T, gobin, dst string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(dst), 0o755)
	build := exec.Command(gobin, "build", "-o", dst, "./testdata/helper/main.go")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build helper: %v\n%s", err, out)
	}
}
