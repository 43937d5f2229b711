package server

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

// The explorer (docs/explorer.md): server-rendered pages under /ui/ for
// people with a browser, behind a session cookie obtained with the admin
// token (or Server.ViewerToken, read-only). No JavaScript, no external
// assets: the CSP below forbids both.

//go:embed ui/*.html
var uiFiles embed.FS

var uiPages = template.Must(template.New("").Funcs(template.FuncMap{
	"when": uiTime,
}).ParseFS(uiFiles, "ui/*.html"))

// Names of the explorer's cookies, and how long a session lasts.
const (
	sessionCookie  = "zgrid_session"
	loginCSRF      = "zgrid_login_csrf"
	sessionTTL     = 12 * time.Hour
	maxUIForm      = 64 << 10
	csrfField      = "csrf"
	roleAdmin      = "admin"
	roleViewer     = "viewer"
	uiCSP          = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"
	timelineWidth  = 640.0 // SVG user units for the bars, after the labels
	timelineLabels = 160.0
	timelineRow    = 20.0
)

// sessionKind is the kind of the explorer's sessions in the records, so
// that a login at one replica holds at the others. Their ID is the SHA-256
// of the session ID the cookie holds: a dump of the records logs nobody
// in. Logins take a token, so they are few; maxSessions only bounds them.
const (
	sessionKind = "session"
	maxSessions = 10000
)

// uiSession is an explorer login, as its ticket holds it.
type uiSession struct {
	Role string `json:"role"`
	CSRF string `json:"csrf"`
}

func sessionTicket(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// newSession logs role in: it returns the cookie's session ID.
func (s *Server) newSession(role string) (string, error) {
	id := randomHex()
	val, err := json.Marshal(uiSession{Role: role, CSRF: randomHex()})
	if err != nil {
		return "", fmt.Errorf("explorer session: %w", err)
	}
	now := s.now()
	t := db.Ticket{Kind: sessionKind, ID: sessionTicket(id), Value: val, Expires: now.Add(sessionTTL)}
	if err := s.DB.PutTicket(t, maxSessions, now); err != nil {
		return "", fmt.Errorf("explorer session: %w", err)
	}
	return id, nil
}

// session is the live session of a cookie's ID; ok is false for none.
func (s *Server) session(id string) (sess uiSession, ok bool, err error) {
	val, err := s.DB.ReadTicket(sessionKind, sessionTicket(id), s.now())
	if errors.Is(err, db.ErrNotFound) {
		return sess, false, nil
	}
	if err != nil {
		return sess, false, fmt.Errorf("explorer session: %w", err)
	}
	if err := json.Unmarshal(val, &sess); err != nil {
		return sess, false, fmt.Errorf("explorer session: %w", err)
	}
	return sess, true, nil
}

func (s *Server) endSession(id string) error {
	if err := s.DB.DeleteTicket(sessionKind, sessionTicket(id)); err != nil {
		return fmt.Errorf("explorer logout: %w", err)
	}
	return nil
}

// randomHex is 32 random bytes: a session ID or CSRF token nobody can
// guess.
func randomHex() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b)
}

// uiHandler is a page handler that runs with the caller's session.
type uiHandler func(w http.ResponseWriter, r *http.Request, sess uiSession)

func (s *Server) uiRoutes(mux *http.ServeMux) {
	mux.Handle("GET /ui/login", s.uiHeaders(http.HandlerFunc(s.uiLoginForm)))
	mux.Handle("POST /ui/login", s.uiHeaders(http.HandlerFunc(s.uiLogin)))
	mux.Handle("POST /ui/logout", s.uiSession("", s.uiLogout))
	mux.Handle("GET /ui/{$}", s.uiSession("", s.uiOverview))
	mux.Handle("GET /ui/nodes/{id}", s.uiSession("", s.uiNode))
	mux.Handle("POST /ui/nodes/{id}/approve", s.uiSession(roleAdmin, s.uiNodeAction(s.Approve)))
	mux.Handle("POST /ui/nodes/{id}/deny", s.uiSession(roleAdmin, s.uiNodeAction(s.Deny)))
}

// uiHeaders sets what every explorer answer carries: no scripts, frames
// or foreign forms, no caching of pages that show the fleet.
func (s *Server) uiHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", uiCSP)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// uiSession sends callers without a valid session to the login page,
// refuses a POST without the session's CSRF token, and a role other than
// need ("" takes any).
func (s *Server) uiSession(need string, h uiHandler) http.Handler {
	return s.uiHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var sess uiSession
		ok := false
		if c, err := r.Cookie(sessionCookie); err == nil {
			if sess, ok, err = s.session(c.Value); err != nil {
				s.uiFail(w, r, err)
				return
			}
		}
		if !ok {
			http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && !s.uiCSRF(w, r, sess.CSRF) {
			s.uiError(w, http.StatusForbidden, "CSRF token missing or wrong: reload the page and try again")
			return
		}
		if need != "" && sess.Role != need {
			s.uiError(w, http.StatusForbidden, "this needs the "+need+" role; you are logged in as "+sess.Role)
			return
		}
		h(w, r, sess)
	}))
}

