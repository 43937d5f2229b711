package prove

import (
	"fmt"
	"time"

	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// Choice is the identity a node boots with and how it got it.
type Choice struct {
	Ident identity.Identity
	Kind  string  // registry.KindTPM, KindDMI or KindEphemeral
	TPM   *Prover // set for KindTPM
	// TPMErr is why the node has no TPM identity ("" for KindTPM): no
	// device, or a TPM that failed. It goes to the registry, whose farm
	// policy decides; it is never dropped.
	TPMErr string
	// KeyTime is how long the TPM took to create the identity key.
	KeyTime time.Duration
	// Says is the line for the console.
	Says string
}

// Choose picks the node's identity: the TPM's identity key where open
// gives a working TPM, else the DMI identity read gave, else an ephemeral
// ID. A TPM that fails to create the key is reported as such and the node
// goes on as a DMI node: the registry, not the node, decides whether that
// is acceptable (--require-tpm), and a node retrying a broken TPM forever
// would tell the registry nothing.
func Choose(open func() (*Prover, error), read func() (identity.Identity, error)) Choice {
	id, dmiErr := read()
	c := Choice{Ident: id}
	p, err := open()
	if err == nil {
		start := time.Now()
		var nodeID string
		if nodeID, err = p.NodeID(); err == nil {
			c.Ident.NodeID, c.Ident.Source, c.Ident.Proven = nodeID, identity.SourceTPM, true
			c.Kind, c.TPM, c.KeyTime = registry.KindTPM, p, time.Since(start)
			c.Says = fmt.Sprintf("identity: node %s from the TPM's identity key (created in %d ms); proven by a quote on every boot", nodeID, c.KeyTime.Milliseconds())
			return c
		}
		err = fmt.Errorf("TPM present but unusable: %w", err)
	}
	c.TPMErr = err.Error()
	if dmiErr == nil {
		c.Kind = registry.KindDMI
		c.Says = fmt.Sprintf("identity: node %s (from %s); not proven: %v", id.NodeID, id.Source, err)
		return c
	}
	c.Kind = registry.KindEphemeral
	c.Ident.NodeID, c.Ident.Source = identity.Ephemeral(), identity.SourceEphemeral
	c.Says = fmt.Sprintf("identity: no TPM (%v) and %v; using ephemeral ID %s for this boot: only farms that allow ephemeral nodes take it", err, dmiErr, c.Ident.NodeID)
	return c
}
