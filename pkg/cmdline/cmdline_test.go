package cmdline

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

const reg = "zeroboot.registry=https://203.0.113.1:8443"

func TestSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []arg
	}{
		{"", nil},
		{"   ", nil},
		{"quiet", []arg{{key: "quiet"}}},
		{"a=1  b=2\tc", []arg{{"a", "1", true}, {"b", "2", true}, {key: "c"}}},
		{`a="x y" b`, []arg{{"a", "x y", true}, {key: "b"}}},
		{`"a=x y" b`, []arg{{"a", "x y", true}, {key: "b"}}},
		{`a=`, []arg{{"a", "", true}}},
		{`a=b=c`, []arg{{"a", "b=c", true}}},
		{`a=x"y z"`, []arg{{"a", `x"y z"`, true}}},
		{`a b -- zeroboot.farm=x`, []arg{{key: "a"}, {key: "b"}}},
		{`"--" c`, []arg{{key: "--"}, {key: "c"}}},
		{`a="unterminated b`, []arg{{"a", "unterminated b", true}}},
		{`"`, []arg{{key: ""}}},
	}
	for _, tt := range tests {
		got := split(tt.in)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("split(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseGood(t *testing.T) {
	c, ps := Parse(`BOOT_IMAGE=/vmlinuz root=/dev/ram0 console=tty0 console=ttyS0,115200 quiet ` +
		`zeroboot.registry=https://203.0.113.1:8443,https://reg.example.net/base zeroboot.farm=lab-2 ` +
		`zeroboot.channel=beta.1 zeroboot.debug ip=dhcp -- zeroboot.farm=ignored`)
	if len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	var urls []string
	for _, u := range c.Registries {
		urls = append(urls, u.String())
	}
	if want := []string{"https://203.0.113.1:8443", "https://reg.example.net/base"}; !reflect.DeepEqual(urls, want) {
		t.Errorf("registries %v, want %v", urls, want)
	}
	if c.Farm != "lab-2" || c.Channel != "beta.1" || !c.Debug || c.Rescue || c.IP != "dhcp" {
		t.Errorf("config %+v", c)
	}
	if want := []string{"tty0", "ttyS0,115200"}; !reflect.DeepEqual(c.Consoles, want) {
		t.Errorf("consoles %v, want %v", c.Consoles, want)
	}
}

func TestParseDefaults(t *testing.T) {
	c, ps := Parse(reg)
	if len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	if c.IP != "dhcp" || c.Debug || c.Rescue || c.Farm != "" || c.Channel != "" || c.Consoles != nil {
		t.Errorf("defaults %+v", c)
	}
}

func TestParseBooleans(t *testing.T) {
	for v, want := range map[string]bool{"": true, "=1": true, "=true": true, "=YES": true, "=on": true,
		"=0": false, "=false": false, "=no": false, "=off": false} {
		c, ps := Parse(reg + " zeroboot.debug" + v + " zeroboot.rescue" + v)
		if len(ps) != 0 {
			t.Errorf("%q: problems %v", v, ps)
		}
		if c.Debug != want || c.Rescue != want {
			t.Errorf("%q: debug=%v rescue=%v, want %v", v, c.Debug, c.Rescue, want)
		}
	}
}

func TestDashUnderscoreEquivalent(t *testing.T) {
	// Kernel rule: '-' and '_' are the same in names; a repeat under the
	// other spelling is still a repeat.
	// The first is unknown (a warning), the second a repeat of it.
	_, ps := Parse(reg + " zeroboot.x-y=1 zeroboot.x_y=2")
	if len(ps) != 2 || ps[1].Severity != Error || !strings.Contains(ps[1].Msg, `given twice ("1" and "2")`) || ps[1].Param != "zeroboot.x_y" {
		t.Fatalf("problems %v, want unknown warning then 'given twice' error on zeroboot.x_y", ps)
	}
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name, in string
		sev      Severity
		param    string
		msg      string // substring
	}{
		{"no registry", "quiet", Error, "zeroboot.registry", "no registry: add zeroboot.registry=https://..."},
		{"http", "zeroboot.registry=http://203.0.113.1", Error, "zeroboot.registry", "http refused"},
		{"http in list", reg + ",http://203.0.113.2", Error, "zeroboot.registry", "http refused"},
		{"ftp", "zeroboot.registry=ftp://203.0.113.1", Error, "zeroboot.registry", `scheme "ftp" refused`},
		{"no host", "zeroboot.registry=https:///x", Error, "zeroboot.registry", "no host"},
		{"relative", "zeroboot.registry=203.0.113.1", Error, "zeroboot.registry", `scheme "" refused`},
		{"userinfo", "zeroboot.registry=https://u:p@203.0.113.1", Error, "zeroboot.registry", "credentials"},
		{"query", "zeroboot.registry=https://203.0.113.1/?a=b", Error, "zeroboot.registry", "query"},
		{"stray comma", reg + ",", Error, "zeroboot.registry", "empty URL"},
		{"bad url", "zeroboot.registry=https://[::1", Error, "zeroboot.registry", "not a URL"},
		{"bare registry", "zeroboot.registry", Error, "zeroboot.registry", "needs a value"},
		{"dup url", reg + "," + strings.TrimPrefix(reg, "zeroboot.registry="), Warning, "zeroboot.registry", "listed twice"},
		{"repeat", reg + " zeroboot.registry=https://198.51.100.1", Error, "zeroboot.registry", `"https://203.0.113.1:8443" and "https://198.51.100.1"`},
		{"farm upper", reg + " zeroboot.farm=Lab", Error, "zeroboot.farm", "must match"},
		{"farm long", reg + " zeroboot.farm=" + strings.Repeat("a", 64), Error, "zeroboot.farm", "must match"},
		{"farm empty", reg + " zeroboot.farm=", Error, "zeroboot.farm", "needs a value"},
		{"farm space", reg + ` zeroboot.farm="a b"`, Error, "zeroboot.farm", "must match"},
		{"channel", reg + " zeroboot.channel=-x", Error, "zeroboot.channel", "must match"},
		{"debug bad", reg + " zeroboot.debug=maybe", Error, "zeroboot.debug", "not a boolean"},
		{"debug empty", reg + " zeroboot.debug=", Error, "zeroboot.debug", "not a boolean"},
		{"unknown", reg + " zeroboot.regsitry=x", Warning, "zeroboot.regsitry", "known: zeroboot.registry, zeroboot.farm"},
		{"case", reg + " ZeroBoot.farm=x", Warning, "ZeroBoot.farm", "case-sensitive, write zeroboot.farm"},
		{"ip off", reg + " ip=off", Error, "ip", "not supported yet: use ip=dhcp"},
		{"ip none", reg + " ip=none", Error, "ip", "not supported yet: use ip=dhcp"},
		{"ip static", reg + " ip=192.0.2.10::192.0.2.1:255.255.255.0::eth0:none", Error, "ip", "not supported yet"},
		{"ip twice", reg + " ip=dhcp ip=off", Error, "ip", "given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ps := Parse(tt.in)
			if len(ps) != 1 {
				t.Fatalf("want exactly one problem, got %v", ps)
			}
			p := ps[0]
			if p.Severity != tt.sev || p.Param != tt.param || !strings.Contains(p.Msg, tt.msg) {
				t.Errorf("got %s; want %s on %s containing %q", p, tt.sev, tt.param, tt.msg)
			}
			if HasErrors(ps) != (tt.sev == Error) {
				t.Errorf("HasErrors = %v", HasErrors(ps))
			}
		})
	}
}

