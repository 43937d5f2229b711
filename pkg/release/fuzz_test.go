package release

import (
	"bytes"
	"encoding/json"
	"testing"
)

func FuzzVerify(f *testing.F) {
	good := mustSignF(f)
	goodJSON, err := good.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	flipped := &Envelope{Payload: bytes.Clone(good.Payload), Signatures: good.Signatures}
	flipped.Payload[10] ^= 0x20
	dup := &Envelope{Payload: good.Payload, Signatures: []Signature{good.Signatures[0], good.Signatures[0]}}
	v2 := bytes.Replace(good.Payload, []byte(Format), []byte("zeroboot-release/2"), 1)
	for _, seed := range [][]byte{
		goodJSON,
		goodJSON[:len(goodJSON)-7],
		marshalRaw(f, flipped),
		marshalRaw(f, dup),
		bytes.Replace(goodJSON, []byte(`"signatures"`), []byte(`"extra":1,"signatures"`), 1),
		marshalRaw(f, signedPayload(v2)),
	} {
		f.Add(seed)
	}
	tr := trust(2, 0, 1, 2)
	if _, err := tr.Verify(good, Options{Now: t0}); err != nil {
		f.Fatalf("the untampered seed does not verify: %v", err)
	}
	for _, bad := range []*Envelope{flipped, dup, signedPayload(v2)} {
		if _, err := tr.Verify(bad, Options{Now: t0}); err == nil {
			f.Fatalf("a broken seed verifies: %q", bad.Payload)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := ParseEnvelope(b)
		if err != nil {
			return
		}
		r, err := tr.Verify(env, Options{Now: t0})
		if err != nil {
			return
		}
		// Only the untampered payload carries two trusted signatures.
		if !bytes.Equal(env.Payload, good.Payload) {
			t.Fatalf("verified a payload that was never signed: %q", env.Payload)
		}
		if r.Version != 7 || r.Components[0].Mount != "/" {
			t.Fatalf("verified release differs from the signed one: %+v", r)
		}
	})
}

func mustSignF(f *testing.F) *Envelope {
	env, err := Sign(testRelease(), key(0), key(1))
	if err != nil {
		f.Fatal(err)
	}
	return env
}

// marshalRaw encodes without Envelope.Marshal's checks, so broken envelopes
// can be seeded.
func marshalRaw(f *testing.F, env *Envelope) []byte {
	b, err := json.Marshal(env)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
