package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/flist"
)

// DefaultUploadTimeout bounds one upload request.
const DefaultUploadTimeout = 5 * time.Minute

// maxReason bounds how much of a server's error body ends up in an error.
const maxReason = 4 << 10

// Uploader puts chunks and flists into a server's store through its admin
// API:
//
//	PUT <URL>/v1/admin/store/chunks/<64 hex>  X-Zeroboot-Size: <uncompressed bytes>
//	PUT <URL>/v1/admin/store/flists/<64 hex>
//
// with Authorization: Bearer <Token>. The server verifies what it receives
// and answers a chunk upload with StoredSizeHeader: the length of the copy
// it holds, which is not the uploaded one when it already had the chunk
// compressed differently. It implements flist.Sink.
type Uploader struct {
	URL     string
	Token   string
	Client  *http.Client  // nil: http.DefaultClient
	Timeout time.Duration // per request; zero means DefaultUploadTimeout
}

// StoredSizeHeader carries, in the reply to a chunk upload, the compressed
// size of the copy the server stores.
const StoredSizeHeader = "X-Zeroboot-Stored-Size"

// HashHeader names, in a chunk upload, the hash the chunk's name is of
// (flist.Hash's String); a server takes an upload without it as SHA-256.
const HashHeader = "X-Zeroboot-Hash"

// PutChunk uploads one compressed chunk and returns the reference as the
// server stores it.
func (u *Uploader) PutChunk(ref flist.ChunkRef, compressed []byte) (flist.ChunkRef, error) {
	if len(compressed) != int(ref.CSize) {
		return ref, fmt.Errorf("upload %s: %d bytes, declared %d", ref, len(compressed), ref.CSize)
	}
	hdr := http.Header{"X-Zeroboot-Size": {strconv.FormatUint(uint64(ref.Size), 10)}, HashHeader: {ref.Hash.String()}}
	reply, err := u.put("/v1/admin/store/chunks/"+ref.ID.Hex(), hdr, compressed)
	if err != nil {
		return ref, fmt.Errorf("upload %s: %w", ref, err)
	}
	v := reply.Get(StoredSizeHeader)
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 || n > flist.MaxCompressedSize {
		return ref, fmt.Errorf("upload %s: reply header %s %q: want the stored compressed size, 1..%d", ref, StoredSizeHeader, console.Sanitize(v, console.MaxShown), flist.MaxCompressedSize)
	}
	ref.CSize = uint32(n)
	return ref, nil
}

// PutFlist uploads encoded flist metadata and returns its digest.
func (u *Uploader) PutFlist(encoded []byte) (digest.Digest, error) {
	id := digest.Of(encoded)
	if len(encoded) > flist.MaxMetadataSize {
		return id, fmt.Errorf("upload flist %s: %d bytes, at most %d", id.Short(), len(encoded), flist.MaxMetadataSize)
	}
	if _, err := u.put("/v1/admin/store/flists/"+id.Hex(), nil, encoded); err != nil {
		return id, fmt.Errorf("upload flist %s: %w", id.Short(), err)
	}
	return id, nil
}

// put sends body and returns the headers of a 2xx reply.
func (u *Uploader) put(path string, hdr http.Header, body []byte) (http.Header, error) {
	if u.URL == "" {
		return nil, errors.New("no server URL")
	}
	if u.Token == "" {
		return nil, errors.New("no admin token")
	}
	timeout := u.Timeout
	if timeout <= 0 {
		timeout = DefaultUploadTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	url := strings.TrimRight(u.URL, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+u.Token)
	req.Header.Set("Content-Type", "application/octet-stream")
	c := u.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxReason))
		return resp.Header, nil
	}
	reason, _ := io.ReadAll(io.LimitReader(resp.Body, maxReason))
	msg := console.Sanitize(strings.TrimSpace(string(reason)), console.MaxShown)
	if msg == "" {
		return nil, fmt.Errorf("PUT %s: %s", url, resp.Status)
	}
	return nil, fmt.Errorf("PUT %s: %s: %s", url, resp.Status, msg)
}
