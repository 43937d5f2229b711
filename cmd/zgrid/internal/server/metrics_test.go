package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// scrape answers GET /metrics through h in this goroutine (so every
// request h served before is counted) and parses the text exposition.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: HTTP %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// serve sends one request through h in this goroutine.
func serve(h http.Handler, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// handler is the handler e's HTTPS server runs.
func (e *env) handler() http.Handler { return e.ts.Config.Handler }

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// find is the metric of family name whose labels include want, or nil.
func find(mfs map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	for _, m := range mfs[name].GetMetric() {
		l := labelsOf(m)
		ok := true
		for k, v := range want {
			ok = ok && l[k] == v
		}
		if ok {
			return m
		}
	}
	return nil
}

// byLabel maps one label's values to the family's gauge values.
func byLabel(mfs map[string]*dto.MetricFamily, name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range mfs[name].GetMetric() {
		out[labelsOf(m)[label]] = m.GetGauge().GetValue()
	}
	return out
}

// TestMetricsFamilies: every family is there with its type and label
// names on a fresh server, process and Go collectors included.
func TestMetricsFamilies(t *testing.T) {
	e := newEnv(t)
	h := e.handler()
	serve(h, "GET", "/healthz", nil) // so that the request families have a series
	mfs := scrape(t, h)
	for _, tt := range []struct {
		name   string
		typ    dto.MetricType
		labels []string
	}{
		{"zgrid_http_requests_total", dto.MetricType_COUNTER, []string{"code", "method", "route"}},
		{"zgrid_http_request_duration_seconds", dto.MetricType_HISTOGRAM, []string{"code", "method", "route"}},
		{"zgrid_store_served_bytes_total", dto.MetricType_COUNTER, nil},
		{"zgrid_boots_total", dto.MetricType_COUNTER, nil},
		{"zgrid_rate_limited_total", dto.MetricType_COUNTER, nil},
		{"zgrid_rate_limit_clients", dto.MetricType_GAUGE, nil},
		{"zgrid_nodes", dto.MetricType_GAUGE, []string{"state"}},
		{"zgrid_build_info", dto.MetricType_GAUGE, []string{"goversion", "revision", "version"}},
		{"go_goroutines", dto.MetricType_GAUGE, nil},
		{"go_memstats_heap_inuse_bytes", dto.MetricType_GAUGE, nil},
		{"process_cpu_seconds_total", dto.MetricType_COUNTER, nil},
		{"process_resident_memory_bytes", dto.MetricType_GAUGE, nil},
	} {
		mf, ok := mfs[tt.name]
		if !ok {
			t.Errorf("%s: missing", tt.name)
			continue
		}
		if mf.GetType() != tt.typ {
			t.Errorf("%s: type %s, want %s", tt.name, mf.GetType(), tt.typ)
		}
		for _, m := range mf.GetMetric() {
			var names []string
			for k := range labelsOf(m) {
				names = append(names, k)
			}
			slices.Sort(names)
			if !slices.Equal(names, tt.labels) {
				t.Errorf("%s: labels %v, want %v", tt.name, names, tt.labels)
			}
		}
	}
	for name := range mfs {
		if strings.Contains(name, "bytes_served") {
			t.Errorf("%s: the old name is still exported", name)
		}
	}
	if _, ok := mfs["zgrid_release_expiry_timestamp_seconds"]; ok {
		t.Errorf("release expiry exported with no release published")
	}
}

func TestMetricsBuildInfo(t *testing.T) {
	e := newEnv(t)
	mfs := scrape(t, e.handler())
	b := Build()
	m := find(mfs, "zgrid_build_info", nil)
	if m == nil || len(mfs["zgrid_build_info"].GetMetric()) != 1 {
		t.Fatalf("zgrid_build_info: %v", mfs["zgrid_build_info"])
	}
	want := map[string]string{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion}
	if got := labelsOf(m); m.GetGauge().GetValue() != 1 || !equalMaps(got, want) {
		t.Errorf("zgrid_build_info %v = %g, want %v = 1", got, m.GetGauge().GetValue(), want)
	}
	if b.Version == "" || b.Revision == "" || !strings.HasPrefix(b.GoVersion, "go") {
		t.Errorf("Build() = %+v: every field needs a value", b)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestMetricsRequestLabels: the route label is the pattern, so node IDs
// and digests in paths share one series; made-up paths and methods share
// one too.
func TestMetricsRequestLabels(t *testing.T) {
	e := newEnv(t)
	h := e.handler()
	for _, id := range []string{"n1", "n2", "n3"} {
		serve(h, "GET", "/v1/admin/nodes/"+id, asAdmin) // 404: no such node
	}
	serve(h, "GET", "/v1/admin/nodes", nil)
	serve(h, "GET", "/no/such/path", nil)
	serve(h, "GET", "/another/made-up/path", nil)
	serve(h, "BREW", "/v1/boot", nil)
	serve(h, "BREW", "/v1/boot", nil)
	mfs := scrape(t, h)
	for _, tt := range []struct {
		labels map[string]string
		count  float64
	}{
		{map[string]string{"method": "GET", "route": "/v1/admin/nodes/{id}", "code": "404"}, 3},
		{map[string]string{"method": "GET", "route": "/v1/admin/nodes", "code": "401"}, 1},
		{map[string]string{"method": "GET", "route": "unmatched", "code": "404"}, 2},
		{map[string]string{"method": "other", "route": "unmatched", "code": "405"}, 2},
	} {
		c := find(mfs, "zgrid_http_requests_total", tt.labels)
		if c == nil || c.GetCounter().GetValue() != tt.count {
			t.Errorf("zgrid_http_requests_total%v = %v, want %g", tt.labels, c.GetCounter(), tt.count)
		}
		hist := find(mfs, "zgrid_http_request_duration_seconds", tt.labels).GetHistogram()
		var bounds []float64
		for _, b := range hist.GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
		}
		// The text format ends every histogram with its +Inf bucket.
		if want := append(slices.Clone(durationBuckets), math.Inf(1)); !slices.Equal(bounds, want) {
			t.Errorf("zgrid_http_request_duration_seconds%v: buckets %v, want %v", tt.labels, bounds, want)
		}
		if b := hist.GetBucket(); hist.GetSampleCount() != uint64(tt.count) || len(b) == 0 || b[len(b)-1].GetCumulativeCount() != uint64(tt.count) {
			t.Errorf("zgrid_http_request_duration_seconds%v: %d samples, want %g in every bucket up to +Inf", tt.labels, hist.GetSampleCount(), tt.count)
		}
	}
	for _, m := range mfs["zgrid_http_requests_total"].GetMetric() {
		if r := labelsOf(m)["route"]; strings.Contains(r, "n1") || strings.Contains(r, "no/such") {
			t.Errorf("route label %q is a raw path", r)
		}
	}
}

// TestMetricsStoreBytes: the bytes of store bodies are counted, nothing
// else.
func TestMetricsStoreBytes(t *testing.T) {
	e := newEnv(t)
	_, id := e.build()
	h := e.handler()
	before := scrape(t, h)["zgrid_store_served_bytes_total"].GetMetric()[0].GetCounter().GetValue()
	if before != 0 {
		t.Fatalf("served bytes before any store request: %g", before)
	}
	rec := serve(h, "GET", "/store/flists/"+id.Hex(), nil)
	if rec.Code != 200 || rec.Body.Len() == 0 {
		t.Fatalf("GET flist: HTTP %d, %d bytes", rec.Code, rec.Body.Len())
	}
	serve(h, "GET", "/healthz", nil)
	got := scrape(t, h)["zgrid_store_served_bytes_total"].GetMetric()[0].GetCounter().GetValue()
	if got != float64(rec.Body.Len()) {
		t.Errorf("zgrid_store_served_bytes_total = %g, want %d (the flist's body)", got, rec.Body.Len())
	}
}

// TestMetricsNodeStates: zgrid_nodes has every state, at 0 when no node
// is in it, and follows boots and reports (the database counts them as
// they happen; a scrape reads no node record, see db.TestNodeStates).
func TestMetricsNodeStates(t *testing.T) {
	e := newEnv(t)
	e.publish()
	if _, err := e.srv.CreateFarm(records.Farm{Name: "held", Channel: "stable", Enroll: records.EnrollApproval}); err != nil {
		t.Fatal(err)
	}
	report := func(id, state, token string) {
		t.Helper()
		b, _ := json.Marshal(registry.StatusReport{NodeID: id, Source: "pid1", State: state, Reason: "r", Token: token})
		e.must(e.do("POST", "/v1/status", asJSON, b), 204)
	}
	change := func(f func(string) (records.Node, error), id string) {
		t.Helper()
		if _, err := f(id); err != nil {
			t.Fatal(err)
		}
	}
	counts := func(booting, failed, pending, ready, denied float64) map[string]float64 {
		return map[string]float64{"booting": booting, "failed": failed, "pending": pending, "ready": ready, "denied": denied}
	}
	steps := []struct {
		name string
		do   func()
		want map[string]float64
	}{
		{"nothing", func() {}, counts(0, 0, 0, 0, 0)},
		{"two boots", func() { e.bootNode("n1"); e.bootNode("n2") }, counts(2, 0, 0, 0, 0)},
		{"n1 ready", func() { report("n1", "ready", e.bootNode("n1")) }, counts(1, 0, 0, 1, 0)},
		{"n2 failed", func() { report("n2", "failed", e.bootNode("n2")) }, counts(0, 1, 0, 1, 0)},
		{"n1 reboots", func() { e.bootNode("n1") }, counts(1, 1, 0, 0, 0)},
		{"refused report", func() {
			b, _ := json.Marshal(registry.StatusReport{NodeID: "n2", Source: "pid1", State: "ready", Token: fakeToken})
			e.must(e.do("POST", "/v1/status", asJSON, b), 403)
		}, counts(1, 1, 0, 0, 0)},
		{"n3 held for approval", func() {
			e.must(e.do("POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"n3","farm":"held"}`)), 409)
		}, counts(1, 1, 1, 0, 0)},
		{"n2 denied", func() { change(e.srv.Deny, "n2") }, counts(1, 0, 1, 0, 1)},
		{"n2 approved", func() { change(e.srv.Approve, "n2") }, counts(1, 0, 2, 0, 0)},
	}
	for _, st := range steps {
		st.do()
		got := byLabel(scrape(t, e.handler()), "zgrid_nodes", "state")
		if len(got) != len(st.want) {
			t.Errorf("after %s: %v, want %v", st.name, got, st.want)
			continue
		}
		for k, v := range st.want {
			if got[k] != v {
				t.Errorf("after %s: %v, want %v", st.name, got, st.want)
				break
			}
		}
	}
}

// TestMetricsReleaseExpiry: each channel's current release's expiry, to
// the second; none for a withdrawn channel.
func TestMetricsReleaseExpiry(t *testing.T) {
	e := newEnv(t)
	_, id := e.build()
	var info records.ReleaseInfo
	a := e.must(e.do("POST", "/v1/admin/releases", asAdmin, e.envelope(1, id, 3*time.Hour)), 201)
	if err := json.Unmarshal([]byte(a.body), &info); err != nil || info.Expires.IsZero() {
		t.Fatalf("publish answer %s: %v", a.body, err)
	}
	got := byLabel(scrape(t, e.handler()), "zgrid_release_expiry_timestamp_seconds", "channel")
	if want := float64(info.Expires.Unix()); len(got) != 1 || got["stable"] != want {
		t.Errorf("release expiry %v, want stable=%g (%s)", got, want, info.Expires)
	}

	e.must(e.do("POST", "/v1/admin/releases", asAdmin, upload(t, "stable", 2, time.Now().Add(time.Hour), nil, e.key)), 201)
	if got := byLabel(scrape(t, e.handler()), "zgrid_release_expiry_timestamp_seconds", "channel"); len(got) != 0 {
		t.Errorf("release expiry after a withdrawal: %v, want none", got)
	}
}

// TestMetricsDatabaseError: a scrape that cannot read the database is a
// JSON 500, not a page without the node gauges.
func TestMetricsDatabaseError(t *testing.T) {
	e := newEnv(t)
	h := e.handler()
	e.srv.DB.Close()
	rec := serve(h, "GET", "/metrics", nil)
	var body registry.Error
	if rec.Code != 500 || json.Unmarshal(rec.Body.Bytes(), &body) != nil || !strings.Contains(body.Error, "count nodes by state") {
		t.Errorf("GET /metrics with the database closed: HTTP %d %s", rec.Code, rec.Body)
	}
}

func TestVersionEndpoint(t *testing.T) {
	e := newEnv(t)
	a := e.must(e.do("GET", "/v1/version", nil, nil), 200)
	var got BuildInfo
	if err := registry.DecodeStrict([]byte(a.body), &got); err != nil || got != Build() {
		t.Errorf("GET /v1/version: %s (%v), want %+v", a.body, err, Build())
	}
}

// syncBuffer is a log destination the server's goroutines and the test
// share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor is the log once a line holding every want is in it: the
// request line is written after the answer, so it may come a moment
// after the client has it.
func waitFor(t *testing.T, log *syncBuffer, want ...string) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		for _, l := range strings.Split(log.String(), "\n") {
			if containsAll(l, want) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in:\n%s", want, log.String())
		}
	}
}

func containsAll(s string, subs []string) bool {
	for _, w := range subs {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

func logTo(log *syncBuffer, level slog.Level) func(*Server) {
	return func(s *Server) {
		s.Log = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: level}))
	}
}

// TestAuthFailureLogged: a bad token is a warning naming the client and
// the route, never the token sent.
func TestAuthFailureLogged(t *testing.T) {
	const sent = "not-the-token-5f3a9c"
	for _, tt := range []struct {
		name   string
		hdr    map[string]string
		reason string
	}{
		{"wrong token", map[string]string{"Authorization": "Bearer " + sent}, `reason="admin token wrong"`},
		{"no bearer", map[string]string{"Authorization": sent}, `reason="admin token missing`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log syncBuffer
			e := newEnv(t, logTo(&log, slog.LevelInfo))
			e.must(e.do("GET", "/v1/admin/nodes/n7", tt.hdr, nil), 401)
			line := waitFor(t, &log, `level=WARN msg="admin authentication failed"`)
			for _, want := range []string{"client=127.0.0.1:", "method=GET", "route=/v1/admin/nodes/{id}", tt.reason} {
				if !strings.Contains(line, want) {
					t.Errorf("log line %q lacks %q", line, want)
				}
			}
			if strings.Contains(log.String(), sent) {
				t.Errorf("the token sent is in the log:\n%s", log.String())
			}
		})
	}
	var log syncBuffer
	e := newEnv(t, logTo(&log, slog.LevelInfo))
	e.must(e.do("GET", "/v1/admin/nodes", asAdmin, nil), 200)
	if strings.Contains(log.String(), "authentication failed") {
		t.Errorf("the right token logged a failure:\n%s", log.String())
	}
}

// TestRequestLog: with -v (debug) every request is a line with method,
// route, status, duration and client; at info level, none.
func TestRequestLog(t *testing.T) {
	var debug syncBuffer
	e := newEnv(t, logTo(&debug, slog.LevelDebug))
	e.must(e.do("GET", "/v1/admin/nodes/n9", asAdmin, nil), 404)
	line := waitFor(t, &debug, "level=DEBUG", "msg=request", "route=/v1/admin/nodes/{id}")
	for _, want := range []string{"method=GET", "path=/v1/admin/nodes/n9", "status=404", "duration=", "client=127.0.0.1:"} {
		if !strings.Contains(line, want) {
			t.Errorf("request log line %q lacks %q", line, want)
		}
	}

	var info syncBuffer
	quiet := newEnv(t, logTo(&info, slog.LevelInfo))
	h := quiet.handler()
	serve(h, "GET", "/healthz", nil) // in this goroutine: logged, if at all, before it returns
	if strings.Contains(info.String(), "msg=request") {
		t.Errorf("request logged at info level:\n%s", info.String())
	}
}
