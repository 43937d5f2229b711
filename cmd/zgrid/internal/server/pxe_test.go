package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
)

// pxeEnv is a server with network boot on: a boot dir with small fake
// boot files, farms demo and rack1, a map putting one MAC in rack1 and
// one UUID in demo, and the plain HTTP boot listener.
type pxeEnv struct {
	*env
	boot *httptest.Server
	dir  string
}

const (
	mappedMAC  = "52:54:00:aa:bb:cc"
	mappedUUID = "5a1c0b0e-0000-4000-8000-0000000000aa"
)

func newPXEEnv(t *testing.T, farms ...string) *pxeEnv {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{BootKernel: "KERNEL", BootInitrd: "INITRD-BYTES", BootUKI: "MZ-UKI", "secret": "nope"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := CheckBootDir(dir); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(s *Server) {
		s.PXE = &PXE{Dir: dir, Console: DefaultBootConsole, RegistryPort: 8443,
			Map: map[string]string{mappedMAC: "rack1", mappedUUID: "demo"}}
	})
	for _, f := range farms {
		if _, err := e.srv.CreateFarm(records.Farm{Name: f, Channel: "stable"}); err != nil {
			t.Fatal(err)
		}
	}
	boot := httptest.NewServer(e.srv.BootHandler())
	t.Cleanup(boot.Close)
	return &pxeEnv{env: e, boot: boot, dir: dir}
}

// get fetches path from the boot listener (or the API when tls), with the
// Host header host when not empty.
func (p *pxeEnv) get(t *testing.T, tls bool, method, host, path string) (int, http.Header, string) {
	t.Helper()
	base, hc := p.boot.URL, http.DefaultClient
	if tls {
		base, hc = p.ts.URL, p.hc
	}
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestPXEScript(t *testing.T) {
	p := newPXEEnv(t, "demo", "rack1", "default")
	for _, c := range []struct {
		name, host, query, farm, registry, comment string
	}{
		{"no parameters: default farm", "192.0.2.2:8080", "", "default", "https://192.0.2.2:8443", "farm default (default)"},
		{"farm parameter", "192.0.2.2:8080", "?farm=demo", "demo", "https://192.0.2.2:8443", "farm demo (query)"},
		{"ipxe variables, unmapped", "192.0.2.2:8080", "?mac=52:54:00:12:34:56&uuid=5A1C0B0E-0000-4000-8000-000000000001&farm=demo", "demo", "https://192.0.2.2:8443",
			"farm demo (query) mac 52:54:00:12:34:56 uuid 5a1c0b0e-0000-4000-8000-000000000001"},
		{"map by mac wins over farm=", "192.0.2.2:8080", "?mac=52-54-00-AA-BB-CC&farm=demo", "rack1", "https://192.0.2.2:8443", "farm rack1 (map (mac)) mac " + mappedMAC},
		{"map by uuid", "192.0.2.2", "?mac=52:54:00:12:34:56&uuid=" + mappedUUID, "demo", "https://192.0.2.2:8443", "farm demo (map (uuid))"},
		{"empty uuid as iPXE expands a missing one", "192.0.2.2:8080", "?mac=52:54:00:12:34:56&uuid=", "default", "https://192.0.2.2:8443", "mac 52:54:00:12:34:56\n"},
		{"dns name, lower case", "Boot.Example.NET:80", "", "default", "https://boot.example.net:8443", "farm default"},
		{"ipv6", "[2001:DB8::2]:8080", "", "default", "https://[2001:db8::2]:8443", "farm default"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, h, body := p.get(t, false, "GET", c.host, "/boot/ipxe"+c.query)
			if code != 200 {
				t.Fatalf("HTTP %d: %s", code, body)
			}
			want := "#!ipxe\n# zeroboot from zgrid: " + c.comment
			if !strings.HasPrefix(body, "#!ipxe\n# zeroboot from zgrid: ") || !strings.Contains(body, c.comment) {
				t.Errorf("script does not start with %q:\n%s", want, body)
			}
			kernel := "kernel vmlinuz initrd=initramfs.cpio.zst console=ttyS0 console=tty0 panic=-1 zeroboot.registry=" + c.registry + " zeroboot.farm=" + c.farm + "\n" +
				"initrd initramfs.cpio.zst\nboot\n"
			if !strings.HasSuffix(body, kernel) {
				t.Errorf("script does not end with\n%s\ngot:\n%s", kernel, body)
			}
			if h.Get("Cache-Control") != "no-store" || h.Get("Content-Length") == "" {
				t.Errorf("headers %v: want Cache-Control no-store and a Content-Length", h)
			}
		})
	}
}

// Over HTTPS (an iPXE built with our CA) the registry is the host and port
// the script came from.
func TestPXEScriptTLS(t *testing.T) {
	p := newPXEEnv(t, "default")
	code, _, body := p.get(t, true, "GET", "", "/boot/ipxe")
	if code != 200 {
		t.Fatalf("HTTP %d: %s", code, body)
	}
	host := strings.TrimPrefix(p.ts.URL, "https://")
	if !strings.Contains(body, " zeroboot.registry=https://"+host+" ") {
		t.Errorf("script over TLS should name https://%s:\n%s", host, body)
	}
}

