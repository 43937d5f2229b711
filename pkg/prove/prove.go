// Package prove is the node's side of TPM identity: it turns the TPM's
// identity key into the node ID, answers the registry's challenges with
// quotes, and walks the key through enrollment (credential activation)
// when the registry does not know it yet. The registry's side is
// pkg/attest; the wire format is pkg/registry's.
package prove

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/tpm"
)

// TPM is what proving needs of pkg/tpm; tests may pass a *tpm.TPM on swtpm.
type TPM interface {
	IdentityKey() (*tpm.Key, error)
	EK() (*tpm.EK, error)
	ActivateCredential(key *tpm.Key, ek *tpm.EK, credBlob, secret []byte) ([]byte, error)
	Quote(key *tpm.Key, nonce []byte, pcrs []int) (*tpm.Quote, error)
}

// Prover holds the node's TPM identity for one boot.
type Prover struct {
	TPM TPM
	// Log is the measurement log whose PCR the quotes cover.
	Log *measure.Measurer
	// FirmwareLog reads the firmware's event log (tpm.FirmwareLog); nil
	// sends none.
	FirmwareLog func() ([]byte, error)
	// Report, if set, is told of each enrollment step.
	Report func(msg string)
	// Quotes counts the quotes made and TPMTime the time spent in the TPM
	// for them and for enrollment, for the boot's figures.
	Quotes  int
	TPMTime time.Duration

	key *tpm.Key
}

// NodeID creates the identity key and derives the node ID from its name
// (docs/identity.md).
func (p *Prover) NodeID() (string, error) {
	k, err := p.TPM.IdentityKey()
	if err != nil {
		return "", err
	}
	p.key = k
	return identity.NodeID(identity.SourceTPM, hex.EncodeToString(k.Name)), nil
}

// maxEnrollSteps bounds the exchange: asked for the EK, sent a credential,
// and once more should a registry restart mid-way invalidate it.
const maxEnrollSteps = 5

// Boot runs the boot exchange as a TPM node: every request carries a quote
// over a fresh nonce, and the enrollment steps the registry asks for
// (send the EK, activate a credential) are done in between.
func (p *Prover) Boot(ctx context.Context, c *registry.Client, req registry.BootRequest) (*registry.BootResponse, error) {
	if p.key == nil {
		return nil, errors.New("prove: NodeID was not called")
	}
	req.IdentityKind, req.IdentitySource = registry.KindTPM, identity.SourceTPM
	var ek *registry.EKEvidence
	var activation []byte
	for range maxEnrollSteps {
		resp, err := c.Boot(ctx, req, func(nonce []byte) (*registry.Evidence, error) {
			ev, err := p.evidence(nonce)
			if err != nil {
				return nil, err
			}
			ev.AKPublic, ev.EK, ev.Activation = p.key.Public, ek, activation
			return ev, nil
		})
		if err != nil {
			return nil, err
		}
		switch {
		case resp.SendEK:
			p.report("enrollment: the registry does not know this TPM's key yet; sending the endorsement key")
			if ek, err = p.ek(); err != nil {
				return nil, &registry.TPMError{Err: err}
			}
		case resp.Activate != nil:
			p.report("enrollment: activating the registry's credential to show the key lives in this TPM")
			if activation, err = p.activate(resp.Activate); err != nil {
				return nil, &registry.TPMError{Err: err}
			}
		default:
			return resp, nil
		}
	}
	return nil, fmt.Errorf("enrollment: still not done after %d exchanges with the registry", maxEnrollSteps)
}

func (p *Prover) report(msg string) {
	if p.Report != nil {
		p.Report(msg)
	}
}

func (p *Prover) ek() (*registry.EKEvidence, error) {
	defer p.timed(time.Now())
	ek, err := p.TPM.EK()
	if err != nil {
		return nil, err
	}
	return &registry.EKEvidence{Public: ek.Public, Cert: ek.Cert}, nil
}

func (p *Prover) timed(start time.Time) { p.TPMTime += time.Since(start) }

func (p *Prover) activate(a *registry.Activation) ([]byte, error) {
	defer p.timed(time.Now())
	ek, err := p.TPM.EK()
	if err != nil {
		return nil, err
	}
	return p.TPM.ActivateCredential(p.key, ek, a.Credential, a.Secret)
}

// evidence quotes the PCRs every quote covers over nonce, with the
// measurement log that explains PCR measure.PCR.
func (p *Prover) evidence(nonce []byte) (*registry.Evidence, error) {
	// PID 1's steps measure one after the other, never during a quote, so
	// the log read here is the one the quoted PCR holds.
	events := p.Log.Events()
	start := time.Now()
	q, err := p.TPM.Quote(p.key, nonce, registry.QuotedPCRs())
	p.TPMTime += time.Since(start)
	if err != nil {
		return nil, err
	}
	p.Quotes++
	ev := &registry.Evidence{Nonce: hex.EncodeToString(nonce), Quote: q.Attest, Signature: q.Signature, Events: events}
	for _, i := range registry.QuotedPCRs() {
		ev.PCRs = append(ev.PCRs, registry.PCRValue{Index: i, Digest: q.PCRs[i]})
	}
	return ev, nil
}

// Final is the evidence for the report before hand-off: a quote over the
// boot answer's nonce, once the release and every component are measured,
// with the firmware's event log.
func (p *Prover) Final(nonceHex string) (*registry.Evidence, error) {
	nonce, err := hex.DecodeString(nonceHex)
	if err != nil || len(nonce) != registry.NonceSize {
		return nil, fmt.Errorf("final quote: nonce %q from the registry is not %d hex bytes", nonceHex, registry.NonceSize)
	}
	ev, err := p.evidence(nonce)
	if err != nil {
		return nil, fmt.Errorf("final quote: %w", err)
	}
	if p.FirmwareLog != nil {
		fw, err := p.FirmwareLog()
		if err != nil {
			return nil, fmt.Errorf("final quote: %w", err)
		}
		ev.FirmwareLog = fw
	}
	return ev, nil
}
