// Package fetch is the node's side of a content store (docs/flist.md):
// chunks and flist metadata fetched by digest from one or more mirrors over
// HTTP or HTTPS, each body bounded by what the reference declares, verified
// before it is returned (flist.OpenChunk), and failed over to the next
// mirror on any error.
package fetch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
)

// HTTP defaults.
const (
	DefaultIdleTimeout    = 15 * time.Second
	DefaultRequestTimeout = 2 * time.Minute
)

// MaxConnsPerHost is how many idle connections a store client should keep
// per mirror: at least the extractor's parallel fetches, or HTTP/1.1
// mirrors see a new connection for most chunks (net/http keeps 2).
const MaxConnsPerHost = 16

// MaxRedirects is how many redirects one fetch follows. Following them is
// safe only because every blob is checked against its digest after the
// fetch; a few are enough for a CDN or a mirror's front end, and a loop is
// cut short.
const MaxRedirects = 3

// HTTP fetches from store trees served over HTTP. Every URL is a store base
// (the tree of docs/flist.md lives under it); they are tried in order, and a
// mirror that fails in any way (transport, status, length, content) is
// skipped for the next one. A mirror that failed goes to the back of the
// order for Demote, so a corrupt or trickling mirror costs one failed
// request per fetch in flight, not one per chunk. A fetch follows at most MaxRedirects redirects,
// and only to the scheme of the store URL it started from (see
// checkRedirect). Safe for concurrent use.
type HTTP struct {
	URLs []string
	// Client makes the requests (nil: http.DefaultClient). Its own
	// CheckRedirect is not used: the store's rule replaces it, so a client
	// that follows nothing (the registry's) still works here.
	Client *http.Client
	// Log, if set, is told about each mirror that failed.
	Log func(msg string, args ...any)
	// IdleTimeout fails a request when no bytes arrive for this long
	// (headers or body), so a server trickling one byte a minute is dropped
	// quickly. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// RequestTimeout bounds one request from start to last byte. Zero means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Demote is how long a mirror that failed is tried after the others.
	// Zero means DefaultDemote.
	Demote time.Duration
	// Now is the clock for Demote; nil is time.Now.
	Now func() time.Time

	once sync.Once
	c    *http.Client // Client made for the store, by client()

	mu     sync.Mutex
	failed map[string]time.Time // base URL -> when it last failed
}

// DefaultDemote is how long a failed mirror stays at the back of the order.
const DefaultDemote = time.Minute

// Chunk fetches chunk ref and returns its verified uncompressed bytes, in
// buf's memory when it is large enough. It implements flist.ChunkSource.
func (h *HTTP) Chunk(ctx context.Context, ref flist.ChunkRef, buf []byte) (flist.Verified, error) {
	if ref.CSize == 0 || ref.CSize > flist.MaxCompressedSize {
		return flist.Verified{}, fmt.Errorf("fetch %s: declared compressed size %d outside 1..%d", ref, ref.CSize, flist.MaxCompressedSize)
	}
	body := blobPool.Get().(*[]byte)
	defer blobPool.Put(body)
	var v flist.Verified
	err := h.each(ctx, ref.String(), "/"+flist.ChunkName(ref.ID), func(ctx context.Context, url string) error {
		b, err := h.get(ctx, url, int64(ref.CSize), false, (*body)[:0])
		if err != nil {
			return err
		}
		*body = b
		v, err = flist.OpenChunk(ref, b, buf)
		return err
	})
	return v, err
}

// blobPool holds compressed-body buffers: a chunk's blob is dead once
// decoded, and a fresh one per chunk is most of a delivery's garbage.
var blobPool = sync.Pool{New: func() any { b := make([]byte, 0, flist.DefaultChunkSize+flist.DefaultChunkSize/64); return &b }}

