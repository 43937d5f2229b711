package registry

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
)

// tlsServer starts an httptest TLS 1.3 server and a client trusting only it.
func tlsServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *http.Client) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	hc, err := NewHTTPClient(ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv, hc
}

func bootOK(date time.Time) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req BootRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.URL.Path != "/v1/boot" {
			http.Error(w, "bad", 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Date", date.UTC().Format(http.TimeFormat))
		json.NewEncoder(w).Encode(BootResponse{NodeID: req.NodeID, Release: json.RawMessage(`{"payload":"eA=="}`), Stores: []string{"https://192.0.2.2:8443/store"}, Token: testToken})
	}
}

var fast = backoff.Policy{Base: time.Millisecond, Cap: 2 * time.Millisecond}

type report struct {
	url string
	err error
}

func TestBootFailsOverAndPassesDate(t *testing.T) {
	date := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	bad, _ := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(503)
		w.Write([]byte(`{"error":"database on fire"}`))
	})
	good, hc := tlsServer(t, bootOK(date))
	var mu sync.Mutex
	var reports []report
	var dates []time.Time
	c := &Client{
		URLs:    []string{"https://127.0.0.1:1", bad.URL, good.URL},
		HTTP:    hc,
		Backoff: fast,
		Report: func(n int, u string, err error, wait time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			reports = append(reports, report{u, err})
		},
		OnDate: func(t time.Time) { dates = append(dates, t) },
	}
	resp, err := c.Boot(context.Background(), BootRequest{NodeID: "n1", Farm: "f"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.NodeID != "n1" || resp.Stores[0] != "https://192.0.2.2:8443/store" || resp.Registry != good.URL {
		t.Fatalf("resp = %+v, want the answer of %s", resp, good.URL)
	}
	if len(reports) != 2 || reports[0].url != "https://127.0.0.1:1" || reports[1].url != bad.URL ||
		!strings.Contains(reports[1].err.Error(), "HTTP 503: database on fire") {
		t.Fatalf("reports = %+v", reports)
	}
	if len(dates) != 1 || !dates[0].Equal(date) {
		t.Fatalf("dates = %v, want [%v]", dates, date)
	}
}

func TestBootReportsServerReason(t *testing.T) {
	var calls int
	srv, hc := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls < 3 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			w.Write([]byte(`{"error":"farm f not found\u001b[2J"}`))
			return
		}
		bootOK(time.Now())(w, r)
	})
	var errs []string
	c := &Client{URLs: []string{srv.URL}, HTTP: hc, Backoff: fast,
		Report: func(n int, u string, err error, wait time.Duration) { errs = append(errs, err.Error()) }}
	if _, err := c.Boot(context.Background(), BootRequest{NodeID: "n1", Farm: "f"}); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 2 || !strings.Contains(errs[0], "HTTP 404: farm f not found?[2J") {
		t.Fatalf("errors = %q, want the reason with its escape character neutralised", errs)
	}
}

func TestBootRefusesGarbage(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)
	for _, tc := range []struct {
		name, ctype, body, want string
	}{
		{"content type", "text/html", `{"node_id":"n1","release":{},"stores":["https://x/store"]}`, "content type"},
		{"huge", "application/json", `{"node_id":"n1","release":"` + strings.Repeat("A", MaxBodySize) + `"}`, "exceeds"},
		{"deep nesting", "application/json", `{"node_id":"n1","stores":["https://x/store"],"release":` + deep + `}`, "max depth"},
		{"deep nesting small", "application/json", `{"node_id":"n1","stores":["https://x/store"],"extra":` + strings.Repeat("[", 11000) + strings.Repeat("]", 11000) + `}`, "decode JSON"},
		{"unknown field", "application/json", `{"node_id":"n1","release":{},"stores":["https://x/store"],"debug":true}`, "unknown field"},
		{"wrong node", "application/json", `{"node_id":"n2","release":{},"stores":["https://x/store"]}`, `registry answered for node "n2", we are "n1"`},
		{"trailing", "application/json", `{"node_id":"n1","release":{},"stores":["https://x/store"]} {}`, "trailing"},
		{"no release", "application/json", `{"node_id":"n1","stores":["https://x/store"]}`, "no release"},
		{"no stores", "application/json", `{"node_id":"n1","release":{}}`, "store URLs"},
		{"bad store", "application/json", `{"node_id":"n1","release":{},"stores":["file:///etc"]}`, "absolute http(s) URL"},
		{"not json", "application/json", `<html>`, "decode JSON"},
		{"no token", "application/json", `{"node_id":"n1","release":{},"stores":["https://x/store"]}`, "boot token missing"},
		{"bad token", "application/json", `{"node_id":"n1","release":{},"stores":["https://x/store"],"token":"` + strings.Repeat("Z", 64) + `"}`, "not a lower-case hex digit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, hc := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				w.Write([]byte(tc.body))
			})
			var got error
			ctx, cancel := context.WithCancel(context.Background())
			c := &Client{URLs: []string{srv.URL}, HTTP: hc, Backoff: fast,
				Report: func(int, string, error, time.Duration) {}}
			c.Report = func(n int, u string, err error, wait time.Duration) { got = err; cancel() }
			c.OnDate = func(time.Time) { t.Error("OnDate called for a refused answer") }
			if _, err := c.Boot(ctx, BootRequest{NodeID: "n1", Farm: "f"}); err == nil {
				t.Fatal("garbage accepted")
			}
			if got == nil || !strings.Contains(got.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", got, tc.want)
			}
		})
	}
}

func TestBootStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	c := &Client{URLs: []string{"https://127.0.0.1:1"}, HTTP: &http.Client{}, Backoff: fast}
	_, err := c.Boot(ctx, BootRequest{NodeID: "n1", Farm: "f"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("err = %v, want deadline with the last error", err)
	}
}

func TestStatusTriesEachURLOnce(t *testing.T) {
	var hits []string
	mk := func(name string, code int) *httptest.Server {
		srv, _ := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
			hits = append(hits, name)
			var rep StatusReport
			if err := DecodeStrict(mustRead(r), &rep); err != nil || rep.State != StateReady {
				code = 400
			}
			w.WriteHeader(code)
		})
		return srv
	}
	a, b := mk("a", 500), mk("b", 204)
	// Both httptest servers share the package's test certificate.
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Certificate().Raw})
	hc, err := NewHTTPClient(ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{URLs: []string{a.URL, b.URL}, HTTP: hc}
	rep := StatusReport{NodeID: "n1", Source: SourcePID1, State: StateReady, Token: testToken}
	if err := c.Status(context.Background(), rep); err != nil {
		t.Fatal(err)
	}
	if strings.Join(hits, ",") != "a,b" {
		t.Fatalf("hits = %v", hits)
	}
	hits = nil
	c.URLs = []string{a.URL, a.URL}
	err = c.Status(context.Background(), rep)
	if err == nil || !strings.Contains(err.Error(), "HTTP 500") || len(hits) != 2 {
		t.Fatalf("err = %v, hits = %v", err, hits)
	}
	if err := c.Status(context.Background(), StatusReport{NodeID: "n1", Source: "bios", State: StateReady, Token: testToken}); err == nil {
		t.Fatal("invalid report sent")
	}
}

func TestNewHTTPClient(t *testing.T) {
	if _, err := NewHTTPClient([]byte("not pem"), nil); err == nil {
		t.Fatal("garbage CA accepted")
	}
	// A client judging certificates by a clock far in the future refuses
	// the (then expired) server certificate.
	srv, _ := tlsServer(t, bootOK(time.Now()))
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	hc, _ := NewHTTPClient(ca, func() time.Time { return time.Now().Add(200 * 365 * 24 * time.Hour) })
	if _, err := hc.Get(srv.URL); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("err = %v, want certificate expired", err)
	}
	// TLS 1.2 only servers are refused.
	old := httptest.NewUnstartedServer(bootOK(time.Now()))
	old.TLS = &tls12
	old.StartTLS()
	defer old.Close()
	hc, _ = NewHTTPClient(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: old.Certificate().Raw}), nil)
	if _, err := hc.Get(old.URL); err == nil {
		t.Fatal("TLS 1.2 server accepted")
	}
}

func TestStatusValidate(t *testing.T) {
	for _, tc := range []struct {
		rep  StatusReport
		want string
	}{
		{StatusReport{Source: "pid1", State: "ready"}, "node_id missing"},
		{StatusReport{NodeID: "n", Source: "x", State: "ready"}, "source"},
		{StatusReport{NodeID: "n", Source: "pid1", State: "up"}, "state"},
		{StatusReport{NodeID: "n", Source: "pid1", State: "failed"}, "needs a reason"},
		{StatusReport{NodeID: "n", Source: "core0", State: "failed", Reason: strings.Repeat("x", MaxReasonLen+1)}, "reason is"},
		{StatusReport{NodeID: "n", Source: "pid1", State: "ready"}, "boot token missing"},
		{StatusReport{NodeID: "n", Source: "pid1", State: "ready", Token: testToken[:63]}, "63 characters, want 64"},
		{StatusReport{NodeID: "n", Source: "pid1", State: "ready", Token: strings.ToUpper(testToken)}, "not a lower-case hex digit"},
		{StatusReport{NodeID: "n", Source: "pid1", State: "ready", Token: testToken[:63] + "g"}, "character 63"},
	} {
		if err := tc.rep.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.rep, err, tc.want)
		}
	}
	good := StatusReport{NodeID: "n", Source: "pid1", State: "ready", Token: testToken}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v, want nil", good, err)
	}
}

// testToken has the shape of a boot token (64 lower-case hex digits).
const testToken = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
