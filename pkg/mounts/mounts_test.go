package mounts

import (
	"errors"
	"github.com/zeroboot/zeroboot/internal/testenv"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type fakeInfo struct{ name string }

func (f fakeInfo) Name() string       { return f.name }
func (f fakeInfo) Size() int64        { return 0 }
func (f fakeInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o755 }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return true }
func (f fakeInfo) Sys() any           { return nil }

// fake is a pretend kernel: which directories exist, which filesystems it
// has, and which mounts fail how.
type fake struct {
	dirs     map[string]bool
	fs       map[string]bool
	fsErr    error
	fail     map[string]error // target -> mount error
	mkdirErr map[string]error
	mounted  []string
	made     map[string]os.FileMode
	fsCalls  int
}

func (f *fake) mounter() Mounter {
	return Mounter{
		Mount: func(source, target, fstype string, flags uintptr, data string) error {
			if err := f.fail[target]; err != nil {
				return err
			}
			f.mounted = append(f.mounted, fstype+":"+target)
			return nil
		},
		MkdirAll: func(p string, mode os.FileMode) error {
			if err := f.mkdirErr[p]; err != nil {
				return err
			}
			f.made[p] = mode
			f.dirs[p] = true
			return nil
		},
		Stat: func(p string) (os.FileInfo, error) {
			if f.dirs[p] {
				return fakeInfo{filepath.Base(p)}, nil
			}
			return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
		},
		Filesystems: func() (map[string]bool, error) {
			f.fsCalls++
			return f.fs, f.fsErr
		},
	}
}

func set(xs ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

var allFS = set("devtmpfs", "proc", "sysfs", "tmpfs", "devpts", "securityfs", "efivarfs", "cgroup2")

func TestAll(t *testing.T) {
	tests := []struct {
		name        string
		dirs        map[string]bool
		fs          map[string]bool
		fsErr       error
		fail        map[string]error
		mkdirErr    map[string]error
		wantMounted []string
		wantSkipped []string // substrings, in order
		wantErr     []string // substrings
	}{
		{
			name: "bios machine, no efi",
			dirs: set("/", "/dev", "/sys", "/sys/kernel", "/sys/fs"),
			fs:   allFS,
			wantMounted: []string{"devtmpfs:/dev", "proc:/proc", "sysfs:/sys", "tmpfs:/run", "tmpfs:/tmp", "devpts:/dev/pts",
				"securityfs:/sys/kernel/security", "cgroup2:/sys/fs/cgroup"},
			wantSkipped: []string{"/sys/firmware/efi/efivars (efivarfs): /sys/firmware/efi missing"},
		},
		{
			name: "efi machine, kernel without securityfs, /dev already mounted",
			dirs: set("/", "/dev", "/sys", "/sys/kernel", "/sys/fs", "/sys/firmware/efi", "/sys/firmware/efi/efivars"),
			fs:   set("devtmpfs", "proc", "sysfs", "tmpfs", "devpts", "efivarfs", "cgroup2"),
			fail: map[string]error{"/dev": unix.EBUSY},
			wantMounted: []string{"proc:/proc", "sysfs:/sys", "tmpfs:/run", "tmpfs:/tmp", "devpts:/dev/pts",
				"efivarfs:/sys/firmware/efi/efivars", "cgroup2:/sys/fs/cgroup"},
			wantSkipped: []string{"/sys/kernel/security (securityfs): filesystem not in the kernel"},
		},
		{
			name:  "filesystem list unreadable: optional mounts are attempted",
			dirs:  set("/", "/dev", "/sys", "/sys/kernel", "/sys/fs", "/sys/firmware/efi"),
			fsErr: errors.New("no /proc"),
			fail:  map[string]error{"/sys/kernel/security": unix.ENODEV},
			wantMounted: []string{"devtmpfs:/dev", "proc:/proc", "sysfs:/sys", "tmpfs:/run", "tmpfs:/tmp", "devpts:/dev/pts",
				"efivarfs:/sys/firmware/efi/efivars", "cgroup2:/sys/fs/cgroup"},
			wantSkipped: []string{"/sys/kernel/security (securityfs): mount securityfs on /sys/kernel/security: no such device"},
		},
		{
			name:        "required failures are joined and the rest still mounted",
			dirs:        set("/", "/dev", "/sys", "/sys/kernel", "/sys/fs"),
			fs:          allFS,
			fail:        map[string]error{"/proc": unix.EPERM, "/sys/fs/cgroup": unix.ENODEV},
			mkdirErr:    map[string]error{"/tmp": unix.EROFS},
			wantMounted: []string{"devtmpfs:/dev", "sysfs:/sys", "tmpfs:/run", "devpts:/dev/pts", "securityfs:/sys/kernel/security"},
			wantSkipped: []string{"/sys/firmware/efi/efivars"},
			wantErr: []string{"mount proc on /proc: operation not permitted", "mount /tmp: read-only file system",
				"mount cgroup2 on /sys/fs/cgroup: no such device"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fake{dirs: tt.dirs, fs: tt.fs, fsErr: tt.fsErr, fail: tt.fail, mkdirErr: tt.mkdirErr, made: map[string]os.FileMode{}}
			skipped, err := f.mounter().All(Early())
			if !reflect.DeepEqual(f.mounted, tt.wantMounted) {
				t.Errorf("mounted\n %v\nwant\n %v", f.mounted, tt.wantMounted)
			}
			if len(skipped) != len(tt.wantSkipped) {
				t.Fatalf("skipped %q, want %q", skipped, tt.wantSkipped)
			}
			for i := range skipped {
				if !strings.Contains(skipped[i], tt.wantSkipped[i]) {
					t.Errorf("skipped[%d] = %q, want it to contain %q", i, skipped[i], tt.wantSkipped[i])
				}
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Errorf("unexpected error %v", err)
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v, want it to contain %q", err, w)
				}
			}
			if f.fsCalls > 1 {
				t.Errorf("filesystems read %d times, want once", f.fsCalls)
			}
		})
	}
}

