package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// smallTmpfs mounts a 64 KiB tmpfs so a large write fails with ENOSPC part
// way, the way a full /run or a full disk does.
func smallTmpfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount tmpfs on %s (tests run as root): %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, 0) })
	return dir
}

func TestWrite(t *testing.T) {
	old := []byte("old contents\n")
	big := bytes.Repeat([]byte("x"), 256<<10)
	tests := []struct {
		name    string
		dir     func(t *testing.T) string
		setup   func(t *testing.T, path string) // what is at path before
		data    []byte
		perm    os.FileMode
		wantErr error  // nil: Write must succeed
		want    []byte // contents of path afterwards
		mode    os.FileMode
		entries []string // all names in the directory afterwards
	}{
		{
			name: "new file", dir: tempDir, setup: nothing,
			data: []byte("hello\n"), perm: 0o644,
			want: []byte("hello\n"), mode: 0o644, entries: []string{"f"},
		},
		{
			name: "replaces file and its mode, umask ignored", dir: tempDir, setup: file(old, 0o600),
			data: []byte("new\n"), perm: 0o666,
			want: []byte("new\n"), mode: 0o666, entries: []string{"f"},
		},
		{
			name: "empty data", dir: tempDir, setup: file(old, 0o644),
			data: nil, perm: 0o600,
			want: []byte{}, mode: 0o600, entries: []string{"f"},
		},
		{
			name: "disk full keeps the old file", dir: smallTmpfs, setup: file(old, 0o640),
			data: big, perm: 0o644, wantErr: syscall.ENOSPC,
			want: old, mode: 0o640, entries: []string{"f"},
		},
		{
			name: "directory in the way", dir: tempDir, setup: dirWithChild,
			data: []byte("new\n"), perm: 0o644, wantErr: os.ErrExist, // os.Rename refuses a directory as the target
			entries: []string{"f"},
		},
		{
			name: "missing directory", dir: func(t *testing.T) string { return filepath.Join(t.TempDir(), "absent") }, setup: nothing,
			data: []byte("new\n"), perm: 0o644, wantErr: os.ErrNotExist,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			path := filepath.Join(dir, "f")
			tc.setup(t, path)
			err := Write(path, tc.data, tc.perm)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("Write: %v", err)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Write = %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name %s", err, path)
				}
			}
			if tc.want != nil {
				got, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tc.want) {
					t.Errorf("%s holds %d bytes %.20q, want %d bytes %.20q", path, len(got), got, len(tc.want), tc.want)
				}
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode() != tc.mode {
					t.Errorf("%s mode %v, want %v", path, fi.Mode(), tc.mode)
				}
			}
			if tc.entries != nil {
				ents, err := os.ReadDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				if !slices.Equal(names, tc.entries) {
					t.Errorf("directory holds %q, want %q (temporary file left behind?)", names, tc.entries)
				}
			}
		})
	}
}

func tempDir(t *testing.T) string { return t.TempDir() }

func nothing(*testing.T, string) {}

func file(b []byte, mode os.FileMode) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		if err := os.WriteFile(path, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
}

func dirWithChild(t *testing.T, path string) {
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "child"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(path, "child")); err != nil {
			t.Errorf("directory in the way was changed: %v", err)
		}
	})
}

func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "chunk")
	if err := WriteNew(p, []byte("first"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteNew(p, []byte("second"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteNew over an existing file: %v, want fs.ErrExist", err)
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "first" || fi.Mode().Perm() != 0o644 {
		t.Fatalf("existing file changed: %q %v", b, fi.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}
