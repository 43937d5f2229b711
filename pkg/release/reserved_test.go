package release

import (
	"strings"
	"testing"
)

func TestCheckNotRuntime(t *testing.T) {
	for _, tc := range []struct {
		p       string
		runtime string // the mount named in the error; "" for accepted
	}{
		{"/", ""},
		{"/bin/core0", ""},
		{"/usr/lib/zos", ""},
		{"/running", ""},
		{"/proc2/x", ""},
		{"/devices", ""},
		{"/temp", ""},
		{"/dev", "/dev"},
		{"/dev/sda", "/dev"},
		{"/proc/self/exe", "/proc"},
		{"/sys/kernel", "/sys"},
		{"/run", "/run"},
		{"/run/core0", "/run"},
		{"/tmp/x", "/tmp"},
		// Not clean or not absolute: judged as the chroot resolves them.
		{"/run/", "/run"},
		{"//run/core0", "/run"},
		{"/bin/../run/core0", "/run"},
		{"run/core0", "/run"},
		{"/x/../../proc/1/exe", "/proc"},
	} {
		err := CheckNotRuntime("entrypoint path", tc.p)
		switch {
		case tc.runtime == "" && err != nil:
			t.Errorf("CheckNotRuntime(%q): %v", tc.p, err)
		case tc.runtime != "" && err == nil:
			t.Errorf("CheckNotRuntime(%q) accepted a path inside %s", tc.p, tc.runtime)
		case tc.runtime != "" && !(strings.Contains(err.Error(), "entrypoint path") && strings.Contains(err.Error(), `"`+tc.p+`"`) && strings.Contains(err.Error(), "inside "+tc.runtime+",")):
			t.Errorf("CheckNotRuntime(%q) error %q does not name the path and %s", tc.p, err, tc.runtime)
		}
	}
}

func TestCheckNotRuntimeSanitizesPath(t *testing.T) {
	err := CheckNotRuntime("component \"x\" mount", "/run/\x1b[2J")
	if err == nil || strings.ContainsRune(err.Error(), 0x1b) {
		t.Fatalf("error %q", err)
	}
}