// FlistBytes fetches flist metadata id and returns it once its digest
// matches.
func (h *HTTP) FlistBytes(ctx context.Context, id digest.Digest) ([]byte, error) {
	var out []byte
	err := h.each(ctx, "flist "+id.String(), "/"+flist.FlistName(id), func(ctx context.Context, url string) error {
		b, err := h.get(ctx, url, flist.MaxMetadataSize, false, nil)
		if err != nil {
			return err
		}
		if got := digest.Of(b); got != id {
			return fmt.Errorf("content hash is %s", got)
		}
		out = b
		return nil
	})
	return out, err
}

// Flist fetches, verifies and decodes flist metadata id.
func (h *HTTP) Flist(ctx context.Context, id digest.Digest) (*flist.Flist, error) {
	b, err := h.FlistBytes(ctx, id)
	if err != nil {
		return nil, err
	}
	return flist.Decode(b)
}

// each runs try against every base URL in turn until one succeeds, and
// otherwise returns an error naming every URL's reason.
func (h *HTTP) each(ctx context.Context, what, suffix string, try func(ctx context.Context, url string) error) error {
	if len(h.URLs) == 0 {
		return fmt.Errorf("fetch %s: no store URLs", what)
	}
	var reasons []string
	for _, base := range h.order() {
		url := strings.TrimRight(base, "/") + suffix
		err := try(ctx, url)
		if err == nil {
			h.mark(base, false)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("fetch %s: %w (last: %s: %v)", what, context.Cause(ctx), url, err)
		}
		h.mark(base, true)
		if h.Log != nil {
			h.Log("store: mirror failed, trying the next", "object", what, "url", url, "err", err)
		}
		reasons = append(reasons, url+": "+err.Error())
	}
	return fmt.Errorf("fetch %s: all %d stores failed: %s", what, len(h.URLs), strings.Join(reasons, "; "))
}

// order is URLs with the mirrors that failed within Demote moved to the
// back, longest-ago failure first among them; the rest keep their order.
func (h *HTTP) order() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failed) == 0 {
		return h.URLs
	}
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	demote := h.Demote
	if demote <= 0 {
		demote = DefaultDemote
	}
	var good, bad []string
	for _, u := range h.URLs {
		if at, ok := h.failed[u]; ok && now.Sub(at) < demote {
			bad = append(bad, u)
		} else {
			good = append(good, u)
		}
	}
	slices.SortStableFunc(bad, func(a, b string) int { return h.failed[a].Compare(h.failed[b]) })
	return append(good, bad...)
}

// mark records that base failed, or forgets that it did once it served.
func (h *HTTP) mark(base string, failed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case failed:
		if h.failed == nil {
			h.failed = map[string]time.Time{}
		}
		now := time.Now()
		if h.Now != nil {
			now = h.Now()
		}
		h.failed[base] = now
	case len(h.failed) > 0:
		delete(h.failed, base)
	}
}

var errIdle = errors.New("no data")

