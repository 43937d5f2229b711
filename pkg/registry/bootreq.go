package registry

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/zeroboot/zeroboot/pkg/release"
)

// Limits on the names in a boot request. POST /v1/boot takes no
// credential, so every field of a BootRequest is bounded; the profile's
// limits are pkg/identity's.
const (
	MaxNodeIDLen = 128 // node IDs; identity's are 33
	MaxNameLen   = 64  // farm names; channels follow release.CheckChannel
	MaxAgentLen  = 128
)

// Node IDs and farm names: printable, no separators that would
// confuse a path, a log line or a database key.
var (
	nodeIDRe = regexp.MustCompile(fmt.Sprintf(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,%d}$`, MaxNodeIDLen-1))
	nameRe   = regexp.MustCompile(fmt.Sprintf(`^[a-z0-9][a-z0-9._-]{0,%d}$`, MaxNameLen-1))
)

// CheckNodeID reports whether id has the shape of a node ID. The message
// quotes at most MaxNodeIDLen bytes of it.
func CheckNodeID(id string) error {
	if !nodeIDRe.MatchString(id) {
		return fmt.Errorf("node_id %q: want 1-%d characters of A-Z a-z 0-9 . _ : -", shorten(id, MaxNodeIDLen), MaxNodeIDLen)
	}
	return nil
}

// CheckName reports whether n is a valid farm name; what names the field
// in the message.
func CheckName(what, n string) error {
	if !nameRe.MatchString(n) {
		return fmt.Errorf("%s %q: want 1-%d characters of a-z 0-9 . _ -, starting with a letter or digit", what, shorten(n, MaxNameLen), MaxNameLen)
	}
	return nil
}

// shorten keeps an error message short when it quotes a field that was too
// long to begin with.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Validate reports the first field of a boot request that is malformed or
// over its limit. Farm and Channel may be empty (the registry's default
// farm, the farm's channel). Protocol is left to the registry, which
// answers an old node with what to upgrade.
func (r *BootRequest) Validate() error {
	if err := CheckNodeID(r.NodeID); err != nil {
		return fmt.Errorf("boot request: %w", err)
	}
	if r.Farm != "" {
		if err := CheckName("farm", r.Farm); err != nil {
			return fmt.Errorf("boot request: %w", err)
		}
	}
	if r.Channel != "" {
		if err := release.CheckChannel(r.Channel); err != nil {
			return fmt.Errorf("boot request: %w", err)
		}
	}
	if len(r.Agent) > MaxAgentLen {
		return fmt.Errorf("boot request: agent is %d bytes, limit %d", len(r.Agent), MaxAgentLen)
	}
	for i := 0; i < len(r.Agent); i++ {
		if c := r.Agent[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("boot request: agent: byte %d is not printable ASCII", i)
		}
	}
	if r.RootVersion < 0 {
		return fmt.Errorf("boot request: root_version %d is negative", r.RootVersion)
	}
	if err := r.Profile.Validate(); err != nil {
		return fmt.Errorf("boot request: %w", err)
	}
	return r.validateIdentity()
}

func (r *BootRequest) validateIdentity() error {
	switch r.IdentityKind {
	case "", KindDMI, KindEphemeral:
		if r.TPM != nil {
			return fmt.Errorf("boot request: identity kind %q with TPM evidence", r.IdentityKind)
		}
	case KindTPM:
		if r.TPM == nil || len(r.TPM.AKPublic) == 0 {
			return errors.New("boot request: identity kind tpm without a quote and identity key")
		}
		if err := r.TPM.Validate(); err != nil {
			return fmt.Errorf("boot request: %w", err)
		}
	default:
		return fmt.Errorf("boot request: identity kind %q: want %s, %s or %s", shorten(r.IdentityKind, MaxNameLen), KindTPM, KindDMI, KindEphemeral)
	}
	if len(r.IdentitySource) > MaxNameLen || len(r.TPMError) > MaxTPMErrText {
		return fmt.Errorf("boot request: identity source (%d bytes) or tpm_error (%d bytes) over its limit (%d, %d)", len(r.IdentitySource), len(r.TPMError), MaxNameLen, MaxTPMErrText)
	}
	return nil
}
