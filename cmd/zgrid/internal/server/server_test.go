package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/fetch"
	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/repo"
	"github.com/zeroboot/zeroboot/pkg/store"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

const token = "0123456789abcdef"

// env is a server over HTTPS (TLS 1.3) with a temp data dir, a trust of
// one key, and an admin client.
type env struct {
	t     testing.TB
	srv   *Server
	ts    *httptest.Server
	store *store.Dir
	hc    *http.Client
	key   ed25519.PrivateKey
}

func newEnv(t testing.TB, opts ...func(*Server)) *env {
	t.Helper()
	dir := t.TempDir()
	if err := db.Create(filepath.Join(dir, "zgrid.db")); err != nil {
		t.Fatal(err)
	}
	d, err := db.Open(filepath.Join(dir, "zgrid.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return newEnvOn(t, d, opts...)
}

// newEnvOn is newEnv on the records d.
func newEnvOn(t testing.TB, d db.Records, opts ...func(*Server)) *env {
	t.Helper()
	dir := t.TempDir()
	key, tuf := testTUF(t)
	st := &store.Dir{Root: filepath.Join(dir, "store")}
	s := &Server{
		DB:         d,
		Store:      st,
		Token:      token,
		Mirrors:    []string{"https://mirror.example/store"},
		TUF:        tuf,
		CheckFlist: func(b []byte) error { _, err := flist.Decode(b); return err },
	}
	for _, o := range opts {
		o(s)
	}
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.StartTLS()
	t.Cleanup(ts.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	hc, err := registry.NewHTTPClient(ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: s, ts: ts, store: st, hc: hc, key: key}
}

type answer struct {
	code int
	body string
	hdr  http.Header
}

func (e *env) do(method, path string, hdr map[string]string, body []byte) answer {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

var (
	asAdmin = map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
	asJSON  = map[string]string{"Content-Type": "application/json"}
)

func (e *env) must(a answer, code int) answer {
	e.t.Helper()
	if a.code != code {
		e.t.Fatalf("HTTP %d %s, want %d", a.code, a.body, code)
	}
	return a
}

// tree writes a small tree with an executable /bin/core0.
func (e *env) tree() string {
	e.t.Helper()
	dir := e.t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	big := make([]byte, 300_000)
	for i := range big {
		big[i] = byte(i * 7 / 13)
	}
	os.WriteFile(filepath.Join(dir, "bin", "core0"), big, 0o755)
	os.WriteFile(filepath.Join(dir, "motd"), []byte("hello\n"), 0o644)
	os.Symlink("bin/core0", filepath.Join(dir, "init"))
	return dir
}

// build packs and uploads a small tree with an executable /bin/core0.
func (e *env) build() (*flist.Flist, digest.Digest) {
	e.t.Helper()
	return e.buildDir(e.tree())
}

// buildDir packs dir and uploads it through the admin store API.
func (e *env) buildDir(dir string) (*flist.Flist, digest.Digest) {
	e.t.Helper()
	return e.pack(dir, 0)
}

// pack packs dir as an flist of version (0: the default) and uploads it.
func (e *env) pack(dir string, version int) (*flist.Flist, digest.Digest) {
	e.t.Helper()
	up := &store.Uploader{URL: e.ts.URL, Token: token, Client: e.hc}
	f, err := (&flist.Builder{ChunkSize: 64 << 10, Sink: up, Version: version}).BuildDir(context.Background(), dir)
	if err != nil {
		e.t.Fatal(err)
	}
	enc, err := f.Encode()
	if err != nil {
		e.t.Fatal(err)
	}
	id, err := up.PutFlist(enc)
	if err != nil {
		e.t.Fatal(err)
	}
	return f, id
}

// envelope is a release upload of version v of channel stable with
// component id at /, entrypoint /bin/core0, signed by keys (default: the
// release key).
func (e *env) envelope(v uint64, id digest.Digest, expires time.Duration, keys ...ed25519.PrivateKey) []byte {
	e.t.Helper()
	r := &release.Release{Format: release.Format, Channel: "stable",
		Components: []release.Component{{Name: "core0", Flist: id, Mount: "/"}},
		Entrypoint: release.Entrypoint{Path: "/bin/core0", Args: []string{}, Env: []string{}}}
	doc, err := r.Marshal()
	if err != nil {
		e.t.Fatal(err)
	}
	if len(keys) == 0 {
		keys = []ed25519.PrivateKey{e.key}
	}
	return upload(e.t, "stable", v, time.Now().Add(expires), doc, keys...)
}

// TestBootEndToEnd: build, upload, publish, boot, fetch every chunk over
// HTTPS through fetch.HTTP and verify it, report status.
func TestBootEndToEnd(t *testing.T) {
	e := newEnv(t)
	f, id := e.build()
	e.must(e.do("POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"demo","channel":"stable"}`)), 201)
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(1, id, time.Hour)), 201)

	a := e.must(e.do("POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"n1","farm":"demo","agent":"test","profile":{"cpus":4}}`)), 200)
	var resp registry.BootResponse
	if err := registry.DecodeStrict([]byte(a.body), &resp); err != nil {
		t.Fatal(err)
	}
	wantStore := e.ts.URL + "/store"
	if resp.NodeID != "n1" || len(resp.Stores) != 2 || resp.Stores[0] != wantStore || resp.Stores[1] != "https://mirror.example/store" {
		t.Fatalf("boot answer %+v, want stores [%s, mirror]", resp, wantStore)
	}
	// A node holding root version 1 verifies the answer as it stands.
	v, err := e.node().Verify(resp.Channel, resp.TUF)
	if err != nil || v.Release.Components[0].Flist != id || v.Release.Version != 1 {
		t.Fatalf("served release: %v, %+v", err, v)
	}

	remote := &fetch.HTTP{URLs: resp.Stores[:1], Client: e.hc}
	got, err := remote.Flist(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ent := range got.Entries {
		var content []byte
		for _, ref := range ent.Refs() {
			raw, err := contentOf(remote.Chunk(context.Background(), ref, nil))
			if err != nil {
				t.Fatalf("%s: %v", ent.Path, err)
			}
			content = append(content, raw...)
			n++
		}
		if p := ent.Pack; p != nil {
			content = content[p.Off : uint64(p.Off)+ent.Size]
		}
		if uint64(len(content)) != ent.Size && ent.Type == flist.TypeFile {
			t.Fatalf("%s: %d bytes, want %d", ent.Path, len(content), ent.Size)
		}
	}
	if want := countChunks(f); n != want || n < 5 {
		t.Fatalf("fetched %d chunks, flist has %d", n, want)
	}

	if err := registry.CheckToken(resp.Token); err != nil {
		t.Fatalf("boot answer token %q: %v", resp.Token, err)
	}
	rep := registry.StatusReport{NodeID: "n1", Source: "pid1", State: "failed", Reason: "mount: no space", ReleaseVersion: 1,
		Timeline: []timeline.Step{{Name: "net", StartMS: 1, EndMS: 9}}, Token: resp.Token}
	b, _ := json.Marshal(rep)
	e.must(e.do("POST", "/v1/status", asJSON, b), 204)
	var node records.Node
	json.Unmarshal([]byte(e.must(e.do("GET", "/v1/admin/nodes/n1", asAdmin, nil), 200).body), &node)
	if node.State != "failed" || node.Reason != "mount: no space" || node.Profile.CPUs != 4 || node.ReleaseServed != 1 || len(node.Timeline) != 1 || node.FirstSeen.IsZero() {
		t.Fatalf("node record %+v", node)
	}
	m := e.must(e.do("GET", "/metrics", nil, nil), 200).body
	for _, want := range []string{"zgrid_boots_total 1\n", `zgrid_nodes{state="failed"} 1`, `zgrid_http_requests_total{code="200",method="POST",route="/v1/boot"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
	if strings.Contains(m, "zgrid_store_served_bytes_total 0\n") {
		t.Errorf("store bytes not counted:\n%s", m)
	}
}

func countChunks(f *flist.Flist) int {
	n := 0
	for _, e := range f.Entries {
		n += len(e.Refs())
	}
	return n
}

func TestTamperedChunkDetected(t *testing.T) {
	e := newEnv(t)
	f, _ := e.build()
	var ref flist.ChunkRef
	for _, ent := range f.Entries {
		if len(ent.Chunks) > 0 {
			ref = ent.Chunks[0]
		}
	}
	p := e.store.ChunkPath(ref.ID)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	remote := &fetch.HTTP{URLs: []string{e.ts.URL + "/store"}, Client: e.hc}
	if _, err := contentOf(remote.Chunk(context.Background(), ref, nil)); err == nil {
		t.Fatal("tampered chunk accepted")
	}
}

func TestReleaseRules(t *testing.T) {
	e := newEnv(t)
	_, id := e.build()
	_, other, _ := repo.GenerateKey()
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(5, id, time.Hour)), 201)
	for _, tc := range []struct {
		name string
		body []byte
		code int
		want string
	}{
		{"wrong key", e.envelope(6, id, time.Hour, other), 400, "release refused"},
		{"same version", e.envelope(5, id, time.Hour), 409, "version does not grow"},
		{"lower version", e.envelope(4, id, time.Hour), 409, "channel stable is at version 5"},
		{"expired", e.envelope(6, id, -time.Second), 400, "expired"},
		{"missing flist", e.envelope(6, digest.Of([]byte("nothing")), time.Hour), 422, "not in the store"},
		{"garbage", []byte(`{"payload":"x"`), 400, "release upload"},
		{"unknown field", []byte(`{"format":"zeroboot-upload/1","channel":"stable","extra":1}`), 400, "unknown field"},
	} {
		a := e.do("POST", "/v1/admin/releases", asAdmin, tc.body)
		if a.code != tc.code || !strings.Contains(a.body, tc.want) || a.hdr.Get("Content-Type") != "application/json" {
			t.Errorf("%s: HTTP %d %s, want %d mentioning %q", tc.name, a.code, a.body, tc.code, tc.want)
		}
	}
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(6, id, time.Hour)), 201)
	var rs []records.ReleaseInfo
	json.Unmarshal([]byte(e.must(e.do("GET", "/v1/admin/releases?channel=stable", asAdmin, nil), 200).body), &rs)
	if len(rs) != 2 || rs[1].Version != 6 || rs[1].Envelope != nil || len(rs[1].KeyIDs) != 1 {
		t.Fatalf("releases %+v", rs)
	}
}

func TestAdminNeedsToken(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/v1/admin/nodes", "/v1/admin/farms", "/v1/admin/releases", "/v1/admin/nodes/n1"} {
		for _, h := range []map[string]string{nil, {"Authorization": "Bearer wrong"}, {"Authorization": token}} {
			if a := e.do("GET", p, h, nil); a.code != 401 || !strings.Contains(a.body, "admin token") {
				t.Errorf("GET %s with %v: HTTP %d %s, want 401", p, h, a.code, a.body)
			}
		}
	}
	if a := e.do("PUT", "/v1/admin/store/flists/"+strings.Repeat("0", 64), nil, []byte("x")); a.code != 401 {
		t.Errorf("upload without token: HTTP %d", a.code)
	}
}

func TestMalformedRequests(t *testing.T) {
	e := newEnv(t)
	_, fid := e.build()
	e.must(e.do("POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"demo","channel":"stable"}`)), 201)
	e.must(e.do("POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"empty","channel":"beta"}`)), 201)
	raw := []byte("some chunk content")
	cref, comp, _ := flist.CompressChunk(flist.SHA256, raw)
	hexID := cref.ID.Hex()
	zero := strings.Repeat("0", 64)
	for _, tc := range []struct {
		name, method, path string
		hdr                map[string]string
		body               []byte
		code               int
		want               string
	}{
		{"boot text", "POST", "/v1/boot", map[string]string{"Content-Type": "text/plain"}, []byte(`{}`), 415, "application/json"},
		{"boot unknown field", "POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"n1","farm":"demo","root":true}`), 400, "unknown field"},
		{"boot trailing", "POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"n1","farm":"demo"}{}`), 400, "trailing"},
		{"boot huge", "POST", "/v1/boot", asJSON, bytes.Repeat([]byte(" "), registry.MaxBodySize+1), 413, "limit"},
		{"boot deep", "POST", "/v1/boot", asJSON, []byte(strings.Repeat("[", 20000)), 400, "decode JSON"},
		{"boot bad id", "POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"../x","farm":"demo"}`), 400, "node_id"},
		{"boot no farm", "POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"n1","farm":"nope"}`), 404, "farm nope not found"},
		{"boot no release", "POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"n1","farm":"empty"}`), 404, "no release on channel beta"},
		{"status unknown node", "POST", "/v1/status", asJSON, []byte(`{"node_id":"n9","source":"pid1","state":"ready","token":"` + fakeToken + `"}`), 404, "unknown"},
		{"status bad state", "POST", "/v1/status", asJSON, []byte(`{"node_id":"n9","source":"pid1","state":"happy","token":"` + fakeToken + `"}`), 400, "state"},
		{"status bad token", "POST", "/v1/status", asJSON, []byte(`{"node_id":"n9","source":"pid1","state":"ready","token":"abc"}`), 400, "boot token is 3 characters"},
		{"status bad id", "POST", "/v1/status", asJSON, []byte(`{"node_id":"../n9","source":"pid1","state":"ready","token":"` + fakeToken + `"}`), 400, "node_id"},
		{"chunk short name", "GET", "/store/chunks/ab/abc", nil, nil, 400, "64 lower-case hex"},
		{"chunk upper", "GET", "/store/chunks/AB/" + strings.ToUpper(hexID), nil, nil, 400, "lower case"},
		{"chunk wrong dir", "GET", "/store/chunks/00/" + hexID, nil, nil, 400, "not under 00/"},
		{"chunk absent", "GET", "/store/chunks/00/" + zero, nil, nil, 404, "not in the store"},
		{"flist absent", "GET", "/store/flists/" + zero, nil, nil, 404, "not in the store"},
		{"flist traversal", "GET", "/store/flists/..%2f..%2fzgrid.db", nil, nil, 400, "64 lower-case hex"},
		{"put chunk no size", "PUT", "/v1/admin/store/chunks/" + hexID, asAdmin, comp, 400, "X-Zeroboot-Size"},
		{"put chunk wrong size", "PUT", "/v1/admin/store/chunks/" + hexID, with(asAdmin, "X-Zeroboot-Size", "5"), comp, 400, "inflates"},
		{"put chunk wrong id", "PUT", "/v1/admin/store/chunks/" + zero, with(asAdmin, "X-Zeroboot-Size", fmt.Sprint(len(raw))), comp, 400, "hash mismatch"},
		// A SHA-256 name uploaded as BLAKE3: the server hashes with the
		// hash the uploader names, and the bytes do not match under it.
		{"put chunk other hash", "PUT", "/v1/admin/store/chunks/" + hexID, with(with(asAdmin, "X-Zeroboot-Size", fmt.Sprint(len(raw))), "X-Zeroboot-Hash", "blake3"), comp, 400, "chunk blake3:" + hexID + ": content hash mismatch"},
		{"put chunk unknown hash", "PUT", "/v1/admin/store/chunks/" + hexID, with(with(asAdmin, "X-Zeroboot-Size", fmt.Sprint(len(raw))), "X-Zeroboot-Hash", "md5"), comp, 400, "X-Zeroboot-Hash"},
		{"put chunk huge", "PUT", "/v1/admin/store/chunks/" + hexID, with(asAdmin, "X-Zeroboot-Size", "1"), make([]byte, flist.MaxCompressedSize+1), 413, "limit"},
		{"put flist wrong digest", "PUT", "/v1/admin/store/flists/" + zero, asAdmin, []byte("ZBFL"), 400, "hashes to"},
		{"put flist garbage", "PUT", "/v1/admin/store/flists/" + digest.Of([]byte("ZBFLjunk")).Hex(), asAdmin, []byte("ZBFLjunk"), 400, "flist"},
		{"farm bad name", "POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"A B","channel":"stable"}`), 400, "farm name"},
		{"farm exists", "POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"demo","channel":"stable"}`), 409, "already exists"},
		{"node absent", "GET", "/v1/admin/nodes/n404", asAdmin, nil, 404, "not found"},
		{"wrong method", "DELETE", "/v1/boot", nil, nil, 405, "not allowed"},
		{"no route", "GET", "/v2/boot", nil, nil, 404, "no endpoint"},
	} {
		a := e.do(tc.method, tc.path, tc.hdr, tc.body)
		var msg registry.Error
		if a.code != tc.code || json.Unmarshal([]byte(a.body), &msg) != nil || !strings.Contains(msg.Error, tc.want) {
			t.Errorf("%s: HTTP %d %q, want %d with JSON error mentioning %q", tc.name, a.code, a.body, tc.code, tc.want)
		}
	}
	// A good upload still works after all that.
	e.must(e.do("PUT", "/v1/admin/store/chunks/"+hexID, with(asAdmin, "X-Zeroboot-Size", fmt.Sprint(len(raw))), comp), 204)
	if !e.store.HasChunk(cref.ID) {
		t.Fatal("chunk not stored")
	}
	e.must(e.do("GET", "/store/flists/"+fid.Hex(), nil, nil), 200)
}

func with(h map[string]string, k, v string) map[string]string {
	m := map[string]string{k: v}
	for a, b := range h {
		m[a] = b
	}
	return m
}

func TestBlobHeadersAndRange(t *testing.T) {
	e := newEnv(t)
	_, id := e.build()
	full := e.must(e.do("GET", "/store/flists/"+id.Hex(), nil, nil), 200)
	if digest.Of([]byte(full.body)) != id {
		t.Fatal("served flist does not hash to its name")
	}
	if cc := full.hdr.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
		t.Errorf("Cache-Control %q", cc)
	}
	if et := full.hdr.Get("ETag"); et != `"`+id.Hex()+`"` {
		t.Errorf("ETag %q", et)
	}
	part := e.must(e.do("GET", "/store/flists/"+id.Hex(), map[string]string{"Range": "bytes=2-5"}, nil), 206)
	if part.body != full.body[2:6] {
		t.Errorf("range body %q, want %q", part.body, full.body[2:6])
	}
	e.must(e.do("GET", "/store/flists/"+id.Hex(), map[string]string{"If-None-Match": `"` + id.Hex() + `"`}, nil), 304)
}

func TestPanicIsRecovered(t *testing.T) {
	e := newEnv(t)
	e.srv.CheckFlist = func([]byte) error { panic("decoder bug") }
	b := []byte("ZBFL")
	a := e.do("PUT", "/v1/admin/store/flists/"+digest.Of(b).Hex(), asAdmin, b)
	if a.code != 500 || !strings.Contains(a.body, "internal error") {
		t.Fatalf("HTTP %d %s, want 500 internal error", a.code, a.body)
	}
	e.must(e.do("GET", "/healthz", nil, nil), 200)
}

func TestBootWithoutFarmUsesDefault(t *testing.T) {
	e := newEnv(t)
	_, id := e.build()
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(1, id, time.Hour)), 201)
	req := []byte(`{"protocol":2,"node_id":"n2","farm":"","agent":"test","profile":{}}`)
	if r := e.must(e.do("POST", "/v1/boot", asJSON, req), 404); !strings.Contains(r.body, "farm default not found") {
		t.Fatalf("without a default farm: %s", r.body)
	}
	e.must(e.do("POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"default","channel":"stable"}`)), 201)
	var resp registry.BootResponse
	if err := registry.DecodeStrict([]byte(e.must(e.do("POST", "/v1/boot", asJSON, req), 200).body), &resp); err != nil || resp.NodeID != "n2" {
		t.Fatalf("boot answer %+v, %v", resp, err)
	}
	var node records.Node
	json.Unmarshal([]byte(e.must(e.do("GET", "/v1/admin/nodes/n2", asAdmin, nil), 200).body), &node)
	if node.Farm != DefaultFarm {
		t.Fatalf("node recorded in farm %q, want %q", node.Farm, DefaultFarm)
	}
}

// A chunk URL is served as immutable, so a second upload compressed
// differently leaves the first copy in place; the reply says which size is
// stored so the uploader's flist records it.
func TestChunkUploadKeepsFirstCopy(t *testing.T) {
	e := newEnv(t)
	raw := bytes.Repeat([]byte("two encodings of one chunk "), 2000)
	cref, small, err := flist.CompressChunk(flist.SHA256, raw)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	big := enc.EncodeAll(raw, nil)
	if len(big) <= len(small) {
		t.Fatalf("test needs a larger encoding: %d vs %d", len(big), len(small))
	}
	path := "/v1/admin/store/chunks/" + cref.ID.Hex()
	hdr := with(asAdmin, "X-Zeroboot-Size", fmt.Sprint(len(raw)))
	for _, blob := range [][]byte{big, small} {
		a := e.must(e.do("PUT", path, hdr, blob), 204)
		if got := a.hdr.Get("X-Zeroboot-Stored-Size"); got != fmt.Sprint(len(big)) {
			t.Fatalf("upload of %d bytes: stored size %q, want the first copy's %d", len(blob), got, len(big))
		}
	}
	served := e.must(e.do("GET", "/store/chunks/"+cref.ID.Hex()[:2]+"/"+cref.ID.Hex(), nil, nil), 200)
	if served.body != string(big) {
		t.Fatalf("served %d bytes, want the first copy (%d)", len(served.body), len(big))
	}
	up := &store.Uploader{URL: e.ts.URL, Token: token, Client: e.hc}
	stored, err := up.PutChunk(cref, small)
	if err != nil || stored.CSize != uint32(len(big)) || stored.ID != cref.ID || stored.Size != cref.Size {
		t.Fatalf("Uploader.PutChunk = %s/%d, %v; want CSize %d", stored, stored.CSize, err, len(big))
	}
}

// TestBootRequestBounded: the boot endpoint takes no credential, so a
// request with any field past its limit is refused with 400 naming it,
// and nothing of it is stored.
func TestBootRequestBounded(t *testing.T) {
	e := newEnv(t)
	e.publish()
	disks := make([]identity.Disk, 5000)
	for i := range disks {
		disks[i] = identity.Disk{Name: fmt.Sprintf("sd%d", i), SizeBytes: 1 << 40, Model: strings.Repeat("m", 128)}
	}
	tests := []struct {
		name string
		req  registry.BootRequest
		want string
	}{
		{"850 KiB of disks", registry.BootRequest{Profile: identity.Profile{Disks: disks}}, "boot request: profile: 5000 disks, limit 256"},
		{"long cpu model", registry.BootRequest{Profile: identity.Profile{CPUModel: strings.Repeat("x", 100000)}}, "boot request: profile: cpu_model is 100000 bytes, limit 128"},
		{"long disk model", registry.BootRequest{Profile: identity.Profile{Disks: []identity.Disk{{Name: "sda", Model: strings.Repeat("x", 129)}}}}, "profile: disk 0: model is 129 bytes"},
		{"long agent", registry.BootRequest{Agent: strings.Repeat("a", 500)}, "boot request: agent is 500 bytes, limit 128"},
		{"bad channel", registry.BootRequest{Channel: "../x"}, `boot request: release: channel "../x"`},
	}
	for _, tt := range tests {
		tt.req.Protocol, tt.req.NodeID, tt.req.Farm = registry.Protocol, "n1", "demo"
		b, err := json.Marshal(tt.req)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > registry.MaxBodySize {
			t.Fatalf("%s: %d bytes is over the body limit; the test would not reach Validate", tt.name, len(b))
		}
		a := e.do("POST", "/v1/boot", asJSON, b)
		if a.code != 400 || !strings.Contains(errorOf(a), tt.want) {
			t.Errorf("%s: HTTP %d %s, want 400 %q", tt.name, a.code, a.body, tt.want)
		}
	}
	e.must(e.do("GET", "/v1/admin/nodes/n1", asAdmin, nil), 404)
	if n, err := e.srv.DB.NodeCount(); n != 0 || err != nil {
		t.Fatalf("refused boots left %d node records (%v)", n, err)
	}
	// The same request within the limits boots and is stored as sent.
	disks = disks[:identity.MaxDisks]
	b, _ := json.Marshal(registry.BootRequest{Protocol: registry.Protocol, NodeID: "n1", Farm: "demo", Profile: identity.Profile{Disks: disks}})
	e.must(e.do("POST", "/v1/boot", asJSON, b), 200)
	var node records.Node
	json.Unmarshal([]byte(e.must(e.do("GET", "/v1/admin/nodes/n1", asAdmin, nil), 200).body), &node)
	if len(node.Profile.Disks) != identity.MaxDisks {
		t.Fatalf("stored %d disks, want %d", len(node.Profile.Disks), identity.MaxDisks)
	}
}

// contentOf is a Chunk result as plain bytes.
func contentOf(v flist.Verified, err error) ([]byte, error) { return v.Bytes(), err }

// With MirrorsFirst the node is told to try the mirrors before this
// server's own store.
func TestMirrorsFirst(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.MirrorsFirst = true })
	_, id := e.build()
	e.must(e.do("POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"demo","channel":"stable"}`)), 201)
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(1, id, time.Hour)), 201)
	a := e.must(e.do("POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"n1","farm":"demo"}`)), 200)
	var resp registry.BootResponse
	if err := registry.DecodeStrict([]byte(a.body), &resp); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.Stores, []string{"https://mirror.example/store", e.ts.URL + "/store"}) {
		t.Fatalf("stores %q, want the mirror first", resp.Stores)
	}
}

// TestUploadBothHashes: a tree built as a version-2 and a version-3 flist
// through the admin store API (store.Uploader names each chunk's hash in
// X-Zeroboot-Hash) is stored whole under each, and every chunk the store
// serves verifies under its flist's hash.
func TestUploadBothHashes(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "data"), bytes.Repeat([]byte("blake3 or sha256 "), 20000), 0o644); err != nil {
		t.Fatal(err)
	}
	up := &store.Uploader{URL: e.ts.URL, Token: token, Client: e.hc}
	for _, v := range []int{flist.VersionPacked, flist.VersionBLAKE3} {
		f, err := (&flist.Builder{ChunkSize: 64 << 10, Sink: up, Version: v}).BuildDir(context.Background(), dir)
		if err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		enc, err := f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		id, err := up.PutFlist(enc)
		if err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
		e.must(e.do("GET", "/store/"+flist.FlistName(id), nil, nil), 200)
		for _, c := range f.Fetches() {
			a := e.must(e.do("GET", "/store/"+flist.ChunkName(c.ID), nil, nil), 200)
			if _, err := flist.OpenChunk(c, []byte(a.body), nil); err != nil || c.Hash != f.Hash {
				t.Errorf("version %d: served %s (flist's hash %s): %v", v, c, f.Hash, err)
			}
		}
	}
}
