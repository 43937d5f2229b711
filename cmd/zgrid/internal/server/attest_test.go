package server

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/internal/testenv"
	"github.com/zeroboot/zeroboot/pkg/attest"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/prove"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/tpm"
)

// TestTPMEnrollAndAttest: a TPM node on an open farm enrolls on its first
// boot (EK, credential activation), is attested by the quote before
// hand-off, boots again without enrolling, and a changed command line is
// a mismatch naming the event. Replayed evidence is refused.
func TestTPMEnrollAndAttest(t *testing.T) {
	e := newEnv(t)
	e.publish()
	n := newTNode(t, e, nil)

	resp, err := n.boot(n.request("demo"))
	if err != nil {
		t.Fatalf("first boot: %v", err)
	}
	if len(n.steps) != 2 || !strings.Contains(n.steps[0], "sending the endorsement key") || !strings.Contains(n.steps[1], "activating the registry's credential") {
		t.Fatalf("enrollment steps %q, want SendEK then Activate", n.steps)
	}
	if got := n.wire.count("/v1/boot"); got != 3 {
		t.Fatalf("%d boot requests, want 3 (send EK, activate, boot)", got)
	}
	if resp.QuoteNonce == "" || resp.TUF == nil || resp.NodeID != n.id {
		t.Fatalf("boot answer %+v: want a release with a quote nonce for %s", resp, n.id)
	}
	rec := e.nodeRecord(n.id)
	id := rec.Identity
	if id.Kind != registry.KindTPM || !id.Bound || !id.Approved || !strings.HasPrefix(id.EKFingerprint, "sha256:") || len(id.EKFingerprint) != 71 ||
		id.EKKind != "rsa2048" || id.Attestation == nil || id.Attestation.State != records.AttestPending || len(id.Baseline) != 0 {
		t.Fatalf("record after enrollment: %+v", id)
	}
	if id.EKFingerprint != n.ekFingerprint() {
		t.Fatalf("EK fingerprint %s, the TPM's is %s", id.EKFingerprint, n.ekFingerprint())
	}
	// The boot request itself may not be sent again: its nonce is spent.
	bootReq := n.wire.last("/v1/boot").req
	if a := e.do("POST", "/v1/boot", asJSON, bootReq); a.code != 401 || !strings.Contains(errorOf(a), "nonce unknown, already used or expired") {
		t.Fatalf("replayed boot request: HTTP %d %s, want 401 nonce unknown", a.code, a.body)
	}

	rep := n.handoff(e, resp)
	n.report(rep)
	id = e.nodeRecord(n.id).Identity
	if id.Attestation == nil || id.Attestation.State != records.AttestOK || len(id.Attestation.Events) != 4 || len(id.Baseline) != 2 ||
		id.Baseline[0].Type != measure.TypeTrustRoot || id.Baseline[1].Type != measure.TypeCmdline || id.Baseline[1].Value != testCmdline {
		t.Fatalf("record after the final quote: attestation %+v, baseline %+v", id.Attestation, id.Baseline)
	}
	// The same report again: the token is good, the nonce spent.
	n.report(rep)
	if att := e.nodeRecord(n.id).Identity.Attestation; att.State != records.AttestFailed || !strings.Contains(att.Detail, "nonce") {
		t.Fatalf("replayed final report: attestation %+v, want failed naming the nonce", att)
	}

	// A reboot: same TPM, PCRs reset, no enrollment.
	n.reboot(testCmdline)
	n.wire.reset()
	resp, err = n.boot(n.request("demo"))
	if err != nil {
		t.Fatalf("second boot: %v", err)
	}
	if len(n.steps) != 0 || n.wire.count("/v1/boot") != 1 || resp.SendEK || resp.QuoteNonce == "" {
		t.Fatalf("second boot: steps %q, %d boot requests, answer %+v; want one request, no enrollment", n.steps, n.wire.count("/v1/boot"), resp)
	}
	if id := e.nodeRecord(n.id).Identity; !id.Bound || id.Attestation.State != records.AttestPending || len(id.Baseline) != 2 {
		t.Fatalf("record after the second boot: %+v", id)
	}
	firstResets := id.Attestation.ResetCount
	n.report(n.handoff(e, resp))
	if att := e.nodeRecord(n.id).Identity.Attestation; att.State != records.AttestOK || att.ResetCount <= firstResets {
		t.Fatalf("second boot's final quote: %+v; want attested with a reset count above the first boot's %d", att, firstResets)
	}

	// A boot with another command line: the boot quote verifies (the log
	// replays), the final one is a mismatch on the cmdline event.
	const other = "console=ttyS0 zeroboot.farm=demo init=/bin/sh"
	n.reboot(other)
	resp, err = n.boot(n.request("demo"))
	if err != nil {
		t.Fatalf("boot with another command line: %v", err)
	}
	n.report(n.handoff(e, resp))
	want := (&attest.DiffError{Index: 1, Got: &measure.Event{Type: measure.TypeCmdline, Value: other}, Want: &measure.Event{Type: measure.TypeCmdline, Value: testCmdline}}).Error()
	id = e.nodeRecord(n.id).Identity
	if id.Attestation.State != records.AttestMismatch || id.Attestation.Detail != want {
		t.Fatalf("attestation %+v, want mismatch %q", id.Attestation, want)
	}
	if len(id.Baseline) != 2 || id.Baseline[1].Value != testCmdline {
		t.Fatalf("a mismatch moved the baseline: %+v", id.Baseline)
	}

	// Its ID is no secret: a request without a quote (DMI, protocol 2 or
	// 3) cannot speak for it, nor erase its enrollment.
	for _, body := range []string{
		`{"protocol":2,"node_id":"` + n.id + `","farm":"demo"}`,
		`{"protocol":3,"node_id":"` + n.id + `","farm":"demo","identity_kind":"dmi"}`,
	} {
		a := e.do("POST", "/v1/boot", asJSON, []byte(body))
		if a.code != 403 || !strings.Contains(a.body, "enrolled with a TPM identity; a request without a quote by its key cannot speak for it") {
			t.Errorf("%s: HTTP %d %s, want 403", body, a.code, a.body)
		}
	}
	if id := e.nodeRecord(n.id).Identity; id.Kind != registry.KindTPM || !id.Bound || len(id.AKPublic) == 0 {
		t.Fatalf("enrollment after forged requests: %+v", id)
	}
}

