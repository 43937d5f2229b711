package server

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/pgdb"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/internal/testenv"
	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// replicas are two servers on one PostgreSQL database, each with its own
// pool, as two zgrid serve --postgres replicas: one trust (the same TUF)
// and one store, as replicas copied from one DIR.
func replicas(t *testing.T, opts ...func(*Server)) (a, b *env) {
	t.Helper()
	pg := testenv.Postgres(t, "fsync=off") // the records need not survive the test
	u := pg.SocketURL(pg.NewDatabase(t))
	open := func() *pgdb.DB {
		c, err := pgdb.Config(u, "")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		d, err := pgdb.Open(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	a = newEnvOn(t, open(), opts...)
	b = newEnvOn(t, open(), append(opts, func(s *Server) { s.TUF, s.Store = a.srv.TUF, a.srv.Store })...)
	return a, b
}

// TestReplicasShareNonces: a nonce from A's /v1/challenge is good at B,
// once, for its node only; a boot answer's nonce from A carries its
// expected events to B; of takers at both at once, one wins.
func TestReplicasShareNonces(t *testing.T) {
	a, b := replicas(t)
	node := identity.NodeID(identity.SourceTPM, strings.Repeat("ab", 34))
	challenge := func() string {
		t.Helper()
		ans := a.must(a.do("POST", "/v1/challenge", asJSON, []byte(`{"protocol":3,"node_id":"`+node+`"}`)), 200)
		var cr registry.ChallengeResponse
		if err := registry.DecodeStrict([]byte(ans.body), &cr); err != nil || len(cr.Nonce) != 2*registry.NonceSize {
			t.Fatalf("challenge answer %s: %v", ans.body, err)
		}
		return cr.Nonce
	}
	v := challenge()
	for _, tc := range []struct {
		name string
		at   *env
		node string
		want bool
	}{
		{"at B", b, node, true},
		{"again at B", b, node, false},
		{"again at A", a, node, false},
	} {
		if ok, err := tc.at.srv.useNonce(v, tc.node); ok != tc.want || err != nil {
			t.Errorf("nonce %s: %v, %v; want %v", tc.name, ok, err, tc.want)
		}
	}
	// Another node's use spends it too, as on one registry.
	v = challenge()
	if ok, err := b.srv.useNonce(v, "other"); ok || err != nil {
		t.Fatalf("nonce used by another node at B: %v, %v", ok, err)
	}
	if ok, _ := a.srv.useNonce(v, node); ok {
		t.Fatal("nonce good at A after another node spent it at B")
	}

	want := []measure.Event{measure.NewEvent(measure.TypeRelease, measure.ReleaseValue("stable", 7))}
	fv, err := a.srv.issueFinal(node, want)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.srv.useNonce(fv, node); ok {
		t.Fatal("a final nonce answered a challenge")
	}
	if fv, err = a.srv.issueFinal(node, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := b.srv.useFinal(fv, node)
	if !ok || err != nil || len(got) != 1 || got[0] != want[0] {
		t.Fatalf("final nonce at B: %+v, %v, %v; want %+v", got, ok, err, want)
	}

	v = challenge()
	var wg sync.WaitGroup
	wins := make([]bool, 8)
	for i := range wins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wins[i], _ = []*env{a, b}[i%2].srv.useNonce(v, node)
		}()
	}
	wg.Wait()
	won := 0
	for _, w := range wins {
		if w {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d uses at once at A and B won, want 1", won, len(wins))
	}
}

// TestReplicasShareSessions: an explorer login at A is one at B, CSRF
// token and all, and its logout at B ends it at A.
func TestReplicasShareSessions(t *testing.T) {
	a, b := replicas(t, withViewer)
	ba := newBrowser(a)
	if ans := ba.login(t, viewerToken); ans.code != 303 || ans.hdr.Get("Location") != "/ui/" {
		t.Fatalf("login at A: HTTP %d %s", ans.code, ans.hdr.Get("Location"))
	}
	bb := newBrowser(b)
	bb.cookies = ba.cookies
	page := b.must(bb.do("GET", "/ui/", nil), 200)
	if !strings.Contains(page.body, "viewer") {
		t.Fatalf("overview at B does not name the viewer role:\n%s", page.body)
	}
	csrf := csrfOf(t, page.body)
	if ans := bb.do("POST", "/ui/logout", url.Values{"csrf": {"0" + csrf[1:]}}); ans.code != http.StatusForbidden {
		t.Fatalf("logout at B with a wrong CSRF token: HTTP %d, want 403", ans.code)
	}
	sess := ba.cookies[sessionCookie]
	if ans := bb.do("POST", "/ui/logout", url.Values{"csrf": {csrf}}); ans.code != 303 || ans.hdr.Get("Location") != "/ui/login" {
		t.Fatalf("logout at B: HTTP %d %s", ans.code, ans.hdr.Get("Location"))
	}
	ba.cookies = map[string]*http.Cookie{sessionCookie: sess} // the old cookie, kept
	if ans := ba.do("GET", "/ui/", nil); ans.code != 303 || ans.hdr.Get("Location") != "/ui/login" {
		t.Fatalf("A after the logout at B: HTTP %d %s, want a redirect to the login", ans.code, ans.hdr.Get("Location"))
	}
}

// hop sends each request to the next replica of a list, then the last's
// turn over and over: a balancer without affinity.
type hop struct {
	base  http.RoundTripper
	mu    sync.Mutex
	hosts []string
	seen  []string // path@host of each request
}

func (h *hop) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	host := h.hosts[min(len(h.seen), len(h.hosts)-1)]
	h.seen = append(h.seen, r.URL.Path+"@"+host)
	h.mu.Unlock()
	r = r.Clone(r.Context())
	r.URL.Host, r.Host = host, host
	return h.base.RoundTrip(r)
}

// TestReplicasEnrollTPM: a TPM node whose every request lands at the
// other replica enrolls: A's challenges answer B's boots, B's credential
// is activated at A, and A's boot answer's nonce is redeemed at B.
func TestReplicasEnrollTPM(t *testing.T) {
	a, b := replicas(t)
	a.publish()
	n := newTNode(t, a, nil)
	ha, hb := strings.TrimPrefix(a.ts.URL, "https://"), strings.TrimPrefix(b.ts.URL, "https://")
	h := &hop{base: n.wire.base, hosts: []string{ha, hb, ha, hb, hb, ha, hb}}
	n.wire.base = h
	resp, err := n.boot(n.request("demo"))
	if err != nil {
		t.Fatalf("enrollment across replicas: %v (requests %q)", err, h.seen)
	}
	want := []string{"/v1/challenge@" + ha, "/v1/boot@" + hb, "/v1/challenge@" + ha, "/v1/boot@" + hb, "/v1/challenge@" + hb, "/v1/boot@" + ha}
	if strings.Join(h.seen, " ") != strings.Join(want, " ") {
		t.Fatalf("requests %q, want %q", h.seen, want)
	}
	if id := b.nodeRecord(n.id).Identity; !id.Bound || id.EKFingerprint != n.ekFingerprint() {
		t.Fatalf("record at B after enrollment: %+v", id)
	}
	n.report(n.handoff(a, resp))
	if last := h.seen[len(h.seen)-1]; last != "/v1/status@"+hb {
		t.Fatalf("report went to %s, want B", last)
	}
	if att := a.nodeRecord(n.id).Identity.Attestation; att == nil || att.State != records.AttestOK {
		t.Fatalf("attestation of the report at B of A's boot answer: %+v", att)
	}
}
