package registry

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/zeroboot/zeroboot/pkg/measure"
)

// Identity kinds, in the boot request and the node record. A protocol 2
// node sends none and counts as KindDMI.
const (
	// KindTPM: the node ID derives from a key that lives in the node's
	// TPM, and every boot request carries a quote by it.
	KindTPM = "tpm"
	// KindDMI: the ID derives from firmware tables or a MAC. It
	// identifies; it proves nothing.
	KindDMI = "dmi"
	// KindEphemeral: the node found nothing to derive an ID from and made
	// one up for this boot; only farms that allow it take it.
	KindEphemeral = "ephemeral"
)

// NonceSize is the number of random bytes in a challenge; on the wire it is
// twice as many lower-case hex digits.
const NonceSize = 32

// ChallengeRequest is what a node with a TPM sends to POST /v1/challenge
// before each boot request: the answer's nonce goes into its quote.
type ChallengeRequest struct {
	Protocol int    `json:"protocol"`
	NodeID   string `json:"node_id"`
}

// ChallengeResponse carries a fresh nonce, good for one boot request from
// that node within ChallengeTTL.
type ChallengeResponse struct {
	Protocol int    `json:"protocol"`
	Nonce    string `json:"nonce"`
}

// Evidence is what a node's TPM says: a quote over the registry's nonce by
// the identity key, the PCR values it covers and the logs that explain
// them. Boot requests carry it with AKPublic; the status report before
// hand-off carries it again over BootResponse.QuoteNonce, once the release
// and components are measured.
type Evidence struct {
	// AKPublic is the identity key's TPMT_PUBLIC; the node ID derives from
	// its name (docs/identity.md). Boot requests only.
	AKPublic  []byte          `json:"ak_public,omitempty"`
	Nonce     string          `json:"nonce"`
	Quote     []byte          `json:"quote"`     // TPMS_ATTEST as signed
	Signature []byte          `json:"signature"` // TPMT_SIGNATURE
	PCRs      []PCRValue      `json:"pcrs"`
	Events    []measure.Event `json:"events"`
	// FirmwareLog is the firmware's TCG event log (PCRs 0-7), sent with
	// the report before hand-off only.
	FirmwareLog []byte `json:"firmware_log,omitempty"`
	// EK and Activation answer a BootResponse.Activate: the endorsement
	// key, and the secret the TPM decrypted with it, which shows that the
	// identity key lives in the TPM that holds the EK.
	EK         *EKEvidence `json:"ek,omitempty"`
	Activation []byte      `json:"activation,omitempty"`
}

// PCRValue is one quoted PCR of the SHA-256 bank.
type PCRValue struct {
	Index  int    `json:"index"`
	Digest []byte `json:"digest"`
}

// EKEvidence is the TPM's endorsement key and, where the manufacturer
// stored one, its certificate.
type EKEvidence struct {
	Public []byte `json:"public"`         // TPMT_PUBLIC
	Cert   []byte `json:"cert,omitempty"` // DER
}

// Activation is the registry's enrollment challenge: a secret encrypted to
// the node's EK, bound to the identity key's name (TPM2_MakeCredential).
// Only the TPM holding both can recover it with TPM2_ActivateCredential.
type Activation struct {
	Credential []byte `json:"credential"` // TPM2B_ID_OBJECT contents
	Secret     []byte `json:"secret"`     // TPM2B_ENCRYPTED_SECRET contents
}

// Limits on evidence. MaxPCRs is one bank; the firmware log's limit is
// measure.MaxFirmwareLog, under MaxBodySize once base64-encoded.
const (
	MaxPCRs       = 24
	MaxTPMBlob    = 4096 // a public area, quote, signature, activation
	MaxEKCert     = 8192
	MaxTPMErrText = 512
)

// CheckNonce reports whether s has the shape of a challenge nonce.
func CheckNonce(s string) error { return checkHex("nonce", s, NonceSize) }

// Validate bounds every field of the evidence; what it means is the
// registry's to verify (pkg/attest).
func (e *Evidence) Validate() error {
	if err := CheckNonce(e.Nonce); err != nil {
		return fmt.Errorf("tpm evidence: %w", err)
	}
	for _, f := range []struct {
		name string
		b    []byte
		max  int
	}{{"ak_public", e.AKPublic, MaxTPMBlob}, {"quote", e.Quote, MaxTPMBlob}, {"signature", e.Signature, MaxTPMBlob}, {"activation", e.Activation, MaxTPMBlob}} {
		if len(f.b) > f.max {
			return fmt.Errorf("tpm evidence: %s is %d bytes, limit %d", f.name, len(f.b), f.max)
		}
	}
	if len(e.Quote) == 0 || len(e.Signature) == 0 {
		return errors.New("tpm evidence: quote or signature missing")
	}
	if len(e.PCRs) > MaxPCRs {
		return fmt.Errorf("tpm evidence: %d PCR values, limit %d", len(e.PCRs), MaxPCRs)
	}
	for _, p := range e.PCRs {
		if p.Index < 0 || p.Index >= MaxPCRs || len(p.Digest) != 32 {
			return fmt.Errorf("tpm evidence: PCR %d: want an index 0-%d and a 32-byte SHA-256 value", p.Index, MaxPCRs-1)
		}
	}
	if len(e.Events) > measure.MaxEvents {
		return fmt.Errorf("tpm evidence: %d events, limit %d", len(e.Events), measure.MaxEvents)
	}
	for i, ev := range e.Events {
		if err := ev.Check(); err != nil {
			return fmt.Errorf("tpm evidence: event %d: %w", i, err)
		}
	}
	if len(e.FirmwareLog) > measure.MaxFirmwareLog {
		return fmt.Errorf("tpm evidence: firmware log is %d bytes, limit %d", len(e.FirmwareLog), measure.MaxFirmwareLog)
	}
	if e.EK != nil && (len(e.EK.Public) == 0 || len(e.EK.Public) > MaxTPMBlob || len(e.EK.Cert) > MaxEKCert) {
		return fmt.Errorf("tpm evidence: ek: public key of %d bytes (want 1-%d), certificate of %d (limit %d)", len(e.EK.Public), MaxTPMBlob, len(e.EK.Cert), MaxEKCert)
	}
	return nil
}

// PCRMap is the evidence's PCR values by index.
func (e *Evidence) PCRMap() map[int][]byte {
	m := make(map[int][]byte, len(e.PCRs))
	for _, p := range e.PCRs {
		m[p.Index] = p.Digest
	}
	return m
}

// QuotedPCRs is the selection every quote covers: the firmware's PCRs 0-7
// and zeroboot's own.
func QuotedPCRs() []int { return []int{0, 1, 2, 3, 4, 5, 6, 7, measure.PCR} }

// nonceBytes is a checked nonce's value.
func nonceBytes(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}
