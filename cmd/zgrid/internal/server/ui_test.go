package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

const viewerToken = "fedcba9876543210"

// browser is a client of the explorer: it keeps cookies by hand and does
// not follow redirects, so that tests see both.
type browser struct {
	e       *env
	hc      *http.Client
	cookies map[string]*http.Cookie
	last    *http.Response
}

func newBrowser(e *env) *browser {
	hc := *e.hc
	hc.Jar = nil
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{e: e, hc: &hc, cookies: map[string]*http.Cookie{}}
}

func (b *browser) do(method, path string, form url.Values) answer {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.ts.URL+path, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range b.cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
	b.last = resp
	return answer{resp.StatusCode, string(raw), resp.Header}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`)

// csrfOf is the CSRF token in a page's first form.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field in:\n%s", page)
	}
	return m[1]
}

// login fetches the form and posts tok with the form's CSRF token.
func (b *browser) login(t *testing.T, tok string) answer {
	t.Helper()
	form := b.e.must(b.do("GET", "/ui/login", nil), 200)
	return b.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, form.body)}, "token": {tok}})
}

func withViewer(s *Server) { s.ViewerToken = viewerToken }

func TestUILogin(t *testing.T) {
	e := newEnv(t, withViewer)
	for _, tt := range []struct {
		name, token string
		code        int
		session     bool
	}{
		{"admin token", token, 303, true},
		{"viewer token", viewerToken, 303, true},
		{"wrong token", "0123456789abcdeX", 401, false},
		{"empty token", "", 401, false},
	} {
		b := newBrowser(e)
		a := b.login(t, tt.token)
		c, got := b.cookies[sessionCookie]
		if a.code != tt.code || got != tt.session {
			t.Errorf("%s: HTTP %d, session cookie %v; want %d, %v", tt.name, a.code, got, tt.code, tt.session)
			continue
		}
		if !tt.session {
			continue
		}
		if loc := a.hdr.Get("Location"); loc != "/ui/" {
			t.Errorf("%s: redirected to %q, want /ui/", tt.name, loc)
		}
		if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" || c.MaxAge <= 0 || len(c.Value) != 64 {
			t.Errorf("%s: session cookie %+v", tt.name, c)
		}
	}
}

func TestUILoginNeedsCSRF(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		name   string
		cookie bool
		field  string
	}{
		{"no cookie, no field", false, ""},
		{"cookie, no field", true, ""},
		{"cookie, other field", true, strings.Repeat("ab", 32)},
	} {
		b := newBrowser(e)
		if tt.cookie {
			e.must(b.do("GET", "/ui/login", nil), 200)
		}
		a := b.do("POST", "/ui/login", url.Values{"csrf": {tt.field}, "token": {token}})
		if _, ok := b.cookies[sessionCookie]; a.code != 403 || ok {
			t.Errorf("%s: HTTP %d, session %v; want 403 and none", tt.name, a.code, ok)
		}
	}
}

func TestUIRedirectsWithoutSession(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct{ method, path string }{
		{"GET", "/ui/"},
		{"GET", "/ui/nodes/n1"},
		{"POST", "/ui/nodes/n1/approve"},
		{"POST", "/ui/logout"},
	} {
		b := newBrowser(e)
		b.cookies[sessionCookie] = &http.Cookie{Name: sessionCookie, Value: strings.Repeat("0", 64)}
		a := b.do(tt.method, tt.path, url.Values{})
		if a.code != 303 || a.hdr.Get("Location") != "/ui/login" {
			t.Errorf("%s %s: HTTP %d to %q, want 303 to /ui/login", tt.method, tt.path, a.code, a.hdr.Get("Location"))
		}
	}
}

// fleet is a ready node a1, a failed node z9 whose timeline has a step
// named like a script, and p1 held for approval.
func fleet(t *testing.T, e *env) {
	t.Helper()
	e.publish()
	if _, err := e.srv.CreateFarm(records.Farm{Name: "held", Channel: "stable", Enroll: records.EnrollApproval}); err != nil {
		t.Fatal(err)
	}
	report := func(rep registry.StatusReport) {
		t.Helper()
		b, _ := json.Marshal(rep)
		e.must(e.do("POST", "/v1/status", asJSON, b), 204)
	}
	report(registry.StatusReport{NodeID: "a1", Source: "core0", State: "ready", Token: e.bootNode("a1")})
	report(registry.StatusReport{NodeID: "z9", Source: "pid1", State: "failed", Reason: "mount: <b>no space</b>", Token: e.bootNode("z9"),
		Timeline: []timeline.Step{{Name: "modules", StartMS: 0, EndMS: 400}, {Name: "<script>alert(1)</script>", StartMS: 400, EndMS: 520}, {Name: "net", StartMS: 520, EndMS: 640, Error: "no link"}}})
	e.must(e.do("POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"p1","farm":"held"}`)), 409)
}

