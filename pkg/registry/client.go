package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/pkg/backoff"
	"github.com/zeroboot/zeroboot/pkg/console"
)

// MaxStores bounds the store list in a boot answer.
const MaxStores = 16

// attemptTimeout bounds one request, so a registry that accepts the
// connection and then stalls costs one attempt, not the boot.
const attemptTimeout = 30 * time.Second

// Client talks to one or more registries (the same grid behind several
// addresses, or replicas). Fill the fields; the zero Backoff means
// backoff.Default.
type Client struct {
	URLs    []string // registry base URLs, e.g. https://192.0.2.2:8443
	HTTP    *http.Client
	Backoff backoff.Policy
	// Report, if set, is told of every failed attempt, the URL it went to
	// and the wait before the next one.
	Report func(attempt int, url string, err error, wait time.Duration)
	// OnDate, if set, gets the Date header of every accepted answer; a
	// node without a battery-backed clock sets its time from it. source
	// names the header and the registry URL; notAfter is the earliest
	// NotAfter of the certificate chain the answer came over (zero when no
	// chain was verified), the latest time the registry can itself vouch
	// for.
	OnDate func(source string, date, notAfter time.Time)
}

// NewHTTPClient returns an HTTP client that speaks TLS 1.3 only, trusts
// only the CA certificates in caPEM and follows no redirect (a 3xx is
// returned as it is). now is the clock certificates are judged by (a node's
// corrected clock; nil means time.Now).
//
// It speaks HTTP/1.1, never HTTP/2: a node asks a registry a few small
// questions per connection, where HTTP/2's setup (its preface, settings
// and a reader and writer per connection on both sides) costs more than
// the questions. In a boot storm against one zgrid serve on 2 cores it
// was 20-25% of the boots a second (bench/README.md, "HTTP/1.1").
func NewHTTPClient(caPEM []byte, now func() time.Time) (*http.Client, error) {
	pool, err := certPool(caPEM)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil, // a node has no proxy; an admin's env must not redirect the CA-pinned client
		DialContext:           dialer.DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Time: now, NextProtos: []string{"http/1.1"}},
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{}, // no HTTP/2
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   8,
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute, CheckRedirect: keepRedirect}, nil
}

// certPool holds every certificate of caPEM: one CA, or several while the
// registry's CA is rotated (the old and the new). Each PEM block must be a
// certificate that parses: one dropped silently would be a CA the node
// does not trust when the registry switches to it.
func certPool(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for blk, rest := pem.Decode(caPEM); blk != nil; blk, rest = pem.Decode(rest) {
		n++
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("registry CA: PEM block %d is %q, not a CERTIFICATE", n, clip(blk.Type))
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("registry CA: certificate %d: %w", n, err)
		}
		pool.AddCert(c)
	}
	if n == 0 {
		return nil, errors.New("registry CA: no PEM certificate found")
	}
	return pool, nil
}

// explainTLS says what a certificate from an unknown CA means for a node:
// its image carries a ca.pem without the registry's current CA.
func explainTLS(err error) error {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return fmt.Errorf("the registry's certificate is not signed by a CA this node trusts (its image's ca.pem lacks the registry's CA: rebuilt or rotated? build the image with the registry's current tls/ca.pem): %w", err)
	}
	return err
}

// keepRedirect stops a client at the first redirect and hands the 3xx back:
// a pinned registry that could send the node elsewhere (another host, or
// http:// where nothing is authenticated) would make the pin worthless.
func keepRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// noRedirects is hc, or http.DefaultClient, made to follow no redirect,
// whoever built it.
func noRedirects(hc *http.Client) *http.Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	c := *hc
	c.CheckRedirect = keepRedirect
	return &c
}

func (c *Client) policy() backoff.Policy {
	if c.Backoff.Base <= 0 || c.Backoff.Cap <= 0 {
		return backoff.Default
	}
	return c.Backoff
}

// Prover makes TPM evidence over a registry's nonce; nodes without a TPM
// pass nil.
type Prover func(nonce []byte) (*Evidence, error)

// pendingPoll is how often a node held for approval asks again, whatever
// the backoff has grown to: it boots within seconds of the approval.
const pendingPoll = 5 * time.Second

