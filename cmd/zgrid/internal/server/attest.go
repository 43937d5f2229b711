package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/attest"
	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// admission is the registry's decision on a boot request's identity: the
// record to keep, or an enrollment step to answer instead of a release.
type admission struct {
	ident  records.Identity
	answer *registry.BootResponse
}

// admit verifies the node's identity claim and applies its farm's policy.
// known is the node's record, nil for a node never seen.
func (s *Server) admit(req *registry.BootRequest, farm records.Farm, known *records.Node) (admission, error) {
	kind := req.IdentityKind
	if kind == "" {
		kind = registry.KindDMI // protocol 2 nodes
	}
	a := admission{ident: records.Identity{Kind: kind, Source: req.IdentitySource, TPMError: req.TPMError}}
	if known != nil {
		if known.Identity.Denied {
			return a, fail(http.StatusForbidden, "node %s is denied by the operator: its boot requests are refused until zgrid node approve %s", req.NodeID, req.NodeID)
		}
		if known.Identity.Kind == registry.KindTPM && kind != registry.KindTPM {
			// Node IDs are printed everywhere: without this, anyone could
			// boot as an enrolled TPM node and erase its enrollment.
			return a, fail(http.StatusForbidden, "node %s is enrolled with a TPM identity; a request without a quote by its key cannot speak for it", req.NodeID)
		}
		a.ident.Approved = known.Identity.Approved
		a.ident.Baseline = known.Identity.Baseline
	}
	if farm.RequireTPM && kind != registry.KindTPM {
		why := "it sent no TPM identity"
		if req.TPMError != "" {
			why = "its TPM: " + req.TPMError
		}
		return a, fail(http.StatusForbidden, "farm %s requires a TPM identity; node %s is a %s node (%s)", farm.Name, req.NodeID, kind, why)
	}
	if kind == registry.KindEphemeral && !farm.AllowEphemeral {
		return a, fail(http.StatusForbidden, "node %s has no identity of its own (%s) and farm %s takes no ephemeral nodes: zgrid farm set %s --allow-ephemeral", req.NodeID, req.IdentitySource, farm.Name, farm.Name)
	}
	if kind == registry.KindTPM {
		if err := s.admitTPM(req, known, &a); err != nil || a.answer != nil {
			return a, err
		}
	}
	return a, s.enroll(req, farm, known, &a)
}

// admitTPM checks the boot quote and walks a new key through credential
// activation.
func (s *Server) admitTPM(req *registry.BootRequest, known *records.Node, a *admission) error {
	ev := req.TPM
	if ok, err := s.useNonce(ev.Nonce, req.NodeID); err != nil {
		return err
	} else if !ok {
		return fail(http.StatusUnauthorized, "node %s: quote nonce unknown, already used or expired: a quote answers one fresh /v1/challenge", req.NodeID)
	}
	ak, err := attest.ParseAK(ev.AKPublic)
	if err != nil {
		return fail(http.StatusBadRequest, "node %s: identity key: %v", req.NodeID, err)
	}
	if id := identity.NodeID(identity.SourceTPM, hex.EncodeToString(ak.Name)); id != req.NodeID {
		return fail(http.StatusForbidden, "node %s: the ID does not derive from the identity key sent (that key is node %s)", req.NodeID, id)
	}
	nonce, _ := hex.DecodeString(ev.Nonce)
	pcrs := ev.PCRMap()
	if _, err := attest.VerifyQuote(ak, ev.Quote, ev.Signature, attest.QuoteCheck{Nonce: nonce, PCRs: registry.QuotedPCRs()}, pcrs); err != nil {
		return fail(http.StatusForbidden, "node %s: %v", req.NodeID, err)
	}
	if err := attest.CheckLog(ev.Events, pcrs); err != nil {
		return fail(http.StatusForbidden, "node %s: measurement log: %v", req.NodeID, err)
	}
	a.ident.AKPublic = ev.AKPublic
	if known != nil && known.Identity.Bound && bytes.Equal(known.Identity.AKPublic, ev.AKPublic) {
		a.ident.Bound = true
		a.ident.EKFingerprint, a.ident.EKKind = known.Identity.EKFingerprint, known.Identity.EKKind
		a.ident.EKCert, a.ident.EKCertVerified = known.Identity.EKCert, known.Identity.EKCertVerified
		return nil
	}
	return s.activate(req, ak, a)
}