// TestTPMBootRefused: forged or broken evidence is refused with the status
// and text that say what was wrong, and leaves no record.
func TestTPMBootRefused(t *testing.T) {
	e := newEnv(t)
	e.publish()
	a := newTNode(t, e, nil)
	b := newTNode(t, e, nil)
	tests := []struct {
		name string
		req  func() registry.BootRequest
		edit func(*registry.BootRequest)
		code int
		want string
	}{
		{"ID of another TPM", func() registry.BootRequest { r := a.request("demo"); r.NodeID = b.id; return r }, nil,
			403, "the ID does not derive from the identity key sent (that key is node " + a.id + ")"},
		{"quote by another TPM", nil, func(r *registry.BootRequest) {
			nonce, _ := hex.DecodeString(r.TPM.Nonce)
			q := b.quote(nonce)
			r.TPM.Quote, r.TPM.Signature = q.Quote, q.Signature
		}, 403, "quote: signature does not verify with the AK"},
		{"log missing an event", nil, func(r *registry.BootRequest) { r.TPM.Events = r.TPM.Events[1:] },
			403, "measurement log: zeroboot log: replay of 1 events is"},
		{"PCR value changed", nil, func(r *registry.BootRequest) {
			r.TPM.PCRs[len(r.TPM.PCRs)-1].Digest = make([]byte, 32)
		}, 403, "node " + a.id + ": quote: "},
		{"wrong activation", nil, func(r *registry.BootRequest) {
			if len(r.TPM.Activation) > 0 {
				r.TPM.Activation[0] ^= 1
			}
		}, 403, "credential activation failed"},
		{"nonce of another node", nil, func(r *registry.BootRequest) { r.NodeID = b.id },
			401, "quote nonce unknown, already used or expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.t, b.t = t, t
			req := a.request("demo")
			if tt.req != nil {
				req = tt.req()
			}
			a.wire.setEdit(tt.edit)
			defer a.wire.setEdit(nil)
			a.refused(req, tt.code, tt.want)
			for _, id := range []string{a.id, b.id} {
				if _, err := e.srv.DB.Node(id); err == nil {
					t.Fatalf("refused boot left a record of %s", id)
				}
			}
		})
	}
	a.t, b.t = t, t
	// The same node, unedited, enrolls and boots.
	if _, err := a.boot(a.request("demo")); err != nil {
		t.Fatalf("honest boot after the refusals: %v", err)
	}
}

// TestEKCertPolicy: with manufacturer CAs configured, enrollment needs an
// EK certificate that chains to one of them and certifies the EK.
func TestEKCertPolicy(t *testing.T) {
	ca, other := newTestCA(t, "zeroboot test TPM CA"), newTestCA(t, "some other CA")
	e := newEnv(t, func(s *Server) { s.EKRoots = ca.pool() })
	e.publish()

	bare := newTNode(t, e, nil)
	bare.refused(bare.request("demo"), 403, "its TPM has no EK certificate")

	foreign := newTNode(t, e, provisionEK(t, other))
	foreign.refused(foreign.request("demo"), 403, `EK certificate "CN=zeroboot test EK" (issuer "CN=some other CA", serial 42): x509: certificate signed by unknown authority`)

	good := newTNode(t, e, provisionEK(t, ca))
	if _, err := good.boot(good.request("demo")); err != nil {
		t.Fatalf("boot with a certified EK: %v", err)
	}
	id := e.nodeRecord(good.id).Identity
	if !id.Bound || !id.EKCertVerified || id.EKCert != `subject "CN=zeroboot test EK", issuer "CN=zeroboot test TPM CA"` {
		t.Fatalf("record: %+v", id)
	}
	for _, n := range []*tnode{bare, foreign} {
		if _, err := e.srv.DB.Node(n.id); err == nil {
			t.Errorf("refused node %s has a record", n.id)
		}
	}
}

