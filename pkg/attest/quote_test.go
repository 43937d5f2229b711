package attest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

var quotePCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, 15}

func TestVerifyQuote(t *testing.T) {
	n := newNode(t)
	other := newNode(t)
	nonce := []byte("registry challenge 0123456789abc")
	values := randomPCRs(quotePCRs)
	sha256Sel := []tpm2.TPMSPCRSelection{selection(tpm2.TPMAlgSHA256, quotePCRs...)}
	good := quoteAttest(nonce, sha256Sel, pcrDigest(quotePCRs, values))

	altered := map[int][]byte{}
	for p, v := range values {
		altered[p] = v
	}
	altered[4] = bytes.Repeat([]byte{0xaa}, 32)
	short := map[int][]byte{}
	for p, v := range values {
		short[p] = v
	}
	short[7] = short[7][:31]
	missing := map[int][]byte{}
	for p, v := range values {
		if p != 15 {
			missing[p] = v
		}
	}
	extraValue := map[int][]byte{9: make([]byte, 32)}
	for p, v := range values {
		extraValue[p] = v
	}

	for _, tc := range []struct {
		name   string
		attest func(tpm2.TPMSAttest) tpm2.TPMSAttest
		bytes  func([]byte) []byte // after marshaling, before signing
		signer *node
		nonce  []byte
		pcrs   []int
		values map[int][]byte
		want   string
	}{
		{name: "good"},
		{name: "wrong nonce", nonce: []byte("another challenge"), want: "quote: nonce does not match the challenge"},
		{name: "replayed from another boot", attest: func(a tpm2.TPMSAttest) tpm2.TPMSAttest {
			a.ExtraData.Buffer = []byte("challenge of the previous boot!!")
			a.ClockInfo.ResetCount--
			return a
		}, want: "quote: nonce does not match the challenge"},
		{name: "no nonce", nonce: []byte{}, want: "quote: no nonce to check against"},
		{name: "PCR missing from selection", attest: func(a tpm2.TPMSAttest) tpm2.TPMSAttest {
			pcrs := []int{0, 1, 2, 3, 4, 5, 6, 15}
			return quoteAttest(nonce, []tpm2.TPMSPCRSelection{selection(tpm2.TPMAlgSHA256, pcrs...)}, pcrDigest(pcrs, values))
		}, want: "quote: PCR 7 is missing from the selection"},
		{name: "extra PCR", attest: func(a tpm2.TPMSAttest) tpm2.TPMSAttest {
			return quoteAttest(nonce, []tpm2.TPMSPCRSelection{selection(tpm2.TPMAlgSHA256, append(quotePCRs, 9)...)}, pcrDigest(quotePCRs, values))
		}, want: "quote: PCR 9 is selected but not required"},
		{name: "SHA-1 bank", attest: func(a tpm2.TPMSAttest) tpm2.TPMSAttest {
			return quoteAttest(nonce, []tpm2.TPMSPCRSelection{selection(tpm2.TPMAlgSHA1, quotePCRs...)}, pcrDigest(quotePCRs, values))
		}, want: "quote: PCR bank is SHA1, want SHA256"},
		{name: "two banks", attest: func(a tpm2.TPMSAttest) tpm2.TPMSAttest {
			return quoteAttest(nonce, append(sha256Sel, selection(tpm2.TPMAlgSHA1, 0)), pcrDigest(quotePCRs, values))
		}, want: "quote: 2 PCR banks selected, want only SHA256"},
		{name: "no TPM_GENERATED magic", attest: func(a tpm2.TPMSAttest) tpm2.TPMSAttest {
			a.Magic = 0x12345678
			return a
		}, want: "quote: magic is 0x12345678, not TPM_GENERATED_VALUE"},
		{name: "wrong attest type", attest: func(a tpm2.TPMSAttest) tpm2.TPMSAttest {
			a.Type = tpm2.TPMSTAttestCertify
			a.Attested = tpm2.NewTPMUAttest(tpm2.TPMSTAttestCertify, &tpm2.TPMSCertifyInfo{})
			return a
		}, want: "quote: attestation type is 0x8017, not TPM_ST_ATTEST_QUOTE"},
		{name: "PCR value altered", values: altered, want: "quote: PCR values do not match the quoted PCR digest"},
		{name: "PCR value short", values: short, want: "quote: value of PCR 7 is 31 bytes, want 32"},
		{name: "PCR value missing", values: missing, want: "quote: no value reported for PCR 15"},
		{name: "PCR value extra", values: extraValue, want: "quote: value reported for PCR 9, which is not quoted"},
		{name: "another node's key", signer: other, want: "quote: signature does not verify with the AK"},
		{name: "truncated attest", bytes: func(b []byte) []byte { return b[:len(b)-5] }, want: "quote: TPMS_ATTEST: "},
		{name: "trailing bytes", bytes: func(b []byte) []byte { return append(b, 0) }, want: "bytes followed by 1 more"},
		{name: "duplicate PCR required", pcrs: []int{0, 0}, want: "quote check: PCR 0 is listed twice"},
		{name: "no PCRs required", pcrs: []int{}, want: "quote check: no PCRs required"},
		{name: "PCR 24 required", pcrs: []int{24}, want: "quote check: PCR 24 does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := good
			if tc.attest != nil {
				a = tc.attest(good)
			}
			b := tpm2.Marshal(a)
			if tc.bytes != nil {
				b = tc.bytes(b)
			}
			signer := n
			if tc.signer != nil {
				signer = tc.signer
			}
			c := QuoteCheck{Nonce: nonce, PCRs: quotePCRs}
			if tc.nonce != nil {
				c.Nonce = tc.nonce
			}
			if tc.pcrs != nil {
				c.PCRs = tc.pcrs
			}
			v := values
			if tc.values != nil {
				v = tc.values
			}
			info, err := VerifyQuote(n.ak, b, signer.sign(t, b), c, v)
			checkErr(t, err, tc.want)
			if err != nil {
				return
			}
			if info.ClockInfo.ResetCount != 7 || info.ClockInfo.RestartCount != 1 || !bool(info.ClockInfo.Safe) || info.FirmwareVersion != 0x2000000000001 {
				t.Errorf("QuoteInfo = %+v", info)
			}
			if !bytes.Equal(info.PCRDigest, pcrDigest(quotePCRs, values)) {
				t.Errorf("PCRDigest = %x", info.PCRDigest)
			}
		})
	}
}

