package tpm

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ActivateCredential runs TPM2_ActivateCredential and returns the secret a
// registry sealed to ek for key's name: it succeeds only if key lives in the
// same TPM as ek. credBlob is the TPM2B_ID_OBJECT contents and secret the
// TPM2B_ENCRYPTED_SECRET contents, as tpm2.CreateCredential makes them.
func (t *TPM) ActivateCredential(key *Key, ek *EK, credBlob, secret []byte) ([]byte, error) {
	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: tpm2.NamedHandle{Handle: key.Handle, Name: tpm2.TPM2BName{Buffer: key.Name}},
		KeyHandle: tpm2.AuthHandle{
			Handle: ek.Handle,
			Name:   tpm2.TPM2BName{Buffer: ek.Name},
			// The EK's policy is PolicySecret(TPM_RH_ENDORSEMENT): it has no
			// usable auth value, only the endorsement hierarchy's.
			Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, ekPolicy),
		},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: credBlob},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: secret},
	}.Execute(t.tr)
	if err != nil {
		return nil, wrap("activate credential", err)
	}
	return rsp.CertInfo.Buffer, nil
}

// ekPolicy satisfies the TCG default EK policy.
func ekPolicy(tr transport.TPM, h tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
	_, err := tpm2.PolicySecret{
		AuthHandle:    tpm2.TPMRHEndorsement,
		PolicySession: h,
		NonceTPM:      nonceTPM,
	}.Execute(tr)
	if err != nil {
		return wrap("EK policy secret", err)
	}
	return nil
}

// Quote is a TPM2_Quote over the SHA-256 bank.
type Quote struct {
	Attest    []byte         // TPMS_ATTEST as signed (TPM2B_ATTEST contents)
	Signature []byte         // TPMT_SIGNATURE, marshaled
	PCRs      map[int][]byte // SHA-256 values of the quoted PCRs, read right after the quote
}

// Quote signs the SHA-256 bank's pcrs (in ascending order, whatever the
// order given) with key, with nonce as qualifying data.
func (t *TPM) Quote(key *Key, nonce []byte, pcrs []int) (*Quote, error) {
	sel, err := selection(pcrs)
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	rsp, err := tpm2.Quote{
		SignHandle:     tpm2.NamedHandle{Handle: key.Handle, Name: tpm2.TPM2BName{Buffer: key.Name}},
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull}, // the key's own ECDSA/SHA-256
		PCRSelect:      sel,
	}.Execute(t.tr)
	if err != nil {
		return nil, wrap("quote PCRs", err)
	}
	vals, err := t.PCRs(pcrs)
	if err != nil {
		return nil, err
	}
	return &Quote{
		Attest:    rsp.Quoted.Bytes(),
		Signature: tpm2.Marshal(rsp.Signature),
		PCRs:      vals,
	}, nil
}
