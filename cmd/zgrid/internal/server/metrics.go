package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// Version is this build's release name, set at link time:
//
//	go build -ldflags '-X github.com/zeroboot/zeroboot/cmd/zgrid/internal/server.Version=v1.4.0' ./cmd/zgrid
//
// Empty means the module version Go recorded ("(devel)" from a checkout).
var Version string

// BuildInfo says which build answers: zgrid_build_info, GET /v1/version
// and zgrid version all print the same three values.
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	GoVersion string `json:"go_version"`
}

// Build reads the build's version and VCS revision. The revision is
// "unknown" when Go recorded none (go build -buildvcs=false, or outside a
// checkout) and ends in "-modified" when the tree had uncommitted changes.
func Build() BuildInfo {
	b := BuildInfo{Version: Version, Revision: "unknown", GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return withDefaultVersion(b)
	}
	if b.Version == "" {
		b.Version = info.Main.Version
	}
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && b.Revision != "unknown" {
		b.Revision += "-modified"
	}
	return withDefaultVersion(b)
}

func withDefaultVersion(b BuildInfo) BuildInfo {
	if b.Version == "" {
		b.Version = "(devel)"
	}
	return b
}

// serveVersion takes no credential: what a build is, is what /metrics
// already tells anyone (zgrid_build_info).
func (s *Server) serveVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Build())
}

// durationBuckets reach the server's 5 minute write timeout: a node
// fetching a large chunk over a slow link takes far longer than an API
// call, and the default buckets stop at 10 s.
var durationBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// metrics are the server's own Prometheus registry (not the global
// default, so that several servers in one process, as in tests, keep
// their counts apart) and the counters the handlers add to. The zero
// value is ready: every method initialises it first.
type metrics struct {
	once     sync.Once
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	served   prometheus.Counter // body bytes of store responses
	boots    prometheus.Counter
	limited  prometheus.Counter // node endpoint requests refused by the rate limit

	regOnce sync.Once
	reg     *prometheus.Registry
}

func (m *metrics) init() {
	m.once.Do(func() {
		labels := []string{"method", "route", "code"}
		m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zgrid_http_requests_total",
			Help: "HTTP requests by method, route pattern and status code.",
		}, labels)
		m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zgrid_http_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer, by method, route pattern and status code.",
			Buckets: durationBuckets,
		}, labels)
		m.served = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zgrid_store_served_bytes_total",
			Help: "Body bytes sent from the content store (/store/).",
		})
		m.boots = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zgrid_boots_total",
			Help: "Boot requests answered with a release.",
		})
		m.limited = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zgrid_rate_limited_total",
			Help: "Node endpoint requests refused by the per-client rate limit (HTTP 429).",
		})
	})
}

// request counts one answered request. route is the mux pattern without
// its method (or "unmatched"), never the raw path: node IDs and digests in
// paths would make a series per node and per blob.
func (m *metrics) request(method, route string, code int, took time.Duration, bytes int64) {
	m.init()
	c := strconv.Itoa(code)
	m.requests.WithLabelValues(method, route, c).Inc()
	m.duration.WithLabelValues(method, route, c).Observe(took.Seconds())
	if strings.HasPrefix(route, "/store/") {
		m.served.Add(float64(bytes))
	}
}

func (m *metrics) boot() {
	m.init()
	m.boots.Inc()
}

func (m *metrics) rateLimited() {
	m.init()
	m.limited.Inc()
}

// registry builds the server's Prometheus registry on first use.
func (m *metrics) registry(s *Server) *prometheus.Registry {
	m.init()
	m.regOnce.Do(func() {
		b := Build()
		info := prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "zgrid_build_info",
			Help:        "Always 1; the labels say which build of zgrid serves.",
			ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
		})
		info.Set(1)
		m.reg = prometheus.NewRegistry()
		m.reg.MustRegister(m.requests, m.duration, m.served, m.boots, m.limited, info,
			stateCollector{s},
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	})
	return m.reg
}

// knownMethods bound the method label: a request with a made-up method
// counts as "other" rather than adding a series of its own.
var knownMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace}

func methodLabel(m string) string {
	if slices.Contains(knownMethods, m) {
		return m
	}
	return "other"
}

