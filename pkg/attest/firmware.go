package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/zeroboot/zeroboot/pkg/measure"
)

// Bounds on a firmware event log.
const (
	MaxFirmwareLog    = measure.MaxFirmwareLog // what the node reads at most
	MaxFirmwareEvents = 4096                   // real logs have a few hundred
	maxEventData      = 256                    // bytes of event data kept for display
	maxAlgorithms     = 16                     // in the Spec ID event
	maxDigestSize     = 64                     // SHA-512
)

// Event types the log handling depends on (TCG PC Client Platform
// Firmware Profile, section 10.4.1).
const (
	evNoAction = 0x00000003
	evEFIBase  = 0x80000000
)

const algSHA256 = 0x000b

// FirmwareEvent is one TCG_PCR_EVENT2 of the firmware's event log.
type FirmwareEvent struct {
	PCR      int
	Type     uint32
	TypeName string
	Digest   []byte // SHA-256
	Data     []byte // at most the first 256 bytes, for display
}

var (
	specIDSignature    = []byte("Spec ID Event03\x00")
	startupLocalitySig = []byte("StartupLocality\x00")
)

// logReader reads little-endian fields and remembers the first failure,
// so that parsing reads straight and checks once per record.
type logReader struct {
	b   []byte
	off int
	err error
}

func (r *logReader) bytes(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.err = fmt.Errorf("%s at offset %d: want %d bytes, %d left", what, r.off, n, len(r.b)-r.off)
		return nil
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b
}

