package release

import (
	"bytes"
	"testing"
)

// FuzzDecode: whatever the bytes, Decode either refuses them or returns a
// release that validates and survives a round trip unchanged.
func FuzzDecode(f *testing.F) {
	good, err := testRelease().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{
		good,
		good[:len(good)/2],
		bytes.Replace(good, []byte(`"channel"`), []byte(`"CHANNEL"`), 1),
		bytes.Replace(good, []byte(`"format"`), []byte(`"channel":"x","format"`), 1),
		[]byte(`{"format":"zeroboot-release/3"}`),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Decode returned an invalid release: %v", err)
		}
		again, err := r.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a decoded release: %v", err)
		}
		r2, err := Decode(again)
		if err != nil || r2.Channel != r.Channel || len(r2.Components) != len(r.Components) || r2.Entrypoint.Path != r.Entrypoint.Path {
			t.Fatalf("round trip changed the release: %v", err)
		}
	})
}