// Boot asks the registries in turn for the node's release until one answers
// well or ctx ends. With prove set, every attempt first fetches a nonce
// from that registry and sends prove's quote over it. Each failure is
// reported and followed by a backoff wait that grows with every full round
// over the URLs. An answer may hold only Activate: the caller activates
// the credential and boots again.
func (c *Client) Boot(ctx context.Context, req BootRequest, prove Prover) (*BootResponse, error) {
	if len(c.URLs) == 0 {
		return nil, errors.New("boot: no registry URLs")
	}
	p := c.policy()
	for n := 0; ; n++ {
		u := c.URLs[n%len(c.URLs)]
		resp, err := c.proveAndBoot(ctx, u, req, prove)
		if err == nil {
			return resp, nil
		}
		var te *TPMError
		if errors.As(err, &te) {
			return nil, err // the node's own TPM: no other registry helps
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("boot: %w (last error: %v)", ctx.Err(), err)
		}
		wait := p.Delay(n / len(c.URLs))
		var se *StatusError
		if errors.As(err, &se) && se.Code == http.StatusConflict {
			wait = min(wait, pendingPoll)
		}
		if c.Report != nil {
			c.Report(n+1, u, err, wait)
		}
		if backoff.Sleep(ctx, wait) != nil {
			return nil, fmt.Errorf("boot: %w (last error: %v)", ctx.Err(), err)
		}
	}
}

// TPMError is a failure of the node's TPM while proving its identity.
type TPMError struct{ Err error }

func (e *TPMError) Error() string { return "tpm: " + e.Err.Error() }
func (e *TPMError) Unwrap() error { return e.Err }

func (c *Client) proveAndBoot(ctx context.Context, base string, req BootRequest, prove Prover) (*BootResponse, error) {
	if prove != nil {
		nonce, err := c.challenge(ctx, base, req.NodeID)
		if err != nil {
			return nil, err
		}
		ev, err := prove(nonce)
		if err != nil {
			return nil, &TPMError{err}
		}
		req.TPM = ev
	}
	return c.boot(ctx, base, req)
}

// challenge fetches a fresh nonce from base for the node's next quote.
func (c *Client) challenge(ctx context.Context, base, nodeID string) ([]byte, error) {
	var resp ChallengeResponse
	_, err := c.do(ctx, base, "/v1/challenge", ChallengeRequest{Protocol: Protocol, NodeID: nodeID}, http.StatusOK, &resp)
	var se *StatusError
	if errors.As(err, &se) && (se.Code == http.StatusNotFound || se.Code == http.StatusMethodNotAllowed) {
		return nil, fmt.Errorf("%w (no /v1/challenge: a registry of protocol 2 or older cannot verify a TPM node; upgrade zgrid to protocol %d)", err, Protocol)
	}
	if err != nil {
		return nil, err
	}
	if err := CheckNonce(resp.Nonce); err != nil {
		return nil, fmt.Errorf("registry %s: challenge: %w", base, err)
	}
	return nonceBytes(resp.Nonce), nil
}

func (c *Client) boot(ctx context.Context, base string, req BootRequest) (*BootResponse, error) {
	var resp BootResponse
	st, err := c.do(ctx, base, "/v1/boot", req, http.StatusOK, &resp)
	if err != nil && strings.Contains(err.Error(), `unknown field`) {
		// An older registry refuses the request before it can say which
		// protocol it speaks.
		return nil, fmt.Errorf("%w (an older registry: upgrade zgrid to protocol %d)", err, Protocol)
	}
	if err != nil {
		return nil, err
	}
	if err := resp.check(req.NodeID); err != nil {
		return nil, fmt.Errorf("registry %s: %w", base, err)
	}
	c.onDate(base, st)
	resp.Registry, resp.Date, resp.ChainEnd = base, st.date, st.notAfter
	return &resp, nil
}

func (r *BootResponse) check(nodeID string) error {
	if r.NodeID != nodeID {
		return fmt.Errorf("registry answered for node %q, we are %q", r.NodeID, nodeID)
	}
	if r.Protocol < MinRegistryProtocol || r.Protocol > Protocol {
		if r.Protocol == 0 {
			r.Protocol = 1
		}
		return fmt.Errorf("registry speaks protocol %d, this node protocols %d-%d: upgrade the older of the two (a protocol 1 registry serves no TUF metadata)", r.Protocol, MinRegistryProtocol, Protocol)
	}
	if r.Fallback != nil {
		if err := r.Fallback.check(r.Protocol); err != nil {
			return err
		}
	}
	if r.Cache != nil {
		if r.Protocol < ProtocolCache {
			return fmt.Errorf("protocol %d answer carries a chunk cache setting (protocol %d)", r.Protocol, ProtocolCache)
		}
		if err := r.Cache.Check(); err != nil {
			return fmt.Errorf("farm's %w", err)
		}
	}
	if r.SendEK {
		if r.Activate != nil || r.TUF != nil {
			return errors.New("answer asks for the EK and carries more")
		}
		return nil
	}
	if r.Activate != nil {
		a := r.Activate
		if len(a.Credential) == 0 || len(a.Secret) == 0 || len(a.Credential) > MaxTPMBlob || len(a.Secret) > MaxTPMBlob {
			return fmt.Errorf("activation challenge: credential of %d bytes and secret of %d, want 1-%d each", len(a.Credential), len(a.Secret), MaxTPMBlob)
		}
		return nil
	}
	if r.QuoteNonce != "" {
		if err := CheckNonce(r.QuoteNonce); err != nil {
			return fmt.Errorf("answer: quote_%w", err)
		}
	}
	if r.TUF == nil {
		return errors.New("answer carries no TUF metadata")
	}
	if len(r.Stores) == 0 || len(r.Stores) > MaxStores {
		return fmt.Errorf("answer names %d store URLs, want 1..%d", len(r.Stores), MaxStores)
	}
	for _, s := range r.Stores {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("store URL %q: want an absolute http(s) URL", s)
		}
	}
	if err := CheckToken(r.Token); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	return nil
}