func TestAllCreatesTargetsWithMode(t *testing.T) {
	f := &fake{dirs: set("/", "/dev", "/sys", "/sys/kernel", "/sys/fs"), fs: allFS, made: map[string]os.FileMode{}}
	if _, err := f.mounter().All(Early()); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.made["/dev"]; ok {
		t.Error("created /dev although it existed")
	}
	if got := f.made["/tmp"]; got != os.ModeSticky|0o777 {
		t.Errorf("/tmp created with %v", got)
	}
	if got := f.made["/dev/pts"]; got != 0o755 {
		t.Errorf("/dev/pts created with %v", got)
	}
}

func TestEarlyFlags(t *testing.T) {
	byTarget := map[string]Mount{}
	for _, m := range Early() {
		byTarget[m.Target] = m
	}
	for _, target := range []string{"/run", "/tmp"} {
		if m := byTarget[target]; m.Flags&unix.MS_NOSUID == 0 || m.Flags&unix.MS_NODEV == 0 {
			t.Errorf("%s lacks nosuid,nodev: %#x", target, m.Flags)
		}
	}
	if !strings.Contains(byTarget["/dev/pts"].Data, "newinstance") || !strings.Contains(byTarget["/dev/pts"].Data, "ptmxmode=0666") {
		t.Errorf("devpts data %q", byTarget["/dev/pts"].Data)
	}
	if byTarget["/tmp"].Data != "mode=1777" || byTarget["/run"].Data != "mode=0755" {
		t.Errorf("tmpfs modes %q %q", byTarget["/tmp"].Data, byTarget["/run"].Data)
	}
	for _, opt := range []string{"/sys/kernel/security", "/sys/firmware/efi/efivars"} {
		if !byTarget[opt].Optional {
			t.Errorf("%s should be optional", opt)
		}
	}
}

func TestParseFilesystems(t *testing.T) {
	in := "nodev\tsysfs\nnodev\ttmpfs\n\n\text4\nnodev\tcgroup2\n"
	got, err := ParseFilesystems(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if want := set("sysfs", "tmpfs", "ext4", "cgroup2"); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestRealTmpfs(t *testing.T) {
	testenv.NeedRoot(t, "mounting a tmpfs")
	dir := filepath.Join(t.TempDir(), "a", "b")
	m := DefaultMounter()
	skipped, err := m.All([]Mount{{Source: "tmpfs", Target: dir, FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=0700,size=1m", Mode: 0o755}})
	if err != nil || skipped != nil {
		t.Fatalf("mount: skipped=%v err=%v", skipped, err)
	}
	defer unix.Unmount(dir, 0)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("%s is fs type %#x, not tmpfs", dir, st.Type)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("tmpfs root mode %v, want 0700 from mode=0700", fi.Mode().Perm())
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatalf("unmount: %v", err)
	}
}
