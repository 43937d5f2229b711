// Package registry holds the HTTP API spoken between nodes, admins and the
// grid registry (cmd/zgrid), and the client a node uses to ask for its
// release. The types are the wire format: JSON with snake_case names,
// documented in docs/api.md.
package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/pkg/cmdline"
	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/timeline"
	"github.com/zeroboot/zeroboot/pkg/trust"
)

// MaxBodySize bounds every JSON body in the API, request or response. A
// release envelope or a hardware profile is a few KiB; anything near this
// is an attack or a bug.
const MaxBodySize = 1 << 20

// Sources of a status report.
const (
	SourcePID1  = "pid1"
	SourceCore0 = "core0"
)

// Node states. A node is "booting" from its boot request until it reports
// "ready" or "failed".
const (
	StateBooting = "booting"
	StateFailed  = "failed"
	StateReady   = "ready"
	// StatePending is set by the registry alone: the node waits for
	// zgrid node approve.
	StatePending = "pending"
	// StateDenied is set by the registry alone: zgrid node deny refuses
	// the node's boot requests and reports until zgrid node approve.
	StateDenied = "denied"
)

// NodeStates is every state a node record can hold.
var NodeStates = []string{StateBooting, StateReady, StateFailed, StatePending, StateDenied}

// Protocol is the version of the node/registry boot exchange. Version 6
// adds the last known good release: a farm with a ready deadline sends a
// node a fallback release with its own, and the node reports when it fell
// back (Fallback, FellBack). Version 5
// lets Core-0's status reports carry each service's state (Services);
// the boot exchange itself is version 4's. Version 4 adds the farm's chunk cache to the boot answer. Version 3 adds TPM
// identity: a challenge before the boot request, quotes, key enrollment
// and measured boot (docs/api.md). Version 2 carries TUF metadata
// (pkg/trust); version 1 carried a zeroboot-release/1 envelope. A
// registry answers nodes of MinNodeProtocol and up in their own version,
// and a node takes answers of MinRegistryProtocol and up; otherwise each
// side refuses the other's version with a message that says which side to
// upgrade.
const Protocol = ProtocolFallback

// The versions that added something, for the checks that depend on them.
const (
	ProtocolTPM      = 3
	ProtocolCache    = 4
	ProtocolServices = 5
	ProtocolFallback = 6
	// ProtocolBLAKE3 is the oldest node protocol that reads flist
	// version 3 (chunks named by BLAKE3): it came with protocol 6, so a
	// registry refuses an older node a release with such a component
	// rather than let the node fail at its components step.
	ProtocolBLAKE3 = ProtocolFallback
)

// NodeProtocolFor is the oldest node protocol that reads an flist whose
// chunks are named by h.
func NodeProtocolFor(h flist.Hash) int {
	if h == flist.BLAKE3 {
		return ProtocolBLAKE3
	}
	return MinNodeProtocol
}

// MinRegistryProtocol is the oldest registry protocol a node takes an
// answer in: a protocol 3 answer has no chunk cache setting, and nothing
// else this node needs is missing from it.
const MinRegistryProtocol = ProtocolTPM

// MinNodeProtocol is the oldest node protocol a registry still answers:
// a protocol 2 node boots as a DMI node.
const MinNodeProtocol = 2

// BootRequest is what a node sends to POST /v1/boot.
type BootRequest struct {
	Protocol int              `json:"protocol,omitempty"` // absent: version 1
	NodeID   string           `json:"node_id"`
	Farm     string           `json:"farm"`
	Profile  identity.Profile `json:"profile"`
	Agent    string           `json:"agent,omitempty"` // e.g. "zeroboot-init"
	// RootVersion is the version of the newest root the node holds: the
	// registry sends only newer ones.
	RootVersion int64 `json:"root_version,omitempty"`
	// Channel is zeroboot.channel when set; the farm's channel otherwise.
	Channel string `json:"channel,omitempty"`
	// IdentityKind is KindTPM, KindDMI or KindEphemeral (protocol 3;
	// absent: KindDMI), IdentitySource what the ID was derived from.
	IdentityKind   string `json:"identity_kind,omitempty"`
	IdentitySource string `json:"identity_source,omitempty"`
	// TPMError is why a node without KindTPM has no TPM identity: no
	// device, or a TPM that failed. The farm's policy decides.
	TPMError string `json:"tpm_error,omitempty"`
	// TPM is the quote over a fresh challenge (KindTPM only).
	TPM *Evidence `json:"tpm,omitempty"`
}