// activate runs enrollment's proof that the identity key shares a TPM with
// the EK: ask for the EK, send a credential only that TPM can open for
// that key, and check what came back. The secret is an HMAC of the key
// and EK under the registry's activation key, so nothing is stored
// between the steps, and any replica (or the registry restarted) checks
// what another sent.
func (s *Server) activate(req *registry.BootRequest, ak *attest.AK, a *admission) error {
	ev := req.TPM
	answer := &registry.BootResponse{Protocol: answerProtocol(req), NodeID: req.NodeID}
	if ev.EK == nil {
		answer.SendEK = true
		a.answer = answer
		return nil
	}
	ek, err := attest.ParseEK(ev.EK.Public)
	if err != nil {
		return fail(http.StatusBadRequest, "node %s: endorsement key: %v", req.NodeID, err)
	}
	secret, err := s.activationSecret(ak.Name, ev.EK.Public)
	if err != nil {
		return fmt.Errorf("node %s: %w", req.NodeID, err)
	}
	if len(ev.Activation) > 0 {
		if !hmac.Equal(ev.Activation, secret) {
			return fail(http.StatusForbidden, "node %s: credential activation failed: the identity key is not in the TPM of that EK", req.NodeID)
		}
		return s.bindEK(req, ek, a)
	}
	blob, enc, err := attest.MakeCredential(rand.Reader, ek, ak.Name, secret)
	if err != nil {
		return fail(http.StatusBadRequest, "node %s: make credential: %v", req.NodeID, err)
	}
	answer.Activate = &registry.Activation{Credential: blob, Secret: enc}
	a.answer = answer
	return nil
}

func (s *Server) activationSecret(akName, ekPublic []byte) ([]byte, error) {
	key, err := s.activationKey()
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("zeroboot-activation-v1\x00"))
	m.Write(akName)
	m.Write([]byte{0})
	m.Write(ekPublic)
	return m.Sum(nil)[:16], nil
}

// activationKey is the records' secret "activation", the same for every
// replica; it is read once and kept.
func (s *Server) activationKey() ([]byte, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if s.actKey != nil {
		return s.actKey, nil
	}
	k, err := s.DB.Secret("activation")
	if err != nil {
		return nil, fmt.Errorf("credential activation key: %w", err)
	}
	s.actKey = k
	return k, nil
}

// bindEK records the activated EK and checks its certificate against the
// operator's manufacturer CAs, where configured: then a certificate is
// required.
func (s *Server) bindEK(req *registry.BootRequest, ek *attest.EK, a *admission) error {
	fp, err := attest.Fingerprint(ek.Key)
	if err != nil {
		return fail(http.StatusBadRequest, "node %s: endorsement key: %v", req.NodeID, err)
	}
	a.ident.Bound, a.ident.EKFingerprint, a.ident.EKKind = true, fp, ekKind(ek)
	cert := req.TPM.EK.Cert
	switch {
	case len(cert) > 0:
		if c, err := x509.ParseCertificate(cert); err == nil {
			a.ident.EKCert = fmt.Sprintf("subject %q, issuer %q", c.Subject.String(), c.Issuer.String())
		}
		if s.EKRoots != nil {
			if err := attest.VerifyEKCert(cert, ek, s.EKRoots, s.EKIntermediates); err != nil {
				return fail(http.StatusForbidden, "node %s: EK certificate: %v", req.NodeID, err)
			}
			a.ident.EKCertVerified = true
		}
	case s.EKRoots != nil:
		return fail(http.StatusForbidden, "node %s: its TPM has no EK certificate, and this registry checks EKs against manufacturer CAs (--ek-ca)", req.NodeID)
	}
	return nil
}

// enroll applies the farm's enrollment policy to a node not yet approved.
func (s *Server) enroll(req *registry.BootRequest, farm records.Farm, known *records.Node, a *admission) error {
	if known != nil && known.Identity.Approved {
		return nil
	}
	switch farm.Enroll {
	case "", records.EnrollOpen:
		a.ident.Approved = true
	case records.EnrollListed:
		listed, err := s.DB.Listed(req.NodeID, a.ident.EKFingerprint)
		if err != nil {
			return err
		}
		if !listed {
			return fail(http.StatusForbidden, "farm %s takes listed nodes only and node %s (EK %s) is not listed: zgrid node allow %s", farm.Name, req.NodeID, orNone(a.ident.EKFingerprint), req.NodeID)
		}
		a.ident.Approved = true
	case records.EnrollApproval:
		return errPending
	}
	return nil
}

