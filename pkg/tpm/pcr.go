package tpm

import (
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// numPCRs is the PC Client profile's PCR count.
const numPCRs = 24

// selection selects pcrs in the SHA-256 bank.
func selection(pcrs []int) (tpm2.TPMLPCRSelection, error) {
	if len(pcrs) == 0 {
		return tpm2.TPMLPCRSelection{}, fmt.Errorf("no PCRs selected")
	}
	bits := make([]byte, numPCRs/8)
	for _, p := range pcrs {
		if p < 0 || p >= numPCRs {
			return tpm2.TPMLPCRSelection{}, fmt.Errorf("PCR %d out of range 0-%d", p, numPCRs-1)
		}
		bits[p/8] |= 1 << (p % 8)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{
		{Hash: tpm2.TPMAlgSHA256, PCRSelect: bits},
	}}, nil
}

// selected lists the PCRs a selection's bitmap holds, ascending: the order
// of the values the TPM returns.
func selected(bits []byte) []int {
	var pcrs []int
	for i := 0; i < len(bits)*8; i++ {
		if bits[i/8]&(1<<(i%8)) != 0 {
			pcrs = append(pcrs, i)
		}
	}
	return pcrs
}

// PCRs reads the SHA-256 values of pcrs. TPM2_PCR_Read returns at most 8
// digests per call, and says which: read until all are in.
func (t *TPM) PCRs(pcrs []int) (map[int][]byte, error) {
	out := make(map[int][]byte, len(pcrs))
	want := slices.Clone(pcrs)
	for len(want) > 0 {
		sel, err := selection(want)
		if err != nil {
			return nil, fmt.Errorf("read PCRs: %w", err)
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(t.tr)
		if err != nil {
			return nil, wrap(fmt.Sprintf("read PCRs %v", want), err)
		}
		got := t.collect(rsp, out)
		if got == 0 {
			return nil, fmt.Errorf("read PCRs %v: the TPM returned none (is the SHA-256 bank allocated?)", want)
		}
		want = slices.DeleteFunc(want, func(p int) bool { return out[p] != nil })
	}
	return out, nil
}

// collect stores the SHA-256 digests of rsp in out and counts them.
func (t *TPM) collect(rsp *tpm2.PCRReadResponse, out map[int][]byte) int {
	vals := rsp.PCRValues.Digests
	n := 0
	for _, s := range rsp.PCRSelectionOut.PCRSelections {
		for _, p := range selected(s.PCRSelect) {
			if len(vals) == 0 {
				return n
			}
			if s.Hash == tpm2.TPMAlgSHA256 {
				out[p] = vals[0].Buffer
				n++
			}
			vals = vals[1:]
		}
	}
	return n
}

// Extend extends digest into pcr's SHA-256 bank.
func (t *TPM) Extend(pcr int, digest [32]byte) error {
	if pcr < 0 || pcr >= numPCRs {
		return fmt.Errorf("extend PCR %d: out of range 0-%d", pcr, numPCRs-1)
	}
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{
			{HashAlg: tpm2.TPMAlgSHA256, Digest: digest[:]},
		}},
	}.Execute(t.tr)
	if err != nil {
		return wrap(fmt.Sprintf("extend PCR %d", pcr), err)
	}
	return nil
}
