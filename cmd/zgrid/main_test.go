package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// zgrid builds the binary once per test run.
func zgrid(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "zgrid")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type cli struct {
	t      *testing.T
	bin    string
	config string // ZGRID_CONFIG, when the test uses contexts
}

func (c cli) run(want int, args ...string) (string, string) {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), "ZGRID_SERVER=", "ZGRID_TOKEN_FILE=", "ZGRID_CA=", "ZGRID_CONTEXT=",
		"ZGRID_CONFIG="+filepath.Join(c.t.TempDir(), "no-config.json"))
	if c.config != "" {
		cmd.Env = append(cmd.Env, "ZGRID_CONFIG="+c.config)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	if code != want {
		c.t.Fatalf("zgrid %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

func TestCLI(t *testing.T) {
	c := cli{t: t, bin: zgrid(t)}
	dir := t.TempDir()
	data := filepath.Join(dir, "grid")
	key := filepath.Join(dir, "release.key")
	other := filepath.Join(dir, "other.key")
	rootKey := filepath.Join(dir, "root.key")

	out, _ := c.run(0, "init", "--data", data, "--san", "203.0.113.5")
	for _, f := range []string{"zgrid.db", "store", "tls/ca.pem", "tls/ca.key", "tls/server.pem", "tls/server.key", "admin.token"} {
		if !strings.Contains(out, filepath.Join(data, f)) {
			t.Errorf("init output does not name %s:\n%s", f, out)
		}
	}
	if st, err := os.Stat(filepath.Join(data, "admin.token")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v %v", st, err)
	}
	_, errs := c.run(1, "init", "--data", data)
	if !strings.Contains(errs, "refusing to overwrite") {
		t.Errorf("second init: %s", errs)
	}

	out, _ = c.run(0, "key", "new", "--out", key)
	if !regexp.MustCompile(`fingerprint  ed25519:[0-9a-f]{16}\n`).MatchString(out) {
		t.Errorf("key new output:\n%s", out)
	}
	c.run(0, "key", "new", "--out", other)
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v", st.Mode().Perm())
	}
	c.run(0, "key", "new", "--out", rootKey)
	_, errs = c.run(1, "root", "init", "--data", data, "--root-key", rootKey+".pub", "--sign", rootKey, "--release-key", key+".pub", "--release-threshold", "2")
	if !strings.Contains(errs, "threshold 2 with 1 keys") {
		t.Errorf("release threshold above key count: %s", errs)
	}
	_, errs = c.run(1, "root", "init", "--data", data, "--root-key", rootKey+".pub", "--sign", key, "--release-key", key+".pub")
	if !strings.Contains(errs, "new root refused") {
		t.Errorf("root signed by a key that is not a root key: %s", errs)
	}
	out, _ = c.run(0, "root", "init", "--data", data, "--root-key", rootKey+".pub", "--sign", rootKey, "--release-key", key+".pub", "--channel", "stable", "--channel", "beta")
	if !strings.Contains(out, "/etc/zeroboot/root.json") || !strings.Contains(out, "channels: beta, stable") {
		t.Errorf("root init output:\n%s", out)
	}

	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "bin"), 0o755)
	os.WriteFile(filepath.Join(tree, "bin", "core0"), bytes.Repeat([]byte("core0 "), 100_000), 0o755)
	out, errs = c.run(0, "flist", "build", "--data", data, tree)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	fl := lines[len(lines)-1]
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(fl) || !strings.Contains(errs, "MB/s") {
		t.Fatalf("flist build: stdout %q stderr %q", out, errs)
	}
	if again, _ := c.run(0, "flist", "build", "--data", data, tree); strings.TrimSpace(again) != fl {
		t.Errorf("rebuild gave %q, want %q", again, fl)
	}
	// Building what cannot be meant: an empty input, a socket without
	// --unreadable skip; and with it, a warning naming what was left out.
	binDir := filepath.Join(tree, "bin")
	before, err := os.Stat(binDir)
	if err != nil {
		t.Fatal(err)
	}
	sock, err := net.Listen("unix", filepath.Join(binDir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	// The socket changes bin's mtime, which the flist records; put it
	// back so the skipped build must equal the first one byte for byte.
	if err := os.Chtimes(binDir, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	if _, errs := c.run(1, "flist", "build", "--data", data, tree); !strings.Contains(errs, "build bin/sock: is a socket") {
		t.Errorf("socket: %s", errs)
	}
	if out, errs := c.run(0, "flist", "build", "--data", data, "--unreadable", "skip", "--exclude", "*.tmp", tree); strings.TrimSpace(out) != fl || !strings.Contains(errs, "skipped bin/sock: build bin/sock: is a socket") {
		t.Errorf("--unreadable skip: %q %s", out, errs)
	}
	sock.Close()
	if _, errs := c.run(1, "flist", "build", "--data", data, "/dev/null"); !strings.Contains(errs, "the tar archive has no entries") {
		t.Errorf("/dev/null: %s", errs)
	}
	if _, errs := c.run(2, "flist", "build", "--data", data, "--unreadable", "maybe", tree); !strings.Contains(errs, `--unreadable "maybe": want fail or skip`) {
		t.Errorf("--unreadable maybe: %s", errs)
	}

	port := freePort(t)
	url := fmt.Sprintf("https://127.0.0.1:%d", port)
	var slog bytes.Buffer
	viewer := filepath.Join(dir, "viewer.token")
	os.WriteFile(viewer, []byte("a-viewer-token-of-its-own\n"), 0o600)
	if _, errs := c.run(1, "serve", "--data", data, "--listen", "127.0.0.1:0", "--viewer-token-file", filepath.Join(data, "admin.token")); !strings.Contains(errs, "the viewer token is the admin token") {
		t.Errorf("viewer token = admin token: %s", errs)
	}
	srv := exec.Command(c.bin, "serve", "--data", data, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--log-format", "json", "--viewer-token-file", viewer)
	srv.Stdout, srv.Stderr = &slog, &slog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	waitHealthy(t, url, filepath.Join(data, "tls", "ca.pem"), &slog)

	remote := []string{"--data", data, "--server", url}
	out, _ = c.run(0, append([]string{"farm", "create", "demo", "--channel", "stable"}, remote...)...)
	if !strings.Contains(out, "farm demo created, channel stable") {
		t.Errorf("farm create: %s", out)
	}
	if out, _ := c.run(0, append([]string{"farm", "set", "demo", "--channel", "stable", "--rollout", "30"}, remote...)...); !strings.Contains(out, "newest release to 30% of nodes") {
		t.Errorf("farm set --rollout: %s", out)
	}
	if _, errs := c.run(2, append([]string{"farm", "set", "demo", "--channel", "stable", "--rollout", "0"}, remote...)...); !strings.Contains(errs, "--rollout 0: want a percentage of nodes, 1 to 100") {
		t.Errorf("farm set --rollout 0: %s", errs)
	}
	if out, _ := c.run(0, append([]string{"farm", "set", "demo", "--channel", "stable", "--ready-deadline", "2m"}, remote...)...); !strings.Contains(out, "ready within 2m0s or last known good") {
		t.Errorf("farm set --ready-deadline 2m: %s", out)
	}
	for _, bad := range []string{"5s", "1500ms", "25h", "-1m"} {
		if _, errs := c.run(2, append([]string{"farm", "set", "demo", "--channel", "stable", "--ready-deadline", bad}, remote...)...); !strings.Contains(errs, "--ready-deadline") || !strings.Contains(errs, "want whole seconds from 10s to 86400s") {
			t.Errorf("farm set --ready-deadline %s: %s", bad, errs)
		}
	}
	if _, errs := c.run(1, append([]string{"farm", "set", "demo", "--channel", "stable", "--pin", "99"}, remote...)...); !strings.Contains(errs, "pinned to stable version 99, which is not published") {
		t.Errorf("farm set --pin 99: %s", errs)
	}
	c.run(0, append([]string{"farm", "set", "demo", "--channel", "stable"}, remote...)...)
	pub := func(want int, v string, k string) (string, string) {
		return c.run(want, append([]string{"release", "publish", "--key", k, "--channel", "stable", "--version", v,
			"--expires", "24h", "--component", "name=core0,flist=" + fl + ",mount=/", "--entry", "/bin/core0", "--arg", "--heartbeat", "--arg", "2s"}, remote...)...)
	}
	out, _ = pub(0, "3", key)
	if !strings.Contains(out, "published stable version 3") {
		t.Errorf("publish: %s", out)
	}
	_, errs = pub(1, "3", key)
	if !strings.Contains(errs, "HTTP 409") {
		t.Errorf("republish of version 3: %s", errs)
	}
	_, errs = pub(1, "4", other)
	if !strings.Contains(errs, "HTTP 400: release refused") {
		t.Errorf("release signed by an untrusted key: %s", errs)
	}
	out, _ = c.run(0, append([]string{"release", "list"}, remote...)...)
	if !regexp.MustCompile(`(?m)^stable\s+3\s+current\s+\S+\s+\S+\s+1\s+core0=` + fl[7:19] + `@/$`).MatchString(out) {
		t.Errorf("release list:\n%s", out)
	}

	// Offline co-signing shows what is signed and refuses an expired release.
	file := filepath.Join(dir, "v4.json")
	svc := filepath.Join(dir, "services.json")
	os.WriteFile(svc, []byte(`[{"name":"db","component":"core0","exec":{"path":"/bin/db","args":["-v"]},"ready":{"tcp":"127.0.0.1:5432"}},`+
		`{"name":"api","component":"core0","exec":{"path":"/bin/api"},"after":["db"],"ready":{"notify":true}}]`), 0o644)
	c.run(0, "release", "create", "--out", file, "--key", key, "--channel", "beta", "--version", "4", "--services", svc,
		"--component", "name=core0,flist="+fl+",mount=/", "--entry", "/bin/core0", "--arg", "--heartbeat")
	out, _ = c.run(0, "release", "sign", "--in", file, "--key", other)
	for _, want := range []string{"channel     beta", "version     4", "component   core0 " + fl + " at /", "entrypoint  /bin/core0 --heartbeat",
		"service     db: /bin/db -v (component core0), ready when tcp 127.0.0.1:5432 accepts",
		"service     api: /bin/api  (component core0), after db, ready when it notifies", "now has 2 signature(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("release sign output lacks %q:\n%s", want, out)
		}
	}
	_, errs = c.run(1, "release", "sign", "--in", file, "--key", other)
	if !strings.Contains(errs, "already signed") {
		t.Errorf("second co-signature by one key: %s", errs)
	}
	old := filepath.Join(dir, "old.json")
	c.run(0, "release", "create", "--out", old, "--key", key, "--channel", "beta", "--version", "1", "--expires", "-1h",
		"--component", "name=core0,flist="+fl+",mount=/", "--entry", "/bin/core0")
	_, errs = c.run(1, "release", "sign", "--in", old, "--key", other)
	if !strings.Contains(errs, "refusing to co-sign an expired release") {
		t.Errorf("co-signing an expired release: %s", errs)
	}
	out, _ = c.run(0, "release", "diff", old, file)
	if strings.TrimSpace(out) != "~ args [] -> [\"--heartbeat\"]\n+ service db: /bin/db in component core0\n+ service api: /bin/api in component core0" {
		t.Errorf("release diff:\n%s", out)
	}
	if out, _ := c.run(0, "release", "diff", file, file); out != "" {
		t.Errorf("release diff of one file with itself: %q", out)
	}
	if out, _ := c.run(0, "release", "verify", file, "--data", data); !strings.Contains(out, "verified: channel beta version 4, 1 components, 2 signatures") {
		t.Errorf("release verify --data: %s", out)
	}
	if out, _ := c.run(0, "release", "verify", file, "--root", filepath.Join(data, "tuf", "root", "1.root.json")); !strings.Contains(out, "verified") {
		t.Errorf("release verify --root: %s", out)
	}
	if _, errs := c.run(1, "release", "verify", old, "--data", data); !strings.Contains(errs, "nodes would refuse it") || !strings.Contains(errs, "expired") {
		t.Errorf("release verify of an expired release: %s", errs)
	}
	// The release document changed after signing (another entrypoint).
	var up map[string]any
	b, _ := os.ReadFile(file)
	json.Unmarshal(b, &up)
	doc, _ := base64.StdEncoding.DecodeString(up["release"].(string))
	up["release"] = base64.StdEncoding.EncodeToString(bytes.Replace(doc, []byte("/bin/core0"), []byte("/bin/evil0"), 1))
	b, _ = json.Marshal(up)
	tampered := filepath.Join(dir, "tampered.json")
	os.WriteFile(tampered, b, 0o644)
	if _, errs := c.run(1, "release", "verify", tampered, "--data", data); !strings.Contains(errs, "nodes would refuse it") {
		t.Errorf("release verify of a changed document: %s", errs)
	}
	c.run(0, append([]string{"release", "push", file}, remote...)...)

	// Withdrawal: signed by the release key; the list says so.
	out, _ = c.run(0, append([]string{"release", "withdraw", "--key", key, "--channel", "beta", "--version", "5"}, remote...)...)
	if !strings.Contains(out, "withdrawal published: beta version 5") {
		t.Errorf("withdraw: %s", out)
	}
	out, _ = c.run(0, append([]string{"release", "list", "--channel", "beta"}, remote...)...)
	if !regexp.MustCompile(`(?m)^beta\s+4\s+superseded`).MatchString(out) || !regexp.MustCompile(`(?m)^beta\s+5\s+withdrawal`).MatchString(out) {
		t.Errorf("release list after withdrawal:\n%s", out)
	}

	// Rotation revokes the old release key: its next release is refused.
	newKey := filepath.Join(dir, "release2.key")
	c.run(0, "key", "new", "--out", newKey)
	out, _ = c.run(0, "root", "rotate", "--data", data, "--sign", rootKey, "--release-key", newKey+".pub")
	if !strings.Contains(out, "root version 2 written") {
		t.Errorf("root rotate: %s", out)
	}

	// A node boots through the API; node list shows it.
	body := `{"protocol":2,"node_id":"n0123","farm":"demo","agent":"cli-test"}`
	resp, err := httpsClient(t, filepath.Join(data, "tls", "ca.pem")).Post(url+"/v1/boot", "application/json", strings.NewReader(body))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("boot: %v %v", err, resp)
	}
	resp.Body.Close()
	out, _ = c.run(0, append([]string{"node", "list"}, remote...)...)
	if !regexp.MustCompile(`(?m)^ID\s+FARM\s+IDENTITY\s+RELEASE\s+STATE\s+LAST SEEN$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^n0123\s+demo\s+dmi\s+3\s+booting\s+\d{4}-`).MatchString(out) {
		t.Errorf("node list:\n%s", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--farm", "demo", "-o", "json"}, `"id": "n0123"`},
		{[]string{"--state", "booting", "--seen-within", "1h"}, "n0123"},
		{[]string{"--state", "ready"}, "ID"},
		{[]string{"--farm", "other", "-o", "json"}, "[]"},
	} {
		out, _ := c.run(0, append(append([]string{"node", "list"}, tc.args...), remote...)...)
		if !strings.Contains(out, tc.want) || (tc.want != "n0123" && !strings.Contains(tc.want, "n0123") && strings.Contains(out, "n0123")) {
			t.Errorf("node list %v:\n%s", tc.args, out)
		}
	}
	// --data alone reaches the server when it holds the database... at the
	// default address, which this test's server is not on: the error says so.
	_, errs = c.run(1, "node", "list", "--data", data)
	if !strings.Contains(errs, defaultURL) {
		t.Errorf("node list --data with a server elsewhere: %s", errs)
	}

	show, _ := c.run(0, append([]string{"farm", "show", "demo"}, remote...)...)
	if !regexp.MustCompile(`(?m)^channel\s+stable$`).MatchString(show) || !regexp.MustCompile(`(?m)^serves\s+version 3 to 100% of nodes`).MatchString(show) ||
		!regexp.MustCompile(`(?m)^nodes\s+1: 1 booting$`).MatchString(show) {
		t.Errorf("farm show:\n%s", show)
	}
	if show, _ := c.run(0, append([]string{"farm", "show", "demo", "-o", "json"}, remote...)...); !strings.Contains(show, `"serves": [`) || !strings.Contains(show, `"denied": 0`) {
		t.Errorf("farm show -o json:\n%s", show)
	}
	if _, errs := c.run(1, append([]string{"farm", "show", "nobody"}, remote...)...); !strings.Contains(errs, "farm nobody") || !strings.Contains(errs, "not found") {
		t.Errorf("farm show of an unknown farm: %s", errs)
	}

	// Denied: listed as such, its boot refused naming approve, which
	// lifts it.
	if out, _ := c.run(0, append([]string{"node", "deny", "n0123"}, remote...)...); !strings.Contains(out, "node n0123 denied (farm demo, dmi, denied identity); zgrid node approve n0123 lifts it") {
		t.Errorf("node deny: %s", out)
	}
	if out, _ := c.run(0, append([]string{"node", "list", "--state", "denied"}, remote...)...); !regexp.MustCompile(`(?m)^n0123\s+demo\s+dmi, denied\s+3\s+denied: by the operator`).MatchString(out) {
		t.Errorf("node list --state denied:\n%s", out)
	}
	if _, errs := c.run(2, append([]string{"node", "list", "--state", "deny"}, remote...)...); !strings.Contains(errs, `--state "deny": not a node state (booting, ready, failed, pending, denied)`) {
		t.Errorf("node list --state deny: %s", errs)
	}
	resp, err = httpsClient(t, filepath.Join(data, "tls", "ca.pem")).Post(url+"/v1/boot", "application/json", strings.NewReader(body))
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("boot of a denied node: %v %v", err, resp)
	}
	resp.Body.Close()
	if out, _ := c.run(0, append([]string{"node", "approve", "n0123"}, remote...)...); !strings.Contains(out, "node n0123 approved") {
		t.Errorf("node approve of a denied node: %s", out)
	}
	if _, errs := c.run(1, append([]string{"node", "deny", "nobody"}, remote...)...); !strings.Contains(errs, "not found") {
		t.Errorf("node deny of an unknown node: %s", errs)
	}

	// Deleting: a farm with nodes only when forced; a node, and its count.
	c.run(0, append([]string{"farm", "create", "spare", "--channel", "stable"}, remote...)...)
	if _, errs := c.run(1, append([]string{"farm", "delete", "demo"}, remote...)...); !strings.Contains(errs, "farm demo has 1 nodes") || !strings.Contains(errs, "--force") {
		t.Errorf("farm delete with a node: %s", errs)
	}
	if out, _ := c.run(0, append([]string{"node", "delete", "n0123"}, remote...)...); !strings.Contains(out, "node n0123 deleted (farm demo, was pending)") {
		t.Errorf("node delete: %s", out)
	}
	if out, _ := c.run(0, append([]string{"node", "list", "-o", "json"}, remote...)...); strings.TrimSpace(out) != "[]" {
		t.Errorf("node list after delete: %s", out)
	}
	if _, errs := c.run(1, append([]string{"node", "delete", "n0123"}, remote...)...); !strings.Contains(errs, "not found") {
		t.Errorf("second node delete: %s", errs)
	}
	if out, _ := c.run(0, append([]string{"farm", "delete", "spare"}, remote...)...); !strings.Contains(out, "farm spare deleted") {
		t.Errorf("farm delete: %s", out)
	}
	if out, _ := c.run(0, append([]string{"farm", "list"}, remote...)...); strings.Contains(out, "spare") {
		t.Errorf("farm list after delete: %s", out)
	}
	if out, _ := c.run(0, append([]string{"farm", "list", "-o", "json"}, remote...)...); !strings.Contains(out, `"name": "demo"`) {
		t.Errorf("farm list -o json: %s", out)
	}
	if out, _ := c.run(0, append([]string{"release", "list", "-o", "json", "--channel", "beta"}, remote...)...); !strings.Contains(out, `"state": "withdrawal"`) || !strings.Contains(out, `"channel": "beta"`) {
		t.Errorf("release list -o json: %s", out)
	}
	if out, _ := c.run(0, append([]string{"farm", "list", "-o", "yaml"}, remote...)...); !strings.Contains(out, "name: demo") || !strings.Contains(out, "channel: stable") {
		t.Errorf("farm list -o yaml: %s", out)
	}
	if _, errs := c.run(2, append([]string{"farm", "list", "-o", "xml"}, remote...)...); !strings.Contains(errs, `-o "xml": want table, json or yaml`) {
		t.Errorf("farm list -o xml: %s", errs)
	}
	// The server logged JSON, one object a line.
	srv.Process.Kill()
	srv.Wait()
	first, _, _ := strings.Cut(slog.String(), "\n")
	var line map[string]any
	if err := json.Unmarshal([]byte(first), &line); err != nil || line["msg"] == nil || line["level"] == nil {
		t.Errorf("--log-format json: first line %q: %v", first, err)
	}
	if _, errs := c.run(2, "serve", "--data", data, "--log-format", "xml"); !strings.Contains(errs, `--log-format "xml": want text or json`) {
		t.Errorf("--log-format xml: %s", errs)
	}
}

func TestCLIHelpAndUsage(t *testing.T) {
	c := cli{t: t, bin: zgrid(t)}
	for _, args := range [][]string{
		{"init"}, {"serve"}, {"key", "new"}, {"root", "init"}, {"root", "rotate"}, {"root", "show"}, {"flist", "build"}, {"release", "publish"}, {"release", "create"},
		{"release", "sign"}, {"release", "show"}, {"release", "push"}, {"release", "withdraw"}, {"release", "list"}, {"release", "diff"}, {"release", "verify"}, {"farm", "create"}, {"farm", "list"}, {"node", "list"}, {"node", "show"},
	} {
		_, errs := c.run(0, append(args, "--help")...)
		if !strings.Contains(errs, "usage: zgrid "+strings.Join(args, " ")) || !strings.Contains(errs, "examples:") {
			t.Errorf("%v --help:\n%s", args, errs)
		}
	}
	_, errs := c.run(2, "bogus")
	if !strings.Contains(errs, `unknown command "bogus"`) {
		t.Errorf("bogus: %s", errs)
	}
	_, errs = c.run(2, "farm", "create", "x")
	if !strings.Contains(errs, "--channel") {
		t.Errorf("farm create without channel: %s", errs)
	}
	_, errs = c.run(1, "farm", "list")
	if !strings.Contains(errs, "--data DIR or --server URL") {
		t.Errorf("farm list without target: %s", errs)
	}
	_, errs = c.run(1, "release", "publish", "--data", t.TempDir(), "--key", "k", "--channel", "s", "--version", "1",
		"--component", "name=a,flist=sha256:zz,mount=/", "--entry", "/x")
	if !strings.Contains(errs, "sha256:zz") {
		t.Errorf("bad component: %s", errs)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func httpsClient(t *testing.T, ca string) *http.Client {
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
}

func waitHealthy(t *testing.T, url, ca string, log *bytes.Buffer) {
	hc := httpsClient(t, ca)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := hc.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not healthy: %v\n%s", err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A --services file is read strictly: a misspelt field in what gets
// signed is an error, not a field dropped.
func TestReleaseServicesFileRefused(t *testing.T) {
	c := cli{t: t, bin: zgrid(t)}
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")
	c.run(0, "key", "new", "--out", key)
	fl := "sha256:" + strings.Repeat("ab", 32)
	for body, want := range map[string]string{
		`[{"name":"db","component":"core0","exec":{"path":"/bin/db"},"readdy":{}}]`: `unknown field "readdy"`,
		`[]`: "no services in the file",
		`[{"name":"db","component":"core0","exec":{"path":"/bin/db"},"after":["nope"]}]`: `service "db": after "nope": no such service`,
		`[{"name":"db","component":"other","exec":{"path":"/bin/db"}}]`:                  `component "other" is not a component`,
	} {
		f := filepath.Join(dir, "s.json")
		os.WriteFile(f, []byte(body), 0o644)
		_, errs := c.run(1, "release", "create", "--out", filepath.Join(dir, "r.json"), "--key", key, "--channel", "beta", "--version", "1",
			"--services", f, "--component", "name=core0,flist="+fl+",mount=/", "--entry", "/bin/core0")
		if !strings.Contains(errs, want) {
			t.Errorf("%s: %s, want %q", body, errs, want)
		}
	}
}