// Status sends rep to each registry once, stopping at the first that takes
// it. It returns every URL's error when none did.
func (c *Client) Status(ctx context.Context, rep StatusReport) error {
	if err := rep.Validate(); err != nil {
		return err
	}
	if len(c.URLs) == 0 {
		return errors.New("status: no registry URLs")
	}
	var errs []error
	for _, u := range c.URLs {
		st, err := c.do(ctx, u, "/v1/status", rep, http.StatusNoContent, nil)
		if err == nil {
			c.onDate(u, st)
			return nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("status: %w", errors.Join(errs...))
}

// stamp is what an answer says about the time: its Date header and the
// end of the certificate chain it came over.
type stamp struct {
	date     time.Time // zero if absent or unparsable
	notAfter time.Time // zero without a verified chain
}

// onDate passes an accepted answer's Date on; answers that were refused
// tell the clock nothing.
func (c *Client) onDate(base string, st stamp) {
	if c.OnDate != nil && !st.date.IsZero() {
		c.OnDate("Date header of registry "+clip(base), st.date, st.notAfter)
	}
}

// chainEnd is the latest time at which the connection's certificates
// still verify: for each verified chain the earliest NotAfter of its
// certificates (leaf, intermediates, pinned root), and the latest of those
// over the chains, since one valid chain is enough. Zero without a
// verified chain.
func chainEnd(cs *tls.ConnectionState) time.Time {
	var end time.Time
	if cs == nil {
		return end
	}
	for _, chain := range cs.VerifiedChains {
		var first time.Time
		for _, cert := range chain {
			if first.IsZero() || cert.NotAfter.Before(first) {
				first = cert.NotAfter
			}
		}
		if first.After(end) {
			end = first
		}
	}
	return end
}

// do POSTs in as JSON to base+path, decodes a want-status answer into out
// (nil: no body expected) and returns what the answer says about the time.
// It follows no redirect: a 3xx is an error like any other refused answer.
func (c *Client) do(ctx context.Context, base, path string, in any, want int, out any) (stamp, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return stamp{}, fmt.Errorf("encode request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	u := strings.TrimRight(base, "/") + path
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return stamp{}, fmt.Errorf("registry %s: %w", base, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	resp, err := noRedirects(c.HTTP).Do(hreq)
	if err != nil {
		return stamp{}, fmt.Errorf("registry %s: %w", base, explainTLS(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return stamp{}, fmt.Errorf("registry %s: HTTP %d %s: redirect to %q refused: registries are asked directly, never through a redirect",
			base, resp.StatusCode, http.StatusText(resp.StatusCode), clip(resp.Header.Get("Location")))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodySize+1))
	if err != nil {
		return stamp{}, fmt.Errorf("registry %s: read answer: %w", base, err)
	}
	if len(b) > MaxBodySize {
		return stamp{}, fmt.Errorf("registry %s: answer exceeds %d bytes", base, MaxBodySize)
	}
	if resp.StatusCode != want {
		return stamp{}, &StatusError{URL: base, Code: resp.StatusCode, Msg: reason(resp, b)}
	}
	if out != nil {
		ct, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if err != nil || ct != "application/json" {
			return stamp{}, fmt.Errorf("registry %s: answer content type %q, want application/json", base, resp.Header.Get("Content-Type"))
		}
		if err := DecodeStrict(b, out); err != nil {
			return stamp{}, fmt.Errorf("registry %s: %w", base, err)
		}
	}
	date, _ := http.ParseTime(resp.Header.Get("Date"))
	return stamp{date: date, notAfter: chainEnd(resp.TLS)}, nil
}

// StatusError is a registry's answer with an unexpected HTTP status; Msg
// is its error text, sanitised.
type StatusError struct {
	URL  string
	Code int
	Msg  string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("registry %s: HTTP %d: %s", e.URL, e.Code, e.Msg)
}

// reason extracts the registry's error message, or a clipped body.
func reason(resp *http.Response, b []byte) string {
	var e Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return clip(e.Error)
	}
	if len(b) == 0 {
		return http.StatusText(resp.StatusCode)
	}
	return clip(string(b))
}

// clip makes a server's text safe for the console: a hostile registry must
// not drive the terminal or flood it.
func clip(s string) string { return console.Sanitize(s, 200) }
