package release

import (
	"slices"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

func TestDiff(t *testing.T) {
	d1, d2 := digest.Of([]byte("one")), digest.Of([]byte("two"))
	base := &Release{
		Components: []Component{{Name: "core0", Flist: d1, Mount: "/"}, {Name: "tools", Flist: d1, Mount: "/opt"}},
		Entrypoint: Entrypoint{Path: "/bin/core0", Args: []string{"--heartbeat", "2s"}},
	}
	changed := &Release{
		Components: []Component{{Name: "base", Flist: d2, Mount: "/", AllowSetuid: true}, {Name: "core0", Flist: d2, Mount: "/"}},
		Entrypoint: Entrypoint{Path: "/bin/core0", Args: []string{"--heartbeat", "5s"}, Env: []string{"A=1"}},
	}
	for _, tc := range []struct {
		name string
		a, b *Release
		want []string
	}{
		{"same", base, base, nil},
		{"changed", base, changed, []string{
			"+ component base " + d2.String() + " at / (setuid allowed)",
			"~ component core0: flist " + d1.String() + " -> " + d2.String(),
			"- component tools " + d1.String() + " at /opt",
			`~ args ["--heartbeat" "2s"] -> ["--heartbeat" "5s"]`,
			`~ env [] -> ["A=1"]`,
		}},
	} {
		if got := Diff(tc.a, tc.b); !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n%q\nwant\n%q", tc.name, got, tc.want)
		}
	}
}

func TestDiffServices(t *testing.T) {
	a := serviceRelease()
	b := serviceRelease()
	b.Services[0].Exec.Args = []string{"-p", "5433"}
	b.Services[0].Ready.TCP = "127.0.0.1:5433"
	b.Services = append(b.Services[:2], Service{Name: "cache", Component: "base", Exec: Entrypoint{Path: "/usr/bin/cache"}})
	got := Diff(a, b)
	want := []string{"~ service db: exec, ready", "+ service cache: /usr/bin/cache in component base", "- service log"}
	if !slices.Equal(got, want) {
		t.Fatalf("Diff = %q, want %q", got, want)
	}
}