func TestRescueWithoutRegistry(t *testing.T) {
	c, ps := Parse("zeroboot.rescue")
	if len(ps) != 0 || !c.Rescue {
		t.Fatalf("rescue=%v problems=%v", c.Rescue, ps)
	}
}

func TestRepeatKeepsFirst(t *testing.T) {
	c, ps := Parse(reg + " zeroboot.farm=a zeroboot.farm=b")
	if c.Farm != "a" || !HasErrors(ps) {
		t.Fatalf("farm=%q problems=%v", c.Farm, ps)
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{"zeroboot.farm", "A B", Error, "must match x"}, `error: zeroboot.farm="A B": must match x`},
		{Problem{"zeroboot.registry", "", Error, "no registry"}, `error: zeroboot.registry: no registry`},
		{Problem{"zeroboot.x", "1", Warning, "unknown"}, `warning: zeroboot.x="1": unknown`},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestDocsMentionEveryParam(t *testing.T) {
	b, err := os.ReadFile("../../docs/kernel-cmdline.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Params {
		if !strings.Contains(string(b), "`"+p.Name+"`") {
			t.Errorf("docs/kernel-cmdline.md does not mention `%s`", p.Name)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", reg, `a="b c" "d=e f"`, "zeroboot.registry=http://x", `"`, `a="`, "--", "zeroboot.farm=a zeroboot.farm=b",
		"zeroboot.registry=https://[::1]:8443,https://203.0.113.1 ip=off console=ttyS0",
		"zeroboot.debug=2 zeroboot.nope ZEROBOOT.farm=x zeroboot.rescue",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ps := Parse(s)
		for _, u := range c.Registries {
			if u.Scheme != "https" || u.Host == "" {
				t.Fatalf("accepted registry %v", u)
			}
		}
		if !HasErrors(ps) && len(c.Registries) == 0 && !c.Rescue {
			t.Fatalf("no registry and no error for %q", s)
		}
		for _, p := range ps {
			if p.Msg == "" || p.Param == "" && p.Value == "" {
				t.Fatalf("problem without explanation: %#v", p)
			}
		}
	})
}
