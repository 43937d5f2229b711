package panics

import (
	"errors"
	"strings"
	"testing"
)

func TestCatch(t *testing.T) {
	want := errors.New("plain failure")
	tests := []struct {
		name string
		fn   func() error
		err  string
	}{
		{"success", func() error { return nil }, ""},
		{"error passes through", func() error { return want }, "plain failure"},
		{"panic value", func() error { panic("bad packet") }, "panic: bad packet"},
		{"runtime error", func() error { var s []int; _ = s[3]; return nil }, "index out of range"},
	}
	for _, tc := range tests {
		err := Catch(tc.fn)()
		if tc.err == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
		if strings.HasPrefix(err.Error(), "panic:") && !strings.Contains(err.Error(), "panics_test.go") {
			t.Errorf("%s: stack missing from %q", tc.name, err)
		}
	}
}
