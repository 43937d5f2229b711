package handoff

import (
	"github.com/zeroboot/zeroboot/internal/testenv"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/release"
)

func TestFindEntrypoint(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(t.TempDir(), "evil")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(os.WriteFile(filepath.Join(root, "bin", "core0"), []byte("#!core0"), 0o755))
	must(os.WriteFile(filepath.Join(root, "bin", "data"), []byte("x"), 0o644))
	must(os.WriteFile(outside, []byte("#!evil"), 0o755))
	must(os.Symlink("core0", filepath.Join(root, "bin", "link")))
	must(os.Symlink(outside, filepath.Join(root, "bin", "out")))
	must(os.Symlink("../../../../../../"+outside, filepath.Join(root, "bin", "dotdot")))
	must(syscall.Mkfifo(filepath.Join(root, "bin", "fifo"), 0o755))

	want := digest.Of([]byte("#!core0"))
	tests := []struct {
		entry string
		err   string
	}{
		{"/bin/core0", ""},
		{"/bin/link", ""}, // a symlink inside the root resolves as in the chroot
		{"/bin/data", "not executable"},
		{"/bin/fifo", "not a regular file"},
		{"/bin/out", "escapes"},
		{"/bin/dotdot", "escapes"},
		{"/bin/missing", "no such file"},
		{"/bin", "not a regular file"},
	}
	for _, tc := range tests {
		e, err := findExecutable(root, "entrypoint", tc.entry)
		got := e.Digest
		switch {
		case tc.err == "" && (err != nil || got != want):
			t.Errorf("%s: %v, %v; want %v", tc.entry, got, err, want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one containing %q", tc.entry, err, tc.err)
		}
	}
}

// TestEntrypointRefusesRuntimePaths: whatever a release puts under /run,
// /proc and the like is hidden by the hand-off's mounts, so the file
// hashed there would not be the one Core-0 runs.
func TestEntrypointRefusesRuntimePaths(t *testing.T) {
	r, calls := fakeRoot(t)
	for _, p := range []string{"run/core0", "proc/self/exe", "dev/core0", "sys/core0", "tmp/core0", "bin/ok"} {
		os.MkdirAll(filepath.Join(r.Dir, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(r.Dir, p), []byte("#!shipped"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("../run/core0", filepath.Join(r.Dir, "bin", "rel"))
	os.Symlink("../proc/self/exe", filepath.Join(r.Dir, "bin", "deep"))
	os.Symlink("run", filepath.Join(r.Dir, "usr"))
	for _, tc := range []struct {
		entry, mount string
		viaLink      bool // only resolving the path shows it: not Command
	}{
		{"/run/core0", "/run", false},
		{"/proc/self/exe", "/proc", false},
		{"/dev/core0", "/dev", false},
		{"/sys/core0", "/sys", false},
		{"/tmp/core0", "/tmp", false},
		{"/bin/rel", "/run", true},   // a symlink into a runtime mount
		{"/bin/deep", "/proc", true}, // through ..
		{"/usr/core0", "/run", true}, // a directory symlink
	} {
		checks := map[string]func() error{
			"findExecutable": func() error {
				if err := checkEntry(tc.entry); err != nil {
					return err
				}
				_, err := findExecutable(r.Dir, "entrypoint", tc.entry)
				return err
			},
			"BindEntrypoint": func() error { _, err := r.BindEntrypoint(tc.entry); return err },
		}
		if !tc.viaLink {
			checks["command"] = func() error { return command(r.Dir, tc.entry, nil, nil).Err }
		}
		for name, check := range checks {
			if err := check(); err == nil || !strings.Contains(err.Error(), tc.entry) || !strings.Contains(err.Error(), "inside "+tc.mount) {
				t.Errorf("%s(%s): error %v, want one naming it and %s", name, tc.entry, err, tc.mount)
			}
		}
	}
	// The direct refusals come before any mount.
	*calls = nil
	if _, err := r.BindEntrypoint("/run/core0"); err == nil || len(*calls) != 0 {
		t.Errorf("BindEntrypoint(/run/core0): %v after %d mounts", err, len(*calls))
	}
	if _, err := r.BindEntrypoint("/bin/ok"); err != nil {
		t.Errorf("BindEntrypoint(/bin/ok): %v", err)
	}
}

// TestBindEntrypointHashesAfterBinding: the entrypoint is found once the
// mounts are in place. The fake mount of /tmp (the last) stands in for
// anything the mounts change in the root: the entrypoint appears only then.
func TestBindEntrypointHashesAfterBinding(t *testing.T) {
	r, calls := fakeRoot(t)
	os.MkdirAll(filepath.Join(r.Dir, "bin"), 0o755)
	os.Symlink("core0", filepath.Join(r.Dir, "bin", "link"))
	os.Symlink("bin", filepath.Join(r.Dir, "sbin"))
	mount := r.Mount
	r.Mount = func(source, target, fstype string, flags uintptr, data string) error {
		if target == filepath.Join(r.Dir, "tmp") {
			os.WriteFile(filepath.Join(r.Dir, "bin", "core0"), []byte("#!after"), 0o755)
		}
		return mount(source, target, fstype, flags, data)
	}
	e, err := r.BindEntrypoint("/sbin/link")
	if err != nil {
		t.Fatal(err)
	}
	if len(*calls) != len(release.RuntimePaths) {
		t.Errorf("%d mounts, want one per runtime path", len(*calls))
	}
	want := Entrypoint{Path: "/sbin/link", File: "/bin/core0", Digest: digest.Of([]byte("#!after"))}
	if e != want {
		t.Errorf("BindEntrypoint = %+v, want %+v", e, want)
	}
	// What runs is the file hashed, under the name the release gave.
	cmd := r.Command(e, []string{"-v"}, nil)
	if cmd.Err != nil || cmd.Path != "/bin/core0" || !reflect.DeepEqual(cmd.Args, []string{"/sbin/link", "-v"}) || cmd.SysProcAttr.Chroot != r.Dir {
		t.Errorf("Command: Err %v Path %q Args %q Chroot %q", cmd.Err, cmd.Path, cmd.Args, cmd.SysProcAttr.Chroot)
	}
	if err := r.Command(Entrypoint{}, nil, nil).Err; err == nil {
		t.Error("Command of an entrypoint never found has no error")
	}
}

func TestBindEntrypointBindFails(t *testing.T) {
	r, _ := fakeRoot(t)
	os.MkdirAll(filepath.Join(r.Dir, "bin"), 0o755)
	os.WriteFile(filepath.Join(r.Dir, "bin", "core0"), []byte("#!core0"), 0o755)
	r.Mount = func(source, target, fstype string, flags uintptr, data string) error { return syscall.EPERM }
	if _, err := r.BindEntrypoint("/bin/core0"); err == nil || !strings.Contains(err.Error(), "mount /dev on") {
		t.Errorf("error %v, want the failed mount", err)
	}
}

// TestBindUsesRuntimePaths: the hand-off mounts exactly the paths the
// release validation keeps components and entrypoints out of.
func TestBindUsesRuntimePaths(t *testing.T) {
	saved := release.RuntimePaths
	t.Cleanup(func() { release.RuntimePaths = saved })
	release.RuntimePaths = append(append([]string(nil), saved...), "/srv")
	r, calls := fakeRoot(t)
	os.MkdirAll(r.Dir, 0o755)
	if err := r.Bind(); err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, c := range *calls {
		targets = append(targets, strings.TrimPrefix(c.target, r.Dir))
		if c.target != filepath.Join(r.Dir, "tmp") && c.source != strings.TrimPrefix(c.target, r.Dir) {
			t.Errorf("bound %s on %s", c.source, c.target)
		}
	}
	if !reflect.DeepEqual(targets, release.RuntimePaths) {
		t.Errorf("mounted %q, want release.RuntimePaths %q", targets, release.RuntimePaths)
	}
}

// TestBindEntrypointRealMounts does the hand-off for real: a tmpfs root,
// PID 1's (here the test's) /dev, /proc, /sys and /run bound in, the
// entrypoint found through a symlink and run chrooted. Needs root.
func TestBindEntrypointRealMounts(t *testing.T) {
	testenv.NeedRoot(t, "mount and chroot")
	gobin := testenv.NeedTool(t, "go")
	helper := filepath.Join(t.TempDir(), "helper")
	buildHelper(t, gobin, helper)
	prog, err := os.ReadFile(helper)
	if err != nil {
		t.Fatal(err)
	}
	r := &Root{Dir: filepath.Join(t.TempDir(), "root-new")}
	err = r.Prepare()
	testenv.Need(t, err == nil, "tmpfs: %v", err)
	t.Cleanup(func() {
		if err := r.Release(); err != nil {
			t.Error(err)
		}
	})
	os.MkdirAll(filepath.Join(r.Dir, "bin"), 0o755)
	os.MkdirAll(filepath.Join(r.Dir, "run"), 0o755)
	os.WriteFile(filepath.Join(r.Dir, "bin", "helper"), prog, 0o755)
	os.WriteFile(filepath.Join(r.Dir, "marker"), []byte("inside"), 0o644)
	os.Symlink("helper", filepath.Join(r.Dir, "bin", "core0"))
	// Shipped under /run: hidden by PID 1's /run once bound.
	os.WriteFile(filepath.Join(r.Dir, "run", "shipped"), prog, 0o755)
	os.Symlink("../run/shipped", filepath.Join(r.Dir, "bin", "trap"))

	// Refused whether or not PID 1's /run has a file by that name.
	if _, err := r.BindEntrypoint("/bin/trap"); err == nil || !strings.Contains(err.Error(), "inside /run") && !strings.Contains(err.Error(), "no such file") {
		t.Errorf("entrypoint through /run: error %v", err)
	}
	e, err := r.BindEntrypoint("/bin/core0")
	if err != nil {
		t.Fatal(err)
	}
	if e.File != "/bin/helper" || e.Digest != digest.Of(prog) {
		t.Errorf("found %s %s, want /bin/helper %s", e.File, e.Digest, digest.Of(prog))
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "run", "shipped")); err == nil {
		t.Fatal("the root's /run is not PID 1's: the bind did not happen")
	}
	var out strings.Builder
	cmd := r.Command(e, []string{"x"}, nil)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"marker=inside\n", "argv0=/bin/core0\n", `args=["x"]` + "\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("helper output lacks %q:\n%s", want, out.String())
		}
	}
}

// FindService hashes a service's executable as the chroot resolves it, and
// its errors name the service.
func TestFindService(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "opt", "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "opt", "app", "db"), []byte("#!db"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("db", filepath.Join(dir, "opt", "app", "current")); err != nil {
		t.Fatal(err)
	}
	r := &Root{Dir: dir}
	e, err := r.FindService("db", "/opt/app/current")
	if err != nil || e.File != "/opt/app/db" || e.Digest != digest.Of([]byte("#!db")) {
		t.Fatalf("FindService = %+v, %v", e, err)
	}
	for exec, want := range map[string]string{
		"/opt/app/none": `service db exec /opt/app/none: `,
		"opt/app/db":    `service db exec "opt/app/db": must be an absolute clean path`,
		"/opt/app/../x": `must be an absolute clean path`,
	} {
		if _, err := r.FindService("db", exec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("FindService(%q) = %v, want %q", exec, err, want)
		}
	}
}
