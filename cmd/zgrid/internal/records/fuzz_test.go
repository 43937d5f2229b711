package records_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/internal/fuzzjson"
	"github.com/zeroboot/zeroboot/pkg/release"
)

// FuzzDecodeUpload: DecodeUpload either refuses the bytes or returns an
// upload of the one format, for a valid channel, that re-encodes to bytes
// DecodeUpload reads back equal.
func FuzzDecodeUpload(f *testing.F) {
	fuzzjson.Variants(f, fuzzjson.Marshal(f, records.ReleaseUpload{Format: records.UploadFormat, Channel: "stable",
		Targets: []byte(`{"signed":{"_type":"targets"}}`), Release: []byte(`{"format":"zeroboot-release/2"}`)}),
		[2]string{`"format"`, `"FORMAT"`},
		[2]string{`"channel":"stable"`, `"channel":"stable","Channel":"beta"`},
		[2]string{`"channel":"stable"`, `"channel":"../etc"`},
		[2]string{`zeroboot-upload/1`, `zeroboot-upload/2`},
		[2]string{`,"release":`, `,"release":null,"x":`},
	)
	f.Add([]byte(`{"format":"zeroboot-upload/1","channel":"stable","targets":"e30="}`)) // a withdrawal
	f.Fuzz(func(t *testing.T, b []byte) {
		up, err := records.DecodeUpload(b)
		if err != nil {
			if up != nil || err.Error() == "" {
				t.Fatalf("DecodeUpload returned %+v with error %q", up, err)
			}
			return
		}
		if up.Format != records.UploadFormat {
			t.Fatalf("accepted format %q", up.Format)
		}
		if err := release.CheckChannel(up.Channel); err != nil {
			t.Fatalf("accepted channel %q: %v", up.Channel, err)
		}
		again, err := json.Marshal(up)
		if err != nil {
			t.Fatal(err)
		}
		up2, err := records.DecodeUpload(again)
		if err != nil {
			t.Fatalf("re-encoded upload %s refused: %v", again, err)
		}
		// Release is omitempty: an empty document comes back absent.
		if len(up.Release) == 0 && up2.Release == nil {
			up2.Release = up.Release
		}
		if !reflect.DeepEqual(up, up2) {
			t.Fatalf("round trip changed the upload:\n%+v\n%+v", up, up2)
		}
	})
}