// get fetches url and returns its body of at most max bytes (exactly max if
// exact), read into buf's memory as far as it goes, under the request
// timeout and the idle watchdog.
func (h *HTTP) get(ctx context.Context, url string, max int64, exact bool, buf []byte) ([]byte, error) {
	idle := h.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	total := h.RequestTimeout
	if total <= 0 {
		total = DefaultRequestTimeout
	}
	ctx, cancelTotal := context.WithTimeoutCause(ctx, total, fmt.Errorf("request took longer than %s", total))
	defer cancelTotal()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := newWatchdog(idle, func() { cancel(fmt.Errorf("%w for %s", errIdle, idle)) })
	defer w.stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	// Setting it ourselves stops the transport from transparently inflating
	// a gzip body, which would escape the length checks below.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := h.client().Do(req)
	if err != nil {
		var refused *redirectError
		if errors.As(err, &refused) {
			return nil, refused
		}
		return nil, causeOr(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return nil, fmt.Errorf("unexpected Content-Encoding %q", console.Sanitize(ce, console.MaxShown))
	}
	switch cl := resp.ContentLength; {
	case cl < 0: // not declared; the read below is bounded anyway
	case exact && cl != max:
		return nil, fmt.Errorf("Content-Length %d, want %d", cl, max)
	case cl > max:
		return nil, fmt.Errorf("Content-Length %d, want at most %d", cl, max)
	}
	w.kick()
	b, err := readAll(buf, io.LimitReader(progressReader{resp.Body, w}, max+1))
	if err != nil {
		return nil, fmt.Errorf("body after %d bytes: %w", len(b), causeOr(ctx, err))
	}
	switch {
	case int64(len(b)) > max:
		return nil, fmt.Errorf("body longer than the %d bytes expected", max)
	case exact && int64(len(b)) != max:
		return nil, fmt.Errorf("body is %d bytes, want %d", len(b), max)
	}
	return b, nil
}

// readAll is io.ReadAll appending to buf, so pooled memory is reused.
func readAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// client is Client, or http.DefaultClient, with the store's redirect rule
// and a transport for many requests at once.
func (h *HTTP) client() *http.Client {
	h.once.Do(func() {
		c := *http.DefaultClient
		if h.Client != nil {
			c = *h.Client
		}
		c.CheckRedirect = checkRedirect
		c.Transport = storeTransport(c.Transport)
		h.c = &c
	})
	return h.c
}

// storeTransport is rt made for many requests at once: HTTP/1.1 on up to
// MaxConnsPerHost connections per mirror, where HTTP/2 would put every
// chunk on one TCP connection. Measured over TLS from zgrid serve on
// loopback, 1,058 chunk requests, 4 in flight: 0.77-0.81 s against
// 0.90-1.08 s on HTTP/2 (bench/README.md). A transport that is not an
// *http.Transport is the caller's choice and left alone.
func storeTransport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	t, ok := rt.(*http.Transport)
	if !ok {
		return rt
	}
	t = t.Clone()
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	if t.TLSClientConfig != nil {
		// The original may already offer h2 by ALPN; a server would take it.
		t.TLSClientConfig = t.TLSClientConfig.Clone()
		t.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, MaxConnsPerHost)
	return t
}

// checkRedirect lets a fetch follow a redirect only to the scheme it
// started with. The content is verified anyway, but the scheme is the
// operator's choice: https to http would show what the node fetches to
// anyone on the path, http to https goes to a server the node's pinned CA
// was never meant for, and any other scheme (file, a registered custom
// one) is no store. via[0] is the request to the store URL itself.
func checkRedirect(req *http.Request, via []*http.Request) error {
	from, to := via[0].URL.Scheme, req.URL.Scheme
	target := console.Sanitize(req.URL.String(), console.MaxShown)
	switch {
	case len(via) > MaxRedirects:
		return &redirectError{fmt.Sprintf("redirect to %q refused: more than %d redirects", target, MaxRedirects)}
	case to != "http" && to != "https":
		return &redirectError{fmt.Sprintf("redirect to %q refused: scheme %q is not http or https", target, console.Sanitize(to, console.MaxShown))}
	case to != from:
		return &redirectError{fmt.Sprintf("redirect to %q refused: it leaves %s for %s, and a fetch keeps the store URL's scheme", target, from, to)}
	}
	return nil
}

// redirectError is a refused redirect, reported as itself rather than in
// net/http's wrapping, which repeats the target unsanitised.
type redirectError struct{ msg string }

func (e *redirectError) Error() string { return e.msg }

// causeOr prefers the reason a context was cancelled (idle, timeout) over the
// transport's generic "context canceled".
func causeOr(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil {
		return c
	}
	return err
}

// watchdog calls fire when kick has not been called for idle.
type watchdog struct {
	mu   sync.Mutex
	t    *time.Timer
	idle time.Duration
}

func newWatchdog(idle time.Duration, fire func()) *watchdog {
	return &watchdog{t: time.AfterFunc(idle, fire), idle: idle}
}

func (w *watchdog) kick() {
	w.mu.Lock()
	w.t.Reset(w.idle)
	w.mu.Unlock()
}

func (w *watchdog) stop() {
	w.mu.Lock()
	w.t.Stop()
	w.mu.Unlock()
}

// progressReader kicks the watchdog whenever bytes arrive.
type progressReader struct {
	r io.Reader
	w *watchdog
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.w.kick()
	}
	return n, err
}