// BootResponse is the registry's answer: the TUF metadata of the node's
// channel and the store base URLs to fetch its components from, in order
// of preference. The node verifies the metadata itself (pkg/trust); the
// registry is not trusted for anything but availability and freshness.
type BootResponse struct {
	Protocol int           `json:"protocol"`
	NodeID   string        `json:"node_id"`
	Channel  string        `json:"channel"`
	TUF      *trust.Bundle `json:"tuf"`
	Stores   []string      `json:"stores"`
	// V1Release is protocol 1's envelope, read only so that an answer
	// from a protocol 1 registry is refused as such, not as garbage.
	V1Release json.RawMessage `json:"release,omitempty"`
	// Token is fresh for every boot answer: the node sends it back with its
	// status reports (PID 1 and Core-0), so that only the machine that
	// booted can speak for its node ID. See CheckToken.
	Token string `json:"token"`
	// Registry is the base URL that gave this answer, set by Client.Boot
	// (not sent on the wire): later calls and Core-0 go to a registry known
	// to be up.
	Registry string `json:"-"`
	// Date is the answer's Date header and ChainEnd when the certificate
	// chain that authenticated it stops verifying (zero without one), set
	// by Client.Boot for the caller to judge against the signed metadata.
	Date     time.Time `json:"-"`
	ChainEnd time.Time `json:"-"`
	// Activate, when set, is all the answer holds: the registry does not
	// know the node's key yet and asks it to prove that the key lives in
	// its TPM, then to ask again (protocol 3).
	Activate *Activation `json:"activate,omitempty"`
	// QuoteNonce is the challenge for the quote the node sends with its
	// report before hand-off, once everything it runs is measured
	// (protocol 3, TPM nodes).
	QuoteNonce string `json:"quote_nonce,omitempty"`
	// SendEK, when set, is all the answer holds: the registry does not
	// know the node's key and asks for the endorsement key to enroll it
	// (protocol 3).
	SendEK bool `json:"send_ek,omitempty"`
	// Cache is the farm's chunk cache, for a node whose command line
	// names none (protocol 4).
	Cache *Cache `json:"cache,omitempty"`
	// Fallback is the release to boot instead when the one above does not
	// reach ready in time (protocol 6).
	Fallback *Fallback `json:"fallback,omitempty"`
}

// Fallback is a node's last known good release: the TUF metadata of an
// earlier release of the same channel, which the node verifies as it does
// the first, and how long the first may take to reach ready.
type Fallback struct {
	// DeadlineSeconds counts from Core-0's first start; the farm's
	// ready deadline (Farm.ReadyDeadline).
	DeadlineSeconds int           `json:"deadline_seconds"`
	TUF             *trust.Bundle `json:"tuf"`
}

// Ready deadline bounds: shorter would fall back from a node still
// starting; longer leaves a farm down for a day.
const (
	MinReadyDeadline = 10
	MaxReadyDeadline = 24 * 60 * 60
)

// CheckReadyDeadline applies the bounds to seconds; 0 is off.
func CheckReadyDeadline(seconds int) error {
	if seconds != 0 && (seconds < MinReadyDeadline || seconds > MaxReadyDeadline) {
		return fmt.Errorf("ready deadline %ds: want %ds to %ds (0: no deadline, no fallback)", seconds, MinReadyDeadline, MaxReadyDeadline)
	}
	return nil
}

func (f *Fallback) check(protocol int) error {
	if protocol < ProtocolFallback {
		return fmt.Errorf("protocol %d answer carries a fallback release (protocol %d)", protocol, ProtocolFallback)
	}
	if f.TUF == nil {
		return errors.New("fallback without TUF metadata")
	}
	if f.DeadlineSeconds == 0 {
		return errors.New("fallback without a ready deadline")
	}
	return CheckReadyDeadline(f.DeadlineSeconds)
}

// FellBack is PID 1's word that the release it was given did not reach
// ready by the deadline and it booted the fallback (the report's
// ReleaseVersion) instead (protocol 6).
type FellBack struct {
	From   uint64 `json:"from"`
	Reason string `json:"reason"`
}