// uiCSRF reports whether the form's CSRF field is want.
func (s *Server) uiCSRF(w http.ResponseWriter, r *http.Request, want string) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxUIForm)
	if err := r.ParseForm(); err != nil {
		return false
	}
	got := r.PostForm.Get(csrfField)
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// uiCookie is one of the explorer's cookies: HTTPS only, out of reach of
// scripts, never sent with a request another site starts.
func uiCookie(name, value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: "/ui/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
	if maxAge < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(maxAge / time.Second)
	}
	return c
}

// uiLoginForm gives the form a fresh double-submit CSRF token: there is
// no session yet to keep it in, so it goes in a cookie as well as the
// form, and a POST must carry both alike.
func (s *Server) uiLoginForm(w http.ResponseWriter, r *http.Request) {
	s.uiLoginPage(w, http.StatusOK, "")
}

func (s *Server) uiLoginPage(w http.ResponseWriter, code int, problem string) {
	tok := randomHex()
	http.SetCookie(w, uiCookie(loginCSRF, tok, time.Hour))
	s.uiRender(w, code, "login", map[string]string{"CSRF": tok, "Problem": problem})
}

func (s *Server) uiLogin(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(loginCSRF)
	if err != nil || !s.uiCSRF(w, r, c.Value) {
		s.uiError(w, http.StatusForbidden, "login form expired or forged (CSRF token): reload the login page")
		return
	}
	role := s.uiRole(r.PostForm.Get("token"))
	if role == "" {
		s.log().Warn("explorer login failed", "client", r.RemoteAddr)
		s.uiLoginPage(w, http.StatusUnauthorized, "token wrong")
		return
	}
	id, err := s.newSession(role)
	if err != nil {
		s.uiFail(w, r, err)
		return
	}
	http.SetCookie(w, uiCookie(loginCSRF, "", -1))
	http.SetCookie(w, uiCookie(sessionCookie, id, sessionTTL))
	s.log().Info("explorer login", "client", r.RemoteAddr, "role", role)
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// uiRole is the role a token gives, "" for none; both comparisons run
// in constant time, as requireToken's does.
func (s *Server) uiRole(tok string) string {
	switch {
	case tok == "":
		return ""
	case s.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.Token)) == 1:
		return roleAdmin
	case s.ViewerToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.ViewerToken)) == 1:
		return roleViewer
	}
	return ""
}

func (s *Server) uiLogout(w http.ResponseWriter, r *http.Request, _ uiSession) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		if err := s.endSession(c.Value); err != nil {
			s.uiFail(w, r, err)
			return
		}
	}
	http.SetCookie(w, uiCookie(sessionCookie, "", -1))
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// uiRelease is a stored release and what it is to its channel now.
type uiRelease struct {
	records.ReleaseInfo
	State string // current, superseded, expired, withdrawal
}

type uiOverview struct {
	Role, CSRF string
	Farms      []records.Farm
	Releases   []uiRelease
	Nodes      []records.Node
}

func (s *Server) uiOverview(w http.ResponseWriter, r *http.Request, sess uiSession) {
	page, err := s.overview(sess)
	if err != nil {
		s.uiFail(w, r, err)
		return
	}
	s.uiRender(w, http.StatusOK, "overview", page)
}

func (s *Server) overview(sess uiSession) (uiOverview, error) {
	page := uiOverview{Role: sess.Role, CSRF: sess.CSRF}
	var err error
	if page.Farms, err = s.DB.Farms(); err != nil {
		return page, fmt.Errorf("explorer: listing farms: %w", err)
	}
	rs, err := s.DB.Releases("")
	if err != nil {
		return page, fmt.Errorf("explorer: listing releases: %w", err)
	}
	page.Releases = releaseStates(rs, s.now())
	if page.Nodes, err = s.DB.Nodes(); err != nil {
		return page, fmt.Errorf("explorer: listing nodes: %w", err)
	}
	slices.SortStableFunc(page.Nodes, func(a, b records.Node) int {
		return cmp.Or(cmp.Compare(stateRank(a.State), stateRank(b.State)), cmp.Compare(a.ID, b.ID))
	})
	return page, nil
}

// stateRank puts the nodes that need someone first: failed, then held
// for approval, then booting, then ready, then the denied ones.
func stateRank(state string) int {
	switch state {
	case registry.StateFailed:
		return 0
	case registry.StatePending:
		return 1
	case registry.StateBooting:
		return 2
	case registry.StateReady:
		return 3
	case registry.StateDenied:
		return 4
	}
	return 5
}

