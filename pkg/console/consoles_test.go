package console

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDevices(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{"ttyS0,115200"}, nil},
		{[]string{"tty0", "ttyS0,115200n8"}, []string{"/dev/tty0"}},
		{[]string{"ttyS1", "tty0", "ttyS1", "ttyS0"}, []string{"/dev/ttyS1", "/dev/tty0"}},
		{[]string{"../sda", "netcon0@x", "tty0", "ttyS0"}, []string{"/dev/tty0"}},
	}
	for _, tc := range tests {
		if got := Devices(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Devices(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

type broken struct{}

func (broken) Write([]byte) (int, error) { return 0, errors.New("unplugged") }

func TestFanout(t *testing.T) {
	var a, b bytes.Buffer
	f := NewFanout(&a, broken{})
	f.Add(&b)
	if n, err := f.Write([]byte("line\n")); n != 5 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if a.String() != "line\n" || b.String() != "line\n" {
		t.Fatalf("a=%q b=%q: a broken console must not hold back the others", a.String(), b.String())
	}
	if _, err := NewFanout(broken{}, broken{}).Write([]byte("x")); err == nil {
		t.Fatal("all consoles broken, yet no error")
	}
}

func TestOpenDevices(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "tty-good")
	if err := os.WriteFile(good, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ws, errs := OpenDevices([]string{good, filepath.Join(dir, "missing")})
	if len(ws) != 1 || len(errs) != 1 || !strings.Contains(errs[0].Error(), "missing") {
		t.Fatalf("ws=%d errs=%v", len(ws), errs)
	}
	ws[0].Write([]byte("hello"))
	if b, _ := os.ReadFile(good); string(b) != "hello" {
		t.Fatalf("wrote %q", b)
	}
}
