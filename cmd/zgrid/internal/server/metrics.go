package server

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// metrics are hand-written in the Prometheus text format: a few counters do
// not justify a client library.
type metrics struct {
	mu       sync.Mutex
	requests map[reqKey]uint64
	served   uint64 // body bytes of store responses
	boots    uint64
	limited  uint64 // node endpoint requests refused by the rate limit
}

type reqKey struct {
	endpoint string
	code     int
}

func (m *metrics) request(endpoint string, code int, bytes int64, store bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.requests == nil {
		m.requests = map[reqKey]uint64{}
	}
	m.requests[reqKey{endpoint, code}]++
	if store {
		m.served += uint64(bytes)
	}
}

func (m *metrics) boot() {
	m.mu.Lock()
	m.boots++
	m.mu.Unlock()
}

func (m *metrics) rateLimited() {
	m.mu.Lock()
	m.limited++
	m.mu.Unlock()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// serveMetrics takes no credential, so a scrape costs the same however
// many nodes there are: the node gauges come from counters the database
// keeps as nodes boot and report, never from reading node records.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	states, err := s.DB.NodeStates()
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	var b strings.Builder
	m := &s.metrics
	m.mu.Lock()
	keys := make([]reqKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b reqKey) int {
		if c := strings.Compare(a.endpoint, b.endpoint); c != 0 {
			return c
		}
		return a.code - b.code
	})
	b.WriteString("# HELP zgrid_http_requests_total HTTP requests by endpoint and status code.\n# TYPE zgrid_http_requests_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "zgrid_http_requests_total{endpoint=\"%s\",code=\"%d\"} %d\n", labelEscaper.Replace(k.endpoint), k.code, m.requests[k])
	}
	fmt.Fprintf(&b, "# HELP zgrid_store_bytes_served_total Body bytes sent from the content store.\n# TYPE zgrid_store_bytes_served_total counter\nzgrid_store_bytes_served_total %d\n", m.served)
	fmt.Fprintf(&b, "# HELP zgrid_boots_total Boot requests answered with a release.\n# TYPE zgrid_boots_total counter\nzgrid_boots_total %d\n", m.boots)
	fmt.Fprintf(&b, "# HELP zgrid_rate_limited_total Node endpoint requests refused by the per-client rate limit.\n# TYPE zgrid_rate_limited_total counter\nzgrid_rate_limited_total %d\n", m.limited)
	m.mu.Unlock()
	if l := s.limiter(); l != nil {
		fmt.Fprintf(&b, "# HELP zgrid_rate_limit_clients Client addresses the rate limiter holds a bucket for.\n# TYPE zgrid_rate_limit_clients gauge\nzgrid_rate_limit_clients %d\n", l.size())
	}
	b.WriteString("# HELP zgrid_nodes Known nodes by last reported state.\n# TYPE zgrid_nodes gauge\n")
	for _, st := range slices.Sorted(maps.Keys(states)) {
		fmt.Fprintf(&b, "zgrid_nodes{state=\"%s\"} %d\n", labelEscaper.Replace(st), states[st])
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write([]byte(b.String()))
}
