package flist

import (
	"context"
	"errors"
	"testing"
)

func TestFirstPrivileged(t *testing.T) {
	f := &Flist{Entries: []Entry{
		{Path: "dev", Type: TypeDir, Mode: 0o755},
		{Path: "dev/sda", Type: TypeBlockDev, Mode: 0o660, Rdev: 8 << 8},
		{Path: "dev/tty", Type: TypeCharDev, Mode: 0o666, Rdev: 5 << 8},
		{Path: "srv", Type: TypeDir, Mode: 0o2775}, // setgid dir: fine
		{Path: "tmp", Type: TypeDir, Mode: 0o1777},
		{Path: "usr", Type: TypeDir, Mode: 0o755},
		{Path: "usr/bin", Type: TypeDir, Mode: 0o755},
		{Path: "usr/bin/crontab", Type: TypeFile, Mode: 0o2755},
		{Path: "usr/bin/passwd", Type: TypeFile, Mode: 0o4755},
	}}
	plain := &Flist{Entries: []Entry{{Path: "srv", Type: TypeDir, Mode: 0o2775}, {Path: "tmp", Type: TypeDir, Mode: 0o1777}, {Path: "tmp/p", Type: TypeFIFO, Mode: 0o600}}}
	tests := []struct {
		name   string
		f      *Flist
		p      Policy
		want   string // "" for no refusal
		device bool
	}{
		{"zero policy", f, Policy{}, "dev/sda: blockdev refused by policy (device nodes not allowed)", true},
		{"setuid allowed", f, Policy{AllowSetuid: true}, "dev/sda: blockdev refused by policy (device nodes not allowed)", true},
		{"devices allowed", f, Policy{AllowDevices: true}, "usr/bin/crontab: mode 02755 refused by policy (setuid/setgid files not allowed)", false},
		{"both allowed", f, Policy{AllowDevices: true, AllowSetuid: true}, "", false},
		{"nothing privileged", plain, Policy{}, "", false},
	}
	for _, tt := range tests {
		err := tt.f.FirstPrivileged(tt.p)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		var pe *PolicyError
		if !errors.As(err, &pe) || err.Error() != tt.want || pe.Device() != tt.device {
			t.Errorf("%s: %v (%T), want %q (device %v)", tt.name, err, err, tt.want, tt.device)
		}
		// The node refuses with the same words, naming the same path,
		// and writes nothing.
		out := t.TempDir()
		xerr := (&Extractor{Source: newMemStore(), Policy: tt.p}).Extract(context.Background(), tt.f, out)
		if xerr == nil || xerr.Error() != "extract "+tt.want || !errors.As(xerr, &pe) {
			t.Errorf("%s: Extract = %v, want %q", tt.name, xerr, "extract "+tt.want)
		}
		if l := listDir(t, out); len(l) != 0 {
			t.Errorf("%s: refused flist still wrote %v", tt.name, l)
		}
	}
}
