package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// EK is the endorsement key and its certificate from NV, where present.
type EK struct {
	Handle tpm2.TPMHandle
	Name   []byte
	Public []byte // TPMT_PUBLIC, marshaled
	Cert   []byte // DER; nil when the NV index is absent
	Kind   string // "rsa2048" or "ecc-p256"
}

// NV indices of the EK certificates, TCG EK Credential Profile 2.0, low range.
const (
	RSAEKCertIndex = 0x01C00002
	ECCEKCertIndex = 0x01C0000A
)

// ekKinds are tried in order: the RSA EK is the one nearly every TPM ships a
// certificate for.
var ekKinds = []struct {
	kind  string
	tmpl  tpm2.TPMTPublic
	index tpm2.TPMHandle
}{
	{"rsa2048", tpm2.RSAEKTemplate, RSAEKCertIndex},
	{"ecc-p256", tpm2.ECCEKTemplate, ECCEKCertIndex},
}

// maxCert bounds an EK certificate read from NV: the TCG indices are at
// most a few KiB.
const maxCert = 16 << 10

// EK creates the endorsement key from the TCG default RSA template or, if
// the TPM refuses it, the ECC P-256 one, and reads its certificate from NV.
// The key stays loaded until Close; later calls return it.
func (t *TPM) EK() (*EK, error) {
	if t.ek != nil {
		return t.ek, nil
	}
	var errs []error
	for _, k := range ekKinds {
		h, name, pub, err := t.createPrimary(k.tmpl)
		if err != nil {
			errs = append(errs, wrap("create "+k.kind+" EK", err))
			continue
		}
		cert, err := t.readNV(k.index)
		if err != nil {
			t.flush("EK", h)
			return nil, fmt.Errorf("read %s EK certificate: %w", k.kind, err)
		}
		t.ek = &EK{Handle: h, Name: name, Public: pub, Cert: cert, Kind: k.kind}
		return t.ek, nil
	}
	return nil, errors.Join(errs...)
}

// readNV reads the contents of an NV index, trimmed to the DER length; nil
// when the index is not defined.
func (t *TPM) readNV(index tpm2.TPMHandle) ([]byte, error) {
	pubRsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t.tr)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(fmt.Sprintf("read NV index %#x public", uint32(index)), err)
	}
	pub, err := pubRsp.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("NV index %#x: %w", uint32(index), err)
	}
	if int(pub.DataSize) > maxCert {
		return nil, fmt.Errorf("NV index %#x: %d bytes, more than %d", uint32(index), pub.DataSize, maxCert)
	}
	auth, err := nvAuth(pub)
	if err != nil {
		return nil, err
	}
	chunk, err := t.nvBufferMax()
	if err != nil {
		return nil, err
	}
	var data []byte
	for off := 0; off < int(pub.DataSize); off += chunk {
		n := min(chunk, int(pub.DataSize)-off)
		rsp, err := tpm2.NVRead{
			AuthHandle: auth,
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: pubRsp.NVName},
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(t.tr)
		if err != nil {
			return nil, wrap(fmt.Sprintf("read NV index %#x at %d", uint32(index), off), err)
		}
		data = append(data, rsp.Data.Buffer...)
	}
	return trimDER(data)
}

// nvAuth picks who authorizes the read: the index itself (EK certificate
// indices have AUTHREAD with an empty auth) or else the owner, whose auth
// we assume empty.
func nvAuth(pub *tpm2.TPMSNVPublic) (tpm2.AuthHandle, error) {
	switch {
	case pub.Attributes.AuthRead:
		name, err := tpm2.NVName(pub)
		if err != nil {
			return tpm2.AuthHandle{}, fmt.Errorf("NV index %#x name: %w", uint32(pub.NVIndex), err)
		}
		return tpm2.AuthHandle{Handle: pub.NVIndex, Name: *name, Auth: tpm2.PasswordAuth(nil)}, nil
	case pub.Attributes.OwnerRead:
		return tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}, nil
	}
	return tpm2.AuthHandle{}, fmt.Errorf("NV index %#x is readable neither by its auth nor by the owner", uint32(pub.NVIndex))
}

// nvBufferMax is the most the TPM reads from NV in one command. The TCG
// PC Client profile guarantees 512 where the TPM does not say.
func (t *TPM) nvBufferMax() (int, error) {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTNVBufferMax),
		PropertyCount: 1,
	}.Execute(t.tr)
	if err != nil {
		return 0, wrap("get TPM NV buffer size", err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil {
		return 0, fmt.Errorf("get TPM NV buffer size: %w", err)
	}
	for _, p := range props.TPMProperty {
		if p.Property == tpm2.TPMPTNVBufferMax && p.Value > 0 {
			return int(min(p.Value, 1024)), nil
		}
	}
	return 512, nil
}

// trimDER cuts the padding some vendors leave after the certificate: the
// DER header gives the real length.
func trimDER(b []byte) ([]byte, error) {
	n, err := derLen(b)
	if err != nil {
		return nil, fmt.Errorf("EK certificate: %w", err)
	}
	return b[:n], nil
}

// derLen is the total length of the DER SEQUENCE at the start of b.
func derLen(b []byte) (int, error) {
	if len(b) < 2 || b[0] != 0x30 {
		return 0, errors.New("not a DER SEQUENCE")
	}
	l, hdr := int(b[1]), 2
	if l&0x80 != 0 {
		k := l & 0x7f
		if k == 0 || k > 3 || len(b) < 2+k {
			return 0, errors.New("bad DER length")
		}
		l = 0
		for _, c := range b[2 : 2+k] {
			l = l<<8 | int(c)
		}
		hdr += k
	}
	if hdr+l > len(b) {
		return 0, fmt.Errorf("DER length %d beyond the %d bytes stored", hdr+l, len(b))
	}
	return hdr + l, nil
}
