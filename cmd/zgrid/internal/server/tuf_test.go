package server

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/repo"
	"github.com/zeroboot/zeroboot/pkg/trust"
)

// testKeys: root, release, online.
var testKeys = func() [3]ed25519.PrivateKey {
	var k [3]ed25519.PrivateKey
	for i := range k {
		_, k[i], _ = repo.GenerateKey()
	}
	return k
}()

// testTUF is a registry's TUF state: root version 1 with one root key,
// one release key (returned) and the online key; channels stable and beta.
func testTUF(t testing.TB) (ed25519.PrivateKey, *TUF) {
	t.Helper()
	pub := func(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }
	m, err := repo.NewRoot(repo.Roles{Root: []ed25519.PublicKey{pub(testKeys[0])}, RootThreshold: 1,
		Targets: []ed25519.PublicKey{pub(testKeys[1])}, TargetThreshold: 1, Online: pub(testKeys[2])}, 1, time.Now().AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Sign(m, testKeys[0]); err != nil {
		t.Fatal(err)
	}
	b, err := repo.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	chans := &trust.Channels{Format: trust.ChannelsFormat, Channels: map[string]trust.Channel{"stable": {}, "beta": {}}}
	return testKeys[1], &TUF{Roots: [][]byte{b}, Channels: chans, Fresh: repo.Freshness{Key: testKeys[2], Window: time.Hour}}
}

// upload signs targets of version v naming doc (nil: a withdrawal).
func upload(t testing.TB, channel string, v uint64, expires time.Time, doc []byte, keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	m, err := repo.NewTargets(int64(v), expires, doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Sign(m, keys...); err != nil {
		t.Fatal(err)
	}
	tb, err := repo.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(records.ReleaseUpload{Format: records.UploadFormat, Channel: channel, Targets: tb, Release: doc})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// node is a node built with the registry's first root.
func (e *env) node() *trust.Node {
	return &trust.Node{Root: e.srv.TUF.Roots[0], Channels: e.srv.TUF.Channels, Now: time.Now()}
}

func TestPublishRefusesWhatNodesRefuse(t *testing.T) {
	e := newEnv(t)
	_, id := e.build()
	// entry is a valid release with its entrypoint moved to path.
	entry := func(path string) []byte {
		var up records.ReleaseUpload
		json.Unmarshal(e.envelope(1, id, time.Hour), &up)
		doc := []byte(strings.Replace(string(up.Release), "/bin/core0", path, 1))
		return upload(t, "stable", 1, time.Now().Add(time.Hour), doc, e.key)
	}
	for _, tc := range []struct {
		name string
		body []byte
		code int
		want string
	}{
		{"signed by the online key", e.envelope(1, id, time.Hour, testKeys[2]), 400, "release refused"},
		{"signed by a root key only", e.envelope(1, id, time.Hour, testKeys[0]), 400, "release refused"},
		{"unknown channel", upload(t, "nightly", 1, time.Now().Add(time.Hour), nil, e.key), 400, "nodes do not accept it"},
		{"document of another channel", func() []byte {
			var up records.ReleaseUpload
			json.Unmarshal(e.envelope(1, id, time.Hour), &up)
			up.Channel = "beta"
			b, _ := json.Marshal(up)
			return b
		}(), 400, "the document is for channel stable"},
		{"entrypoint not in the component", entry("/bin/nothing"), 422, "entrypoint /bin/nothing in component core0: no such file"},
		{"entrypoint not executable", entry("/motd"), 422, "is not executable"},
		{"entrypoint a directory", entry("/bin"), 422, "not a regular file"},
	} {
		a := e.do("POST", "/v1/admin/releases", asAdmin, tc.body)
		if a.code != tc.code || !strings.Contains(a.body, tc.want) {
			t.Errorf("%s: HTTP %d %s, want %d mentioning %q", tc.name, a.code, a.body, tc.code, tc.want)
		}
	}
	// Nothing refused was stored: version 1 is still free.
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(1, id, time.Hour)), 201)
	// The entrypoint is looked up in the component mounted deepest over
	// it, not in every component above it.
	nested := &release.Release{Format: release.Format, Channel: "stable",
		Components: []release.Component{{Name: "base", Flist: id, Mount: "/"}, {Name: "core0", Flist: id, Mount: "/opt/core0"}},
		Entrypoint: release.Entrypoint{Path: "/opt/core0/bin/core0"}}
	doc, err := nested.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, upload(t, "stable", 2, time.Now().Add(time.Hour), doc, e.key)), 201)
}

