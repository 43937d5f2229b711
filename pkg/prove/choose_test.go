package prove

import (
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/tpm"
)

// fakeTPM stands in for a TPM whose key creation succeeds or fails; the
// real one is tested against swtpm in pkg/tpm and cmd/zgrid/internal/server.
type fakeTPM struct {
	TPM
	name []byte
	err  error
}

func (f *fakeTPM) IdentityKey() (*tpm.Key, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &tpm.Key{Name: f.name}, nil
}

func TestChoose(t *testing.T) {
	name := append([]byte{0x00, 0x0b}, make([]byte, 32)...)
	dmi := identity.Identity{NodeID: identity.NodeID(identity.SourceUUID, "u"), Source: identity.SourceUUID}
	noDMI := errors.New("no usable identity source: product_uuid missing")
	lockout := fmt.Errorf("create identity key: %w", tpm.ErrLockout)
	for _, tc := range []struct {
		name      string
		tpm       *fakeTPM
		openErr   error
		dmiErr    error
		kind      string
		id        string // exact, or a pattern for ephemeral IDs
		tpmErr    string
		saysMatch string
	}{
		{"TPM", &fakeTPM{name: name}, nil, nil, registry.KindTPM, identity.NodeID(identity.SourceTPM, hex.EncodeToString(name)), "", "from the TPM's identity key"},
		{"TPM, no DMI", &fakeTPM{name: name}, nil, noDMI, registry.KindTPM, identity.NodeID(identity.SourceTPM, hex.EncodeToString(name)), "", "proven by a quote"},
		{"no TPM", nil, fmt.Errorf("open /dev/tpmrm0: %w", tpm.ErrNoTPM), nil, registry.KindDMI, dmi.NodeID, "open /dev/tpmrm0: no TPM", "not proven: open /dev/tpmrm0: no TPM"},
		{"TPM fails", &fakeTPM{err: lockout}, nil, nil, registry.KindDMI, dmi.NodeID, "TPM present but unusable: create identity key: TPM is in dictionary-attack lockout", "not proven: TPM present but unusable"},
		{"nothing", nil, tpm.ErrNoTPM, noDMI, registry.KindEphemeral, `^e[0-9a-f]{32}$`, "no TPM", "only farms that allow ephemeral nodes take it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			open := func() (*Prover, error) {
				if tc.openErr != nil {
					return nil, tc.openErr
				}
				return &Prover{TPM: tc.tpm}, nil
			}
			read := func() (identity.Identity, error) { return dmi, tc.dmiErr }
			c := Choose(open, read)
			if c.Kind != tc.kind || c.TPMErr != tc.tpmErr || !strings.Contains(c.Says, tc.saysMatch) {
				t.Errorf("kind %q, tpm error %q, says %q; want %q, %q, %q", c.Kind, c.TPMErr, c.Says, tc.kind, tc.tpmErr, tc.saysMatch)
			}
			if ok, _ := regexp.MatchString(tc.id, c.Ident.NodeID); c.Ident.NodeID != tc.id && !(strings.HasPrefix(tc.id, "^") && ok) {
				t.Errorf("node ID %q, want %q", c.Ident.NodeID, tc.id)
			}
			if (c.TPM != nil) != (tc.kind == registry.KindTPM) || c.Ident.Proven != (tc.kind == registry.KindTPM) {
				t.Errorf("prover %v, proven %v for kind %s", c.TPM != nil, c.Ident.Proven, c.Kind)
			}
		})
	}
	a := Choose(func() (*Prover, error) { return nil, tpm.ErrNoTPM }, func() (identity.Identity, error) { return identity.Identity{}, noDMI })
	b := Choose(func() (*Prover, error) { return nil, tpm.ErrNoTPM }, func() (identity.Identity, error) { return identity.Identity{}, noDMI })
	if a.Ident.NodeID == b.Ident.NodeID {
		t.Errorf("two boots without identity got the same ephemeral ID %s", a.Ident.NodeID)
	}
}
