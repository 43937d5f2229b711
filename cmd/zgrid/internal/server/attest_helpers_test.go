package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/internal/testenv"
	"github.com/zeroboot/zeroboot/pkg/attest"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/prove"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/tpm"
)

// testRootJSON stands for the TUF root a node carries: only its hash is
// measured.
var testRootJSON = []byte(`{"signed":{"_type":"root","version":1}}`)

const testCmdline = "console=ttyS0 zeroboot.farm=demo"

// tnode is a node with a real TPM (swtpm on a state dir that outlives
// reboots), booted as PID 1 boots it: identity key, then the trust root
// and command line measured.
type tnode struct {
	t      testing.TB
	dir    string
	srv    *testenv.SwtpmServer
	tr     transport.TPMCloser
	tp     *tpm.TPM
	p      *prove.Prover
	id     string
	steps  []string // Prover.Report messages of the last boot
	wire   *wire
	client *registry.Client
}

// newTNode starts a TPM on a fresh state dir; before is run on the raw
// transport first (to provision NV, say).
func newTNode(t testing.TB, e *env, before func(transport.TPM)) *tnode {
	t.Helper()
	n := &tnode{t: t, dir: t.TempDir()}
	n.wire = &wire{base: e.hc.Transport}
	n.client = &registry.Client{URLs: []string{e.ts.URL}, HTTP: &http.Client{Transport: n.wire}}
	n.power(before, testCmdline)
	return n
}

// power (re)starts swtpm on the node's state dir, so that the PCRs are
// reset as at a reboot, and measures the boot with cmdline.
func (n *tnode) power(before func(transport.TPM), cmdline string) {
	n.t.Helper()
	if n.srv != nil {
		n.tp.Close()
		n.srv.Stop()
	}
	n.srv = testenv.StartSwtpm(n.t, n.dir)
	n.tr = n.srv.Dial(n.t)
	if before != nil {
		before(n.tr)
	}
	n.tp = tpm.New(n.tr)
	m := &measure.Measurer{Extend: n.tp.Extend}
	n.p = &prove.Prover{TPM: n.tp, Log: m, Report: func(msg string) { n.steps = append(n.steps, msg) }}
	id, err := n.p.NodeID()
	if err != nil {
		n.t.Fatalf("NodeID: %v", err)
	}
	if n.id != "" && id != n.id {
		n.t.Fatalf("node ID changed across reboot: %s, then %s", n.id, id)
	}
	n.id = id
	if err := m.Measure(measure.TypeTrustRoot, measure.TrustRootValue(testRootJSON)); err != nil {
		n.t.Fatal(err)
	}
	if err := m.Measure(measure.TypeCmdline, cmdline); err != nil {
		n.t.Fatal(err)
	}
}

// reboot restarts the TPM and measures the boot with cmdline.
func (n *tnode) reboot(cmdline string) { n.t.Helper(); n.power(nil, cmdline) }

func (n *tnode) request(farm string) registry.BootRequest {
	return registry.BootRequest{Protocol: registry.Protocol, NodeID: n.id, Farm: farm, Agent: "zeroboot-init"}
}

// boot runs Prover.Boot once: the first refused attempt ends it (the
// client would retry forever), and its error is returned along with the
// wire's record of that answer.
func (n *tnode) boot(req registry.BootRequest) (*registry.BootResponse, error) {
	n.t.Helper()
	n.steps = nil
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n.client.Report = func(int, string, error, time.Duration) { cancel() }
	return n.p.Boot(ctx, n.client, req)
}

// refused runs a boot that must be refused with code, the registry's error
// naming want.
func (n *tnode) refused(req registry.BootRequest, code int, want string) {
	n.t.Helper()
	resp, err := n.boot(req)
	if err == nil {
		n.t.Fatalf("boot accepted (%+v), want HTTP %d %q", resp, code, want)
	}
	x := n.wire.last("/v1/boot")
	if x.code != code || !strings.Contains(x.errText(), want) {
		n.t.Fatalf("boot: HTTP %d %s (client: %v), want %d %q", x.code, x.resp, err, code, want)
	}
}

// handoff measures what init measures once it has verified the release
// in resp and written its components, and returns the report before
// hand-off with the final quote.
func (n *tnode) handoff(e *env, resp *registry.BootResponse) registry.StatusReport {
	n.t.Helper()
	v, err := e.node().Verify(resp.Channel, resp.TUF)
	if err != nil {
		n.t.Fatalf("verify served release: %v", err)
	}
	rel := v.Release
	if err := n.p.Log.Measure(measure.TypeRelease, measure.ReleaseValue(rel.Channel, rel.Version)); err != nil {
		n.t.Fatal(err)
	}
	for _, c := range rel.Components {
		if err := n.p.Log.Measure(measure.TypeComponent, measure.ComponentValue(c.Name, c.Flist.String(), c.Mount)); err != nil {
			n.t.Fatal(err)
		}
	}
	ev, err := n.p.Final(resp.QuoteNonce)
	if err != nil {
		n.t.Fatalf("Final: %v", err)
	}
	return registry.StatusReport{NodeID: n.id, Source: "pid1", State: registry.StateReady, ReleaseVersion: rel.Version, Token: resp.Token, TPM: ev}
}