// routeOf is a mux pattern ("GET /v1/admin/nodes/{id}") without its method.
func routeOf(pattern string) string {
	if _, route, ok := strings.Cut(pattern, " "); ok {
		return route
	}
	return pattern
}

// observe records a finished request in the metrics and, at debug level
// (zgrid serve -v), in the log.
func (s *Server) observe(r *http.Request, pattern string, rw *recorder, start time.Time) {
	took := time.Since(start)
	method, route := methodLabel(r.Method), routeOf(pattern)
	s.metrics.request(method, route, rw.status(), took, rw.bytes)
	s.log().LogAttrs(r.Context(), slog.LevelDebug, "request",
		slog.String("method", method), slog.String("route", route), slog.String("path", r.URL.Path),
		slog.Int("status", rw.status()), slog.Duration("duration", took), slog.Int64("bytes", rw.bytes),
		slog.String("client", r.RemoteAddr))
}

// serveMetrics takes no credential, so a scrape costs the same however
// many nodes there are: the node gauges come from counters the database
// keeps as nodes boot and report, never from reading node records.
// Everything is gathered before the first byte is written, so that a
// database error is a JSON 500 like every other error of the API.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	mfs, err := s.metrics.registry(s).Gather()
	if err != nil {
		s.replyError(w, r, fmt.Errorf("gather metrics: %w", err))
		return
	}
	gathered := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil })
	// promhttp negotiates the format (text, protobuf, OpenMetrics when
	// asked) and compression with the scraper.
	promhttp.HandlerFor(gathered, promhttp.HandlerOpts{EnableOpenMetrics: true}).ServeHTTP(w, r)
}

var (
	nodesDesc = prometheus.NewDesc("zgrid_nodes",
		"Known nodes by last reported state (pending: held until zgrid node approve; denied: refused after zgrid node deny).", []string{"state"}, nil)
	expiryDesc = prometheus.NewDesc("zgrid_release_expiry_timestamp_seconds",
		"When the current release of each channel expires (Unix time); nodes refuse it after.", []string{"channel"}, nil)
	clientsDesc = prometheus.NewDesc("zgrid_rate_limit_clients",
		"Client addresses the rate limiter holds a bucket for.", nil, nil)
)

// stateCollector reads, at each scrape, what lives in the database and
// the limiter, so that no copy of it is kept in step by hand.
type stateCollector struct{ s *Server }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- nodesDesc
	ch <- expiryDesc
	ch <- clientsDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.collectNodes(ch)
	c.collectExpiry(ch)
	if l := c.s.limiter(); l != nil {
		ch <- prometheus.MustNewConstMetric(clientsDesc, prometheus.GaugeValue, float64(l.size()))
	}
}

func (c stateCollector) collectNodes(ch chan<- prometheus.Metric) {
	counts, err := c.s.DB.NodeStates()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(nodesDesc, fmt.Errorf("count nodes by state: %w", err))
		return
	}
	// A sample for every state, 0 when no node is in it, so that a query
	// or an alert on a state never sees "no data" where it means none.
	states := slices.Clone(registry.NodeStates)
	for st := range counts {
		if !slices.Contains(states, st) {
			states = append(states, st) // left by another version: still counted
		}
	}
	for _, st := range states {
		ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(counts[st]), st)
	}
}

// collectExpiry reads each accepted channel's newest release. A channel
// with none, or whose newest targets are a withdrawal, has no current
// release and so no sample. An expired one keeps its (past) expiry: that
// is what an alert on time() - expiry wants to see.
func (c stateCollector) collectExpiry(ch chan<- prometheus.Metric) {
	if c.s.TUF == nil || c.s.TUF.Channels == nil {
		return
	}
	for _, name := range c.s.TUF.Channels.Names() {
		r, err := c.s.DB.LatestRelease(name)
		switch {
		case errors.Is(err, db.ErrNotFound):
			continue
		case err != nil:
			ch <- prometheus.NewInvalidMetric(expiryDesc, fmt.Errorf("latest release of channel %s: %w", name, err))
			continue
		case r.Withdrawn:
			continue
		}
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(r.Expires.Unix()), name)
	}
}
