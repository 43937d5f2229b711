package attest

import (
	"fmt"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/zeroboot/zeroboot/pkg/measure"
)

// BenchmarkVerify is the registry's work for one attestation: a 100-event
// firmware log, a quote of PCRs 0-7 and 15, a 20-event zeroboot log.
func BenchmarkVerify(b *testing.B) {
	l := newFWLog()
	l.locality(0)
	for i := 0; i < 99; i++ {
		l.add(i%8, evEFIBase+0x03, []byte(fmt.Sprintf("event %d with some data to hash", i)))
	}
	m := &measure.Measurer{}
	for i := 0; i < 20; i++ {
		m.Measure(measure.TypeComponent, fmt.Sprintf("core%d sha256:%064x", i, i))
	}
	zb := m.Events()
	fw, err := ParseFirmwareLog(l.b)
	if err != nil {
		b.Fatal(err)
	}
	values := map[int][]byte{}
	for p, v := range ReplayFirmware(fw) {
		values[p] = v[:]
	}
	pcr15, _ := measure.Replay(zb)
	values[15] = pcr15[:]
	n := newNode(b)
	nonce := []byte("registry challenge 0123456789abc")
	attest := tpm2.Marshal(quoteAttest(nonce, []tpm2.TPMSPCRSelection{selection(tpm2.TPMAlgSHA256, quotePCRs...)}, pcrDigest(quotePCRs, values)))
	sig := n.sign(b, attest)
	c := QuoteCheck{Nonce: nonce, PCRs: quotePCRs}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyQuote(n.ak, attest, sig, c, values); err != nil {
			b.Fatal(err)
		}
		ev, err := ParseFirmwareLog(l.b)
		if err != nil {
			b.Fatal(err)
		}
		if err := CheckFirmware(ev, values); err != nil {
			b.Fatal(err)
		}
		if err := CheckLog(zb, values); err != nil {
			b.Fatal(err)
		}
	}
}