func TestWithdrawal(t *testing.T) {
	e := newEnv(t)
	_, id := e.build()
	e.must(e.do("POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"demo","channel":"stable"}`)), 201)
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(1, id, time.Hour)), 201)
	// The registry's own key cannot withdraw: only the release keys can.
	w := e.do("POST", "/v1/admin/releases", asAdmin, upload(t, "stable", 2, time.Now().Add(time.Hour), nil, testKeys[2]))
	if w.code != 400 {
		t.Fatalf("withdrawal signed by the online key: HTTP %d %s", w.code, w.body)
	}
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, upload(t, "stable", 2, time.Now().Add(time.Hour), nil, e.key)), 201)
	a := e.must(e.do("POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"n1","farm":"demo"}`)), 200)
	var resp registry.BootResponse
	if err := registry.DecodeStrict([]byte(a.body), &resp); err != nil {
		t.Fatal(err)
	}
	if _, err := e.node().Verify("stable", resp.TUF); err == nil || !strings.Contains(err.Error(), "withdrew") {
		t.Fatalf("node verifying a withdrawn channel: %v", err)
	}
	// A new release after the withdrawal boots again.
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(3, id, time.Hour)), 201)
}

func TestBootProtocolVersions(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ body, want string }{
		{`{"node_id":"n1","farm":"demo"}`, fmt.Sprintf("node speaks boot protocol 1, this registry protocols 2-%d: rebuild the node's initramfs", registry.Protocol)},
		{fmt.Sprintf(`{"protocol":%d,"node_id":"n1","farm":"demo"}`, registry.Protocol+1), fmt.Sprintf("node speaks boot protocol %d, this registry only %d: upgrade zgrid", registry.Protocol+1, registry.Protocol)},
		{`{"protocol":2,"node_id":"n1","farm":"demo","identity_kind":"tpm"}`, "node speaks boot protocol 2 but sends protocol 3 identity fields"},
	} {
		a := e.do("POST", "/v1/boot", asJSON, []byte(tc.body))
		if a.code != 400 || !strings.Contains(a.body, tc.want) {
			t.Errorf("%s: HTTP %d %s, want 400 %q", tc.body, a.code, a.body, tc.want)
		}
	}
	_, id := e.build()
	bad := e.do("POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"demo","channel":"stable","cache":{"device":"vda"}}`))
	if bad.code != 400 || !strings.Contains(bad.body, `farm demo: chunk cache device \"vda\": must match /dev/NAME`) {
		t.Errorf("farm with a bad cache device: HTTP %d %s", bad.code, bad.body)
	}
	e.must(e.do("POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"demo","channel":"stable","cache":{"device":"/dev/vda"}}`)), 201)
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(1, id, time.Hour)), 201)
	// The farm's chunk cache goes to protocol 4 nodes only: a protocol 3
	// node's strict decoder would refuse the field.
	for p, want := range map[int]string{3: "", 4: `"cache":{"device":"/dev/vda"}`} {
		a := e.must(e.do("POST", "/v1/boot", asJSON, []byte(fmt.Sprintf(`{"protocol":%d,"node_id":"n%d","farm":"demo"}`, p, p))), 200)
		if got := strings.Contains(a.body, `"cache"`); got != (want != "") || !strings.Contains(a.body, want) || !strings.Contains(a.body, fmt.Sprintf(`"protocol":%d`, p)) {
			t.Errorf("protocol %d node: answer %s, want %q", p, a.body, want)
		}
	}
	// A protocol 2 node, one version behind, still boots, answered in its
	// own version (its strict decoder would refuse any field it does not
	// know).
	a := e.must(e.do("POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"n1","farm":"demo"}`)), 200)
	var resp map[string]any
	if err := json.Unmarshal([]byte(a.body), &resp); err != nil {
		t.Fatal(err)
	}
	if resp["protocol"] != float64(2) || resp["quote_nonce"] != nil || resp["send_ek"] != nil {
		t.Errorf("answer to a protocol 2 node: %s", a.body)
	}
}

// TestBootRefusesUnreadableRelease: a release with a BLAKE3 component
// (flist version 3) is recorded as needing protocol 6 nodes; an older
// node is refused it with the reason and what to do, at the registry,
// while a protocol 6 node boots it.
func TestBootRefusesUnreadableRelease(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.Rate = -1 })
	_, id := e.pack(e.tree(), flist.VersionBLAKE3)
	e.must(e.do("POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"demo","channel":"stable"}`)), 201)
	pub := e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(1, id, time.Hour)), 201)
	if !strings.Contains(pub.body, fmt.Sprintf(`"node_protocol":%d`, registry.ProtocolBLAKE3)) {
		t.Errorf("published release %s does not record node protocol %d", pub.body, registry.ProtocolBLAKE3)
	}
	for _, tc := range []struct {
		protocol int
		code     int
		want     string
	}{
		{registry.ProtocolServices, 409, fmt.Sprintf("release stable v1 has components that nodes of boot protocol %d cannot read (flist version 3, BLAKE3 chunk IDs, needs protocol %d)", registry.ProtocolServices, registry.ProtocolBLAKE3)},
		{registry.ProtocolTPM, 409, "zgrid flist build --format 2"},
		{registry.ProtocolBLAKE3, 200, `"protocol":6`},
	} {
		a := e.do("POST", "/v1/boot", asJSON, []byte(fmt.Sprintf(`{"protocol":%d,"node_id":"n%031x","farm":"demo"}`, tc.protocol, tc.protocol)))
		if a.code != tc.code || !strings.Contains(a.body, tc.want) {
			t.Errorf("protocol %d node: HTTP %d %s, want %d %q", tc.protocol, a.code, a.body, tc.code, tc.want)
		}
	}
	// A version-2 release of the same tree is for every node.
	_, id2 := e.build()
	pub = e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(2, id2, time.Hour)), 201)
	if !strings.Contains(pub.body, fmt.Sprintf(`"node_protocol":%d`, registry.MinNodeProtocol)) {
		t.Errorf("a SHA-256 release does not record node protocol %d: %s", registry.MinNodeProtocol, pub.body)
	}
	e.must(e.do("POST", "/v1/boot", asJSON, []byte(fmt.Sprintf(`{"protocol":%d,"node_id":"n%031x","farm":"demo"}`, registry.ProtocolServices, 5))), 200)
}