// TestFarmPolicies: require-tpm, ephemeral, approval and listed farms, for
// nodes without a TPM and (listed) with one.
func TestFarmPolicies(t *testing.T) {
	e := newEnv(t)
	e.publish()
	for _, f := range []records.Farm{
		{Name: "tpmonly", Channel: "stable", RequireTPM: true},
		{Name: "ci", Channel: "stable", AllowEphemeral: true},
		{Name: "held", Channel: "stable", Enroll: records.EnrollApproval},
		{Name: "listed", Channel: "stable", Enroll: records.EnrollListed},
	} {
		if _, err := e.srv.CreateFarm(f); err != nil {
			t.Fatal(err)
		}
	}
	boot := func(r registry.BootRequest) answer {
		t.Helper()
		b, _ := json.Marshal(r)
		return e.do("POST", "/v1/boot", asJSON, b)
	}
	dmi := func(id, farm string) registry.BootRequest {
		return registry.BootRequest{Protocol: registry.Protocol, NodeID: id, Farm: farm, IdentityKind: registry.KindDMI, IdentitySource: "smbios-uuid", TPMError: "no TPM: open /dev/tpmrm0: no such file or directory"}
	}
	eph := "e0123456789abcdef0123456789abcdef"
	ephReq := func(farm string) registry.BootRequest {
		return registry.BootRequest{Protocol: registry.Protocol, NodeID: eph, Farm: farm, IdentityKind: registry.KindEphemeral, IdentitySource: "ephemeral", TPMError: "no TPM"}
	}
	for _, tt := range []struct {
		name string
		req  registry.BootRequest
		code int
		want []string
	}{
		{"dmi on require-tpm", dmi("d1", "tpmonly"), 403, []string{"farm tpmonly requires a TPM identity; node d1 is a dmi node", "its TPM: no TPM: open /dev/tpmrm0"}},
		{"dmi on require-tpm, no reason", registry.BootRequest{Protocol: registry.Protocol, NodeID: "d1", Farm: "tpmonly"}, 403, []string{"requires a TPM identity", "it sent no TPM identity"}},
		{"ephemeral on open farm", ephReq("demo"), 403, []string{"takes no ephemeral nodes", "--allow-ephemeral"}},
		{"ephemeral on require-tpm", ephReq("tpmonly"), 403, []string{"requires a TPM identity"}},
		{"ephemeral on ci", ephReq("ci"), 200, nil},
		{"dmi on approval farm", dmi("d2", "held"), 409, []string{"node d2 (dmi identity) awaits approval in farm held"}},
		{"dmi on listed farm", dmi("d3", "listed"), 403, []string{"farm listed takes listed nodes only and node d3 (EK none) is not listed"}},
	} {
		a := boot(tt.req)
		if a.code != tt.code {
			t.Errorf("%s: HTTP %d %s, want %d", tt.name, a.code, a.body, tt.code)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(errorOf(a), w) {
				t.Errorf("%s: %q does not say %q", tt.name, errorOf(a), w)
			}
		}
	}
	if n := e.nodeRecord(eph); n.Identity.Kind != registry.KindEphemeral || n.Identity.TPMError != "no TPM" {
		t.Errorf("ephemeral node record %+v", n.Identity)
	}
	if _, err := e.srv.DB.Node("d1"); err == nil {
		t.Errorf("refused node d1 has a record")
	}

	// Approval: held and recorded pending until approved, then it boots.
	n := e.nodeRecord("d2")
	if n.State != registry.StatePending || n.Identity.Approved || n.Identity.Kind != registry.KindDMI {
		t.Fatalf("held node: state %s, identity %+v", n.State, n.Identity)
	}
	e.must(boot(dmi("d2", "held")), 409)
	if _, err := e.srv.Approve("d2"); err != nil {
		t.Fatal(err)
	}
	e.must(boot(dmi("d2", "held")), 200)
	if n := e.nodeRecord("d2"); n.State != registry.StateBooting || !n.Identity.Approved {
		t.Fatalf("approved node: state %s, identity %+v", n.State, n.Identity)
	}

	// Listed by node ID.
	if err := e.srv.Allow("d3"); err != nil {
		t.Fatal(err)
	}
	e.must(boot(dmi("d3", "listed")), 200)

	// A TPM node on the listed farm: refused once enrolled far enough to
	// show its EK, then listed by the EK's fingerprint.
	tn := newTNode(t, e, nil)
	fp := tn.ekFingerprint()
	tn.refused(tn.request("listed"), 403, "node "+tn.id+" (EK "+fp+") is not listed")
	if err := e.srv.Allow(fp); err != nil {
		t.Fatal(err)
	}
	resp, err := tn.boot(tn.request("listed"))
	if err != nil {
		t.Fatalf("listed TPM node: %v", err)
	}
	if id := e.nodeRecord(tn.id).Identity; id.Kind != registry.KindTPM || !id.Approved || id.EKFingerprint != fp || resp.QuoteNonce == "" {
		t.Fatalf("listed TPM node record %+v", id)
	}

	// A TPM node on the approval farm: enrolled, then held.
	held := newTNode(t, e, nil)
	held.refused(held.request("held"), 409, "("+registry.KindTPM+" identity) awaits approval in farm held")
	if n := e.nodeRecord(held.id); n.State != registry.StatePending || !n.Identity.Bound {
		t.Fatalf("held TPM node: state %s, identity %+v", n.State, n.Identity)
	}
	if _, err := e.srv.Approve(held.id); err != nil {
		t.Fatal(err)
	}
	held.wire.reset()
	if _, err := held.boot(held.request("held")); err != nil {
		t.Fatalf("approved TPM node: %v", err)
	}
	if held.wire.count("/v1/boot") != 1 {
		t.Fatalf("approved TPM node enrolled again: %d boot requests", held.wire.count("/v1/boot"))
	}

	// Denied, its quotes no longer get it in; approved, it boots without
	// enrolling again.
	if _, err := e.srv.Deny(held.id); err != nil {
		t.Fatal(err)
	}
	held.refused(held.request("held"), 403, "node "+held.id+" is denied by the operator")
	if _, err := e.srv.Approve(held.id); err != nil {
		t.Fatal(err)
	}
	if _, err := held.boot(held.request("held")); err != nil {
		t.Fatalf("TPM node approved after a denial: %v", err)
	}
}