func TestUIOverview(t *testing.T) {
	e := newEnv(t)
	fleet(t, e)
	b := newBrowser(e)
	e.must(b.login(t, token), 303)
	page := e.must(b.do("GET", "/ui/", nil), 200).body
	for _, want := range []string{"<td>demo</td><td>stable</td>", "<td>held</td>", "approval", `class="current">current`, "mount: &lt;b&gt;no space&lt;/b&gt;", `href="/ui/nodes/p1"`} {
		if !strings.Contains(page, want) {
			t.Errorf("overview lacks %q:\n%s", want, page)
		}
	}
	failed, pending, ready := strings.Index(page, `href="/ui/nodes/z9"`), strings.Index(page, `href="/ui/nodes/p1"`), strings.Index(page, `href="/ui/nodes/a1"`)
	if failed < 0 || !(failed < pending && pending < ready) {
		t.Errorf("node order: failed at %d, pending at %d, ready at %d; want failed first, ready last", failed, pending, ready)
	}
}

func TestUINodeTimeline(t *testing.T) {
	e := newEnv(t)
	fleet(t, e)
	b := newBrowser(e)
	e.must(b.login(t, token), 303)
	page := e.must(b.do("GET", "/ui/nodes/z9", nil), 200).body
	if strings.Count(page, "<svg") != 1 || strings.Count(page, "<rect") != 3 {
		t.Errorf("node page: %d <svg>, %d <rect>, want 1 and 3 (one per step):\n%s", strings.Count(page, "<svg"), strings.Count(page, "<rect"), page)
	}
	if strings.Contains(page, "<script") || !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("step name not escaped:\n%s", page)
	}
	e.must(b.do("GET", "/ui/nodes/nobody", nil), 404)
	e.must(b.do("GET", "/ui/nodes/..%2fx", nil), 400)
}

// TestUINodeActions: a node page's forms (approve a held node, deny a
// ready one) work for an admin with the session's CSRF token, and for
// nobody else.
func TestUINodeActions(t *testing.T) {
	for _, act := range []struct {
		node, action string
		done         func(records.Node) bool
	}{
		{"p1", "approve", func(n records.Node) bool { return n.Identity.Approved }},
		{"a1", "deny", func(n records.Node) bool { return n.Identity.Denied }},
	} {
		t.Run(act.action, func(t *testing.T) {
			e := newEnv(t, withViewer)
			fleet(t, e)
			admin, viewer := newBrowser(e), newBrowser(e)
			e.must(admin.login(t, token), 303)
			e.must(viewer.login(t, viewerToken), 303)
			path := "/ui/nodes/" + act.node
			adminPage := e.must(admin.do("GET", path, nil), 200).body
			if !strings.Contains(adminPage, `action="`+path+"/"+act.action+`"`) {
				t.Errorf("the admin is not offered the %s form:\n%s", act.action, adminPage)
			}
			viewerPage := e.must(viewer.do("GET", path, nil), 200).body
			if strings.Contains(viewerPage, `action="`+path+"/") {
				t.Errorf("a viewer is offered a node form:\n%s", viewerPage)
			}
			for _, tt := range []struct {
				name string
				b    *browser
				csrf string
				code int
			}{
				{"admin without CSRF", admin, "", 403},
				{"admin with another session's CSRF", admin, csrfOf(t, viewerPage), 403},
				{"viewer with its CSRF", viewer, csrfOf(t, viewerPage), 403},
			} {
				if a := tt.b.do("POST", path+"/"+act.action, url.Values{"csrf": {tt.csrf}}); a.code != tt.code {
					t.Errorf("%s: HTTP %d, want %d", tt.name, a.code, tt.code)
				}
				if act.done(e.nodeRecord(act.node)) {
					t.Fatalf("%s: node %s done", tt.name, act.action)
				}
			}
			a := e.must(admin.do("POST", path+"/"+act.action, url.Values{"csrf": {csrfOf(t, adminPage)}}), 303)
			if loc := a.hdr.Get("Location"); loc != path || !act.done(e.nodeRecord(act.node)) {
				t.Errorf("%s: redirected to %q, done %v", act.action, loc, act.done(e.nodeRecord(act.node)))
			}
		})
	}
}

