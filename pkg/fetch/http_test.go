package fetch

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/zeroboot/zeroboot/internal/testchunk"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
)

// serve starts a server answering every request with h, closed at test end.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

// blobs serves a store tree from memory; anything else is 404.
func blobs(m map[string][]byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, ok := m[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}
}

var _ flist.ChunkSource = (*HTTP)(nil)

func chunkPath(ref flist.ChunkRef) string { return "/" + flist.ChunkName(ref.ID) }

// logger records what HTTP.Log was told.
type logger struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logger) log(msg string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, fmt.Sprint(append([]any{msg}, args...)...))
}

func (l *logger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.msgs, "\n")
}

// TestHTTPChunk fetches a chunk of each hash, and refuses one whose bytes
// were swapped for another chunk's of the same size under either.
func TestHTTPChunk(t *testing.T) {
	for _, hash := range flist.Hashes {
		ref, c, raw := testchunk.ChunkOf(t, hash, "content ")
		_, swapped, _ := testchunk.ChunkOf(t, hash, "CONTENT ")
		good := serve(t, blobs(map[string][]byte{chunkPath(ref): c}))
		h := &HTTP{URLs: []string{good + "/"}}
		got, err := contentOf(h.Chunk(context.Background(), ref, nil))
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("%s: Chunk = %d bytes, %v", hash, len(got), err)
		}
		bad := serve(t, blobs(map[string][]byte{chunkPath(ref): swapped}))
		h = &HTTP{URLs: []string{bad + "/"}}
		if _, err := h.Chunk(context.Background(), ref, nil); err == nil || !strings.Contains(err.Error(), ref.String()+": content hash mismatch") {
			t.Errorf("%s: swapped chunk: %v", hash, err)
		}
	}
}

