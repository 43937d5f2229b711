package release

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// TrustFormat is the only trust file format this code understands.
const TrustFormat = "zeroboot-trust/1"

// Trust bounds.
const (
	MaxTrustSize = 64 << 10
	MaxTrustKeys = 64
)

// Trust is what a node pins: the release keys and how many of them must sign.
// It is built into the initramfs; nothing fetched at boot can change it.
type Trust struct {
	Format    string              `json:"format"`
	Threshold int                 `json:"threshold"`
	Keys      []ed25519.PublicKey `json:"keys"`
}

// Options are the node's side of verification.
type Options struct {
	// Now is the node's trusted time; a release expiring at or before it is
	// refused. Required.
	Now time.Time
	// Channel, if set, must equal the release's channel.
	Channel string
	// MinVersion is the version floor (from the registry or a TPM counter);
	// a lower version is a rollback and is refused.
	MinVersion uint64
}

// ParseTrust decodes a trust file strictly and validates it.
func ParseTrust(b []byte) (*Trust, error) {
	var t Trust
	if err := strictJSON(b, MaxTrustSize, &t); err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// Marshal encodes t as a trust file.
func (t *Trust) Marshal() ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("trust: encode: %w", err)
	}
	return append(b, '\n'), nil
}

// Validate refuses a trust that could be satisfied by fewer keys than it
// appears to require: threshold below 1 or above the number of keys,
// duplicate keys, malformed keys.
func (t *Trust) Validate() error {
	if t.Format != TrustFormat {
		return fmt.Errorf("trust: format %q, want %q", clip(t.Format), TrustFormat)
	}
	if len(t.Keys) == 0 {
		return errors.New("trust: no keys")
	}
	if len(t.Keys) > MaxTrustKeys {
		return fmt.Errorf("trust: %d keys, at most %d", len(t.Keys), MaxTrustKeys)
	}
	if t.Threshold < 1 {
		return fmt.Errorf("trust: threshold %d: must be at least 1", t.Threshold)
	}
	if t.Threshold > len(t.Keys) {
		return fmt.Errorf("trust: threshold %d: only %d keys", t.Threshold, len(t.Keys))
	}
	seen := make(map[string]int, len(t.Keys))
	for i, k := range t.Keys {
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("trust: key %d: %d bytes, want %d", i, len(k), ed25519.PublicKeySize)
		}
		id := KeyID(k)
		if j, ok := seen[id]; ok {
			return fmt.Errorf("trust: keys %d and %d are the same key %s", j, i, Fingerprint(k))
		}
		seen[id] = i
	}
	return nil
}

// Verify checks env against t and opt and returns the release it carries.
// Order: trust sane, threshold of distinct trusted keys signed the exact
// payload, payload decodes strictly to a valid release, channel, expiry,
// version floor. Nothing from the payload is looked at before the
// signatures pass.
func (t *Trust) Verify(env *Envelope, opt Options) (*Release, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if opt.Now.IsZero() {
		return nil, errors.New("release: verify: no current time given")
	}
	if err := env.check(); err != nil {
		return nil, err
	}
	if err := t.countSignatures(env); err != nil {
		return nil, err
	}
	r, err := DecodePayload(env.Payload)
	if err != nil {
		return nil, err
	}
	if opt.Channel != "" && r.Channel != opt.Channel {
		return nil, fmt.Errorf("release: channel %q, this node follows %q", r.Channel, opt.Channel)
	}
	if !opt.Now.Before(r.Expires) {
		return nil, fmt.Errorf("release: version %d expired at %s; now is %s", r.Version,
			r.Expires.UTC().Format(time.RFC3339), opt.Now.UTC().Format(time.RFC3339))
	}
	if r.Version < opt.MinVersion {
		return nil, fmt.Errorf("release: version %d is below the floor %d (rollback refused)", r.Version, opt.MinVersion)
	}
	return r, nil
}

// countSignatures counts distinct trusted keys with a valid signature over
// the payload. A key listed twice counts once; unknown keys and bad
// signatures count for nothing but are named if the threshold is not met.
func (t *Trust) countSignatures(env *Envelope) error {
	trusted := make(map[string]ed25519.PublicKey, len(t.Keys))
	for _, k := range t.Keys {
		trusted[KeyID(k)] = k
	}
	msg := signingInput(env.Payload)
	valid := map[string]bool{}
	var notes []string
	for _, s := range env.Signatures {
		k, ok := trusted[s.KeyID]
		switch {
		case !ok:
			notes = append(notes, "unknown key "+s.KeyID)
		case valid[s.KeyID]:
			notes = append(notes, "duplicate signature by "+s.KeyID)
		case !ed25519.Verify(k, msg, s.Sig):
			notes = append(notes, "bad signature by "+s.KeyID)
		default:
			valid[s.KeyID] = true
		}
	}
	if len(valid) >= t.Threshold {
		return nil
	}
	ids := make([]string, 0, len(valid))
	for id := range valid {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	detail := "valid: none"
	if len(ids) > 0 {
		detail = "valid: " + strings.Join(ids, ", ")
	}
	if len(notes) > 0 {
		detail += "; " + strings.Join(notes, "; ")
	}
	return fmt.Errorf("release: %d of %d required signatures (%s)", len(valid), t.Threshold, detail)
}