func TestFreshnessReusedThenRenewed(t *testing.T) {
	_, tuf := testTUF(t)
	e := newEnv(t)
	now := time.Now()
	rel, err := tuf.stored(records.ReleaseInfo{Channel: "stable", Version: 1, Envelope: upload(t, "stable", 1, now.Add(time.Hour), nil, e.key)})
	if err != nil {
		t.Fatal(err)
	}
	s1, t1, err := tuf.freshness("stable", rel, now)
	if err != nil {
		t.Fatal(err)
	}
	_, t2, _ := tuf.freshness("stable", rel, now.Add(10*time.Minute))
	if string(t1) != string(t2) {
		t.Fatal("timestamp re-signed while most of its window was left")
	}
	s3, t3, _ := tuf.freshness("stable", rel, now.Add(40*time.Minute))
	if string(t1) == string(t3) || string(s1) == string(s3) {
		t.Fatal("timestamp not renewed past half its window")
	}
}

// A stored release is decoded once while its record holds the same
// envelope, and again when the record changed under the same version.
func TestStoredReleaseDecodedOnce(t *testing.T) {
	_, tuf := testTUF(t)
	e := newEnv(t)
	now := time.Now()
	env1 := upload(t, "stable", 1, now.Add(time.Hour), nil, e.key)
	env2 := upload(t, "stable", 2, now.Add(time.Hour), nil, e.key)
	info := records.ReleaseInfo{Channel: "stable", Version: 1, Envelope: env1}
	a, err := tuf.stored(info)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := tuf.stored(info); b != a {
		t.Error("the same envelope decoded again")
	}
	info.Envelope = env2
	c, err := tuf.stored(info)
	if err != nil || c == a || c.targetsVersion != 2 {
		t.Fatalf("changed envelope: %+v, %v; want it decoded anew (targets version 2)", c, err)
	}
	info.Envelope = []byte("{garbage")
	if _, err := tuf.stored(info); err == nil || !strings.Contains(err.Error(), "stored release stable/1") {
		t.Errorf("garbage envelope: %v", err)
	}
}

