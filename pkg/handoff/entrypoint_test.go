package handoff

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

func TestEntrypointDigest(t *testing.T) {
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
		got, err := EntrypointDigest(root, tc.entry)
		switch {
		case tc.err == "" && (err != nil || got != want):
			t.Errorf("%s: %v, %v; want %v", tc.entry, got, err, want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one containing %q", tc.entry, err, tc.err)
		}
	}
}