// TestUIDenied: a denied node is listed last, shown as denied, and its
// page offers approve rather than deny.
func TestUIDenied(t *testing.T) {
	e := newEnv(t)
	fleet(t, e)
	if _, err := e.srv.Deny("z9"); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(e)
	e.must(b.login(t, token), 303)
	page := e.must(b.do("GET", "/ui/", nil), 200).body
	if ready, denied := strings.Index(page, `href="/ui/nodes/a1"`), strings.Index(page, `href="/ui/nodes/z9"`); ready < 0 || denied < ready {
		t.Errorf("node order: ready at %d, denied at %d; want denied last", ready, denied)
	}
	node := e.must(b.do("GET", "/ui/nodes/z9", nil), 200).body
	for _, want := range []string{`class="denied">denied`, ", denied", `action="/ui/nodes/z9/approve"`} {
		if !strings.Contains(node, want) {
			t.Errorf("denied node page lacks %q:\n%s", want, node)
		}
	}
	if strings.Contains(node, "/deny") {
		t.Errorf("a denied node's page offers deny:\n%s", node)
	}
}

func TestUIViewerViews(t *testing.T) {
	e := newEnv(t, withViewer)
	fleet(t, e)
	b := newBrowser(e)
	e.must(b.login(t, viewerToken), 303)
	for _, p := range []string{"/ui/", "/ui/nodes/a1", "/ui/nodes/z9"} {
		e.must(b.do("GET", p, nil), 200)
	}
}

func TestUILogout(t *testing.T) {
	e := newEnv(t)
	b := newBrowser(e)
	e.must(b.login(t, token), 303)
	sess := b.cookies[sessionCookie]
	csrf := csrfOf(t, e.must(b.do("GET", "/ui/", nil), 200).body)
	e.must(b.do("POST", "/ui/logout", url.Values{"csrf": {csrf}}), 303)
	if _, ok := b.cookies[sessionCookie]; ok {
		t.Error("logout left the session cookie")
	}
	// The old session ID no longer works, cookie or not.
	b.cookies[sessionCookie] = sess
	if a := b.do("GET", "/ui/", nil); a.code != 303 {
		t.Errorf("after logout: HTTP %d, want 303", a.code)
	}
}

func TestUIHeaders(t *testing.T) {
	e := newEnv(t)
	b := newBrowser(e)
	want := map[string]string{
		"Content-Security-Policy": uiCSP,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "same-origin",
		"Cache-Control":           "no-store",
	}
	check := func(what string, a answer) {
		t.Helper()
		for k, v := range want {
			if got := a.hdr.Get(k); got != v {
				t.Errorf("%s: %s %q, want %q", what, k, got, v)
			}
		}
	}
	check("login form", b.do("GET", "/ui/login", nil))
	check("redirect", b.do("GET", "/ui/", nil))
	check("overview", e.must(b.login(t, token), 303))
	a := e.must(b.do("GET", "/ui/", nil), 200)
	check("overview", a)
	if ct := a.hdr.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if strings.Contains(a.body, "<script") {
		t.Errorf("a page with a script:\n%s", a.body)
	}
}

