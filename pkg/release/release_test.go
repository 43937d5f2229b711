package release

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/digest"
)

var (
	t0      = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	keySeed = [][]byte{
		bytes.Repeat([]byte{1}, 32),
		bytes.Repeat([]byte{2}, 32),
		bytes.Repeat([]byte{3}, 32),
	}
)

// key returns a deterministic test key so failures reproduce.
func key(i int) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(keySeed[i]) }

func pub(i int) ed25519.PublicKey { return key(i).Public().(ed25519.PublicKey) }

func testRelease() *Release {
	return &Release{
		Format:  Format,
		Channel: "stable",
		Version: 7,
		Created: t0.Add(-time.Hour),
		Expires: t0.Add(24 * time.Hour),
		Components: []Component{
			{Name: "base", Flist: digest.Of([]byte("base")), Mount: "/"},
			{Name: "core0", Flist: digest.Of([]byte("core0")), Mount: "/opt/core0"},
		},
		Entrypoint: Entrypoint{Path: "/sbin/core0", Args: []string{"--node"}, Env: []string{"PATH=/bin:/sbin", "LANG=C"}},
	}
}

func trust(threshold int, keys ...int) *Trust {
	t := &Trust{Format: TrustFormat, Threshold: threshold}
	for _, k := range keys {
		t.Keys = append(t.Keys, pub(k))
	}
	return t
}

func mustSign(t *testing.T, r *Release, keys ...int) *Envelope {
	t.Helper()
	var ks []ed25519.PrivateKey
	for _, k := range keys {
		ks = append(ks, key(k))
	}
	env, err := Sign(r, ks...)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return env
}

// resign replaces the payload with edit(payload) but keeps the signatures,
// which is what an attacker without keys can do.
func tamper(env *Envelope, edit func(*Release)) *Envelope {
	var r Release
	if err := json.Unmarshal(env.Payload, &r); err != nil {
		panic(err)
	}
	edit(&r)
	p, err := json.Marshal(&r)
	if err != nil {
		panic(err)
	}
	return &Envelope{Payload: p, Signatures: env.Signatures}
}