// Every refused request: no script, and nothing of the input beyond a
// quoted, shortened copy in the JSON error.
func TestPXEScriptRefused(t *testing.T) {
	p := newPXEEnv(t, "demo")
	for _, c := range []struct {
		name, host, query string
		code              int
		reason            string
	}{
		{"default farm missing", "", "", 404, "farm default (from default) not found"},
		{"farm missing", "", "?farm=nope", 404, "farm nope (from query) not found"},
		{"ipxe variable in farm", "", "?farm=demo$%7Bnet0/ip%7D", 400, "farm"},
		{"space in farm", "", "?farm=demo%20zeroboot.rescue", 400, "farm"},
		{"upper-case farm", "", "?farm=Demo", 400, "farm"},
		{"newline in mac", "", "?mac=52:54:00:12:34:56%0Aboot", 400, "mac"},
		{"mixed mac separators", "", "?mac=52:54:00-12:34:56", 400, "mac"},
		{"short mac", "", "?mac=52:54:00:12:34", 400, "mac"},
		{"uuid without dashes", "", "?uuid=5a1c0b0e000040008000000000000001", 400, "uuid"},
		{"uuid with a command", "", "?uuid=5a1c0b0e-0000-4000-8000-000000000001;shell", 400, "query"},
		{"unknown parameter", "", "?farm=demo&console=ttyS1", 400, "unknown parameter"},
		{"farm twice", "", "?farm=demo&farm=demo", 400, "given 2 times"},
		{"long query", "", "?farm=" + strings.Repeat("a", 600), 400, "at most 512"},
		{"host with ipxe variable", "x${net0/ip}:80", "?farm=demo", 400, "Host"},
		{"host with bad port", "192.0.2.2:99999", "?farm=demo", 400, "port"},
		{"host with underscore", "a_b.example:80", "?farm=demo", 400, "Host"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, body := p.get(t, false, "GET", c.host, "/boot/ipxe"+c.query)
			if code != c.code || !strings.Contains(body, c.reason) {
				t.Errorf("HTTP %d %s: want %d with %q", code, body, c.code, c.reason)
			}
			if strings.Contains(body, "#!ipxe") || strings.Contains(body, "kernel ") {
				t.Errorf("refusal carries a script: %s", body)
			}
		})
	}
}

func TestBootFiles(t *testing.T) {
	p := newPXEEnv(t)
	for _, c := range []struct {
		method, path string
		code         int
		body         string
		length       string // Content-Length of a 200
		ctype        string // Content-Type of a 200
	}{
		{"GET", "/boot/vmlinuz", 200, "KERNEL", "6", "application/octet-stream"},
		{"GET", "/boot/initramfs.cpio.zst", 200, "INITRD-BYTES", "12", "application/octet-stream"},
		{"HEAD", "/boot/initramfs.cpio.zst", 200, "", "12", "application/octet-stream"},
		// UEFI HTTP boot starts an image by its type.
		{"GET", "/boot/zeroboot.efi", 200, "MZ-UKI", "6", "application/efi"},
		{"HEAD", "/boot/zeroboot.efi", 200, "", "6", "application/efi"},
		{"GET", "/boot/secret", 404, "no boot file", "", ""},
		{"GET", "/boot/", 404, "no endpoint", "", ""},
		{"GET", "/boot/..%2fzgrid.db", 404, "no boot file", "", ""},
		{"GET", "/boot/../store/flists/x", 404, "no endpoint", "", ""},
		{"GET", "/v1/admin/farms", 404, "no endpoint", "", ""},
		{"PUT", "/boot/vmlinuz", 405, "not allowed", "", ""},
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			code, h, body := p.get(t, false, c.method, "", c.path)
			if code != c.code || !strings.Contains(body, c.body) {
				t.Fatalf("HTTP %d %q: want %d with %q", code, body, c.code, c.body)
			}
			if code != 200 {
				return
			}
			if h.Get("Content-Length") != c.length || h.Get("Content-Type") != c.ctype {
				t.Errorf("Content-Length %q, Content-Type %q: want %q, %q", h.Get("Content-Length"), h.Get("Content-Type"), c.length, c.ctype)
			}
		})
	}
	// The same files over the API's HTTPS listener.
	if code, _, body := p.get(t, true, "GET", "", "/boot/vmlinuz"); code != 200 || body != "KERNEL" {
		t.Errorf("over TLS: HTTP %d %q", code, body)
	}
}

func TestPXEOff(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/boot/ipxe", "/boot/vmlinuz"} {
		resp, err := e.hc.Get(e.ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || !strings.Contains(string(b), "--boot-dir") {
			t.Errorf("%s without --boot-dir: HTTP %d %s", path, resp.StatusCode, b)
		}
	}
}

