package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// QuoteCheck is what the registry requires of a quote.
type QuoteCheck struct {
	Nonce []byte // the challenge the registry issued
	PCRs  []int  // the exact selection required (SHA-256 bank), e.g. 0-7 and 15
}

// QuoteInfo is what a verified quote says beyond the PCRs.
type QuoteInfo struct {
	// ClockInfo's ResetCount and RestartCount tell one boot from the
	// next; Safe is returned, not required.
	ClockInfo       tpm2.TPMSClockInfo
	FirmwareVersion uint64
	PCRDigest       []byte
}

// VerifyQuote verifies a TPM2_Quote by ak: attest is the TPMS_ATTEST the
// TPM returned (TPM2B_ATTEST contents), sig its TPMT_SIGNATURE, and
// pcrValues the SHA-256 PCR values the node reported, which the quote
// then vouches for. The signature is checked before anything in attest is
// believed.
func VerifyQuote(ak *AK, attest, sig []byte, c QuoteCheck, pcrValues map[int][]byte) (*QuoteInfo, error) {
	if ak == nil {
		return nil, errors.New("quote: no AK")
	}
	if len(c.Nonce) == 0 {
		// Without a nonce any old quote would do.
		return nil, errors.New("quote: no nonce to check against")
	}
	if err := checkPCRList(c.PCRs); err != nil {
		return nil, err
	}
	if err := verifySignature(ak, attest, sig); err != nil {
		return nil, err
	}
	a, err := tpm2.Unmarshal[tpm2.TPMSAttest](attest)
	if err != nil {
		return nil, fmt.Errorf("quote: TPMS_ATTEST: %w", err)
	}
	if n := len(tpm2.Marshal(a)); n != len(attest) {
		return nil, fmt.Errorf("quote: TPMS_ATTEST is %d bytes followed by %d more", n, len(attest)-n)
	}
	if a.Magic != tpm2.TPMGeneratedValue {
		return nil, fmt.Errorf("quote: magic is 0x%08x, not TPM_GENERATED_VALUE: the TPM did not produce it", uint32(a.Magic))
	}
	if a.Type != tpm2.TPMSTAttestQuote {
		return nil, fmt.Errorf("quote: attestation type is 0x%04x, not TPM_ST_ATTEST_QUOTE", uint16(a.Type))
	}
	if subtle.ConstantTimeCompare(a.ExtraData.Buffer, c.Nonce) != 1 {
		return nil, errors.New("quote: nonce does not match the challenge")
	}
	q, err := a.Attested.Quote()
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	if err := checkSelection(q.PCRSelect, c.PCRs); err != nil {
		return nil, err
	}
	if err := checkPCRDigest(q.PCRDigest.Buffer, c.PCRs, pcrValues); err != nil {
		return nil, err
	}
	return &QuoteInfo{ClockInfo: a.ClockInfo, FirmwareVersion: a.FirmwareVersion, PCRDigest: q.PCRDigest.Buffer}, nil
}

func verifySignature(ak *AK, attest, sig []byte) error {
	want, err := sigScheme(&ak.Public)
	if err != nil {
		return fmt.Errorf("quote: AK: %w", err)
	}
	s, err := tpm2.Unmarshal[tpm2.TPMTSignature](sig)
	if err != nil {
		return fmt.Errorf("quote: TPMT_SIGNATURE: %w", err)
	}
	if s.SigAlg != want {
		return fmt.Errorf("quote: signature algorithm is %s, the AK signs with %s", algName(s.SigAlg), algName(want))
	}
	digest := sha256.Sum256(attest)
	switch want {
	case tpm2.TPMAlgECDSA:
		e, _ := s.Signature.ECDSA()
		k, ok := ak.Key.(*ecdsa.PublicKey)
		if !ok || e.Hash != tpm2.TPMAlgSHA256 {
			return fmt.Errorf("quote: ECDSA signature with %s by a %T AK", algName(e.Hash), ak.Key)
		}
		r := new(big.Int).SetBytes(e.SignatureR.Buffer)
		ss := new(big.Int).SetBytes(e.SignatureS.Buffer)
		if !ecdsa.Verify(k, digest[:], r, ss) {
			return errors.New("quote: signature does not verify with the AK")
		}
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		r, _ := s.Signature.RSASSA()
		if want == tpm2.TPMAlgRSAPSS {
			r, _ = s.Signature.RSAPSS()
		}
		k, ok := ak.Key.(*rsa.PublicKey)
		if !ok || r.Hash != tpm2.TPMAlgSHA256 {
			return fmt.Errorf("quote: RSA signature with %s by a %T AK", algName(r.Hash), ak.Key)
		}
		err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], r.Sig.Buffer)
		if want == tpm2.TPMAlgRSAPSS {
			err = rsa.VerifyPSS(k, crypto.SHA256, digest[:], r.Sig.Buffer, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		}
		if err != nil {
			return fmt.Errorf("quote: signature does not verify with the AK: %w", err)
		}
	}
	return nil
}

func checkPCRList(pcrs []int) error {
	if len(pcrs) == 0 {
		return errors.New("quote check: no PCRs required")
	}
	seen := map[int]bool{}
	for _, p := range pcrs {
		if p < 0 || p > 23 {
			return fmt.Errorf("quote check: PCR %d does not exist", p)
		}
		if seen[p] {
			return fmt.Errorf("quote check: PCR %d is listed twice", p)
		}
		seen[p] = true
	}
	return nil
}

// checkSelection requires exactly one SHA-256 bank selecting exactly want.
func checkSelection(sel tpm2.TPMLPCRSelection, want []int) error {
	if len(sel.PCRSelections) != 1 {
		return fmt.Errorf("quote: %d PCR banks selected, want only SHA256", len(sel.PCRSelections))
	}
	s := sel.PCRSelections[0]
	if s.Hash != tpm2.TPMAlgSHA256 {
		return fmt.Errorf("quote: PCR bank is %s, want SHA256", algName(s.Hash))
	}
	got := map[int]bool{}
	for i, b := range s.PCRSelect {
		for j := 0; j < 8; j++ {
			if b&(1<<j) != 0 {
				got[8*i+j] = true
			}
		}
	}
	for _, p := range want {
		if !got[p] {
			return fmt.Errorf("quote: PCR %d is missing from the selection", p)
		}
		delete(got, p)
	}
	if len(got) > 0 {
		extra := make([]int, 0, len(got))
		for p := range got {
			extra = append(extra, p)
		}
		return fmt.Errorf("quote: PCR %d is selected but not required", slices.Min(extra))
	}
	return nil
}

// checkPCRDigest checks that the quoted digest is SHA-256 of the reported
// values of the selected PCRs in ascending order, as TPM2_Quote computes it.
func checkPCRDigest(digest []byte, pcrs []int, values map[int][]byte) error {
	sorted := slices.Sorted(slices.Values(pcrs))
	h := sha256.New()
	for _, p := range sorted {
		v, ok := values[p]
		if !ok {
			return fmt.Errorf("quote: no value reported for PCR %d", p)
		}
		if len(v) != sha256.Size {
			return fmt.Errorf("quote: value of PCR %d is %d bytes, want 32", p, len(v))
		}
		h.Write(v)
	}
	for p := range values {
		if !slices.Contains(pcrs, p) {
			return fmt.Errorf("quote: value reported for PCR %d, which is not quoted", p)
		}
	}
	if !bytes.Equal(h.Sum(nil), digest) {
		return errors.New("quote: PCR values do not match the quoted PCR digest")
	}
	return nil
}