// StatusReport is what PID 1 and Core-0 send to POST /v1/status.
type StatusReport struct {
	NodeID         string          `json:"node_id"`
	Source         string          `json:"source"`
	State          string          `json:"state"`
	Reason         string          `json:"reason,omitempty"`
	ReleaseVersion uint64          `json:"release_version,omitempty"`
	Timeline       []timeline.Step `json:"timeline,omitempty"`
	// Network is the link and family PID 1 chose and why; only PID 1's
	// reports carry it.
	Network *NetworkChoice `json:"network,omitempty"`
	// Token is BootResponse.Token of the node's last boot.
	Token string `json:"token"`
	// TPM is the quote over BootResponse.QuoteNonce with the whole
	// measurement log and the firmware's event log; PID 1 sends it once,
	// with its last report before hand-off.
	TPM *Evidence `json:"tpm,omitempty"`
	// Measured is the measurement log of a node without a TPM: what it
	// would have measured, for the record; it proves nothing.
	Measured []measure.Event `json:"measured,omitempty"`
	// Services is each service's state as Core-0 sees it (protocol 5:
	// Core-0 sends it only to a registry whose boot answer said 5 or up).
	Services []ServiceState `json:"services,omitempty"`
	// FellBack is set by PID 1 when it booted the fallback release
	// (protocol 6).
	FellBack *FellBack `json:"fell_back,omitempty"`
}

