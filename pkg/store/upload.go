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
// with Authorization: Bearer <Token>. The server verifies what it receives.
// It implements flist.Sink.
type Uploader struct {
	URL     string
	Token   string
	Client  *http.Client  // nil: http.DefaultClient
	Timeout time.Duration // per request; zero means DefaultUploadTimeout
}

// PutChunk uploads one compressed chunk.
func (u *Uploader) PutChunk(ref flist.ChunkRef, compressed []byte) error {
	if len(compressed) != int(ref.CSize) {
		return fmt.Errorf("upload %s: %d bytes, declared %d", ref, len(compressed), ref.CSize)
	}
	hdr := http.Header{"X-Zeroboot-Size": {strconv.FormatUint(uint64(ref.Size), 10)}}
	if err := u.put("/v1/admin/store/chunks/"+ref.ID.Hex(), hdr, compressed); err != nil {
		return fmt.Errorf("upload %s: %w", ref, err)
	}
	return nil
}

// PutFlist uploads encoded flist metadata and returns its digest.
func (u *Uploader) PutFlist(encoded []byte) (digest.Digest, error) {
	id := digest.Of(encoded)
	if len(encoded) > MaxFlistSize {
		return id, fmt.Errorf("upload flist %s: %d bytes, at most %d", id.Short(), len(encoded), MaxFlistSize)
	}
	if err := u.put("/v1/admin/store/flists/"+id.Hex(), nil, encoded); err != nil {
		return id, fmt.Errorf("upload flist %s: %w", id.Short(), err)
	}
	return id, nil
}

func (u *Uploader) put(path string, hdr http.Header, body []byte) error {
	if u.URL == "" {
		return errors.New("no server URL")
	}
	if u.Token == "" {
		return errors.New("no admin token")
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
		return err
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
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxReason))
		return nil
	}
	reason, _ := io.ReadAll(io.LimitReader(resp.Body, maxReason))
	msg := console.Sanitize(strings.TrimSpace(string(reason)), maxShown)
	if msg == "" {
		return fmt.Errorf("PUT %s: %s", url, resp.Status)
	}
	return fmt.Errorf("PUT %s: %s: %s", url, resp.Status, msg)
}
