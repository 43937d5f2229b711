package trust

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"

	"filippo.io/edwards25519"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// CheckPublicKey refuses an ed25519 public key that is not the canonical
// encoding of a point of large order. crypto/ed25519 accepts a small-order key, and with it a
// signature (R = identity, S = 0) that verifies any message with no
// private key at all: a trust root with two such keys and threshold 2 is
// no root.
func CheckPublicKey(pub []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("ed25519 public key: %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if err := checkPoint(pub); err != nil {
		return fmt.Errorf("ed25519 public key %x: %w", pub, err)
	}
	return nil
}

// CheckSignature refuses a signature whose R is not a canonical point of
// large order or whose S is not reduced (s < L), so that one signature has
// one encoding and none is the degenerate identity signature.
func CheckSignature(sig []byte) error {
	if len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("ed25519 signature: %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	if err := checkPoint(sig[:32]); err != nil {
		return fmt.Errorf("ed25519 signature: R %w", err)
	}
	if _, err := edwards25519.NewScalar().SetCanonicalBytes(sig[32:]); err != nil {
		return errors.New("ed25519 signature: S is not reduced modulo the group order")
	}
	return nil
}

func checkPoint(b []byte) error {
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil {
		return errors.New("is not a point on the curve")
	}
	if !bytes.Equal(p.Bytes(), b) {
		return errors.New("is a non-canonical encoding")
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return errors.New("has small order (it would verify forged signatures)")
	}
	return nil
}

// checkKey accepts only what this node verifies with: an ed25519 key
// (keytype and scheme ed25519, 64 hex digits) that passes CheckPublicKey,
// listed under its own TUF key ID (so one key cannot count twice under
// two IDs).
func checkKey(id string, k *metadata.Key) error {
	if k == nil {
		return fmt.Errorf("key %s: missing", clip(id))
	}
	if k.Type != metadata.KeyTypeEd25519 || k.Scheme != metadata.KeySchemeEd25519 {
		return fmt.Errorf("key %s: type %q scheme %q: only ed25519 keys are accepted", clip(id), clip(k.Type), clip(k.Scheme))
	}
	if len(k.UnrecognizedFields) > 0 || len(k.Value.UnrecognizedFields) > 0 {
		return fmt.Errorf("key %s: unknown fields", clip(id))
	}
	pub, err := hex.DecodeString(k.Value.PublicKey)
	if err != nil || hex.EncodeToString(pub) != k.Value.PublicKey {
		return fmt.Errorf("key %s: public key is not lower-case hex", clip(id))
	}
	if err := CheckPublicKey(pub); err != nil {
		return fmt.Errorf("key %s: %w", clip(id), err)
	}
	want, err := k.ID()
	if err != nil {
		return fmt.Errorf("key %s: %w", clip(id), err)
	}
	if want != id {
		return fmt.Errorf("key listed as %s has key ID %s", clip(id), want)
	}
	return nil
}

// checkSignatures refuses a document carrying any malformed signature,
// before any of them is counted.
func checkSignatures(sigs []metadata.Signature) error {
	if len(sigs) > maxSignatures {
		return fmt.Errorf("%d signatures, at most %d", len(sigs), maxSignatures)
	}
	for _, s := range sigs {
		if len(s.UnrecognizedFields) > 0 {
			return fmt.Errorf("signature by %s: unknown fields", clip(s.KeyID))
		}
		if err := CheckSignature(s.Signature); err != nil {
			return fmt.Errorf("signature by %s: %w", clip(s.KeyID), err)
		}
	}
	return nil
}