func (r *logReader) u32(what string) uint32 {
	if b := r.bytes(4, what); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *logReader) u16(what string) uint16 {
	if b := r.bytes(2, what); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

// ParseFirmwareLog parses a TCG PC Client "crypto agile" event log, as in
// /sys/kernel/security/tpm0/binary_bios_measurements: a SHA-1 format
// TCG_PCClientPCREvent carrying the "Spec ID Event03" header, which lists
// the logged algorithms and their digest sizes, then TCG_PCR_EVENT2
// records. Only the SHA-256 digests are kept; every event must have one.
func ParseFirmwareLog(b []byte) ([]FirmwareEvent, error) {
	if len(b) > MaxFirmwareLog {
		return nil, fmt.Errorf("firmware log: %d bytes, more than %d", len(b), MaxFirmwareLog)
	}
	r := &logReader{b: b}
	sizes, err := parseSpecID(r)
	if err != nil {
		return nil, fmt.Errorf("firmware log: header: %w", err)
	}
	var events []FirmwareEvent
	for r.off < len(b) {
		if len(events) == MaxFirmwareEvents {
			return nil, fmt.Errorf("firmware log: more than %d events", MaxFirmwareEvents)
		}
		e, err := parseEvent2(r, sizes)
		if err != nil {
			return nil, fmt.Errorf("firmware log: event %d: %w", len(events)+1, err)
		}
		events = append(events, e)
	}
	return events, nil
}

// parseSpecID reads the first event and returns the digest size of each
// algorithm the log carries.
func parseSpecID(r *logReader) (map[uint16]int, error) {
	pcr := r.u32("PCR index")
	typ := r.u32("event type")
	r.bytes(20, "SHA-1 digest")
	n := r.u32("event size")
	data := r.bytes(int(min(n, MaxFirmwareLog)), "event data")
	if r.err != nil {
		return nil, r.err
	}
	if pcr != 0 || typ != evNoAction || !bytes.HasPrefix(data, specIDSignature) {
		return nil, errors.New("no Spec ID Event03 (not a crypto agile log)")
	}
	d := &logReader{b: data, off: len(specIDSignature)}
	d.bytes(4+4, "platform class and version") // platformClass, minor, major, errata, uintnSize
	count := d.u32("algorithm count")
	if d.err == nil && (count == 0 || count > maxAlgorithms) {
		return nil, fmt.Errorf("Spec ID event lists %d algorithms, want 1 to %d", count, maxAlgorithms)
	}
	sizes := map[uint16]int{}
	for i := 0; i < int(count) && d.err == nil; i++ {
		alg, size := d.u16("algorithm"), int(d.u16("digest size"))
		if d.err == nil && (size == 0 || size > maxDigestSize) {
			return nil, fmt.Errorf("Spec ID event: algorithm 0x%04x has digest size %d", alg, size)
		}
		sizes[alg] = size
	}
	if d.err != nil {
		return nil, fmt.Errorf("Spec ID event: %w", d.err)
	}
	if sizes[algSHA256] != sha256.Size {
		return nil, fmt.Errorf("Spec ID event: no SHA-256 bank (digest size %d)", sizes[algSHA256])
	}
	return sizes, nil
}

func parseEvent2(r *logReader, sizes map[uint16]int) (FirmwareEvent, error) {
	var e FirmwareEvent
	pcr := r.u32("PCR index")
	e.Type = r.u32("event type")
	e.TypeName = eventTypeName(e.Type)
	count := r.u32("digest count")
	if r.err == nil && (count == 0 || count > uint32(len(sizes))) {
		return e, fmt.Errorf("%s: %d digests, log has %d algorithms", e.TypeName, count, len(sizes))
	}
	for i := 0; i < int(count) && r.err == nil; i++ {
		alg := r.u16("digest algorithm")
		size, ok := sizes[alg]
		if r.err == nil && !ok {
			return e, fmt.Errorf("%s: digest algorithm 0x%04x is not in the Spec ID event", e.TypeName, alg)
		}
		d := r.bytes(size, "digest")
		if alg == algSHA256 {
			if e.Digest != nil {
				return e, fmt.Errorf("%s: two SHA-256 digests", e.TypeName)
			}
			e.Digest = d
		}
	}
	n := r.u32("event size")
	data := r.bytes(int(min(n, MaxFirmwareLog)), "event data")
	if r.err != nil {
		return e, r.err
	}
	if pcr > 23 {
		return e, fmt.Errorf("%s: PCR %d does not exist", e.TypeName, pcr)
	}
	if e.Digest == nil {
		return e, fmt.Errorf("%s in PCR %d: no SHA-256 digest", e.TypeName, pcr)
	}
	e.PCR = int(pcr)
	e.Digest = bytes.Clone(e.Digest)
	e.Data = bytes.Clone(data[:min(len(data), maxEventData)])
	return e, nil
}

// locality returns the locality of a StartupLocality event.
func locality(e FirmwareEvent) (byte, bool) {
	if e.Type != evNoAction || e.PCR != 0 || len(e.Data) != len(startupLocalitySig)+1 || !bytes.HasPrefix(e.Data, startupLocalitySig) {
		return 0, false
	}
	return e.Data[len(startupLocalitySig)], true
}

// ReplayFirmware replays the SHA-256 bank of events and returns the value
// of every PCR that has events. EV_NO_ACTION events are not extended; a
// StartupLocality event sets PCR 0's initial value to 31 zero bytes
// followed by the locality the CRTM started at.
func ReplayFirmware(events []FirmwareEvent) map[int][32]byte {
	pcrs := map[int][32]byte{}
	for _, e := range events {
		if e.Type == evNoAction {
			if l, ok := locality(e); ok {
				if _, extended := pcrs[0]; !extended {
					var init [32]byte
					init[31] = l
					pcrs[0] = init
				}
			}
			continue
		}
		var d [32]byte
		copy(d[:], e.Digest)
		old := pcrs[e.PCR]
		var b [64]byte
		copy(b[:32], old[:])
		copy(b[32:], d[:])
		pcrs[e.PCR] = sha256.Sum256(b[:])
	}
	return pcrs
}

// CheckFirmware compares the replay of events with the quoted values of
// PCRs 0-7 (the firmware's) and names the first PCR that differs. A PCR
// without events must be quoted as zero: a log that omits a PCR's events
// hides them.
func CheckFirmware(events []FirmwareEvent, pcrValues map[int][]byte) error {
	replay := ReplayFirmware(events)
	counts := map[int]int{}
	for _, e := range events {
		if e.Type != evNoAction {
			counts[e.PCR]++
		}
	}
	for pcr := 0; pcr <= 7; pcr++ {
		got, inLog := replay[pcr]
		quoted, ok := pcrValues[pcr]
		if !ok {
			if inLog {
				return fmt.Errorf("firmware log: PCR %d has %d events but was not quoted", pcr, counts[pcr])
			}
			continue
		}
		if !bytes.Equal(got[:], quoted) {
			return fmt.Errorf("firmware log: replay of PCR %d (%d events) is %x, quoted %x", pcr, counts[pcr], got, quoted)
		}
	}
	return nil
}

var eventTypeNames = map[uint32]string{
	0x00: "EV_PREBOOT_CERT",
	0x01: "EV_POST_CODE",
	0x02: "EV_UNUSED",
	0x03: "EV_NO_ACTION",
	0x04: "EV_SEPARATOR",
	0x05: "EV_ACTION",
	0x06: "EV_EVENT_TAG",
	0x07: "EV_S_CRTM_CONTENTS",
	0x08: "EV_S_CRTM_VERSION",
	0x09: "EV_CPU_MICROCODE",
	0x0a: "EV_PLATFORM_CONFIG_FLAGS",
	0x0b: "EV_TABLE_OF_DEVICES",
	0x0c: "EV_COMPACT_HASH",
	0x0d: "EV_IPL",
	0x0e: "EV_IPL_PARTITION_DATA",
	0x0f: "EV_NONHOST_CODE",
	0x10: "EV_NONHOST_CONFIG",
	0x11: "EV_NONHOST_INFO",
	0x12: "EV_OMIT_BOOT_DEVICE_EVENTS",
	0x13: "EV_POST_CODE2",

	evEFIBase + 0x01: "EV_EFI_VARIABLE_DRIVER_CONFIG",
	evEFIBase + 0x02: "EV_EFI_VARIABLE_BOOT",
	evEFIBase + 0x03: "EV_EFI_BOOT_SERVICES_APPLICATION",
	evEFIBase + 0x04: "EV_EFI_BOOT_SERVICES_DRIVER",
	evEFIBase + 0x05: "EV_EFI_RUNTIME_SERVICES_DRIVER",
	evEFIBase + 0x06: "EV_EFI_GPT_EVENT",
	evEFIBase + 0x07: "EV_EFI_ACTION",
	evEFIBase + 0x08: "EV_EFI_PLATFORM_FIRMWARE_BLOB",
	evEFIBase + 0x09: "EV_EFI_HANDOFF_TABLES",
	evEFIBase + 0x0a: "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
	evEFIBase + 0x0b: "EV_EFI_HANDOFF_TABLES2",
	evEFIBase + 0x0c: "EV_EFI_VARIABLE_BOOT2",
	evEFIBase + 0x0d: "EV_EFI_GPT_EVENT2",
	evEFIBase + 0x10: "EV_EFI_HCRTM_EVENT",
	evEFIBase + 0xe0: "EV_EFI_VARIABLE_AUTHORITY",
	evEFIBase + 0xe1: "EV_EFI_SPDM_FIRMWARE_BLOB",
	evEFIBase + 0xe2: "EV_EFI_SPDM_FIRMWARE_CONFIG",
}

func eventTypeName(t uint32) string {
	if n, ok := eventTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("event type 0x%08x", t)
}