// A node's page lists its services, and the last output of one that is
// not ready, escaped.
func TestUINodeServices(t *testing.T) {
	e := newEnv(t)
	e.publish()
	rep := registry.StatusReport{NodeID: "s1", Source: "core0", State: "failed", Reason: "service api crash-looping: exited 1", Token: e.bootNode("s1"),
		Services: []registry.ServiceState{
			{Name: "db", State: "ready", Output: []string{"db listening"}},
			{Name: "api", State: "crash-looping", Restarts: 4, Reason: "exited 1", Output: []string{"bind: <address> in use"}},
		}}
	body, _ := json.Marshal(rep)
	e.must(e.do("POST", "/v1/status", asJSON, body), 204)
	b := newBrowser(e)
	e.must(b.login(t, token), 303)
	page := e.must(b.do("GET", "/ui/nodes/s1", nil), 200).body
	for _, want := range []string{"<h2>Services</h2>", `<td>api</td><td class="crash-looping">crash-looping</td><td>4</td>`, "Last output of api", "bind: &lt;address&gt; in use"} {
		if !strings.Contains(page, want) {
			t.Errorf("node page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "db listening") {
		t.Errorf("node page shows a ready service's output:\n%s", page)
	}
}

// The shares before PID 1 (negative times, pkg/boottime) are accepted as
// any step, drawn left of PID 1's start in grey, and PID 1's steps after
// it, all inside the SVG.
func TestUITimelineBeforePID1(t *testing.T) {
	steps := []timeline.Step{{Name: "firmware (TSC)", StartMS: -3000, EndMS: -1000}, {Name: "kernel", StartMS: -1000, EndMS: 0},
		{Name: "mount", StartMS: 2, EndMS: 12}, {Name: "network", StartMS: 12, EndMS: 1000}}
	tl := drawTimeline(steps)
	if tl.TotalMS != 4000 || tl.BeforeMS != 3000 {
		t.Errorf("total %v ms, before PID 1 %v ms: want the span from the firmware's start, 4000 and 3000", tl.TotalMS, tl.BeforeMS)
	}
	scale := timelineWidth / tl.TotalMS
	if tl.ZeroX != timelineLabels+3000*scale {
		t.Errorf("PID 1's start at x %v, want %v", tl.ZeroX, timelineLabels+3000*scale)
	}
	for i, b := range tl.Bars {
		if b.X < timelineLabels || b.X+b.W > timelineLabels+timelineWidth+1e-9 {
			t.Errorf("bar %s from %v to %v outside the bars' area", b.Name, b.X, b.X+b.W)
		}
		if b.Before != (i < 2) || (b.Before && b.X+b.W > tl.ZeroX+1e-9) {
			t.Errorf("bar %s: before %v, ends at %v, PID 1 at %v", b.Name, b.Before, b.X+b.W, tl.ZeroX)
		}
	}
	if old := drawTimeline(steps[2:]); old.BeforeMS != 0 || old.ZeroX != timelineLabels || old.Bars[0].X != timelineLabels+2*timelineWidth/1000 {
		t.Errorf("a timeline from PID 1 on moved: %+v", old)
	}

	e := newEnv(t)
	e.publish()
	b, _ := json.Marshal(registry.StatusReport{NodeID: "b2", Source: "pid1", State: "booting", Token: e.bootNode("b2"), Timeline: steps})
	e.must(e.do("POST", "/v1/status", asJSON, b), 204)
	if got := e.nodeRecord("b2").Timeline; len(got) != 4 || got[0] != steps[0] {
		t.Fatalf("registry kept %v", got)
	}
	br := newBrowser(e)
	e.must(br.login(t, token), 303)
	page := e.must(br.do("GET", "/ui/nodes/b2", nil), 200).body
	for _, want := range []string{`fill="#8c8c8c"`, "<title>PID 1 started</title>", "4000 ms in all, 3000 ms of it before PID 1 started", "firmware (TSC)"} {
		if !strings.Contains(page, want) {
			t.Errorf("node page lacks %q:\n%s", want, page)
		}
	}
	if strings.Count(page, "<rect") != 4 {
		t.Errorf("%d bars, want 4", strings.Count(page, "<rect"))
	}
}
