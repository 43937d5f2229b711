// Package measure is zeroboot's measurement log: what PID 1 extends into
// the TPM and the log a registry replays to check it. The node and the
// registry share it so that both compute the same digests.
package measure

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"unicode/utf8"
)

// PCR is the PCR zeroboot's PID 1 extends (SHA-256 bank). In the UAPI PCR
// registry 15 belongs to systemd userspace (machine-id, volume keys),
// which zeroboot's PID 1 replaces; firmware (0-7), shim (4, 14), grub (8,
// 9), the kernel's EFI stub (9), systemd-stub (11, 12, 13) and IMA (10)
// never touch it; unlike 16 and 23 it cannot be reset without a reboot.
const PCR = 15

// Event types.
const (
	TypeTrustRoot = "trust-root" // "sha256:<hex> of root.json"
	TypeCmdline   = "cmdline"    // the kernel command line
	TypeRelease   = "release"    // "stable v3 targets sha256:..."
	TypeComponent = "component"  // "core0 sha256:<flist digest>"
)

// Bounds on a log, so that a registry can refuse a hostile one cheaply.
const (
	MaxEvents   = 256
	MaxValueLen = 4096
)

// domain separates zeroboot's event digests from every other use of
// SHA-256 over a type and a value.
const domain = "zeroboot-event-v1"

// Event is one entry of the log.
type Event struct {
	PCR    int    `json:"pcr"`
	Type   string `json:"type"`
	Value  string `json:"value"`  // what was measured, as text
	Digest string `json:"digest"` // "sha256:" + hex of EventDigest(Type, Value)
}

// EventDigest is SHA-256("zeroboot-event-v1" 0x00 type 0x00 value): the
// value extended into the PCR. The separators keep ("ab", "c") and ("a",
// "bc") apart; types never contain 0x00 and values are checked not to.
func EventDigest(typ, value string) [32]byte {
	h := sha256.New()
	h.Write([]byte(domain))
	h.Write([]byte{0})
	h.Write([]byte(typ))
	h.Write([]byte{0})
	h.Write([]byte(value))
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// NewEvent returns the log entry for (typ, value).
func NewEvent(typ, value string) Event {
	d := EventDigest(typ, value)
	return Event{PCR: PCR, Type: typ, Value: value, Digest: "sha256:" + hex.EncodeToString(d[:])}
}

func knownType(typ string) bool {
	switch typ {
	case TypeTrustRoot, TypeCmdline, TypeRelease, TypeComponent:
		return true
	}
	return false
}

// checkValue rejects values an operator could be misled by when the log is
// displayed (control characters, invalid UTF-8) or that are unboundedly long.
func checkValue(v string) error {
	if len(v) > MaxValueLen {
		return fmt.Errorf("value is %d bytes, more than %d", len(v), MaxValueLen)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("value is not valid UTF-8")
	}
	for i, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("value has control character %U at byte %d", r, i)
		}
	}
	return nil
}

// Check reports what is wrong with an event.
func (e Event) Check() error {
	if e.PCR != PCR {
		return fmt.Errorf("%.40q event: PCR is %d, not %d", e.Type, e.PCR, PCR)
	}
	if !knownType(e.Type) {
		return fmt.Errorf("event has unknown type %.40q", e.Type)
	}
	if err := checkValue(e.Value); err != nil {
		return fmt.Errorf("%q event: %w", e.Type, err)
	}
	if want := NewEvent(e.Type, e.Value).Digest; e.Digest != want {
		return fmt.Errorf("%q event: digest %.80q does not match its type and value (want %s)", e.Type, e.Digest, want)
	}
	return nil
}

// Extend returns SHA-256(pcr || digest), what a TPM computes on extend.
func Extend(pcr, digest [32]byte) [32]byte {
	var b [64]byte
	copy(b[:32], pcr[:])
	copy(b[32:], digest[:])
	return sha256.Sum256(b[:])
}

// Replay extends a zero PCR with each event's digest in order and returns
// the final value. It checks every event first and fails naming the first
// bad one, so a caller never compares a PCR with a log it cannot trust.
func Replay(events []Event) ([32]byte, error) {
	var pcr [32]byte
	if len(events) > MaxEvents {
		return pcr, fmt.Errorf("replay: log has %d events, more than %d", len(events), MaxEvents)
	}
	for i, e := range events {
		if err := e.Check(); err != nil {
			return pcr, fmt.Errorf("replay: event %d: %w", i, err)
		}
	}
	for _, e := range events {
		pcr = Extend(pcr, EventDigest(e.Type, e.Value))
	}
	return pcr, nil
}

// Measurer extends each distinct (type, value) exactly once per boot,
// however often a step is retried, and keeps the log. The zero value is
// usable and unmeasured.
type Measurer struct {
	// Extend extends PCR pcr of the SHA-256 bank with digest: the TPM's
	// PCR_Extend. nil: no TPM, the log is kept but marked unmeasured.
	Extend func(pcr int, digest [32]byte) error

	mu     sync.Mutex
	events []Event
	seen   map[[32]byte]bool
}

// Measure extends and logs the event unless the same (type, value) was
// measured already. An Extend error is returned and the event is not
// logged, so a retry tries again.
//
// The lock is held across Extend: the log's order must be the order of
// the extends, or it would not replay to the PCR.
func (m *Measurer) Measure(typ, value string) error {
	e := NewEvent(typ, value)
	if err := e.Check(); err != nil {
		return fmt.Errorf("measure: %w", err)
	}
	d := EventDigest(typ, value)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen[d] {
		return nil
	}
	if len(m.events) >= MaxEvents {
		return fmt.Errorf("measure %s: log is full (%d events)", typ, MaxEvents)
	}
	if m.Extend != nil {
		if err := m.Extend(PCR, d); err != nil {
			return fmt.Errorf("measure %s: extend PCR %d: %w", typ, PCR, err)
		}
	}
	if m.seen == nil {
		m.seen = make(map[[32]byte]bool)
	}
	m.seen[d] = true
	m.events = append(m.events, e)
	return nil
}

// Events returns a copy of the log.
func (m *Measurer) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Event(nil), m.events...)
}

// Measured reports whether events are extended into a TPM.
func (m *Measurer) Measured() bool {
	return m.Extend != nil
}
