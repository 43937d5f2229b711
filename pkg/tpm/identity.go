package tpm

import (
	"github.com/google/go-tpm/tpm2"
)

// IdentityLabel is the unique field of the identity key template. Any other
// unique value derives another key: this one is ours alone, not the key
// other software derives from the default attestation key template.
const IdentityLabel = "zeroboot-identity-v1"

// Key is the node's identity key, loaded for this session.
type Key struct {
	Handle tpm2.TPMHandle
	Name   []byte // TPM2B_NAME contents (nameAlg || digest), as the TPM computes it
	Public []byte // TPMT_PUBLIC, marshaled
}

// IdentityTemplate is the template of the identity key, documented field by
// field in docs/tpm.md: a restricted ECDSA P-256/SHA-256 signing key
// (an attestation key) with empty auth, not subject to dictionary-attack
// protection.
func IdentityTemplate() tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgECC,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:            true,
			FixedParent:         true,
			SensitiveDataOrigin: true,
			UserWithAuth:        true,
			NoDA:                true,
			Restricted:          true,
			SignEncrypt:         true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{
				Scheme: tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA,
					&tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
			},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: []byte(IdentityLabel)},
		}),
	}
}

// IdentityKey derives the node's identity key as a primary key in the
// endorsement hierarchy. A primary key is a function of the hierarchy seed
// and the template: the same key every boot with nothing stored, unchanged by
// TPM2_Clear, different on every TPM. The key stays loaded until Close;
// later calls return it.
func (t *TPM) IdentityKey() (*Key, error) {
	if t.key != nil {
		return t.key, nil
	}
	h, name, pub, err := t.createPrimary(IdentityTemplate())
	if err != nil {
		return nil, wrap("create identity key", err)
	}
	t.key = &Key{Handle: h, Name: name, Public: pub}
	return t.key, nil
}

// createPrimary creates a primary key in the endorsement hierarchy (with
// its empty default auth) and returns its handle, name and marshaled public.
func (t *TPM) createPrimary(tmpl tpm2.TPMTPublic) (tpm2.TPMHandle, []byte, []byte, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(t.tr)
	if err != nil {
		return 0, nil, nil, err
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		t.flush("primary key", rsp.ObjectHandle)
		return 0, nil, nil, err
	}
	return rsp.ObjectHandle, rsp.Name.Buffer, tpm2.Marshal(pub), nil
}
