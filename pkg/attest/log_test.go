package attest

import (
	"errors"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/measure"
)

func bootLog() []measure.Event {
	return []measure.Event{
		measure.NewEvent(measure.TypeTrustRoot, "sha256:aa of root.json"),
		measure.NewEvent(measure.TypeCmdline, "console=ttyS0 zeroboot.registry=https://r"),
		measure.NewEvent(measure.TypeRelease, "stable v3 targets sha256:bb"),
		measure.NewEvent(measure.TypeComponent, "core0 sha256:cc"),
	}
}

func TestCheckLog(t *testing.T) {
	events := bootLog()
	pcr, err := measure.Replay(events)
	if err != nil {
		t.Fatal(err)
	}
	quoted := map[int][]byte{measure.PCR: pcr[:]}
	reordered := bootLog()
	reordered[1], reordered[2] = reordered[2], reordered[1]
	relabelled := bootLog()
	relabelled[3].Type = measure.TypeRelease
	for _, tc := range []struct {
		name   string
		events []measure.Event
		values map[int][]byte
		want   string
	}{
		{"good", events, quoted, ""},
		{"reordered", reordered, quoted, "zeroboot log: replay of 4 events is"},
		{"dropped event", events[:3], quoted, "zeroboot log: replay of 3 events is"},
		{"relabelled", relabelled, quoted, `zeroboot log: replay: event 3: "release" event: digest`},
		{"not quoted", events, map[int][]byte{7: pcr[:]}, "zeroboot log: PCR 15 was not quoted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, CheckLog(tc.events, tc.values), tc.want)
		})
	}
}

func TestExpect(t *testing.T) {
	want := bootLog()
	other := bootLog()
	other[2] = measure.NewEvent(measure.TypeRelease, "stable v4 targets sha256:dd")
	for _, tc := range []struct {
		name   string
		events []measure.Event
		index  int
		err    string
	}{
		{"same", bootLog(), -1, ""},
		{"different value", other, 2, `differing event 2: got release "stable v4 targets sha256:dd", want release "stable v3 targets sha256:bb"`},
		{"missing", want[:3], 3, `differing event 3: missing component "core0 sha256:cc"`},
		{"extra", append(bootLog(), measure.NewEvent(measure.TypeComponent, "debug sha256:ee")), 4, `differing event 4: extra component "debug sha256:ee"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Expect(tc.events, want)
			checkErr(t, err, tc.err)
			var d *DiffError
			if err != nil && (!errors.As(err, &d) || d.Index != tc.index) {
				t.Fatalf("error %v is not a DiffError at %d", err, tc.index)
			}
		})
	}
}