func TestLoadPXEMap(t *testing.T) {
	for _, c := range []struct {
		name, text string
		want       map[string]string
		err        string
	}{
		{"entries and comments", "# rack 1\n52:54:00:12:34:56 rack1\n\n52-54-00-AB-CD-EF  rack2 # spare\n5A1C0B0E-0000-4000-8000-000000000001 lab\n",
			map[string]string{"52:54:00:12:34:56": "rack1", "52:54:00:ab:cd:ef": "rack2", "5a1c0b0e-0000-4000-8000-000000000001": "lab"}, ""},
		{"same mac twice, other spelling", "52:54:00:12:34:56 a\n52-54-00-12-34-56 b\n", nil, ":2: 52:54:00:12:34:56 listed twice (farms a and b)"},
		{"neither mac nor uuid", "node7 rack1\n", nil, ":1: \"node7\" is neither a MAC"},
		{"bad farm", "52:54:00:12:34:56 Rack_1\n", nil, ":1: farm \"Rack_1\""},
		{"three fields", "52:54:00:12:34:56 rack1 console=ttyS1\n", nil, "got 3 fields"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "map")
			if err := os.WriteFile(f, []byte(c.text), 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := LoadPXEMap(f)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(m) != len(c.want) {
				t.Fatalf("got %v, want %v", m, c.want)
			}
			for k, v := range c.want {
				if m[k] != v {
					t.Errorf("%s: %q, want %q", k, m[k], v)
				}
			}
		})
	}
	if _, err := LoadPXEMap(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "boot map") {
		t.Errorf("missing file: %v", err)
	}
}

func TestCheckBootConsole(t *testing.T) {
	for _, c := range []struct {
		console string
		ok      bool
	}{
		{"", true},
		{DefaultBootConsole, true},
		{"console=ttyS1,115200n8", true},
		{"console=uart8250,io,0x3f8,115200", true},
		{"console=ttyS0 quiet", false},
		{"console=${x}", false},
		{"console=ttyS0\nboot", false},
		{"console=", false},
	} {
		if err := CheckBootConsole(c.console); (err == nil) != c.ok {
			t.Errorf("%q: err %v, want ok %v", c.console, err, c.ok)
		}
	}
}

func TestCheckBootDir(t *testing.T) {
	for _, c := range []struct {
		name  string
		files []string // regular files; a name ending in / is a directory
		err   string   // "" is accepted
	}{
		{"kernel and initramfs", []string{BootKernel, BootInitrd}, ""},
		{"UKI alone", []string{BootUKI}, ""},
		{"all three", []string{BootKernel, BootInitrd, BootUKI}, ""},
		{"kernel alone", []string{BootKernel}, BootInitrd + " missing"},
		{"initramfs beside the UKI", []string{BootInitrd, BootUKI}, BootKernel + " missing"},
		{"empty", nil, "neither"},
		{"initramfs a directory", []string{BootKernel, BootInitrd + "/"}, "not a regular file"},
		{"UKI a directory", []string{BootUKI + "/"}, "not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range c.files {
				var err error
				if d, ok := strings.CutSuffix(f, "/"); ok {
					err = os.Mkdir(filepath.Join(dir, d), 0o755)
				} else {
					err = os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			err := CheckBootDir(dir)
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("err %v, want %q", err, c.err)
			}
		})
	}
}

// Script is the last gate: what the node would refuse, or iPXE would
// expand, never leaves the server, whoever calls it.
func TestScriptRefuses(t *testing.T) {
	for _, c := range []struct{ name, console, reg, farm, comment string }{
		{"plain http registry", DefaultBootConsole, "http://192.0.2.2:8443", "demo", ""},
		{"registry with a query", DefaultBootConsole, "https://192.0.2.2:8443/?x=1", "demo", ""},
		{"bad farm", DefaultBootConsole, "https://192.0.2.2:8443", "a b", ""},
		{"variable in the comment", DefaultBootConsole, "https://192.0.2.2:8443", "demo", "${net0/mac}"},
		{"newline in console", "console=ttyS0\nshell", "https://192.0.2.2:8443", "demo", ""},
		{"newline in the comment", DefaultBootConsole, "https://192.0.2.2:8443", "demo", "x\nshell"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if s, err := Script(c.console, c.reg, c.farm, c.comment); err == nil {
				t.Errorf("accepted:\n%s", s)
			}
		})
	}
}

// Host headers the HTTP client would not send as they are.
func TestPXERegistryURL(t *testing.T) {
	p := &PXE{RegistryPort: 8443}
	for _, c := range []struct{ host, want string }{
		{"[fe80::1%eth0]:80", ""},
		{"fe80::1", ""},
		{"[::1", ""},
		{"[reg.example]:80", ""},
		{"[::1]", "https://[::1]:8443"},
		{"a b:80", ""},
		{"host:+80", ""},
		{"host:080", ""},
		{"[::ffff:192.0.2.2]:80", "https://[::ffff:192.0.2.2]:8443"},
		{"reg.example:80", "https://reg.example:8443"},
	} {
		r := httptest.NewRequest("GET", "/boot/ipxe", nil)
		r.Host = c.host
		got, err := p.registryURL(r)
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("Host %q: %q, %v; want %q", c.host, got, err, c.want)
		}
	}
}
