package registry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"github.com/zeroboot/zeroboot/pkg/trust"
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
		json.NewEncoder(w).Encode(BootResponse{Protocol: Protocol, NodeID: req.NodeID, TUF: &trust.Bundle{Targets: []byte("{}")}, Stores: []string{"https://192.0.2.2:8443/store"}, Token: testToken})
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
	var dates []dated
	c := &Client{
		URLs:    []string{"https://127.0.0.1:1", bad.URL, good.URL},
		HTTP:    hc,
		Backoff: fast,
		Report: func(n int, u string, err error, wait time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			reports = append(reports, report{u, err})
		},
		OnDate: func(src string, d, notAfter time.Time) { dates = append(dates, dated{src, d, notAfter}) },
	}
	resp, err := c.Boot(context.Background(), BootRequest{NodeID: "n1", Farm: "f"}, nil)
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
	// The clock learns who said it and until when that server's own
	// certificate vouches for it.
	want := dated{"Date header of registry " + good.URL, date, good.Certificate().NotAfter}
	if len(dates) != 1 || dates[0].source != want.source || !dates[0].date.Equal(date) || !dates[0].notAfter.Equal(want.notAfter) {
		t.Fatalf("dates = %+v, want [%+v]", dates, want)
	}
}

type dated struct {
	source         string
	date, notAfter time.Time
}

// Over plain HTTP nothing vouches for the Date: the clock is told so.
func TestOnDateWithoutTLS(t *testing.T) {
	srv := httptest.NewServer(bootOK(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)))
	defer srv.Close()
	var got []dated
	c := &Client{URLs: []string{srv.URL}, HTTP: srv.Client(),
		OnDate: func(src string, d, notAfter time.Time) { got = append(got, dated{src, d, notAfter}) }}
	if _, err := c.Boot(context.Background(), BootRequest{NodeID: "n1", Farm: "f"}, nil); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].notAfter.IsZero() {
		t.Fatalf("dates = %+v, want one with a zero notAfter", got)
	}
}

func TestChainEnd(t *testing.T) {
	at := func(days int) *x509.Certificate {
		return &x509.Certificate{NotAfter: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, days)}
	}
	for _, tc := range []struct {
		name string
		cs   *tls.ConnectionState
		want time.Time
	}{
		{"no TLS", nil, time.Time{}},
		{"no verified chain", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{at(10)}}, time.Time{}},
		{"leaf ends first", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{at(1), at(5), at(9)}}}, at(1).NotAfter},
		{"pinned CA ends first", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{at(9), at(5), at(2)}}}, at(2).NotAfter},
		{"intermediate ends first", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{at(9), at(3), at(7)}}}, at(3).NotAfter},
		// One valid chain verifies the connection, so the longest-lived
		// chain is the bound.
		{"two chains", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{at(9), at(2)}, {at(9), at(6)}}}, at(6).NotAfter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := chainEnd(tc.cs); !got.Equal(tc.want) {
				t.Errorf("chainEnd = %v, want %v", got, tc.want)
			}
		})
	}
}

// redirector answers every request with code and a Location of to.
func redirector(code int, to string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", to)
		w.WriteHeader(code)
	}
}

// counted wraps h, counting its requests.
func counted(n *atomic.Int32, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}
}