func (n *tnode) report(rep registry.StatusReport) {
	n.t.Helper()
	if err := n.client.Status(context.Background(), rep); err != nil {
		n.t.Fatalf("status: %v", err)
	}
}

// key is the TPM's identity key; quote is a quote by it over nonce of the
// PCRs every quote covers, as evidence without the log.
func (n *tnode) quote(nonce []byte) *registry.Evidence {
	n.t.Helper()
	k, err := n.tp.IdentityKey()
	if err != nil {
		n.t.Fatal(err)
	}
	q, err := n.tp.Quote(k, nonce, registry.QuotedPCRs())
	if err != nil {
		n.t.Fatal(err)
	}
	ev := &registry.Evidence{AKPublic: k.Public, Quote: q.Attest, Signature: q.Signature, Events: n.p.Log.Events()}
	for _, i := range registry.QuotedPCRs() {
		ev.PCRs = append(ev.PCRs, registry.PCRValue{Index: i, Digest: q.PCRs[i]})
	}
	return ev
}

func (n *tnode) ekFingerprint() string {
	n.t.Helper()
	ek, err := n.tp.EK()
	if err != nil {
		n.t.Fatal(err)
	}
	k, err := attest.ParseEK(ek.Public)
	if err != nil {
		n.t.Fatal(err)
	}
	fp, err := attest.Fingerprint(k.Key)
	if err != nil {
		n.t.Fatal(err)
	}
	return fp
}

// wire is the node's HTTP transport: it records each exchange and lets a
// test rewrite a boot request on its way, as a forger would.
type wire struct {
	base http.RoundTripper
	mu   sync.Mutex
	// edit, if set, rewrites each boot request.
	edit func(*registry.BootRequest)
	log  []exchange
}

type exchange struct {
	path string
	req  []byte
	code int
	resp []byte
}

func (x exchange) errText() string {
	var m registry.Error
	json.Unmarshal(x.resp, &m)
	return m.Error
}

func (w *wire) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	edit := w.edit
	w.mu.Unlock()
	if edit != nil && r.URL.Path == "/v1/boot" {
		var req registry.BootRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, err
		}
		edit(&req)
		if body, err = json.Marshal(req); err != nil {
			return nil, err
		}
	}
	r2 := r.Clone(r.Context())
	r2.Body, r2.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	resp, err := w.base.RoundTrip(r2)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	w.mu.Lock()
	w.log = append(w.log, exchange{r.URL.Path, body, resp.StatusCode, b})
	w.mu.Unlock()
	return resp, nil
}

func (w *wire) setEdit(f func(*registry.BootRequest)) {
	w.mu.Lock()
	w.edit = f
	w.mu.Unlock()
}

// last is the last exchange on path.
func (w *wire) last(path string) exchange {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.log) - 1; i >= 0; i-- {
		if w.log[i].path == path {
			return w.log[i]
		}
	}
	return exchange{}
}

// count is the number of exchanges on path since the log was reset.
func (w *wire) count(path string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, x := range w.log {
		if x.path == path {
			n++
		}
	}
	return n
}

func (w *wire) reset() {
	w.mu.Lock()
	w.log = nil
	w.mu.Unlock()
}

// testCA is a TPM manufacturer's CA.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: c, key: k}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// provisionEK returns a hook that stores, in the RSA EK certificate index,
// a certificate by ca for the TPM's RSA EK, as a manufacturer does.
func provisionEK(t testing.TB, ca *testCA) func(transport.TPM) {
	return func(tr transport.TPM) {
		t.Helper()
		ek, err := tpm.New(tr).EK()
		if err != nil {
			t.Fatal(err)
		}
		k, err := attest.ParseEK(ek.Public)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(42),
			Subject:      pkix.Name{CommonName: "zeroboot test EK"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageKeyEncipherment,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, k.Key, ca.key)
		if err != nil {
			t.Fatal(err)
		}
		testenv.WriteNV(t, tr, tpm.RSAEKCertIndex, der)
	}
}

// nodeRecord is the registry's record of id.
func (e *env) nodeRecord(id string) records.Node {
	e.t.Helper()
	n, err := e.srv.DB.Node(id)
	if err != nil {
		e.t.Fatalf("node %s: %v", id, err)
	}
	return n
}