// releaseStates orders each channel's releases newest first: the newest
// is current (or a withdrawal, or expired), the others superseded unless
// expired.
func releaseStates(rs []records.ReleaseInfo, now time.Time) []uiRelease {
	slices.SortFunc(rs, func(a, b records.ReleaseInfo) int {
		return cmp.Or(cmp.Compare(a.Channel, b.Channel), cmp.Compare(b.Version, a.Version))
	})
	out := make([]uiRelease, 0, len(rs))
	for i, ri := range rs {
		ri.Envelope = nil
		newest := i == 0 || rs[i-1].Channel != ri.Channel
		st := "superseded"
		switch {
		case newest && ri.Withdrawn:
			st = "withdrawal"
		case !ri.Expires.IsZero() && !now.Before(ri.Expires):
			st = "expired"
		case newest:
			st = "current"
		}
		out = append(out, uiRelease{ri, st})
	}
	return out
}

type uiNodePage struct {
	Role, CSRF string
	Node       records.Node
	Timeline   uiTimeline
}

func (s *Server) uiNode(w http.ResponseWriter, r *http.Request, sess uiSession) {
	id := r.PathValue("id")
	n, err := s.uiLookup(id)
	if err != nil {
		s.uiFail(w, r, err)
		return
	}
	s.uiRender(w, http.StatusOK, "node", uiNodePage{Role: sess.Role, CSRF: sess.CSRF, Node: n, Timeline: drawTimeline(n.Timeline)})
}

func (s *Server) uiLookup(id string) (records.Node, error) {
	if err := checkNodeID(id); err != nil {
		return records.Node{}, err
	}
	n, err := s.DB.Node(id)
	if err != nil {
		return n, fail(dbStatus(err), "node %s: %v", id, err)
	}
	return n, nil
}

// uiNodeAction is a node page's form (approve, deny): the change, then
// the node's page again.
func (s *Server) uiNodeAction(change func(string) (records.Node, error)) uiHandler {
	return func(w http.ResponseWriter, r *http.Request, _ uiSession) {
		id := r.PathValue("id")
		if _, err := change(id); err != nil {
			s.uiFail(w, r, err)
			return
		}
		http.Redirect(w, r, "/ui/nodes/"+url.PathEscape(id), http.StatusSeeOther)
	}
}

// uiTimeline is a boot timeline laid out for the SVG: numbers only, the
// text goes through the template's escaping. Steps before PID 1 (the
// firmware's and kernel's shares, at negative times) are drawn left of
// ZeroX, PID 1's start.
type uiTimeline struct {
	Width, Height, BarsX float64
	Bars                 []uiBar
	TotalMS              float64 // from the first step's start to the last end
	BeforeMS             float64 // of it, before PID 1 started
	ZeroX                float64
}

type uiBar struct {
	timeline.Step
	X, Y, W, TextY float64
	Before         bool // ended by PID 1's start
}

// drawTimeline scales the steps to timelineWidth: one row per step,
// x from its start to its end, the earliest start at the left.
func drawTimeline(steps []timeline.Step) uiTimeline {
	tl := uiTimeline{Width: timelineLabels + timelineWidth + 10, Height: timelineRow*float64(len(steps)) + 4, BarsX: timelineLabels}
	end := 0.0
	for _, st := range steps {
		tl.BeforeMS = max(tl.BeforeMS, -st.StartMS)
		end = max(end, st.EndMS, st.StartMS)
	}
	tl.TotalMS = tl.BeforeMS + end
	scale := 0.0
	if tl.TotalMS > 0 {
		scale = timelineWidth / tl.TotalMS
	}
	tl.ZeroX = timelineLabels + tl.BeforeMS*scale
	for i, st := range steps {
		y := timelineRow*float64(i) + 2
		b := uiBar{Step: st, X: tl.ZeroX + st.StartMS*scale, Y: y, TextY: y + 12, Before: st.StartMS < 0}
		b.W = max((st.EndMS-st.StartMS)*scale, 1) // a zero-length step still shows
		tl.Bars = append(tl.Bars, b)
	}
	return tl
}

// uiFail answers an error as a page, with the code the API would use.
func (s *Server) uiFail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	if errors.As(err, &he) {
		s.uiError(w, he.code, he.msg)
		return
	}
	s.log().Error("explorer request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	s.uiError(w, http.StatusInternalServerError, err.Error())
}

func (s *Server) uiError(w http.ResponseWriter, code int, msg string) {
	s.uiRender(w, code, "error", map[string]any{"Code": code, "Status": http.StatusText(code), "Message": msg})
}

// uiRender executes a page into memory first, so that a template error
// becomes a 500 rather than half a page.
func (s *Server) uiRender(w http.ResponseWriter, code int, page string, data any) {
	var buf bytes.Buffer
	if err := uiPages.ExecuteTemplate(&buf, page, data); err != nil {
		s.log().Error("explorer template failed", "page", page, "err", err)
		http.Error(w, "internal error rendering "+page, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// uiTime shows a time in UTC to the second, or "never".
func uiTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}