// ServiceState is one service of the node's release as Core-0 reports it.
type ServiceState struct {
	Name     string    `json:"name"`
	State    string    `json:"state"` // one of ServiceStates
	Reason   string    `json:"reason,omitempty"`
	Restarts int       `json:"restarts"`
	Optional bool      `json:"optional,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	// Output is the service's last lines, sent with a failure so an
	// operator sees why it died without a console.
	Output []string `json:"output,omitempty"`
}

// ServiceStates are the states a service can be in (docs/services.md).
var ServiceStates = []string{"waiting", "starting", "ready", "failed", "crash-looping", "stopped"}

func (s *ServiceState) validate() error {
	if err := release.CheckServiceName(s.Name); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if !slices.Contains(ServiceStates, s.State) {
		return fmt.Errorf("status: service %s: state %q: want one of %s", s.Name, console.Sanitize(s.State, 40), strings.Join(ServiceStates, ", "))
	}
	switch {
	case len(s.Reason) > MaxReasonLen:
		return fmt.Errorf("status: service %s: reason is %d bytes, limit %d", s.Name, len(s.Reason), MaxReasonLen)
	case s.Restarts < 0:
		return fmt.Errorf("status: service %s: negative restarts", s.Name)
	case len(s.Output) > release.MaxServiceOutput:
		return fmt.Errorf("status: service %s: %d output lines, limit %d", s.Name, len(s.Output), release.MaxServiceOutput)
	}
	for i, l := range s.Output {
		if len(l) > release.MaxServiceLine {
			return fmt.Errorf("status: service %s: output line %d is %d bytes, limit %d", s.Name, i, len(l), release.MaxServiceLine)
		}
	}
	return nil
}

// TokenSize is the number of random bytes in a boot token; on the wire it
// is twice as many lower-case hex digits.
const TokenSize = 32

// CheckToken reports whether t has the shape of a boot token: 64
// lower-case hex digits. It says nothing of whether a registry issued it.
func CheckToken(t string) error { return checkHex("boot token", t, TokenSize) }

// checkHex reports whether s is n bytes as lower-case hex digits.
func checkHex(what, s string, n int) error {
	if s == "" {
		return fmt.Errorf("%s missing", what)
	}
	if len(s) != 2*n {
		return fmt.Errorf("%s is %d characters, want %d hex digits", what, len(s), 2*n)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%s: character %d is not a lower-case hex digit", what, i)
		}
	}
	return nil
}

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	Error string `json:"error"`
}

// Cache is a farm's chunk cache setting, as zeroboot.cache and
// zeroboot.cache.wipe would give it.
type Cache struct {
	Device string `json:"device"`
	Wipe   bool   `json:"wipe,omitempty"`
}

// Check applies the command line's device grammar, on both sides.
func (c *Cache) Check() error {
	if c == nil {
		return nil
	}
	return cmdline.CheckCacheDevice(c.Device)
}

// NetworkChoice is which link and family first reached the registry at
// boot, why, and what the node's other links and families had come to.
type NetworkChoice struct {
	Link   string   `json:"link"`
	Family string   `json:"family"` // IPv4 or IPv6
	Source string   `json:"source"` // dhcp4, slaac, dhcp6, slaac+dhcp6, static
	Addr   string   `json:"addr"`
	Router string   `json:"router,omitempty"`
	Why    string   `json:"why"`
	Others []string `json:"others,omitempty"`
}

// Limits of a NetworkChoice: a node has a few links, each with two
// families.
const (
	MaxNetworkOthers = 32
	MaxNetworkText   = 512
)

func (c *NetworkChoice) validate() error {
	for _, f := range []string{c.Link, c.Family, c.Source, c.Addr, c.Router, c.Why} {
		if len(f) > MaxNetworkText {
			return fmt.Errorf("status: network: a field is %d bytes, limit %d", len(f), MaxNetworkText)
		}
	}
	if len(c.Others) > MaxNetworkOthers {
		return fmt.Errorf("status: network: %d other sources, limit %d", len(c.Others), MaxNetworkOthers)
	}
	for _, o := range c.Others {
		if len(o) > MaxNetworkText {
			return fmt.Errorf("status: network: an other source's state is %d bytes, limit %d", len(o), MaxNetworkText)
		}
	}
	return nil
}

// Limits on a status report, so that a node cannot grow its record without
// bound.
const (
	MaxReasonLen     = 4096
	MaxTimelineSteps = 256
)

// Validate reports what is wrong with a status report.
func (r *StatusReport) Validate() error {
	switch {
	case r.NodeID == "":
		return errors.New("status: node_id missing")
	case r.Source != SourcePID1 && r.Source != SourceCore0:
		return fmt.Errorf("status: source %q: want %q or %q", r.Source, SourcePID1, SourceCore0)
	case r.State != StateBooting && r.State != StateFailed && r.State != StateReady:
		return fmt.Errorf("status: state %q: want %q, %q or %q", r.State, StateBooting, StateFailed, StateReady)
	case r.State == StateFailed && r.Reason == "":
		return errors.New("status: state failed needs a reason")
	case len(r.Reason) > MaxReasonLen:
		return fmt.Errorf("status: reason is %d bytes, limit %d", len(r.Reason), MaxReasonLen)
	case len(r.Timeline) > MaxTimelineSteps:
		return fmt.Errorf("status: %d timeline steps, limit %d", len(r.Timeline), MaxTimelineSteps)
	}
	if err := CheckToken(r.Token); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if r.Network != nil {
		if err := r.Network.validate(); err != nil {
			return err
		}
	}
	if r.TPM != nil {
		if err := r.TPM.Validate(); err != nil {
			return fmt.Errorf("status: %w", err)
		}
	}
	if len(r.Services) > release.MaxServices {
		return fmt.Errorf("status: %d services, limit %d", len(r.Services), release.MaxServices)
	}
	if fb := r.FellBack; fb != nil {
		switch {
		case r.Source != SourcePID1:
			return errors.New("status: fell_back from Core-0: only PID 1 falls back")
		case fb.From == 0 || fb.From == r.ReleaseVersion:
			return fmt.Errorf("status: fell_back from version %d to %d: want another, earlier release", fb.From, r.ReleaseVersion)
		case fb.Reason == "" || len(fb.Reason) > MaxReasonLen:
			return fmt.Errorf("status: fell_back reason of %d bytes: want 1 to %d", len(fb.Reason), MaxReasonLen)
		}
	}
	for i := range r.Services {
		if err := r.Services[i].validate(); err != nil {
			return err
		}
	}
	if len(r.Measured) > measure.MaxEvents {
		return fmt.Errorf("status: %d measured events, limit %d", len(r.Measured), measure.MaxEvents)
	}
	for i, ev := range r.Measured {
		if err := ev.Check(); err != nil {
			return fmt.Errorf("status: measured event %d: %w", i, err)
		}
	}
	for i, st := range r.Timeline {
		if st.Name == "" || len(st.Name) > 64 || len(st.Error) > MaxReasonLen {
			return fmt.Errorf("status: timeline step %d: name must be 1-64 bytes and error at most %d", i, MaxReasonLen)
		}
	}
	return nil
}