func TestVerifyQuoteRSA(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte("nonce")
	values := randomPCRs(quotePCRs)
	b := tpm2.Marshal(quoteAttest(nonce, []tpm2.TPMSPCRSelection{selection(tpm2.TPMAlgSHA256, quotePCRs...)}, pcrDigest(quotePCRs, values)))
	d := sha256.Sum256(b)
	for _, tc := range []struct {
		name string
		key  tpm2.TPMAlgID // AK scheme
		sig  tpm2.TPMAlgID // signature made
		want string
	}{
		{"RSASSA", tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSASSA, ""},
		{"RSAPSS", tpm2.TPMAlgRSAPSS, tpm2.TPMAlgRSAPSS, ""},
		{"PSS signature by an RSASSA AK", tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS, "quote: signature algorithm is RSAPSS, the AK signs with RSASSA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ak, err := ParseAK(tpm2.Marshal(rsaAKPublic(&k.PublicKey, tc.key)))
			if err != nil {
				t.Fatal(err)
			}
			var raw []byte
			if tc.sig == tpm2.TPMAlgRSAPSS {
				raw, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
			} else {
				raw, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:])
			}
			if err != nil {
				t.Fatal(err)
			}
			sig := tpm2.Marshal(tpm2.TPMTSignature{
				SigAlg:    tc.sig,
				Signature: tpm2.NewTPMUSignature(tc.sig, &tpm2.TPMSSignatureRSA{Hash: tpm2.TPMAlgSHA256, Sig: tpm2.TPM2BPublicKeyRSA{Buffer: raw}}),
			})
			_, err = VerifyQuote(ak, b, sig, QuoteCheck{Nonce: nonce, PCRs: quotePCRs}, values)
			checkErr(t, err, tc.want)
		})
	}
}

func TestVerifyQuoteSignatureForm(t *testing.T) {
	n := newNode(t)
	b := tpm2.Marshal(quoteAttest([]byte("n"), nil, nil))
	c := QuoteCheck{Nonce: []byte("n"), PCRs: []int{0}}
	for _, tc := range []struct {
		name string
		sig  []byte
		want string
	}{
		{"empty", nil, "quote: TPMT_SIGNATURE: "},
		{"HMAC", tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgHMAC, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgHMAC, &tpm2.TPMTHA{HashAlg: tpm2.TPMAlgSHA256})}), "quote: signature algorithm is 0x0005, the AK signs with ECDSA"},
		{"ECDSA with SHA-1", tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA, &tpm2.TPMSSignatureECC{Hash: tpm2.TPMAlgSHA1})}), "quote: ECDSA signature with SHA1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyQuote(n.ak, b, tc.sig, c, nil)
			checkErr(t, err, tc.want)
		})
	}
	if _, err := VerifyQuote(nil, b, nil, c, nil); err == nil {
		t.Fatal("VerifyQuote with no AK succeeded")
	}
}

func FuzzVerifyQuote(f *testing.F) {
	n := newNode(f)
	nonce := []byte("nonce")
	values := randomPCRs(quotePCRs)
	f.Add(tpm2.Marshal(quoteAttest(nonce, []tpm2.TPMSPCRSelection{selection(tpm2.TPMAlgSHA256, quotePCRs...)}, pcrDigest(quotePCRs, values))))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Signed, so that the fuzzer reaches the parsing behind the signature.
		info, err := VerifyQuote(n.ak, b, n.sign(t, b), QuoteCheck{Nonce: nonce, PCRs: quotePCRs}, values)
		if err == nil && !bytes.Equal(info.PCRDigest, pcrDigest(quotePCRs, values)) {
			t.Fatal("accepted a quote of other PCR values")
		}
	})
}