// TestProtocol2Node: a node of protocol 2 sends no identity fields, boots,
// gets a protocol 2 answer without a quote nonce, and is a DMI node.
func TestProtocol2Node(t *testing.T) {
	e := newEnv(t)
	e.publish()
	a := e.must(e.do("POST", "/v1/boot", asJSON, []byte(`{"protocol":2,"node_id":"old1","farm":"demo","agent":"zeroboot-init"}`)), 200)
	var resp map[string]any
	if err := json.Unmarshal([]byte(a.body), &resp); err != nil {
		t.Fatal(err)
	}
	if resp["protocol"] != float64(2) || resp["quote_nonce"] != nil || resp["send_ek"] != nil || resp["activate"] != nil {
		t.Fatalf("answer to protocol 2: %s", a.body)
	}
	n := e.nodeRecord("old1")
	if n.Identity.Kind != registry.KindDMI || !n.Identity.Approved || n.Identity.Attestation != nil {
		t.Fatalf("protocol 2 node record %+v", n.Identity)
	}
}

// BenchmarkVerifyBootQuote is the registry's work on one boot request's
// evidence: parse the identity key, verify the quote and replay the log.
func BenchmarkVerifyBootQuote(b *testing.B) {
	tp := tpm.New(testenv.Swtpm(b, b.TempDir()))
	m := &measure.Measurer{Extend: tp.Extend}
	p := &prove.Prover{TPM: tp, Log: m}
	if _, err := p.NodeID(); err != nil {
		b.Fatal(err)
	}
	m.Measure(measure.TypeTrustRoot, measure.TrustRootValue(testRootJSON))
	m.Measure(measure.TypeCmdline, testCmdline)
	nonce := make([]byte, registry.NonceSize)
	ev, err := p.Final(hex.EncodeToString(nonce))
	if err != nil {
		b.Fatal(err)
	}
	k, err := tp.IdentityKey()
	if err != nil {
		b.Fatal(err)
	}
	ev.AKPublic = k.Public
	check := attest.QuoteCheck{Nonce: nonce, PCRs: registry.QuotedPCRs()}
	b.ResetTimer()
	for b.Loop() {
		ak, err := attest.ParseAK(ev.AKPublic)
		if err != nil {
			b.Fatal(err)
		}
		pcrs := ev.PCRMap()
		if _, err := attest.VerifyQuote(ak, ev.Quote, ev.Signature, check, pcrs); err != nil {
			b.Fatal(err)
		}
		if err := attest.CheckLog(ev.Events, pcrs); err != nil {
			b.Fatal(err)
		}
	}
}
