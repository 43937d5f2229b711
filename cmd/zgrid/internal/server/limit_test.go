package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

// fakeToken has a boot token's shape but was never issued.
const fakeToken = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// clock is a fake clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// publish makes farm demo follow channel stable with one release.
func (e *env) publish() {
	e.t.Helper()
	_, id := e.build()
	e.must(e.do("POST", "/v1/admin/farms", asAdmin, []byte(`{"name":"demo","channel":"stable"}`)), 201)
	e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(1, id, time.Hour)), 201)
}

// bootNode boots id on farm demo and returns the answer's token.
func (e *env) bootNode(id string) string {
	e.t.Helper()
	a := e.must(e.do("POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"`+id+`","farm":"demo"}`)), 200)
	var resp registry.BootResponse
	if err := registry.DecodeStrict([]byte(a.body), &resp); err != nil {
		e.t.Fatal(err)
	}
	if err := registry.CheckToken(resp.Token); err != nil {
		e.t.Fatalf("boot of %s: token %q: %v", id, resp.Token, err)
	}
	return resp.Token
}

func (e *env) status(id, token string) answer {
	e.t.Helper()
	b, _ := json.Marshal(registry.StatusReport{NodeID: id, Source: "core0", State: "ready", Token: token})
	return e.do("POST", "/v1/status", asJSON, b)
}

func errorOf(a answer) string {
	var msg registry.Error
	json.Unmarshal([]byte(a.body), &msg)
	return msg.Error
}

// TestStatusNeedsBootToken: only a token from one of the node's last
// four boot answers lets a report through.
func TestStatusNeedsBootToken(t *testing.T) {
	e := newEnv(t)
	e.publish()
	first := e.bootNode("n1")
	other := e.bootNode("n2")
	if first == other {
		t.Fatal("two boots got the same token")
	}
	e.must(e.status("n1", first), 204)

	for _, tc := range []struct {
		name, token string
		code        int
		want        string
	}{
		{"missing", "", 401, "status for node n1: boot token missing"},
		{"never issued", fakeToken, 403, "status for node n1: boot token does not match"},
		{"another node's", other, 403, "status for node n1: boot token does not match"},
		{"malformed", first[:60], 400, "boot token is 60 characters"},
	} {
		if a := e.status("n1", tc.token); a.code != tc.code || !strings.Contains(errorOf(a), tc.want) {
			t.Errorf("%s token: HTTP %d %s, want %d %q", tc.name, a.code, a.body, tc.code, tc.want)
		}
	}

	// Reboots: the last four tokens stay valid, the fifth-newest does not.
	tokens := []string{first}
	for range 4 {
		tokens = append(tokens, e.bootNode("n1"))
	}
	if a := e.status("n1", tokens[0]); a.code != 403 {
		t.Errorf("token of the 5th-newest boot: HTTP %d %s, want 403", a.code, a.body)
	}
	for _, tok := range tokens[1:] {
		e.must(e.status("n1", tok), 204)
	}
	var node records.Node
	json.Unmarshal([]byte(e.must(e.do("GET", "/v1/admin/nodes/n1", asAdmin, nil), 200).body), &node)
	if node.State != registry.StateReady || node.Source != registry.SourceCore0 {
		t.Fatalf("node after accepted reports: %+v", node)
	}
	if strings.Contains(e.must(e.do("GET", "/v1/admin/nodes/n1", asAdmin, nil), 200).body, tokens[4]) {
		t.Fatal("admin API shows a boot token")
	}
}

// TestRateLimit: past the burst a client gets 429 with Retry-After on the
// node endpoints, and is served again once the bucket refills; admin and
// store endpoints are not limited.
func TestRateLimit(t *testing.T) {
	c := newClock()
	e := newEnv(t, func(s *Server) { s.Rate, s.Burst, s.Now = 2, 3, c.Now })
	boot := []byte(`{"protocol":2,"node_id":"n1","farm":"nope"}`)
	for range 3 {
		e.must(e.do("POST", "/v1/boot", asJSON, boot), 404) // reaches the handler
	}
	for _, tc := range []struct {
		path  string
		after time.Duration
		retry string
	}{
		{"/v1/boot", 0, "1"},
		{"/v1/status", 0, "1"}, // one bucket for both endpoints
		{"/v1/boot", 250 * time.Millisecond, "1"},
	} {
		c.advance(tc.after)
		a := e.must(e.do("POST", tc.path, asJSON, boot), 429)
		if a.hdr.Get("Retry-After") != tc.retry || !strings.Contains(errorOf(a), "rate limit: client 127.0.0.1 is over 2 requests/s (burst 3)") {
			t.Errorf("%s: Retry-After %q, body %s", tc.path, a.hdr.Get("Retry-After"), a.body)
		}
	}
	for range 20 {
		e.must(e.do("GET", "/v1/admin/farms", asAdmin, nil), 200)
		e.must(e.do("GET", "/healthz", nil, nil), 200)
	}
	c.advance(250 * time.Millisecond) // half a second since the bucket ran dry: one token
	e.must(e.do("POST", "/v1/boot", asJSON, boot), 404)
	e.must(e.do("POST", "/v1/boot", asJSON, boot), 429)
	m := e.must(e.do("GET", "/metrics", nil, nil), 200).body
	for _, want := range []string{"zgrid_rate_limited_total 4\n", "zgrid_rate_limit_clients 1\n", `zgrid_http_requests_total{code="429",method="POST",route="/v1/boot"} 3`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
}

func TestRateLimitOff(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.Rate = -1 })
	for range DefaultBurst + 5 {
		e.must(e.do("POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"n1","farm":"nope"}`)), 404)
	}
}

// TestLimiterBound: however many addresses come, the limiter keeps at most
// max buckets; idle (refilled) buckets go first, so a drained busy client
// keeps its bucket and stays limited.
func TestLimiterBound(t *testing.T) {
	c := newClock()
	l := newLimiter(1, 2, 8, c.Now)
	for i := range 1000 {
		if ok, _ := l.allow(fmt.Sprint("198.51.100.", i%250, "/", i)); !ok {
			t.Fatalf("new client %d refused", i)
		}
		if n := l.size(); n > 8 {
			t.Fatalf("%d buckets after %d clients, limit 8", n, i+1)
		}
	}

	l = newLimiter(1, 2, 8, c.Now)
	for i := range 7 {
		l.allow(fmt.Sprint("192.0.2.", i))
	}
	c.advance(2 * time.Second) // those seven are full again
	l.allow("203.0.113.1")
	l.allow("203.0.113.1")
	if ok, _ := l.allow("203.0.113.1"); ok {
		t.Fatal("third request within the burst of 2 allowed")
	}
	l.allow("203.0.113.2") // the map is full: the idle seven go
	if n := l.size(); n != 2 {
		t.Fatalf("%d buckets after the sweep, want 2 (the busy client and the new one)", n)
	}
	if ok, wait := l.allow("203.0.113.1"); ok || wait != time.Second {
		t.Fatalf("busy client after the sweep: allowed=%v wait=%v, want refused for 1s", ok, wait)
	}
}

func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7:1234", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:80", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::99]:443", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:443", "fe80::/64"},
		{"pipe", "pipe"},
	} {
		if got := clientKey(tc.in); got != tc.want {
			t.Errorf("clientKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestNodeCap: at MaxNodes a new node ID is refused with 503 and no
// record; known nodes still boot.
func TestNodeCap(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.MaxNodes = 2 })
	e.publish()
	e.bootNode("a")
	e.bootNode("b")
	a := e.must(e.do("POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"c","farm":"demo"}`)), 503)
	if msg := errorOf(a); !strings.Contains(msg, "node c is new and the registry holds 2 nodes") || !strings.Contains(msg, "--max-nodes 2") {
		t.Errorf("503 reason %q", msg)
	}
	e.must(e.do("GET", "/v1/admin/nodes/c", asAdmin, nil), 404)
	tok := e.bootNode("a")
	e.must(e.status("a", tok), 204)
}

// TestStatusServices: Core-0's per-service states are kept with the node
// until its next boot, and a malformed one is refused by name.
func TestStatusServices(t *testing.T) {
	e := newEnv(t)
	e.publish()
	tok := e.bootNode("n1")
	rep := registry.StatusReport{NodeID: "n1", Source: "core0", State: "failed", Reason: "service api: crash-looping", Token: tok,
		Services: []registry.ServiceState{
			{Name: "db", State: "ready", Restarts: 0},
			{Name: "api", State: "crash-looping", Reason: "exit status 1", Restarts: 5, Output: []string{"api: cannot bind :8080"}},
		}}
	b, _ := json.Marshal(rep)
	e.must(e.do("POST", "/v1/status", asJSON, b), 204)
	var node records.Node
	json.Unmarshal([]byte(e.must(e.do("GET", "/v1/admin/nodes/n1", asAdmin, nil), 200).body), &node)
	if len(node.Services) != 2 || node.Services[1].State != "crash-looping" || node.Services[1].Output[0] != "api: cannot bind :8080" {
		t.Fatalf("node services after the report: %+v", node.Services)
	}
	for _, tc := range []struct {
		edit func(s *registry.ServiceState)
		want string
	}{
		{func(s *registry.ServiceState) { s.State = "dancing" }, `service db: state "dancing"`},
		{func(s *registry.ServiceState) { s.Name = "DB" }, "service name"},
		{func(s *registry.ServiceState) { s.Output = make([]string, release.MaxServiceOutput+1) }, "41 output lines"},
		{func(s *registry.ServiceState) { s.Output = []string{strings.Repeat("x", release.MaxServiceLine+1)} }, "output line 0 is 513 bytes"},
	} {
		bad := rep
		bad.Services = []registry.ServiceState{{Name: "db", State: "ready"}}
		tc.edit(&bad.Services[0])
		b, _ := json.Marshal(bad)
		if a := e.do("POST", "/v1/status", asJSON, b); a.code != 400 || !strings.Contains(errorOf(a), tc.want) {
			t.Errorf("HTTP %d %s, want 400 %q", a.code, a.body, tc.want)
		}
	}
	e.bootNode("n1")
	node = records.Node{}
	json.Unmarshal([]byte(e.must(e.do("GET", "/v1/admin/nodes/n1", asAdmin, nil), 200).body), &node)
	if node.State != registry.StateBooting || node.Services != nil {
		t.Fatalf("services survived a new boot: %+v", node.Services)
	}
}

// TestDenyNode: through the admin API, a denied node's boot requests and
// its current boot's reports are refused naming the way back, the record
// stays, and approve lets it boot again.
func TestDenyNode(t *testing.T) {
	e := newEnv(t)
	e.publish()
	tok := e.bootNode("n1")
	e.must(e.do("POST", "/v1/admin/nodes/n1/deny", nil, nil), 401)
	var n records.Node
	json.Unmarshal([]byte(e.must(e.do("POST", "/v1/admin/nodes/n1/deny", asAdmin, nil), 200).body), &n)
	if n.State != registry.StateDenied || !n.Identity.Denied {
		t.Fatalf("deny answered %+v", n)
	}
	e.must(e.do("POST", "/v1/admin/nodes/nope/deny", asAdmin, nil), 404)
	e.must(e.do("POST", "/v1/admin/nodes/"+strings.Repeat("x", 300)+"/deny", asAdmin, nil), 400)

	boot := e.do("POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"n1","farm":"demo"}`))
	if boot.code != 403 || !strings.Contains(errorOf(boot), "node n1 is denied by the operator") || !strings.Contains(errorOf(boot), "zgrid node approve n1") {
		t.Errorf("boot of a denied node: HTTP %d %s", boot.code, boot.body)
	}
	if a := e.status("n1", tok); a.code != 403 || !strings.Contains(errorOf(a), "status for node n1: denied by the operator") {
		t.Errorf("report of a denied node: HTTP %d %s", a.code, a.body)
	}
	if n := e.nodeRecord("n1"); n.State != registry.StateDenied || n.LastSeen.IsZero() {
		t.Errorf("refused requests changed the denied node: %+v", n)
	}

	n = records.Node{} // denied is omitted once false
	json.Unmarshal([]byte(e.must(e.do("POST", "/v1/admin/nodes/n1/approve", asAdmin, nil), 200).body), &n)
	if n.State != registry.StatePending || n.Identity.Denied || !n.Identity.Approved {
		t.Fatalf("approve of a denied node answered %+v", n)
	}
	e.must(e.status("n1", e.bootNode("n1")), 204)
}

// TestBootHistory: a node's record keeps its earlier boots, which GET of
// the node shows and the list leaves out, and the explorer lists with
// the node's text escaped.
func TestBootHistory(t *testing.T) {
	e := newEnv(t)
	e.publish()
	b, _ := json.Marshal(registry.StatusReport{NodeID: "n1", Source: "pid1", State: "failed", Reason: "mount: <b>full</b>", Token: e.bootNode("n1"),
		Timeline: []timeline.Step{{Name: "net", StartMS: 10, EndMS: 420}}})
	e.must(e.do("POST", "/v1/status", asJSON, b), 204)
	e.bootNode("n1")
	var n records.Node
	json.Unmarshal([]byte(e.must(e.do("GET", "/v1/admin/nodes/n1", asAdmin, nil), 200).body), &n)
	if len(n.Boots) != 1 || n.Boots[0].State != registry.StateFailed || n.Boots[0].Reason != "mount: <b>full</b>" || n.Boots[0].Reached() != 420 || n.State != registry.StateBooting {
		t.Fatalf("node after two boots: state %s, boots %+v", n.State, n.Boots)
	}
	if list := e.must(e.do("GET", "/v1/admin/nodes", asAdmin, nil), 200).body; strings.Contains(list, `"boots"`) || !strings.Contains(list, `"boot_at"`) {
		t.Errorf("node list: %s; want no boots, with boot_at", list)
	}
	br := newBrowser(e)
	e.must(br.login(t, token), 303)
	page := e.must(br.do("GET", "/ui/nodes/n1", nil), 200).body
	for _, want := range []string{"<h2>Earlier boots</h2>", `<td class="failed">failed (from pid1)</td><td>420 ms</td><td>mount: &lt;b&gt;full&lt;/b&gt;</td>`, "<th>Booted</th>"} {
		if !strings.Contains(page, want) {
			t.Errorf("node page lacks %q:\n%s", want, page)
		}
	}
}
