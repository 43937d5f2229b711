package server

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
)

// parseHex accepts exactly 64 lower-case hex digits: the store's file
// names, never the "sha256:" text form.
func parseHex(name string) (digest.Digest, error) {
	if len(name) != 2*digest.Size || strings.HasPrefix(name, "sha256:") {
		return digest.Digest{}, fail(http.StatusBadRequest, "blob name %q: want 64 lower-case hex digits", name)
	}
	d, err := digest.Parse(name)
	if err != nil {
		return d, fail(http.StatusBadRequest, "blob name %q: %v", name, err)
	}
	return d, nil
}

func (s *Server) getChunk(w http.ResponseWriter, r *http.Request) {
	id, err := parseHex(r.PathValue("name"))
	if err == nil && r.PathValue("prefix") != id.Hex()[:2] {
		err = fail(http.StatusBadRequest, "chunk %s is not under %s/", id.Hex(), r.PathValue("prefix"))
	}
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	s.serveBlob(w, r, "chunk", id, s.Store.ChunkPath(id))
}

func (s *Server) getFlist(w http.ResponseWriter, r *http.Request) {
	id, err := parseHex(r.PathValue("name"))
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	s.serveBlob(w, r, "flist", id, s.Store.FlistPath(id))
}

// serveBlob serves a content-addressed file: its name is its digest, so it
// never changes and any cache may keep it forever. Bytes are not verified
// here; every reader verifies them against the digest.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, what string, id digest.Digest, path string) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		writeError(w, http.StatusNotFound, what+" "+id.String()+" not in the store")
		return
	}
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		s.replyError(w, r, fail(http.StatusInternalServerError, "%s %s: not a regular file", what, id))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", `"`+id.Hex()+`"`)
	http.ServeContent(w, r, "", st.ModTime(), f)
}

// storedSizeHeader answers a chunk upload with the compressed size of the
// copy the store keeps: a store never replaces a valid copy, so it may be an
// earlier upload compressed differently, and the uploader's flist must
// record that size (store.Uploader reads it).
const storedSizeHeader = "X-Zeroboot-Stored-Size"

// hashHeader names the hash a chunk upload's name is of (store.Uploader
// sends it: "sha256" or "blake3").
const hashHeader = "X-Zeroboot-Hash"

// putChunk stores an uploaded chunk after checking it against its name and
// declared size, so the store never holds bytes that fail OpenChunk.
func (s *Server) putChunk(w http.ResponseWriter, r *http.Request) {
	stored, err := s.acceptChunk(w, r)
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	w.Header().Set(storedSizeHeader, strconv.FormatUint(uint64(stored.CSize), 10))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) acceptChunk(w http.ResponseWriter, r *http.Request) (flist.ChunkRef, error) {
	id, err := parseHex(r.PathValue("name"))
	if err != nil {
		return flist.ChunkRef{}, err
	}
	size, err := strconv.ParseUint(r.Header.Get("X-Zeroboot-Size"), 10, 32)
	if err != nil || size == 0 || size > flist.MaxChunkSize {
		return flist.ChunkRef{}, fail(http.StatusBadRequest, "header X-Zeroboot-Size %q: want the uncompressed size, 1..%d", r.Header.Get("X-Zeroboot-Size"), flist.MaxChunkSize)
	}
	h, err := chunkHash(r.Header.Get(hashHeader))
	if err != nil {
		return flist.ChunkRef{}, err
	}
	body, err := readBody(w, r, flist.MaxCompressedSize)
	if err != nil {
		return flist.ChunkRef{}, err
	}
	ref := flist.ChunkRef{ID: id, Size: uint32(size), CSize: uint32(len(body)), Hash: h}
	if _, err := flist.OpenChunk(ref, body, nil); err != nil {
		return ref, fail(http.StatusBadRequest, "%v", err)
	}
	stored, err := s.Store.PutChunk(ref, body)
	if err != nil {
		return ref, err
	}
	if stored.ID != ref.ID || stored.Hash != ref.Hash || stored.Size != ref.Size || stored.CSize == 0 || stored.CSize > flist.MaxCompressedSize {
		return ref, fail(http.StatusInternalServerError, "chunk %s stored as %s", ref, stored)
	}
	return stored, nil
}

// chunkHash reads the hash an upload's name is of: absent is SHA-256, as
// uploaders before version-3 flists sent none.
func chunkHash(v string) (flist.Hash, error) {
	if v == "" {
		return flist.SHA256, nil
	}
	h, err := flist.ParseHash(v)
	if err != nil {
		return h, fail(http.StatusBadRequest, "header %s: %v", hashHeader, err)
	}
	return h, nil
}

func (s *Server) putFlist(w http.ResponseWriter, r *http.Request) {
	if err := s.acceptFlist(w, r); err != nil {
		s.replyError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) acceptFlist(w http.ResponseWriter, r *http.Request) error {
	id, err := parseHex(r.PathValue("name"))
	if err != nil {
		return err
	}
	body, err := readBody(w, r, MaxFlistSize)
	if err != nil {
		return err
	}
	if got := digest.Of(body); got != id {
		return fail(http.StatusBadRequest, "flist %s: body hashes to %s", id, got)
	}
	if err := s.CheckFlist(body); err != nil {
		return fail(http.StatusBadRequest, "flist %s: %v", id, err)
	}
	got, err := s.Store.PutFlist(body)
	if err != nil {
		return err
	}
	if got != id {
		return fail(http.StatusInternalServerError, "flist %s stored as %s", id, got)
	}
	return nil
}