// A registry that redirects is not followed, wherever it points (another
// https server under the same CA included), and the next registry is asked.
func TestBootRefusesRedirects(t *testing.T) {
	var hits atomic.Int32
	date := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	plain := httptest.NewServer(counted(&hits, bootOK(date)))
	defer plain.Close()
	// httptest TLS servers share one certificate: the pinned client would
	// trust this one.
	other, _ := tlsServer(t, counted(&hits, bootOK(date)))
	good, hc := tlsServer(t, bootOK(date))
	for _, tc := range []struct {
		name, to, want string
		code           int
	}{
		{"302 to http", plain.URL + "/v1/boot", `HTTP 302 Found: redirect to "` + plain.URL + `/v1/boot" refused`, 302},
		{"307 to http", plain.URL + "/v1/boot", `HTTP 307 Temporary Redirect: redirect to "` + plain.URL + `/v1/boot" refused`, 307},
		{"308 to https", other.URL + "/v1/boot", `HTTP 308 Permanent Redirect: redirect to "` + other.URL + `/v1/boot" refused`, 308},
		{"301 to https", other.URL + "/v1/boot", `HTTP 301 Moved Permanently: redirect to "` + other.URL + `/v1/boot" refused`, 301},
		{"Location sanitised", "https://evil/\u009b2J", `HTTP 302 Found: redirect to "https://evil/?2J" refused`, 302},
	} {
		for _, client := range []struct {
			name string
			hc   *http.Client
		}{
			{"NewHTTPClient", hc},
			// A client that would follow (default CheckRedirect) is not
			// followed either: the rule is the registry Client's own.
			{"following client", &http.Client{Transport: hc.Transport}},
		} {
			t.Run(tc.name+"/"+client.name, func(t *testing.T) {
				hits.Store(0)
				redir, _ := tlsServer(t, redirector(tc.code, tc.to))
				var reports []report
				var dates []string
				c := &Client{URLs: []string{redir.URL, good.URL}, HTTP: client.hc, Backoff: fast,
					Report: func(n int, u string, err error, wait time.Duration) { reports = append(reports, report{u, err}) },
					OnDate: func(src string, d, notAfter time.Time) { dates = append(dates, src) },
				}
				resp, err := c.Boot(context.Background(), BootRequest{NodeID: "n1", Farm: "f"}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if resp.Registry != good.URL {
					t.Errorf("answer from %s, want %s", resp.Registry, good.URL)
				}
				if n := hits.Load(); n != 0 {
					t.Errorf("redirect target asked %d times", n)
				}
				if len(reports) != 1 || reports[0].url != redir.URL || !strings.Contains(reports[0].err.Error(), "registry "+redir.URL+": "+tc.want) {
					t.Errorf("reports = %+v, want one for %s with %q", reports, redir.URL, tc.want)
				}
				if len(dates) != 1 || dates[0] != "Date header of registry "+good.URL {
					t.Errorf("dates from %q, want only the good registry's", dates)
				}
			})
		}
	}
}

func TestStatusRefusesRedirects(t *testing.T) {
	var hits atomic.Int32
	target, _ := tlsServer(t, counted(&hits, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	redir, hc := tlsServer(t, redirector(307, target.URL+"/v1/status"))
	c := &Client{URLs: []string{redir.URL}, HTTP: hc}
	err := c.Status(context.Background(), StatusReport{NodeID: "n1", Source: SourcePID1, State: StateReady, Token: testToken})
	if err == nil || !strings.Contains(err.Error(), "HTTP 307 Temporary Redirect: redirect to") || hits.Load() != 0 {
		t.Fatalf("err = %v, target hits %d; want the redirect refused", err, hits.Load())
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
	if _, err := c.Boot(context.Background(), BootRequest{NodeID: "n1", Farm: "f"}, nil); err != nil {
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
		{"content type", "text/html", `{"node_id":"n1","protocol":3,"tuf":{},"stores":["https://x/store"]}`, "content type"},
		{"huge", "application/json", `{"node_id":"n1","channel":"` + strings.Repeat("A", MaxBodySize) + `"}`, "exceeds"},
		{"deep nesting", "application/json", `{"node_id":"n1","stores":["https://x/store"],"tuf":` + deep + `}`, "nested deeper than 32"},
		{"case-only key", "application/json", `{"NODE_ID":"n1","protocol":3,"tuf":{},"stores":["https://x/store"]}`, `the field is "node_id"`},
		{"duplicate key", "application/json", `{"node_id":"n1","node_id":"n2","protocol":3,"tuf":{},"stores":["https://x/store"]}`, `appears twice`},
		{"deep nesting small", "application/json", `{"node_id":"n1","stores":["https://x/store"],"extra":` + strings.Repeat("[", 11000) + strings.Repeat("]", 11000) + `}`, "decode JSON"},
		{"unknown field", "application/json", `{"node_id":"n1","protocol":3,"tuf":{},"stores":["https://x/store"],"debug":true}`, "unknown field"},
		{"wrong node", "application/json", `{"node_id":"n2","protocol":3,"tuf":{},"stores":["https://x/store"]}`, `registry answered for node "n2", we are "n1"`},
		{"trailing", "application/json", `{"node_id":"n1","protocol":3,"tuf":{},"stores":["https://x/store"]} {}`, "trailing"},
		{"no release", "application/json", `{"protocol":3,"node_id":"n1","stores":["https://x/store"]}`, "no TUF metadata"},
		{"protocol 1 registry", "application/json", `{"node_id":"n1","stores":["https://x/store"],"release":{}}`, "registry speaks protocol 1, this node protocols 3-6"},
		{"other protocol", "application/json", `{"protocol":7,"node_id":"n1","stores":["https://x/store"]}`, "registry speaks protocol 7, this node protocols 3-6"},
		{"fallback in protocol 5", "application/json", `{"protocol":5,"node_id":"n1","stores":["https://x/store"],"fallback":{"deadline_seconds":60,"tuf":{}}}`, "protocol 5 answer carries a fallback release (protocol 6)"},
		{"fallback without metadata", "application/json", `{"protocol":6,"node_id":"n1","stores":["https://x/store"],"fallback":{"deadline_seconds":60}}`, "fallback without TUF metadata"},
		{"fallback deadline 0", "application/json", `{"protocol":6,"node_id":"n1","stores":["https://x/store"],"fallback":{"deadline_seconds":0,"tuf":{}}}`, "fallback without a ready deadline"},
		{"fallback deadline 2", "application/json", `{"protocol":6,"node_id":"n1","stores":["https://x/store"],"fallback":{"deadline_seconds":2,"tuf":{}}}`, "ready deadline 2s: want 10s"},
		{"cache in protocol 3", "application/json", `{"protocol":3,"node_id":"n1","stores":["https://x/store"],"cache":{"device":"/dev/vda"}}`, "protocol 3 answer carries a chunk cache setting (protocol 4)"},
		{"hostile cache device", "application/json", `{"protocol":4,"node_id":"n1","stores":["https://x/store"],"cache":{"device":"/dev/../etc/passwd"}}`, `farm's chunk cache device "/dev/../etc/passwd": must match /dev/NAME`},
		{"no stores", "application/json", `{"node_id":"n1","protocol":3,"tuf":{}}`, "store URLs"},
		{"bad store", "application/json", `{"node_id":"n1","protocol":3,"tuf":{},"stores":["file:///etc"]}`, "absolute http(s) URL"},
		{"not json", "application/json", `<html>`, "decode JSON"},
		{"no token", "application/json", `{"node_id":"n1","protocol":3,"tuf":{},"stores":["https://x/store"]}`, "boot token missing"},
		{"bad token", "application/json", `{"node_id":"n1","protocol":3,"tuf":{},"stores":["https://x/store"],"token":"` + strings.Repeat("Z", 64) + `"}`, "not a lower-case hex digit"},
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
			c.OnDate = func(string, time.Time, time.Time) { t.Error("OnDate called for a refused answer") }
			if _, err := c.Boot(ctx, BootRequest{NodeID: "n1", Farm: "f"}, nil); err == nil {
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
	_, err := c.Boot(ctx, BootRequest{NodeID: "n1", Farm: "f"}, nil)
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
	// Its client hands a redirect back instead of following it, also for
	// whoever uses it outside Client.
	var hits atomic.Int32
	target, _ := tlsServer(t, counted(&hits, bootOK(time.Now())))
	redir, hc := tlsServer(t, redirector(302, target.URL))
	resp, err := hc.Get(redir.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 302 || hits.Load() != 0 {
		t.Fatalf("status %d, target hits %d; want the 302 itself", resp.StatusCode, hits.Load())
	}
}

// A registry that offers HTTP/2 is still asked over HTTP/1.1, on one
// connection kept for the next question.
func TestNewHTTPClientSpeaksHTTP1(t *testing.T) {
	var (
		mu     sync.Mutex
		protos []string
		conns  atomic.Int32
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos = append(protos, r.Proto)
		mu.Unlock()
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	hc, err := NewHTTPClient(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(protos, []string{"HTTP/1.1", "HTTP/1.1", "HTTP/1.1"}) || conns.Load() != 1 {
		t.Fatalf("requests over %v on %d connections, want 3 over HTTP/1.1 on 1", protos, conns.Load())
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

// An older registry refuses a newer request as having an unknown field
// before it can say which protocol it speaks; the node says what that
// means.
func TestBootProtocol1Registry(t *testing.T) {
	srv, hc := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		w.Write([]byte(`{"error":"decode JSON: json: unknown field \"protocol\""}`))
	})
	var got error
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &Client{URLs: []string{srv.URL}, HTTP: hc, Backoff: fast,
		Report: func(n int, u string, err error, wait time.Duration) { got = err; cancel() }}
	c.Boot(ctx, BootRequest{Protocol: Protocol, NodeID: "n1"}, nil)
	if want := fmt.Sprintf("an older registry: upgrade zgrid to protocol %d", Protocol); got == nil || !strings.Contains(got.Error(), want) {
		t.Fatalf("error %v", got)
	}
}

// caServer starts a TLS 1.3 server for 127.0.0.1 whose certificate is
// from a CA of its own, and returns it with that CA in PEM.
func caServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA " + t.Name()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

func noContent(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }

// A ca.pem with several CAs (the old and the new while a registry's CA is
// rotated) trusts each of them, and only them; a block that is not a
// certificate, or a certificate that does not parse, is refused rather
// than dropped.
func TestNewHTTPClientBundle(t *testing.T) {
	a, certA := caServer(t, noContent)
	b, certB := caServer(t, noContent)
	other, _ := caServer(t, noContent)
	bundle := append(append(append([]byte{}, certA...), "# the next CA\n"...), certB...)
	hc, err := NewHTTPClient(bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*httptest.Server{a, b} {
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Errorf("bundle client to %s: %v", srv.URL, err)
			continue
		}
		resp.Body.Close()
	}
	if _, err := hc.Get(other.URL); err == nil {
		t.Error("bundle client trusted a third CA")
	}
	for _, tc := range []struct {
		name string
		pem  []byte
		want string
	}{
		{"key block", append(append([]byte{}, certA...), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})...), `PEM block 2 is "PRIVATE KEY"`},
		{"bad certificate", append(append([]byte{}, certA...), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}})...), "certificate 2:"},
		{"empty", nil, "no PEM certificate"},
	} {
		if _, err := NewHTTPClient(tc.pem, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// A registry whose certificate is from a CA the node's ca.pem lacks is
// refused with an error that says so.
func TestUnknownCAExplained(t *testing.T) {
	_, certA := caServer(t, noContent)
	b, _ := caServer(t, noContent)
	hc, err := NewHTTPClient(certA, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{URLs: []string{b.URL}, HTTP: hc}
	err = c.Status(context.Background(), StatusReport{NodeID: "n1", Source: SourcePID1, State: StateReady, Token: testToken})
	if err == nil || !strings.Contains(err.Error(), "not signed by a CA this node trusts") || !strings.Contains(err.Error(), "tls/ca.pem") {
		t.Fatalf("err = %v", err)
	}
}