// TestPublishSetuidPermission: a component with a setuid file is refused
// unless the signed release allows it for that component, naming the path.
func TestPublishSetuidPermission(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "bin", "core0"), []byte("core0"), 0o755)
	os.WriteFile(filepath.Join(dir, "bin", "passwd"), []byte("passwd"), 0o755)
	if err := syscall.Chmod(filepath.Join(dir, "bin", "passwd"), 0o4755); err != nil { // os.Chmod would drop 04000
		t.Fatal(err)
	}
	_, id := e.buildDir(dir)
	doc := func(allow bool) []byte {
		b, err := (&release.Release{Format: release.Format, Channel: "stable",
			Components: []release.Component{{Name: "base", Flist: id, Mount: "/", AllowSetuid: allow}},
			Entrypoint: release.Entrypoint{Path: "/bin/core0"}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := e.do("POST", "/v1/admin/releases", asAdmin, upload(t, "stable", 1, time.Now().Add(time.Hour), doc(false), e.key))
	if a.code != 422 || !strings.Contains(a.body, "bin/passwd") || !strings.Contains(a.body, "setuid=yes") {
		t.Fatalf("setuid file without permission: HTTP %d %s", a.code, a.body)
	}
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, upload(t, "stable", 1, time.Now().Add(time.Hour), doc(true), e.key)), 201)
}