// errPending marks a node held for approval: bootAnswer records it and
// answers 409 so that the node waits and asks again.
var errPending = fail(http.StatusConflict, "pending approval")

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// finalNonceTTL bounds the wait from boot answer to the quote before
// hand-off: it covers fetching every component.
const finalNonceTTL = 30 * time.Minute

// expected is what a node must have measured, after its baseline (trust
// root and command line from its first attested boot), once it has run
// what it was served: the release and each component.
func expected(rel records.ReleaseInfo) []measure.Event {
	want := []measure.Event{measure.NewEvent(measure.TypeRelease, measure.ReleaseValue(rel.Channel, rel.Version))}
	for _, c := range rel.Components {
		want = append(want, measure.NewEvent(measure.TypeComponent, measure.ComponentValue(c.Name, c.Flist.String(), c.Mount)))
	}
	return want
}

// verifyFinal judges the quote a TPM node sends before hand-off. It never
// refuses the report: a failed attestation is recorded and shown, the
// node's state is still worth knowing.
func (s *Server) verifyFinal(n records.Node, rep *registry.StatusReport) *records.Attestation {
	ev := rep.TPM
	att := &records.Attestation{Time: s.now(), PCRs: ev.PCRs, Events: ev.Events, FirmwareLog: "absent"}
	bad := func(format string, args ...any) *records.Attestation {
		att.State, att.Detail = records.AttestFailed, fmt.Sprintf(format, args...)
		return att
	}
	want, ok, err := s.useFinal(ev.Nonce, n.ID)
	if err != nil {
		return bad("final quote: %v", err)
	}
	if !ok {
		return bad("final quote: nonce unknown, used or expired (a registry on bbolt keeps nonces in memory: it may have restarted since the boot answer)")
	}
	ak, err := attest.ParseAK(n.Identity.AKPublic)
	if err != nil {
		return bad("enrolled identity key: %v", err)
	}
	nonce, _ := hex.DecodeString(ev.Nonce)
	pcrs := ev.PCRMap()
	qi, err := attest.VerifyQuote(ak, ev.Quote, ev.Signature, attest.QuoteCheck{Nonce: nonce, PCRs: registry.QuotedPCRs()}, pcrs)
	if err != nil {
		return bad("%v", err)
	}
	att.ResetCount, att.RestartCount = qi.ClockInfo.ResetCount, qi.ClockInfo.RestartCount
	if prev := n.Identity.Attestation; prev != nil && qi.ClockInfo.ResetCount < prev.ResetCount {
		// A TPM's reset count only grows (every TPM2_Startup(CLEAR)): a
		// lower one is not this TPM's present.
		return bad("TPM reset count %d is below the %d seen before", qi.ClockInfo.ResetCount, prev.ResetCount)
	}
	if err := attest.CheckLog(ev.Events, pcrs); err != nil {
		return bad("measurement log: %v", err)
	}
	if len(ev.FirmwareLog) > 0 {
		fw, err := attest.ParseFirmwareLog(ev.FirmwareLog)
		if err != nil {
			return bad("firmware event log: %v", err)
		}
		att.FirmwareEvents = len(fw)
		if err := attest.CheckFirmware(fw, pcrs); err != nil {
			return bad("firmware event log: %v", err)
		}
		att.FirmwareLog = "matches the quoted PCRs"
	}
	baseline := n.Identity.Baseline
	if len(baseline) == 0 {
		baseline = records.BaselineOf(ev.Events)
	}
	if err := attest.Expect(ev.Events, append(baseline, want...)); err != nil {
		att.State, att.Detail = records.AttestMismatch, err.Error()
		return att
	}
	att.State = records.AttestOK
	return att
}

func ekKind(ek *attest.EK) string {
	switch k := ek.Key.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ecc-" + k.Curve.Params().Name
	}
	return "unknown"
}
