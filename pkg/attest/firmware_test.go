package attest

import (
	"bytes"
	"testing"
)

// sampleLog is a small firmware log: the Spec ID header, StartupLocality
// 3, events in PCRs 0, 4 and 7, an EV_NO_ACTION in PCR 1 and separators
// in 0-7; want is its replay, computed as it is built.
func sampleLog() (*fwLog, map[int][32]byte) {
	l := newFWLog()
	want := map[int][32]byte{0: {31: 3}}
	ext := func(pcr int, typ uint32, data []byte) {
		want[pcr] = extend(want[pcr], l.add(pcr, typ, data))
	}
	l.locality(3)
	ext(0, 0x08, []byte("CRTM version")) // EV_S_CRTM_VERSION
	ext(0, evEFIBase+0x08, []byte("firmware blob"))
	ext(7, evEFIBase+0x01, []byte("SecureBoot=1"))
	l.add(1, evNoAction, []byte("not extended"))
	ext(4, evEFIBase+0x03, bytes.Repeat([]byte("a"), 1000))
	for p := 0; p <= 7; p++ {
		ext(p, 0x04, []byte{0, 0, 0, 0}) // EV_SEPARATOR
	}
	return l, want
}

func TestParseFirmwareLog(t *testing.T) {
	l := newFWLog()
	l.locality(3)
	d := l.add(4, evEFIBase+0x03, bytes.Repeat([]byte("x"), 1000))
	ev, err := ParseFirmwareLog(l.b)
	checkErr(t, err, "")
	if len(ev) != 2 {
		t.Fatalf("%d events, want 2", len(ev))
	}
	e := ev[1]
	if e.PCR != 4 || e.TypeName != "EV_EFI_BOOT_SERVICES_APPLICATION" || !bytes.Equal(e.Digest, d) || len(e.Data) != 256 {
		t.Errorf("event = PCR %d %s digest %x, %d bytes of data", e.PCR, e.TypeName, e.Digest, len(e.Data))
	}
	if ev[0].TypeName != "EV_NO_ACTION" {
		t.Errorf("first event is %s", ev[0].TypeName)
	}
}

func TestReplayFirmware(t *testing.T) {
	l, want := sampleLog()
	ev, err := ParseFirmwareLog(l.b)
	checkErr(t, err, "")
	got := ReplayFirmware(ev)
	for p, w := range want {
		if got[p] != w {
			t.Errorf("PCR %d = %x, want %x", p, got[p], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("replay has %d PCRs, want %d", len(got), len(want))
	}
}

func TestParseFirmwareLogErrors(t *testing.T) {
	legacy := newFWLog()
	copy(legacy.b[32:], "Spec ID Event02")
	noSHA256 := newFWLog()
	copy(noSHA256.b[32+16+8+4+4:], []byte{0x0c, 0}) // SHA-256 entry relabelled SHA-384
	badPCR := newFWLog()
	badPCR.add(24, 0x04, nil)
	hugeData := newFWLog()
	hugeData.b = le32(le32(le32(hugeData.b, 0), 4), 1)
	hugeData.b = append(le16(hugeData.b, 0x000b), make([]byte, 32)...)
	hugeData.b = le32(hugeData.b, 0xffffffff)
	unknownAlg := newFWLog()
	unknownAlg.b = le32(le32(le32(unknownAlg.b, 0), 4), 1)
	unknownAlg.b = le16(unknownAlg.b, 0x0012)
	noDigests := newFWLog()
	noDigests.b = le32(le32(le32(noDigests.b, 0), 4), 0)
	onlySHA1 := newFWLog()
	onlySHA1.b = le32(le32(le32(onlySHA1.b, 5), 4), 1)
	onlySHA1.b = le32(append(le16(onlySHA1.b, 0x0004), make([]byte, 20)...), 0)
	many := newFWLog()
	for i := 0; i <= MaxFirmwareEvents; i++ {
		many.add(1, 1, nil)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "firmware log: header: PCR index at offset 0: want 4 bytes, 0 left"},
		{"SHA-1 only log", legacy.b, "firmware log: header: no Spec ID Event03 (not a crypto agile log)"},
		{"no SHA-256 bank", noSHA256.b, "Spec ID event: no SHA-256 bank"},
		{"PCR 24", badPCR.b, "firmware log: event 1: EV_SEPARATOR: PCR 24 does not exist"},
		{"event larger than the log", hugeData.b, "firmware log: event 1: event data at offset"},
		{"algorithm not in header", unknownAlg.b, "digest algorithm 0x0012 is not in the Spec ID event"},
		{"no digests", noDigests.b, "EV_SEPARATOR: 0 digests, log has 2 algorithms"},
		{"no SHA-256 digest", onlySHA1.b, "EV_SEPARATOR in PCR 5: no SHA-256 digest"},
		{"too many events", many.b, "firmware log: more than 4096 events"},
		{"too large", make([]byte, MaxFirmwareLog+1), "more than 524288"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFirmwareLog(tc.b)
			checkErr(t, err, tc.want)
		})
	}
}

func TestParseFirmwareLogTruncated(t *testing.T) {
	l, _ := sampleLog()
	end := map[int]bool{}
	for _, b := range l.bounds {
		end[b] = true
	}
	for n := 0; n < len(l.b); n++ {
		_, err := ParseFirmwareLog(l.b[:n])
		if end[n] != (err == nil) {
			t.Fatalf("log truncated to %d bytes: error %v", n, err)
		}
	}
}

func TestCheckFirmware(t *testing.T) {
	l, want := sampleLog()
	ev, err := ParseFirmwareLog(l.b)
	checkErr(t, err, "")
	quoted := func(f func(map[int][]byte)) map[int][]byte {
		m := map[int][]byte{}
		for p := 0; p <= 7; p++ {
			v := want[p]
			m[p] = v[:]
		}
		m[15] = make([]byte, 32)
		f(m)
		return m
	}
	for _, tc := range []struct {
		name   string
		values map[int][]byte
		want   string
	}{
		{"good", quoted(func(map[int][]byte) {}), ""},
		{"PCR 4 differs", quoted(func(m map[int][]byte) { m[4] = make([]byte, 32) }), "firmware log: replay of PCR 4 (2 events) is"},
		{"PCR 7 not quoted", quoted(func(m map[int][]byte) { delete(m, 7) }), "firmware log: PCR 7 has 2 events but was not quoted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, CheckFirmware(ev, tc.values), tc.want)
		})
	}
	// A log that leaves out PCR 4's events hides them.
	var short []FirmwareEvent
	for _, e := range ev {
		if e.PCR != 4 {
			short = append(short, e)
		}
	}
	checkErr(t, CheckFirmware(short, quoted(func(map[int][]byte) {})), "firmware log: replay of PCR 4 (0 events) is 0000")
}

func FuzzParseFirmwareLog(f *testing.F) {
	l, _ := sampleLog()
	f.Add(l.b)
	f.Add(newFWLog().b)
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseFirmwareLog(b)
		if err != nil {
			return
		}
		for _, e := range ev {
			if len(e.Digest) != 32 || len(e.Data) > maxEventData || e.PCR < 0 || e.PCR > 23 {
				t.Fatalf("bad event %+v", e)
			}
		}
		ReplayFirmware(ev)
	})
}