// A farm can pin a version of its channel, or roll the newest out to a
// share of its nodes, the same nodes every boot.
func TestFarmPinAndRollout(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.Rate = -1 })
	_, id := e.build()
	for v := 1; v <= 3; v++ {
		e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(uint64(v), id, time.Hour)), 201)
	}
	served := func(node string) uint64 {
		t.Helper()
		e.must(e.do("POST", "/v1/boot", asJSON, []byte(fmt.Sprintf(`{"protocol":4,"node_id":%q,"farm":"demo"}`, node))), 200)
		var n records.Node
		json.Unmarshal([]byte(e.must(e.do("GET", "/v1/admin/nodes/"+node, asAdmin, nil), 200).body), &n)
		return n.ReleaseServed
	}
	setFarm := func(body string, code int) answer {
		t.Helper()
		return e.must(e.do("PUT", "/v1/admin/farms/demo", asAdmin, []byte(body)), code)
	}
	e.must(e.do("POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"demo","channel":"stable","rollout":25}`)), 201)
	counts := map[uint64]int{}
	first := map[string]uint64{}
	for i := range 200 {
		node := fmt.Sprintf("n%031x", i)
		first[node] = served(node)
		counts[first[node]]++
	}
	if counts[3] < 30 || counts[3] > 70 || counts[2] != 200-counts[3] {
		t.Errorf("rollout 25%%: versions served %v, want about 50 of 200 on version 3 and the rest on 2", counts)
	}
	for node, v := range first {
		if again := served(node); again != v {
			t.Fatalf("%s got version %d, then %d: the rollout must choose the same nodes every boot", node, v, again)
		}
		break
	}
	show := func(name string) FarmView {
		t.Helper()
		var v FarmView
		json.Unmarshal([]byte(e.must(e.do("GET", "/v1/admin/farms/"+name, asAdmin, nil), 200).body), &v)
		return v
	}
	serves := func(v FarmView) string { return fmt.Sprintf("%+v", v.Serves) }
	v := show("demo")
	if len(v.Serves) != 2 || v.Serves[0].Version != 3 || v.Serves[0].Percent != 25 || v.Serves[1].Version != 2 || v.Serves[1].Percent != 75 || v.Problem != "" {
		t.Errorf("farm show under rollout: serves %s, problem %q; want 3 to 25%%, 2 to 75%%", serves(v), v.Problem)
	}
	if v.Rollout != 25 || v.Nodes[registry.StateBooting] != 200 || v.Nodes[registry.StateDenied] != 0 || len(v.Nodes) != len(registry.NodeStates) {
		t.Errorf("farm show: rollout %d, nodes %v; want 25, 200 booting, every state", v.Rollout, v.Nodes)
	}
	setFarm(`{"name":"demo","channel":"stable","pin":1}`, 200)
	if v := served("n0000000000000000000000000000ff"); v != 1 {
		t.Errorf("pinned to 1: served %d", v)
	}
	if v := show("demo"); len(v.Serves) != 1 || v.Serves[0].Version != 1 || v.Serves[0].Percent != 100 {
		t.Errorf("farm show pinned to 1: serves %s", serves(v))
	}
	e.must(e.do("POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"bare","channel":"beta"}`)), 201)
	if v := show("bare"); len(v.Serves) != 0 || v.Problem != "no release on channel beta" || v.Nodes[registry.StateReady] != 0 {
		t.Errorf("farm show of a channel without releases: serves %s, problem %q, nodes %v", serves(v), v.Problem, v.Nodes)
	}
	e.must(e.do("GET", "/v1/admin/farms/nobody", asAdmin, nil), 404)
	e.must(e.do("GET", "/v1/admin/farms/no%20body", asAdmin, nil), 400)
	for _, tc := range []struct{ body, want string }{
		{`{"name":"demo","channel":"stable","pin":9}`, "pinned to stable version 9, which is not published"},
		{`{"name":"demo","channel":"stable","rollout":120}`, "rollout 120%: want 1 to 99"},
		{`{"name":"demo","channel":"stable","rollout":10,"pin":1}`, "not both"},
	} {
		if a := e.do("PUT", "/v1/admin/farms/demo", asAdmin, []byte(tc.body)); a.code/100 != 4 || !strings.Contains(a.body, tc.want) {
			t.Errorf("%s: HTTP %d %s, want %q", tc.body, a.code, a.body, tc.want)
		}
	}
	setFarm(`{"name":"demo","channel":"stable"}`, 200)
	if v := served("n0000000000000000000000000000fe"); v != 3 {
		t.Errorf("no pin, no rollout: served %d, want the newest", v)
	}
}

// TestReadyDeadlineFallback: a farm with a ready deadline sends protocol 6
// nodes a fallback release that verifies like the first (the one they
// last reached ready on, else the newest good one before); a node that
// reports a fallback is recorded and gets its fallback from then on, with
// no deadline; reports that do not fit what the node was served are
// refused; older nodes get answers without the field.
func TestReadyDeadlineFallback(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.Rate = -1 })
	_, id := e.build()
	for v := 1; v <= 3; v++ {
		e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(uint64(v), id, time.Hour)), 201)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"name":"demo","channel":"stable","ready_deadline":5}`, "ready deadline 5s: want 10s to 86400s"},
		{`{"name":"demo","channel":"stable","ready_deadline":100000}`, "ready deadline 100000s"},
	} {
		if a := e.do("POST", "/v1/admin/farms", asAdmin, []byte(tc.body)); a.code != 400 || !strings.Contains(a.body, tc.want) {
			t.Errorf("%s: HTTP %d %s, want %q", tc.body, a.code, a.body, tc.want)
		}
	}
	e.must(e.do("POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"demo","channel":"stable","ready_deadline":60}`)), 201)
	boot := func(node string, protocol int) registry.BootResponse {
		t.Helper()
		a := e.must(e.do("POST", "/v1/boot", asJSON, []byte(fmt.Sprintf(`{"protocol":%d,"node_id":%q,"farm":"demo"}`, protocol, node))), 200)
		var resp registry.BootResponse
		if err := registry.DecodeStrict([]byte(a.body), &resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	version := func(b *trust.Bundle) uint64 {
		t.Helper()
		v, err := e.node().Verify("stable", b)
		if err != nil {
			t.Fatalf("bundle does not verify: %v", err)
		}
		return v.Release.Version
	}
	report := func(node, token string, rep registry.StatusReport) answer {
		t.Helper()
		rep.NodeID, rep.Token = node, token
		b, _ := json.Marshal(rep)
		return e.do("POST", "/v1/status", asJSON, b)
	}

	a, b := "n00000000000000000000000000000a1", "n00000000000000000000000000000b1"
	if r := boot(a, registry.ProtocolServices); r.Fallback != nil {
		t.Errorf("protocol 5 node got a fallback")
	}
	r := boot(a, registry.ProtocolFallback)
	if r.Fallback == nil {
		t.Fatal("protocol 6 node of a farm with a deadline got no fallback")
	}
	if got, fb := version(r.TUF), version(r.Fallback.TUF); got != 3 || fb != 2 || r.Fallback.DeadlineSeconds != 60 {
		t.Errorf("served %d with fallback %d within %ds, want 3, fallback 2, 60s", got, fb, r.Fallback.DeadlineSeconds)
	}
	for _, tc := range []struct {
		name string
		rep  registry.StatusReport
		code int
		want string
	}{
		{"from Core-0", registry.StatusReport{Source: "core0", State: "booting", ReleaseVersion: 2, FellBack: &registry.FellBack{From: 3, Reason: "x"}}, 400, "only PID 1 falls back"},
		{"to itself", registry.StatusReport{Source: "pid1", State: "booting", ReleaseVersion: 3, FellBack: &registry.FellBack{From: 3, Reason: "x"}}, 400, "want another, earlier release"},
		{"no reason", registry.StatusReport{Source: "pid1", State: "booting", ReleaseVersion: 2, FellBack: &registry.FellBack{From: 3}}, 400, "fell_back reason"},
		{"from a release not served", registry.StatusReport{Source: "pid1", State: "booting", ReleaseVersion: 2, FellBack: &registry.FellBack{From: 1, Reason: "x"}}, 409, "fell back from version 1, served 3"},
	} {
		if got := report(a, r.Token, tc.rep); got.code != tc.code || !strings.Contains(got.body, tc.want) {
			t.Errorf("%s: HTTP %d %s, want %d %q", tc.name, got.code, got.body, tc.code, tc.want)
		}
	}
	e.must(report(a, r.Token, registry.StatusReport{Source: "pid1", State: "booting", ReleaseVersion: 2,
		FellBack: &registry.FellBack{From: 3, Reason: "release stable v3 not ready within 1m0s"}}), 204)
	if fb := e.nodeRecord(a).Fallback; fb == nil || fb.From != 3 || fb.To != 2 || !strings.Contains(fb.Reason, "not ready") {
		t.Errorf("node record's fallback %+v, want 3 to 2 with the reason", fb)
	}
	if r := boot(a, registry.ProtocolFallback); version(r.TUF) != 2 || r.Fallback != nil {
		t.Errorf("after its fallback: served %d (fallback %v), want 2 and no deadline", version(r.TUF), r.Fallback != nil)
	}
	br := newBrowser(e)
	e.must(br.login(t, token), 303)
	if page := e.must(br.do("GET", "/ui/nodes/"+a, nil), 200).body; !strings.Contains(page, "from release 3 to 2") || !strings.Contains(page, "not ready within 1m0s") {
		t.Errorf("node page does not show the fallback:\n%s", page)
	}

	// b last reached ready on 1: that is its fallback, not 2.
	r = boot(b, registry.ProtocolFallback)
	e.must(report(b, r.Token, registry.StatusReport{Source: "core0", State: "ready", ReleaseVersion: 1}), 204)
	if r := boot(b, registry.ProtocolFallback); r.Fallback == nil || version(r.Fallback.TUF) != 1 {
		t.Errorf("node last ready on 1: fallback %v, want version 1", r.Fallback)
	}

	// A fourth release is tried on a; its fallback skips 3, which failed
	// on it.
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(4, id, time.Hour)), 201)
	if r := boot(a, registry.ProtocolFallback); version(r.TUF) != 4 || r.Fallback == nil || version(r.Fallback.TUF) != 2 {
		t.Errorf("after a newer release: served %d, want 4 with the node's last good 2 as fallback", version(r.TUF))
	}
	e.must(e.do("PUT", "/v1/admin/farms/demo", asAdmin, []byte(`{"name":"demo","channel":"stable"}`)), 200)
	if r := boot(a, registry.ProtocolFallback); r.Fallback != nil {
		t.Errorf("farm without a deadline still sends a fallback")
	}
}