func TestHTTPChunkFailover(t *testing.T) {
	ref, c, raw := chunk(t, "content ")
	tampered := bytes.Clone(c)
	tampered[len(tampered)/2] ^= 1
	bad := serve(t, blobs(map[string][]byte{chunkPath(ref): tampered}))
	missing := serve(t, blobs(nil))
	good := serve(t, blobs(map[string][]byte{chunkPath(ref): c}))
	var l logger
	h := &HTTP{URLs: []string{bad, missing, good}, Log: l.log}
	got, err := contentOf(h.Chunk(context.Background(), ref, nil))
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("Chunk = %d bytes, %v", len(got), err)
	}
	logged := l.String()
	if !strings.Contains(logged, bad) || !strings.Contains(logged, missing) || strings.Contains(logged, good) {
		t.Fatalf("log should name the two failed mirrors only:\n%s", logged)
	}

	h.URLs = []string{bad, missing}
	_, err = contentOf(h.Chunk(context.Background(), ref, nil))
	if err == nil {
		t.Fatal("Chunk succeeded with no good mirror")
	}
	for _, want := range []string{"all 2 stores failed", bad + chunkPath(ref) + ": ", missing + chunkPath(ref) + ": status 404"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestHTTPChunkRefuses(t *testing.T) {
	ref, c, _ := chunk(t, "content ")
	enc, _ := zstd.NewWriter(nil, zstd.WithWindowSize(1<<20))
	bomb := enc.EncodeAll(make([]byte, 256<<20), nil)
	bombRef := flist.ChunkRef{ID: ref.ID, Size: ref.Size, CSize: uint32(len(bomb))}
	garbage := make([]byte, ref.CSize)
	rand.Read(garbage)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(make([]byte, 64<<20))
	zw.Close()

	for _, tc := range []struct {
		name string
		ref  flist.ChunkRef
		h    http.HandlerFunc
		want string
	}{
		{"truncated", ref, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(c)))
			w.Write(c[:len(c)/2])
		}, "body after"},
		{"truncated without length", ref, func(w http.ResponseWriter, r *http.Request) {
			w.Write(c[:len(c)/2])
			w.(http.Flusher).Flush()
		}, "inflates to 0 bytes"},
		{"longer than declared", ref, func(w http.ResponseWriter, r *http.Request) {
			w.Write(c)
			w.(http.Flusher).Flush()
			w.Write(make([]byte, 1<<20))
		}, fmt.Sprintf("body longer than the %d bytes expected", len(c))},
		{"lying Content-Length", ref, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(c)+100))
			w.Write(c)
			w.Write(make([]byte, 100))
		}, fmt.Sprintf("Content-Length %d, want at most %d", len(c)+100, len(c))},
		{"404", ref, blobs(nil), "status 404 Not Found"},
		{"500", ref, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }, "status 500"},
		{"garbage", ref, blobs(map[string][]byte{chunkPath(ref): garbage}), "zstd"},
		{"decompression bomb", bombRef, blobs(map[string][]byte{chunkPath(ref): bomb}), "inflates past its declared"},
		{"gzip bomb", ref, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gz.Bytes())
		}, `unexpected Content-Encoding "gzip"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &HTTP{URLs: []string{serve(t, tc.h)}}
			got, err := contentOf(h.Chunk(context.Background(), tc.ref, nil))
			if err == nil {
				t.Fatalf("Chunk accepted %d bytes", len(got))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Chunk error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// trickle sends one byte and then waits a minute per byte, as a hostile or
// broken server might; it stops when the client goes away.
func trickle(headersFirst bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if headersFirst {
			w.Write([]byte{0x28})
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
			w.Write([]byte{0xb5})
		}
	}
}

func TestHTTPTrickle(t *testing.T) {
	ref, c, raw := chunk(t, "content ")
	good := serve(t, blobs(map[string][]byte{chunkPath(ref): c}))
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
	}{
		{"one byte a minute", trickle(true)},
		{"no headers", trickle(false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slow := serve(t, tc.h)
			var l logger
			h := &HTTP{URLs: []string{slow, good}, IdleTimeout: 200 * time.Millisecond, Log: l.log}
			got, err := contentOf(h.Chunk(context.Background(), ref, nil))
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("Chunk = %d bytes, %v", len(got), err)
			}
			if !strings.Contains(l.String(), "no data for 200ms") {
				t.Fatalf("the slow mirror was not dropped by the idle watchdog; log:\n%s", l.String())
			}
		})
	}
}

// A server that keeps sending, but too slowly to ever finish, is cut by the
// request timeout even though it never goes idle.
func TestHTTPRequestTimeout(t *testing.T) {
	ref, c, _ := chunk(t, "content ")
	slow := serve(t, func(w http.ResponseWriter, r *http.Request) {
		for i := range c {
			w.Write(c[i : i+1])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	h := &HTTP{URLs: []string{slow}, IdleTimeout: 2 * time.Second, RequestTimeout: 300 * time.Millisecond}
	_, err := contentOf(h.Chunk(context.Background(), ref, nil))
	if err == nil || !strings.Contains(err.Error(), "request took longer than 300ms") {
		t.Fatalf("Chunk error %v, want the request timeout", err)
	}
}

func TestHTTPCallerCancelStopsFailover(t *testing.T) {
	ref, c, _ := chunk(t, "content ")
	good := serve(t, blobs(map[string][]byte{chunkPath(ref): c}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var l logger
	h := &HTTP{URLs: []string{good, good}, Log: l.log}
	_, err := contentOf(h.Chunk(ctx, ref, nil))
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("Chunk with a cancelled context: %v", err)
	}
	if l.String() != "" {
		t.Fatalf("a cancelled fetch blamed the mirrors:\n%s", l.String())
	}
}

func TestHTTPRefusesBadRef(t *testing.T) {
	h := &HTTP{URLs: []string{"http://192.0.2.1"}}
	_, err := contentOf(h.Chunk(context.Background(), flist.ChunkRef{ID: digest.Of(nil), Size: 1, CSize: flist.MaxCompressedSize + 1}, nil))
	if err == nil || !strings.Contains(err.Error(), "outside 1..") {
		t.Fatalf("Chunk with an oversized ref: %v", err)
	}
	if _, err := (&HTTP{}).FlistBytes(context.Background(), digest.Of(nil)); err == nil || !strings.Contains(err.Error(), "no store URLs") {
		t.Fatalf("FlistBytes without URLs: %v", err)
	}
}

func TestHTTPFlist(t *testing.T) {
	enc := encodedFlist(t, "etc")
	id := digest.Of(enc)
	path := "/flists/" + id.Hex()
	tampered := bytes.Clone(enc)
	tampered[len(tampered)-1] ^= 1
	bad := serve(t, blobs(map[string][]byte{path: tampered}))
	huge := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(flist.MaxMetadataSize+1))
		w.Write(enc)
	})
	good := serve(t, blobs(map[string][]byte{path: enc}))

	h := &HTTP{URLs: []string{bad, huge, good}}
	b, err := h.FlistBytes(context.Background(), id)
	if err != nil || !bytes.Equal(b, enc) {
		t.Fatalf("FlistBytes: %v", err)
	}
	f, err := h.Flist(context.Background(), id)
	if err != nil || len(f.Entries) != 1 || f.Entries[0].Path != "etc" {
		t.Fatalf("Flist = %+v, %v", f, err)
	}
	h.URLs = []string{bad, huge}
	_, err = h.FlistBytes(context.Background(), id)
	if err == nil {
		t.Fatal("FlistBytes succeeded with no good mirror")
	}
	for _, want := range []string{"content hash is", fmt.Sprintf("Content-Length %d, want at most %d", flist.MaxMetadataSize+1, flist.MaxMetadataSize)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func BenchmarkHTTPChunk(b *testing.B) {
	raw := make([]byte, flist.DefaultChunkSize)
	rand.Read(raw)
	ref, c, err := flist.CompressChunk(flist.SHA256, raw)
	if err != nil {
		b.Fatal(err)
	}
	s := httptest.NewServer(blobs(map[string][]byte{chunkPath(ref): c}))
	defer s.Close()
	h := &HTTP{URLs: []string{s.URL}}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := contentOf(h.Chunk(context.Background(), ref, nil)); err != nil {
			b.Fatal(err)
		}
	}
}

// redirect answers every request with a redirect to to+path, counting them.
func redirect(n *atomic.Int32, to func() string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.Redirect(w, r, to()+r.URL.Path, http.StatusFound)
	}
}

// A store may redirect (a CDN, a mirror's front end): the fetch follows to
// the same scheme and still verifies what it gets there.
func TestHTTPRedirectFollowed(t *testing.T) {
	ref, c, raw := chunk(t, "content ")
	tampered := bytes.Clone(c)
	tampered[len(tampered)/2] ^= 1
	for _, tc := range []struct {
		name    string
		tls     bool
		content []byte
		hops    int // redirects before the content
		want    string
	}{
		{"http to http", false, c, 1, ""},
		{"https to https", true, c, 1, ""},
		{"as many as allowed", true, c, MaxRedirects, ""},
		{"one too many", false, c, MaxRedirects + 1, fmt.Sprintf("more than %d redirects", MaxRedirects)},
		{"followed and verified", true, tampered, 1, "content hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := httptest.NewUnstartedServer(nil)
			if tc.tls {
				start.StartTLS()
			} else {
				start.Start()
			}
			t.Cleanup(start.Close)
			// Every server of the chain is the same kind; httptest TLS
			// servers share a certificate, so start's client trusts them all.
			newServer := httptest.NewServer
			if tc.tls {
				newServer = httptest.NewTLSServer
			}
			var hits atomic.Int32
			next := newServer(blobs(map[string][]byte{chunkPath(ref): tc.content}))
			t.Cleanup(next.Close)
			for range tc.hops - 1 {
				to := next.URL
				next = newServer(redirect(&hits, func() string { return to }))
				t.Cleanup(next.Close)
			}
			to := next.URL
			start.Config.Handler = redirect(&hits, func() string { return to })
			// A client that follows no redirect itself (like the registry's)
			// still follows the store's rule.
			client := start.Client()
			client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			h := &HTTP{URLs: []string{start.URL}, Client: client}
			got, err := contentOf(h.Chunk(context.Background(), ref, nil))
			if tc.want == "" {
				if err != nil || !bytes.Equal(got, raw) {
					t.Fatalf("Chunk = %d bytes, %v", len(got), err)
				}
				if int(hits.Load()) != tc.hops {
					t.Fatalf("%d redirects, want %d", hits.Load(), tc.hops)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Chunk error %v, want %q", err, tc.want)
			}
		})
	}
}

// A redirect never leaves the store URL's scheme, nor goes to anything but
// http(s); the mirror is failed and the next one is asked.
func TestHTTPRedirectRefused(t *testing.T) {
	ref, c, raw := chunk(t, "content ")
	var hits atomic.Int32
	content := blobs(map[string][]byte{chunkPath(ref): c})
	countedContent := func(w http.ResponseWriter, r *http.Request) { hits.Add(1); content(w, r) }
	plain := httptest.NewServer(http.HandlerFunc(countedContent))
	t.Cleanup(plain.Close)
	secure := httptest.NewTLSServer(http.HandlerFunc(countedContent))
	t.Cleanup(secure.Close)
	for _, tc := range []struct {
		name     string
		tls      bool
		location string
		want     string
	}{
		{"https to http", true, plain.URL, `redirect to "` + plain.URL + chunkPath(ref) + `" refused: it leaves https for http`},
		{"http to https", false, secure.URL, `redirect to "` + secure.URL + chunkPath(ref) + `" refused: it leaves http for https`},
		{"to file", true, "file://", `redirect to "file://` + chunkPath(ref) + `" refused: scheme "file" is not http or https`},
		{"to ftp", false, "ftp://192.0.2.1", `scheme "ftp" is not http or https`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			h := func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", tc.location+r.URL.Path)
				w.WriteHeader(http.StatusFound)
			}
			var bad *httptest.Server
			if tc.tls {
				bad = httptest.NewTLSServer(http.HandlerFunc(h))
			} else {
				bad = httptest.NewServer(http.HandlerFunc(h))
			}
			t.Cleanup(bad.Close)
			mirror := plain
			if tc.tls {
				mirror = secure
			}
			var l logger
			s := &HTTP{URLs: []string{bad.URL, mirror.URL}, Client: secure.Client(), Log: l.log}
			got, err := contentOf(s.Chunk(context.Background(), ref, nil))
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("Chunk = %d bytes, %v; want the next mirror's content", len(got), err)
			}
			if hits.Load() != 1 {
				t.Fatalf("content servers hit %d times, want once (the next mirror, not the redirect)", hits.Load())
			}
			if !strings.Contains(l.String(), tc.want) {
				t.Fatalf("log %q lacks %q", l.String(), tc.want)
			}
		})
	}
}

// A store that speaks HTTP/2 is still fetched from over HTTP/1.1 on
// several connections, even with a client whose transport offers h2.
func TestHTTPStoreUsesHTTP1(t *testing.T) {
	ref, c, raw := chunk(t, "content ")
	var protos sync.Map
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		blobs(map[string][]byte{chunkPath(ref): c})(w, r)
	}))
	s.EnableHTTP2 = true
	s.StartTLS()
	defer s.Close()
	hc := s.Client() // offers h2
	tr := hc.Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = true
	h := &HTTP{URLs: []string{s.URL}, Client: hc}
	for range 3 {
		got, err := contentOf(h.Chunk(context.Background(), ref, nil))
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("fetch: %d bytes, %v", len(got), err)
		}
	}
	protos.Range(func(k, _ any) bool {
		if k != "HTTP/1.1" {
			t.Errorf("served over %v", k)
		}
		return true
	})
	if _, ok := protos.Load("HTTP/1.1"); !ok {
		t.Error("no request over HTTP/1.1")
	}
}

// The shared test helpers, under the names these tests use.
var (
	chunk        = testchunk.Chunk
	encodedFlist = testchunk.Flist
	contentOf    = testchunk.Content
)

// A mirror that failed is tried after the others for Demote, then first
// again; one that serves again keeps its place.
func TestHTTPDemotesFailedMirror(t *testing.T) {
	ref, c, _ := chunk(t, "content ")
	var badHits, goodHits int
	var mu sync.Mutex
	tampered := bytes.Clone(c)
	tampered[len(tampered)/2] ^= 1
	bad := serve(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		badHits++
		mu.Unlock()
		w.Write(tampered)
	})
	good := serve(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		goodHits++
		mu.Unlock()
		w.Write(c)
	})
	now := time.Unix(1000, 0)
	h := &HTTP{URLs: []string{bad, good}, Demote: time.Minute, Now: func() time.Time { return now }}
	fetch := func() {
		t.Helper()
		if _, err := h.Chunk(context.Background(), ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		fetch()
	}
	if badHits != 1 || goodHits != 5 {
		t.Fatalf("after 5 fetches: corrupt mirror asked %d times, good %d; want 1 and 5", badHits, goodHits)
	}
	now = now.Add(61 * time.Second)
	fetch()
	if badHits != 2 {
		t.Fatalf("corrupt mirror asked %d times once its demotion ran out, want 2", badHits)
	}
	if got := h.order(); !slices.Equal(got, []string{good, bad}) {
		t.Fatalf("order after the second failure: %q", got)
	}
}