func TestVerifyAccepts(t *testing.T) {
	want := testRelease()
	for _, tc := range []struct {
		name  string
		trust *Trust
		keys  []int
		opt   Options
	}{
		{"one of one", trust(1, 0), []int{0}, Options{Now: t0}},
		{"two of three", trust(2, 0, 1, 2), []int{2, 0}, Options{Now: t0}},
		{"extra unknown key ignored", trust(1, 0), []int{0, 1}, Options{Now: t0}},
		{"channel and floor met", trust(1, 0), []int{0}, Options{Now: t0, Channel: "stable", MinVersion: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := mustSign(t, want, tc.keys...)
			got, err := tc.trust.Verify(env, tc.opt)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Version != want.Version || got.Channel != want.Channel || len(got.Components) != 2 ||
				got.Components[1] != want.Components[1] || got.Entrypoint.Env[0] != "PATH=/bin:/sbin" ||
				!got.Expires.Equal(want.Expires) {
				t.Fatalf("Verify returned %+v, want %+v", got, want)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	good := mustSign(t, testRelease(), 0, 1)
	dup := &Envelope{Payload: good.Payload, Signatures: []Signature{good.Signatures[0], good.Signatures[0]}}
	swapped := tamper(good, func(r *Release) { r.Components[1].Flist = digest.Of([]byte("core0 from release 6")) })
	flipped := &Envelope{Payload: bytes.Clone(good.Payload), Signatures: good.Signatures}
	flipped.Payload[len(flipped.Payload)/2] ^= 1
	expired := testRelease()
	expired.Expires = t0
	old := testRelease()
	old.Version = 6
	badSig := &Envelope{Payload: good.Payload, Signatures: []Signature{{KeyID: good.Signatures[0].KeyID, Sig: good.Signatures[1].Sig}}}

	for _, tc := range []struct {
		name  string
		trust *Trust
		env   *Envelope
		opt   Options
		want  string
	}{
		{"unknown key", trust(1, 2), good, Options{Now: t0},
			"0 of 1 required signatures (valid: none; unknown key " + KeyID(pub(0)) + "; unknown key " + KeyID(pub(1)) + ")"},
		{"too few keys", trust(2, 0, 2), mustSign(t, testRelease(), 0, 1), Options{Now: t0},
			"1 of 2 required signatures (valid: " + KeyID(pub(0)) + "; unknown key " + KeyID(pub(1)) + ")"},
		{"one key counted twice", trust(2, 0, 1), dup, Options{Now: t0},
			"1 of 2 required signatures (valid: " + KeyID(pub(0)) + "; duplicate signature by " + KeyID(pub(0)) + ")"},
		{"signature by the wrong key under a trusted id", trust(1, 0), badSig, Options{Now: t0},
			"bad signature by " + KeyID(pub(0))},
		{"threshold 0", trust(0, 0), good, Options{Now: t0}, "trust: threshold 0: must be at least 1"},
		{"threshold above keys", trust(3, 0, 1), good, Options{Now: t0}, "trust: threshold 3: only 2 keys"},
		{"same trusted key twice", trust(2, 0, 0), good, Options{Now: t0}, "are the same key"},
		{"expired", trust(1, 0), mustSign(t, expired, 0), Options{Now: t0},
			"release: version 7 expired at 2026-03-01T12:00:00Z; now is 2026-03-01T12:00:00Z"},
		{"expired long ago", trust(1, 0), good, Options{Now: t0.Add(48 * time.Hour)}, "expired at 2026-03-02T12:00:00Z; now is 2026-03-03T12:00:00Z"},
		{"no clock", trust(1, 0), good, Options{}, "no current time"},
		{"version below floor", trust(1, 0), mustSign(t, old, 0), Options{Now: t0, MinVersion: 7},
			"version 6 is below the floor 7"},
		{"wrong channel", trust(1, 0), good, Options{Now: t0, Channel: "beta"}, `channel "stable", this node follows "beta"`},
		{"tampered payload", trust(1, 0), flipped, Options{Now: t0}, "0 of 1 required signatures (valid: none; bad signature by"},
		{"component from another release", trust(2, 0, 1), swapped, Options{Now: t0}, "0 of 2 required signatures"},
		{"no signatures", trust(1, 0), &Envelope{Payload: good.Payload}, Options{Now: t0}, "no signatures"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.trust.Verify(tc.env, tc.opt)
			if err == nil {
				t.Fatalf("Verify accepted %+v", r)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// signedPayload signs raw payload bytes directly, bypassing Sign's
// validation, to check that Verify validates what it decodes even when the
// signature is genuine (a careless signer).
func signedPayload(payload []byte) *Envelope {
	return &Envelope{Payload: payload, Signatures: []Signature{{KeyID: KeyID(pub(0)), Sig: ed25519.Sign(key(0), signingInput(payload))}}}
}

func TestVerifyRefusesSignedButInvalid(t *testing.T) {
	good, err := json.Marshal(testRelease())
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	comp := func(m map[string]any, i int) map[string]any { return m["components"].([]any)[i].(map[string]any) }
	entry := func(m map[string]any) map[string]any { return m["entrypoint"].(map[string]any) }
	for _, tc := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"unknown field", edit(func(m map[string]any) { m["debug_shell"] = true }), `unknown field "debug_shell"`},
		{"newer format", edit(func(m map[string]any) { m["format"] = "zeroboot-release/2"; m["new_thing"] = 1 }),
			`format "zeroboot-release/2" is a version this node does not understand`},
		{"foreign format", edit(func(m map[string]any) { m["format"] = "other/1" }), "is not a zeroboot release"},
		{"trailing data", append(bytes.Clone(good), []byte(` {}`)...), "trailing data"},
		{"not json", []byte("hello"), "payload"},
		{"version 0", edit(func(m map[string]any) { m["version"] = 0 }), "version 0"},
		{"no components", edit(func(m map[string]any) { m["components"] = []any{} }), "no components"},
		{"bad component name", edit(func(m map[string]any) { comp(m, 0)["name"] = "Base" }), `character 'B' outside [a-z0-9._-]`},
		{"dot-dot name", edit(func(m map[string]any) { comp(m, 0)["name"] = ".." }), "not a name"},
		{"long name", edit(func(m map[string]any) { comp(m, 0)["name"] = strings.Repeat("a", 65) }), "1 to 64 characters"},
		{"duplicate name", edit(func(m map[string]any) { comp(m, 1)["name"] = "base" }), `component name "base" appears twice`},
		{"zero digest", edit(func(m map[string]any) { comp(m, 0)["flist"] = "sha256:" + strings.Repeat("0", 64) }), `component "base": no flist digest`},
		{"malformed digest", edit(func(m map[string]any) { comp(m, 0)["flist"] = "sha256:abc" }), "want 64 hex digits"},
		{"relative mount", edit(func(m map[string]any) { comp(m, 1)["mount"] = "opt/core0" }), "not an absolute path"},
		{"unclean mount", edit(func(m map[string]any) { comp(m, 1)["mount"] = "/opt/../etc" }), `not clean (want "/etc")`},
		{"duplicate mount", edit(func(m map[string]any) { comp(m, 1)["mount"] = "/" }), `components "base" and "core0" both mount at /`},
		{"relative entrypoint", edit(func(m map[string]any) { entry(m)["path"] = "core0" }), "entrypoint path"},
		{"bad env", edit(func(m map[string]any) { entry(m)["env"] = []any{"NOEQUALS"} }), "want KEY=VALUE"},
		{"env key with space", edit(func(m map[string]any) { entry(m)["env"] = []any{"A B=1"} }), "want KEY=VALUE"},
		{"env twice", edit(func(m map[string]any) { entry(m)["env"] = []any{"A=1", "A=2"} }), "sets A twice"},
		{"nul in arg", edit(func(m map[string]any) { entry(m)["args"] = []any{"a\x00b"} }), "NUL byte"},
		{"bad channel", edit(func(m map[string]any) { m["channel"] = "" }), "channel"},
		{"terminal controls in channel", edit(func(m map[string]any) { m["channel"] = "\x1b[2J\u009b" }), `channel "?[2J?"`},
		{"no expiry", edit(func(m map[string]any) { delete(m, "expires") }), "no expiry time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := trust(1, 0).Verify(signedPayload(tc.payload), Options{Now: t0})
			if err == nil {
				t.Fatalf("Verify accepted %+v", r)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify error %q, want it to contain %q", err, tc.want)
			}
			// DecodePayload is the same check without signatures: it must
			// refuse exactly what Verify refuses, with the same words.
			if r, derr := DecodePayload(tc.payload); derr == nil || derr.Error() != err.Error() {
				t.Fatalf("DecodePayload = %+v, %v; want Verify's error %q", r, derr, err)
			}
		})
	}
}

// DecodePayload reads a release whatever its signatures say, which is what
// a registry without a trust needs and why nodes must never use it.
func TestDecodePayloadIgnoresSignatures(t *testing.T) {
	env := mustSign(t, testRelease(), 0)
	env.Signatures[0].Sig[0] ^= 1
	if _, err := trust(1, 0).Verify(env, Options{Now: t0}); err == nil {
		t.Fatal("Verify accepted a corrupted signature")
	}
	r, err := DecodePayload(env.Payload)
	if err != nil {
		t.Fatalf("DecodePayload: %v", err)
	}
	want := testRelease()
	if r.Channel != want.Channel || r.Version != want.Version || !r.Expires.Equal(want.Expires) ||
		len(r.Components) != len(want.Components) || r.Components[1] != want.Components[1] || r.Entrypoint.Path != want.Entrypoint.Path {
		t.Fatalf("DecodePayload = %+v, want %+v", r, want)
	}
}

func TestSignRefusesInvalidRelease(t *testing.T) {
	r := testRelease()
	r.Components[0].Mount = "relative"
	if _, err := Sign(r, key(0)); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Fatalf("Sign of an invalid release: %v", err)
	}
	if _, err := Sign(testRelease()); err == nil || !strings.Contains(err.Error(), "no signing keys") {
		t.Fatalf("Sign without keys: %v", err)
	}
	if _, err := Sign(testRelease(), key(0), key(0)); err == nil || !strings.Contains(err.Error(), "already signed") {
		t.Fatalf("Sign with one key twice: %v", err)
	}
}

func TestSignDefaultsFormat(t *testing.T) {
	r := testRelease()
	r.Format = ""
	env := mustSign(t, r, 0)
	got, err := trust(1, 0).Verify(env, Options{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if got.Format != Format || r.Format != "" {
		t.Fatalf("format in payload %q (want %q), caller's release changed to %q", got.Format, Format, r.Format)
	}
}

func TestCoSign(t *testing.T) {
	env := mustSign(t, testRelease(), 0)
	tr := trust(2, 0, 1)
	if _, err := tr.Verify(env, Options{Now: t0}); err == nil {
		t.Fatal("one signature met a threshold of 2")
	}
	// The second holder gets the envelope as bytes, offline.
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	env2, err := ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := env2.AddSignature(key(1)); err != nil {
		t.Fatal(err)
	}
	if err := env2.AddSignature(key(1)); err == nil || !strings.Contains(err.Error(), "already signed") {
		t.Fatalf("second AddSignature by the same key: %v", err)
	}
	if _, err := tr.Verify(env2, Options{Now: t0}); err != nil {
		t.Fatalf("co-signed envelope: %v", err)
	}
	garbage := &Envelope{Payload: []byte(`{"format":"zeroboot-release/1"}`)}
	if err := garbage.AddSignature(key(1)); err == nil {
		t.Fatal("AddSignature signed an invalid payload")
	}
}

func TestParseEnvelope(t *testing.T) {
	env := mustSign(t, testRelease(), 0)
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Payload, env.Payload) || len(got.Signatures) != 1 || !bytes.Equal(got.Signatures[0].Sig, env.Signatures[0].Sig) {
		t.Fatalf("round trip changed the envelope")
	}
	sig := env.Signatures[0]
	many := &Envelope{Payload: env.Payload}
	for range MaxSignatures + 1 {
		many.Signatures = append(many.Signatures, sig)
	}
	manyJSON, _ := json.Marshal(many)
	shortSig, _ := json.Marshal(&Envelope{Payload: env.Payload, Signatures: []Signature{{KeyID: sig.KeyID, Sig: sig.Sig[:10]}}})
	badID, _ := json.Marshal(&Envelope{Payload: env.Payload, Signatures: []Signature{{KeyID: "ABC", Sig: sig.Sig}}})
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"too big", make([]byte, MaxEnvelopeSize+1), "at most 1048576"},
		{"unknown field", []byte(`{"payload":"e30=","signatures":[],"extra":1}`), `unknown field "extra"`},
		{"too many signatures", manyJSON, "33 signatures, at most 32"},
		{"short signature", shortSig, "10 bytes, want 64"},
		{"bad key id", badID, `keyid "ABC"`},
		{"empty payload", []byte(`{"payload":"","signatures":[]}`), "empty payload"},
		{"truncated", b[:len(b)/2], "envelope"},
		{"trailing", append(bytes.Clone(b), '{'), "trailing data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseEnvelope(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseEnvelope error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseTrust(t *testing.T) {
	good, err := trust(2, 0, 1).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := ParseTrust(good)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Threshold != 2 || len(tr.Keys) != 2 || !tr.Keys[1].Equal(pub(1)) {
		t.Fatalf("ParseTrust round trip: %+v", tr)
	}
	k0, _ := json.Marshal(pub(0))
	k1, _ := json.Marshal(pub(1))
	mk := func(format string, threshold int, keys ...[]byte) []byte {
		return []byte(`{"format":"` + format + `","threshold":` + string(rune('0'+threshold)) + `,"keys":[` + string(bytes.Join(keys, []byte(","))) + `]}`)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"threshold 0", mk(TrustFormat, 0, k0), "threshold 0: must be at least 1"},
		{"threshold above keys", mk(TrustFormat, 3, k0, k1), "threshold 3: only 2 keys"},
		{"duplicate key", mk(TrustFormat, 1, k0, k0), "keys 0 and 1 are the same key " + Fingerprint(pub(0))},
		{"short key", mk(TrustFormat, 1, []byte(`"AAAA"`)), "key 0: 3 bytes, want 32"},
		{"not base64", mk(TrustFormat, 1, []byte(`"%%%"`)), "trust"},
		{"wrong format", mk("zeroboot-trust/2", 1, k0), `format "zeroboot-trust/2"`},
		{"no keys", mk(TrustFormat, 1), "no keys"},
		{"unknown field", []byte(`{"format":"zeroboot-trust/1","threshold":1,"keys":[` + string(k0) + `],"revoked":[]}`), `unknown field "revoked"`},
		{"too big", make([]byte, MaxTrustSize+1), "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTrust(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseTrust error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestKeyIDAndFingerprint(t *testing.T) {
	id := KeyID(pub(0))
	if len(id) != 64 || !isKeyID(id) || id == KeyID(pub(1)) {
		t.Fatalf("KeyID = %q", id)
	}
	if fp := Fingerprint(pub(0)); fp != "ed25519:"+id[:16] {
		t.Fatalf("Fingerprint = %q, KeyID %q", fp, id)
	}
}
