package store

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
)

// adminServer is a minimal server side of the upload contract backed by a
// Dir: it checks the token, verifies through Dir and serves the tree under
// /store/, as cmd/zgrid does.
func adminServer(t *testing.T, d *Dir, token string) string {
	t.Helper()
	mux := http.NewServeMux()
	auth := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return false
		}
		return true
	}
	mux.HandleFunc("PUT /v1/admin/store/chunks/{hex}", func(w http.ResponseWriter, r *http.Request) {
		if !auth(w, r) {
			return
		}
		id, err := digest.Parse(r.PathValue("hex"))
		size, serr := strconv.ParseUint(r.Header.Get("X-Zeroboot-Size"), 10, 32)
		body, _ := io.ReadAll(io.LimitReader(r.Body, flist.MaxCompressedSize+1))
		if err != nil || serr != nil {
			http.Error(w, "bad chunk name or size", http.StatusBadRequest)
			return
		}
		stored, err := d.PutChunk(flist.ChunkRef{ID: id, Size: uint32(size), CSize: uint32(len(body))}, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		w.Header().Set(StoredSizeHeader, strconv.Itoa(int(stored.CSize)))
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("PUT /v1/admin/store/flists/{hex}", func(w http.ResponseWriter, r *http.Request) {
		if !auth(w, r) {
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, flist.MaxMetadataSize+1))
		id, err := d.PutFlist(body)
		if err != nil || id.Hex() != r.PathValue("hex") {
			http.Error(w, "flist refused", http.StatusUnprocessableEntity)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	mux.Handle("GET /store/", http.StripPrefix("/store", http.FileServer(http.Dir(d.Root))))
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s.URL
}

func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

// TestUploadThenFetch uploads through the admin API and reads back what
// the server stored (a node fetching it is pkg/fetch's test).
func TestUploadThenFetch(t *testing.T) {
	d := &Dir{Root: t.TempDir()}
	url := adminServer(t, d, "s3cret")
	u := &Uploader{URL: url, Token: "s3cret"}
	ref, c, raw := chunk(t, "uploaded ")
	if _, err := u.PutChunk(ref, c); err != nil {
		t.Fatal(err)
	}
	enc := encodedFlist(t, "usr")
	id, err := u.PutFlist(enc)
	if err != nil {
		t.Fatal(err)
	}
	if id != digest.Of(enc) {
		t.Fatalf("PutFlist id %s, want %s", id, digest.Of(enc))
	}
	got, err := contentOf(d.Chunk(context.Background(), ref, nil))
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("fetch uploaded chunk: %d bytes, %v", len(got), err)
	}
	f, err := d.Flist(context.Background(), id)
	if err != nil || f.Entries[0].Path != "usr" {
		t.Fatalf("fetch uploaded flist: %+v, %v", f, err)
	}
}

func TestUploadErrors(t *testing.T) {
	d := &Dir{Root: t.TempDir()}
	url := adminServer(t, d, "s3cret")
	ref, c, _ := chunk(t, "uploaded ")
	tampered := bytes.Clone(c)
	tampered[len(tampered)/2] ^= 1
	loud := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInsufficientStorage)
		w.Write([]byte("disk full\n" + strings.Repeat("x", 1<<20)))
	})
	hostile := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte("\x1b[2Jno\nfetch: ok\n"))
	})
	for _, tc := range []struct {
		name string
		u    *Uploader
		c    []byte
		want string
	}{
		{"wrong token", &Uploader{URL: url, Token: "guess"}, c, "401 Unauthorized: bad token"},
		{"no token", &Uploader{URL: url}, c, "no admin token"},
		{"no url", &Uploader{Token: "s3cret"}, c, "no server URL"},
		{"server refuses tampered bytes", &Uploader{URL: url, Token: "s3cret"}, tampered, "422 Unprocessable Entity: store " + ref.String() + ": refusing unverified bytes"},
		{"size mismatch", &Uploader{URL: url, Token: "s3cret"}, c[1:], "declared"},
		{"huge reason", &Uploader{URL: loud, Token: "t"}, c, "507 Insufficient Storage: disk full"},
		{"terminal controls in reason", &Uploader{URL: hostile, Token: "t"}, c, "403 Forbidden: ?[2Jno?fetch: ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.u.PutChunk(ref, tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("PutChunk error %v, want %q", err, tc.want)
			}
			if len(err.Error()) > 1024 {
				t.Fatalf("error is %d bytes: the server's reason was not bounded", len(err.Error()))
			}
		})
	}
	if d.HasChunk(ref.ID) {
		t.Fatal("a refused upload was stored")
	}
}

// The server's answer decides the CSize the builder records, so a missing
// or impossible stored size is an error, never a guess.
func TestUploadStoredSize(t *testing.T) {
	ref, c, _ := chunk(t, "uploaded ")
	for _, tc := range []struct {
		name, header string
		want         uint32
		err          string
	}{
		{"as uploaded", strconv.Itoa(len(c)), uint32(len(c)), ""},
		{"an earlier, larger copy", strconv.Itoa(len(c) + 40), uint32(len(c) + 40), ""},
		{"missing", "", 0, `X-Zeroboot-Stored-Size ""`},
		{"zero", "0", 0, `X-Zeroboot-Stored-Size "0"`},
		{"over the bound", strconv.Itoa(flist.MaxCompressedSize + 1), 0, "want the stored compressed size"},
		{"garbage", "12 bytes", 0, `X-Zeroboot-Stored-Size "12 bytes"`},
		{"negative", "-3", 0, `"-3"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := serve(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.header != "" {
					w.Header().Set(StoredSizeHeader, tc.header)
				}
				w.WriteHeader(http.StatusNoContent)
			})
			got, err := (&Uploader{URL: url, Token: "tok"}).PutChunk(ref, c)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("PutChunk = %s, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != ref.ID || got.Size != ref.Size || got.CSize != tc.want {
				t.Fatalf("PutChunk = %s/%d, want %s with CSize %d", got, got.CSize, ref, tc.want)
			}
		})
	}
}

func TestUploadRequest(t *testing.T) {
	ref, c, _ := chunk(t, "uploaded ")
	var got *http.Request
	var body []byte
	url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		w.Header().Set(StoredSizeHeader, strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusNoContent)
	})
	stored, err := (&Uploader{URL: url + "/", Token: "tok"}).PutChunk(ref, c)
	if err != nil || stored != ref {
		t.Fatalf("PutChunk = %s, %v; want %s", stored, err, ref)
	}
	for _, tc := range []struct{ what, got, want string }{
		{"method", got.Method, http.MethodPut},
		{"path", got.URL.Path, "/v1/admin/store/chunks/" + ref.ID.Hex()},
		{"size header", got.Header.Get("X-Zeroboot-Size"), strconv.Itoa(int(ref.Size))},
		{"hash header", got.Header.Get(HashHeader), "sha256"},
		{"authorization", got.Header.Get("Authorization"), "Bearer tok"},
		{"content length", strconv.FormatInt(got.ContentLength, 10), strconv.Itoa(len(c))},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.what, tc.got, tc.want)
		}
	}
	if !bytes.Equal(body, c) {
		t.Error("body is not the compressed chunk")
	}
}
