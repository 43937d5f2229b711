// Package server is the registry's HTTPS API: boot and status for nodes,
// the content store for anyone, and the admin API behind a bearer token.
// See docs/api.md.
package server

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
)

// MaxFlistSize bounds an uploaded flist metadata blob.
const MaxFlistSize = 64 << 20

// Store is the content store the server writes uploads to and serves from
// (store.Dir in production).
type Store interface {
	PutChunk(ref flist.ChunkRef, compressed []byte) (flist.ChunkRef, error)
	PutFlist(encoded []byte) (digest.Digest, error)
	ChunkPath(id digest.Digest) string
	FlistPath(id digest.Digest) string
}

// Server holds the registry's state and dependencies. Fill the fields, then
// use Handler (or HTTPServer).
type Server struct {
	DB      db.Records
	Store   Store
	Token   string   // admin bearer token
	Mirrors []string // store base URLs offered to nodes after our own
	// MirrorsFirst offers the mirrors before our own store, so a CDN
	// takes the load and this server is the fallback.
	MirrorsFirst bool
	// ViewerToken, when set, logs into the explorer (/ui/) read-only;
	// zgrid serve does not set it yet (docs/explorer.md).
	ViewerToken string
	// TUF is the root chain, the channels nodes accept and the online
	// key. Every release is verified against it before it is stored; the
	// server never holds a release key.
	TUF *TUF
	// CheckFlist decodes uploaded flist metadata and reports why it is bad.
	CheckFlist func(encoded []byte) error
	Now        func() time.Time
	Log        *slog.Logger
	// Rate and Burst bound each client address's requests to the node
	// endpoints (/v1/boot, /v1/status), which take no credential: Rate per
	// second on average, Burst at once. 0 means DefaultRate and
	// DefaultBurst; a negative Rate turns the limit off.
	Rate  float64
	Burst int
	// MaxNodes refuses boots from new node IDs once the database holds
	// this many, so that made-up IDs cannot grow it without bound. 0 means
	// DefaultMaxNodes; negative, no limit.
	MaxNodes int

	// EKRoots, when set, are the TPM manufacturers' CAs (zgrid serve
	// --ek-ca): a TPM node enrolls only with an EK certificate that chains
	// to one. EKIntermediates may help build the chain.
	EKRoots, EKIntermediates *x509.CertPool
	// PXE, when set, serves network boot under /boot/ (pxe.go).
	PXE *PXE

	keyMu  sync.Mutex
	actKey []byte // the records' activation secret, once read; see activate

	metrics metrics
	limOnce sync.Once
	lim     *limiter
}

// HTTPServer wraps Handler in an http.Server that speaks only TLS 1.3 with
// the certificate cert gives at each handshake, with timeouts so that a
// slow or stalled client cannot hold resources for long.
func (s *Server) HTTPServer(addr string, cert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *http.Server {
	return &http.Server{
		Addr:    addr,
		Handler: s.Handler(),
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS13,
			GetCertificate: cert,
		},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log().Handler(), slog.LevelDebug),
	}
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

func (s *Server) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// Handler returns the API's routes wrapped in panic recovery, metrics and
// JSON errors for unknown routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// Admin endpoints need the token; these two need nothing, so they
	// are the ones a stranger can hammer.
	mux.Handle("POST /v1/boot", s.limit(s.boot))
	mux.Handle("POST /v1/status", s.limit(s.status))
	mux.Handle("POST /v1/challenge", s.limit(s.challenge))
	mux.HandleFunc("GET /store/chunks/{prefix}/{name}", s.getChunk)
	mux.HandleFunc("GET /store/flists/{name}", s.getFlist)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /metrics", s.serveMetrics)
	mux.HandleFunc("GET /v1/version", s.serveVersion)
	s.bootRoutes(mux) // GET /boot/ipxe, /boot/{file}: pxe.go
	s.uiRoutes(mux)   // the explorer under /ui/: ui.go

	admin := map[string]http.HandlerFunc{
		"PUT /v1/admin/store/chunks/{name}": s.putChunk,
		"PUT /v1/admin/store/flists/{name}": s.putFlist,
		"POST /v1/admin/releases":           s.postRelease,
		"GET /v1/admin/releases":            s.listReleases,
		"POST /v1/admin/farms":              s.postFarm,
		"GET /v1/admin/farms":               s.listFarms,
		"GET /v1/admin/farms/{name}":        s.getFarm,
		"GET /v1/admin/nodes":               s.listNodes,
		"GET /v1/admin/nodes/{id}":          s.getNode,
		"PUT /v1/admin/farms/{name}":        s.putFarm,
		"POST /v1/admin/nodes/{id}/approve": s.nodeAction(s.Approve),
		"POST /v1/admin/nodes/{id}/deny":    s.nodeAction(s.Deny),
		"DELETE /v1/admin/nodes/{id}":       s.deleteNode,
		"DELETE /v1/admin/farms/{name}":     s.deleteFarm,
		"POST /v1/admin/allowed":            s.allow,
		"GET /v1/admin/backup":              s.backup,
	}
	for pattern, h := range admin {
		mux.Handle(pattern, s.requireToken(h))
	}
	return s.wrap(mux)
}

// wrap adds recovery, metrics, and JSON bodies for the mux's own 404 and 405.
func (s *Server) wrap(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &recorder{ResponseWriter: w}
		h, pattern := mux.Handler(r)
		if pattern == "" {
			pattern = "unmatched"
		}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log().Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				if rw.code == 0 {
					writeError(rw, http.StatusInternalServerError, "internal error")
				}
			}
			s.observe(r, pattern, rw, start)
		}()
		if pattern == "unmatched" {
			s.unmatched(rw, r, h)
			return
		}
		mux.ServeHTTP(rw, r)
	})
}

// unmatched answers like the mux would (404, or 405 with Allow), but in JSON.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request, h http.Handler) {
	probe := &headerProbe{h: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", probe.h.Get("Allow"))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, probe.h.Get("Allow")))
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
}

// headerProbe captures the status and headers a handler would send.
type headerProbe struct {
	h    http.Header
	code int
}

func (p *headerProbe) Header() http.Header { return p.h }
func (p *headerProbe) Write(b []byte) (int, error) {
	if p.code == 0 {
		p.code = http.StatusOK
	}
	return len(b), nil
}
func (p *headerProbe) WriteHeader(code int) { p.code = code }

// recorder remembers the status and counts the body bytes for metrics.
type recorder struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) requireToken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || s.Token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="zgrid"`)
			reason := "admin token missing: send Authorization: Bearer <token>"
			if ok {
				reason = "admin token wrong"
			}
			// Never the token itself: a wrong one may be a real token of
			// another registry, or this one's with a typo.
			s.log().Warn("admin authentication failed", "client", r.RemoteAddr, "method", r.Method, "route", routeOf(r.Pattern), "reason", reason)
			writeError(w, http.StatusUnauthorized, reason)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if _, err := s.DB.Farms(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "database: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// dbStatus maps database errors to HTTP status codes.
func dbStatus(err error) int {
	switch {
	case errors.Is(err, db.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, db.ErrDenied):
		return http.StatusForbidden
	case errors.Is(err, db.ErrExists), errors.Is(err, db.ErrVersion), errors.Is(err, db.ErrInUse):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}
