package console

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
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

// stopped blocks every write until released, like a serial line in XOFF.
type stopped struct{ release chan struct{} }

func (s stopped) Write(p []byte) (int, error) { <-s.release; return len(p), nil }

func TestFanout(t *testing.T) {
	var a, b buffer
	hold := stopped{make(chan struct{})}
	f := NewFanout(&a, broken{}, hold)
	f.Add(&b)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 3*QueueLines; i++ {
			f.Write([]byte("line\n"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a stopped console blocked the writer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, w := range []*buffer{&a, &b} {
		// Flush each live sink: the stopped one must not hold them back.
		for w.String() == "" && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
	}
	if !strings.HasPrefix(a.String(), "line\n") || !strings.HasPrefix(b.String(), "line\n") {
		t.Fatalf("a=%q b=%q: a stuck or broken console held back the others", a.String()[:min(20, len(a.String()))], b.String()[:min(20, len(b.String()))])
	}
	close(hold.release)
	if err := f.Flush(ctx); err != nil {
		t.Fatalf("Flush after release: %v", err)
	}
	if !strings.Contains(a.String(), "lines dropped on this console") && strings.Count(a.String(), "line\n") != 3*QueueLines {
		t.Fatalf("lines lost on a without a note")
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
