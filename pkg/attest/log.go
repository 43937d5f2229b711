package attest

import (
	"bytes"
	"fmt"

	"github.com/zeroboot/zeroboot/pkg/measure"
)

// CheckLog replays the zeroboot measurement log and compares it with the
// quoted value of measure.PCR. pcrValues must come from a verified quote.
func CheckLog(events []measure.Event, pcrValues map[int][]byte) error {
	got, err := measure.Replay(events)
	if err != nil {
		return fmt.Errorf("zeroboot log: %w", err)
	}
	quoted, ok := pcrValues[measure.PCR]
	if !ok {
		return fmt.Errorf("zeroboot log: PCR %d was not quoted", measure.PCR)
	}
	if !bytes.Equal(got[:], quoted) {
		return fmt.Errorf("zeroboot log: replay of %d events is %x, PCR %d is %x", len(events), got, measure.PCR, quoted)
	}
	return nil
}

// DiffError is the first event of a log that differs from what the
// registry expects: Got is nil for a missing event, Want for an extra one.
type DiffError struct {
	Index     int
	Got, Want *measure.Event
}

func (d *DiffError) Error() string {
	switch {
	case d.Got == nil:
		return fmt.Sprintf("differing event %d: missing %s %q", d.Index, d.Want.Type, d.Want.Value)
	case d.Want == nil:
		return fmt.Sprintf("differing event %d: extra %s %q", d.Index, d.Got.Type, d.Got.Value)
	}
	return fmt.Sprintf("differing event %d: got %s %q, want %s %q", d.Index, d.Got.Type, d.Got.Value, d.Want.Type, d.Want.Value)
}

// Expect reports, as a *DiffError, the first event of events that differs
// in type or value from want. Digests are not compared: CheckLog has
// already tied them to the types and values.
func Expect(events []measure.Event, want []measure.Event) error {
	for i := 0; i < max(len(events), len(want)); i++ {
		var g, w *measure.Event
		if i < len(events) {
			g = &events[i]
		}
		if i < len(want) {
			w = &want[i]
		}
		if g == nil || w == nil || g.Type != w.Type || g.Value != w.Value {
			return &DiffError{Index: i, Got: g, Want: w}
		}
	}
	return nil
}
