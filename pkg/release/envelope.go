package release

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Envelope bounds and the signing domain.
const (
	MaxEnvelopeSize = 1 << 20
	MaxSignatures   = 32
	// signingDomain prefixes every signed payload so a release signature
	// can never be replayed as a signature over anything else made with the
	// same key.
	signingDomain = "zeroboot-release-v1\n"
)

// Envelope carries the exact bytes that were signed. The payload is kept as
// bytes, never re-encoded, so what is verified is what is decoded.
type Envelope struct {
	Payload    []byte      `json:"payload"`
	Signatures []Signature `json:"signatures"`
}

// Signature is one key's ed25519 signature over signingDomain + Payload.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   []byte `json:"sig"`
}

// KeyID names a public key: hex SHA-256 of the raw 32-byte key.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:])
}

// Fingerprint is a short KeyID for humans: "ed25519:" + 16 hex digits.
func Fingerprint(pub ed25519.PublicKey) string {
	return "ed25519:" + KeyID(pub)[:16]
}

func signingInput(payload []byte) []byte {
	m := make([]byte, 0, len(signingDomain)+len(payload))
	return append(append(m, signingDomain...), payload...)
}

// Sign validates r, encodes it and signs it with every key. An empty
// r.Format is taken as the current Format. Expiry is not checked against the
// clock here: the signer may legitimately sign for a node whose clock differs.
func Sign(r *Release, keys ...ed25519.PrivateKey) (*Envelope, error) {
	if len(keys) == 0 {
		return nil, errors.New("release: sign: no signing keys")
	}
	c := *r
	if c.Format == "" {
		c.Format = Format
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	payload, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("release: sign: encode: %w", err)
	}
	if len(payload) > MaxEnvelopeSize/2 {
		return nil, fmt.Errorf("release: sign: payload is %d bytes, at most %d", len(payload), MaxEnvelopeSize/2)
	}
	env := &Envelope{Payload: payload}
	for _, k := range keys {
		if err := env.AddSignature(k); err != nil {
			return nil, err
		}
	}
	return env, nil
}

// AddSignature co-signs env with key: a second key holder checks the payload
// offline and adds their signature. The payload must decode to a valid
// release; a key that already signed is refused.
func (env *Envelope) AddSignature(key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("release: sign: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if _, err := DecodePayload(env.Payload); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	id := KeyID(key.Public().(ed25519.PublicKey))
	for _, s := range env.Signatures {
		if s.KeyID == id {
			return fmt.Errorf("release: sign: key %s already signed this release", id)
		}
	}
	if len(env.Signatures) >= MaxSignatures {
		return fmt.Errorf("release: sign: already %d signatures, at most %d", len(env.Signatures), MaxSignatures)
	}
	env.Signatures = append(env.Signatures, Signature{KeyID: id, Sig: ed25519.Sign(key, signingInput(env.Payload))})
	return nil
}

// Marshal encodes env as JSON.
func (env *Envelope) Marshal() ([]byte, error) {
	if err := env.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("release: encode envelope: %w", err)
	}
	if len(b) > MaxEnvelopeSize {
		return nil, fmt.Errorf("release: envelope is %d bytes, at most %d", len(b), MaxEnvelopeSize)
	}
	return b, nil
}

// ParseEnvelope decodes an envelope strictly: bounded size, no unknown
// fields, no trailing data, well-formed key IDs and signature lengths. It
// does not verify anything; that is (*Trust).Verify's job.
func ParseEnvelope(b []byte) (*Envelope, error) {
	var env Envelope
	if err := strictJSON(b, MaxEnvelopeSize, &env); err != nil {
		return nil, fmt.Errorf("release: envelope: %w", err)
	}
	if err := env.check(); err != nil {
		return nil, err
	}
	return &env, nil
}

func (env *Envelope) check() error {
	if len(env.Payload) == 0 {
		return errors.New("release: envelope: empty payload")
	}
	if len(env.Signatures) == 0 {
		return errors.New("release: envelope: no signatures")
	}
	if len(env.Signatures) > MaxSignatures {
		return fmt.Errorf("release: envelope: %d signatures, at most %d", len(env.Signatures), MaxSignatures)
	}
	for i, s := range env.Signatures {
		if !isKeyID(s.KeyID) {
			return fmt.Errorf("release: envelope: signature %d: keyid %q is not 64 lower-case hex digits", i, clip(s.KeyID))
		}
		if len(s.Sig) != ed25519.SignatureSize {
			return fmt.Errorf("release: envelope: signature %d (key %s): %d bytes, want %d", i, s.KeyID, len(s.Sig), ed25519.SignatureSize)
		}
	}
	return nil
}

func isKeyID(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// strictJSON decodes exactly one JSON value of at most max bytes into v,
// refusing unknown fields and trailing data.
func strictJSON(b []byte, max int, v any) error {
	if len(b) > max {
		return fmt.Errorf("%d bytes, at most %d", len(b), max)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// DecodePayload decodes and validates a release payload (Envelope.Payload)
// WITHOUT checking any signature: only (*Trust).Verify makes a release
// trustworthy. It is for tools that inspect a release they hold no trust
// for, such as a registry started without one. The format is read first,
// leniently, so a release of a newer format is refused as such rather than
// as "unknown field".
func DecodePayload(b []byte) (*Release, error) {
	var head struct {
		Format string `json:"format"`
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&head); err != nil {
		return nil, fmt.Errorf("release: payload: %w", err)
	}
	if err := checkFormat(head.Format); err != nil {
		return nil, err
	}
	var r Release
	if err := strictJSON(b, MaxEnvelopeSize, &r); err != nil {
		return nil, fmt.Errorf("release: payload: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}
