package registry_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/internal/fuzzjson"
	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/timeline"
	"github.com/zeroboot/zeroboot/pkg/trust"
)

var fuzzToken = strings.Repeat("ab", registry.TokenSize)

// validator is BootRequest's and StatusReport's Validate, when the type
// has one.
type validator interface{ Validate() error }

// roundTrip is the property every API body shares: a value DecodeStrict
// accepts re-encodes to JSON that DecodeStrict accepts again, the second
// value re-encodes to the same bytes and decodes to an equal value (the
// wire form is a fixed point; a first decoding may only drop what the
// encoding does not carry, such as an empty list under omitempty), and
// Validate, where the type has one, never panics and judges both alike.
func roundTrip[T any](t *testing.T, b []byte) {
	var v1 T
	if err := registry.DecodeStrict(b, &v1); err != nil {
		if err.Error() == "" {
			t.Fatal("refusal without a message")
		}
		return
	}
	e1, err := json.Marshal(&v1)
	if err != nil {
		t.Fatalf("accepted %T does not encode: %v", v1, err)
	}
	var v2 T
	if err := registry.DecodeStrict(e1, &v2); err != nil {
		t.Fatalf("re-encoded %T %s refused: %v", v1, e1, err)
	}
	e2, err := json.Marshal(&v2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e1, e2) {
		t.Fatalf("round trip changed the %T:\n%s\n%s", v1, e1, e2)
	}
	var v3 T
	if err := registry.DecodeStrict(e2, &v3); err != nil || !reflect.DeepEqual(v2, v3) {
		t.Fatalf("second round trip changed the %T (%v):\n%+v\n%+v", v2, err, v2, v3)
	}
	if val, ok := any(&v1).(validator); ok {
		err1 := val.Validate()
		err2 := any(&v2).(validator).Validate()
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("Validate of %T before and after a round trip: %v, then %v", v1, err1, err2)
		}
		if err1 != nil && err1.Error() == "" {
			t.Fatal("Validate refused without a message")
		}
	}
}

func FuzzDecodeBootRequest(f *testing.F) {
	fuzzjson.Variants(f, fuzzjson.Marshal(f, registry.BootRequest{Protocol: registry.Protocol, NodeID: "n3f2a0000000000000000000000000000",
		Farm: "demo", Agent: "zeroboot-init", RootVersion: 1, Channel: "stable",
		Profile: identity.Profile{CPUModel: "QEMU Virtual CPU", CPUs: 2, MemoryBytes: 1 << 30,
			NICs:  []identity.NIC{{Name: "eth0", MAC: "52:54:00:12:34:56", Driver: "virtio_net"}},
			Disks: []identity.Disk{{Name: "vda", SizeBytes: 1 << 33, Model: "QEMU HARDDISK"}},
			DMI:   identity.DMI{Vendor: "QEMU", ProductUUID: "00000000-0000-0000-0000-000000000000"}}}),
		[2]string{`"node_id"`, `"NODE_ID"`},
		[2]string{`"cpus":2`, `"cpus":-2`},
		[2]string{`"cpus":2`, `"cpus":2.5`},
		[2]string{`"root_version":1`, `"root_version":-1`},
		[2]string{`"channel":"stable"`, `"channel":"Stable/.."`},
		[2]string{`"agent":"zeroboot-init"`, `"agent":"zeroboot\u0000init"`},
		[2]string{`"nics":[`, `"nics":null,"x":[`},
		[2]string{`"protocol":2,`, `"protocol":2,"protocol":1,`},
	)
	f.Add([]byte(`{"node_id":"n1","farm":"f"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) { roundTrip[registry.BootRequest](t, b) })
}

func FuzzDecodeBootResponse(f *testing.F) {
	fuzzjson.Variants(f, fuzzjson.Marshal(f, registry.BootResponse{Protocol: registry.Protocol, NodeID: "n1", Channel: "stable",
		TUF:    &trust.Bundle{Roots: [][]byte{[]byte(`{"signed":{}}`)}, Timestamp: []byte("ts"), Snapshot: []byte("s"), Targets: []byte("tg"), Release: []byte("r")},
		Stores: []string{"https://store.example/", "https://203.0.113.1/"}, Token: fuzzToken,
		Registry: "https://not.on.the.wire/"}),
		[2]string{`"tuf":{`, `"tuf":null,"x":{`},
		[2]string{`"timestamp":"dHM="`, `"timestamp":"dHM"`},
		[2]string{`"timestamp":"dHM="`, `"timestamp":"d\nHM="`},
		[2]string{`"roots":[`, `"roots":[],"y":[`},
		[2]string{`"protocol":2`, `"protocol":1,"release":{"format":"zeroboot-release/1"}`},
		[2]string{`"stores":[`, `"stores":"x","z":[`},
	)
	f.Add([]byte(`{"protocol":2,"release":[1, 2 ,3],"tuf":{"roots":[]}}`))
	f.Fuzz(func(t *testing.T, b []byte) { roundTrip[registry.BootResponse](t, b) })
}

func FuzzDecodeStatusReport(f *testing.F) {
	fuzzjson.Variants(f, fuzzjson.Marshal(f, registry.StatusReport{NodeID: "n1", Source: registry.SourcePID1, State: registry.StateFailed,
		Reason: "fetch core0: connection refused", ReleaseVersion: 5, Token: fuzzToken,
		Timeline: []timeline.Step{{Name: "network", StartMS: 1.5, EndMS: 20.25}, {Name: "fetch", StartMS: 20.25, Error: "refused"}}}),
		[2]string{`"state":"failed"`, `"state":"FAILED"`},
		[2]string{`"reason":"fetch core0: connection refused"`, `"reason":""`},
		[2]string{`"source":"pid1"`, `"source":"core0"`},
		[2]string{`"token":"ab`, `"token":"AB`},
		[2]string{`"start_ms":1.5`, `"start_ms":1e400`},
		[2]string{`"name":"network"`, `"name":""`},
		[2]string{`"release_version":5`, `"release_version":-5`},
		[2]string{`"timeline":[`, `"timeline":[],"x":[`},
	)
	f.Fuzz(func(t *testing.T, b []byte) { roundTrip[registry.StatusReport](t, b) })
}
