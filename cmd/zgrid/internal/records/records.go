// Package records holds the registry's records (farms, nodes, releases,
// identities and attestations) as zgrid stores them and as its admin API
// sends them (docs/api.md, "Admin endpoints"). They are the server's and
// the admin CLI's concern alone: a node speaks pkg/registry's boot and
// status messages and never sees these.
package records

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/identity"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/strictjson"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

// FallbackRecord is what the registry keeps of a node's last fallback. A
// node that fell back from a version gets its fallback again instead of
// that version, until a newer one is published or the record is cleared.
type FallbackRecord struct {
	From   uint64    `json:"from"`
	To     uint64    `json:"to"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Farm groups nodes that follow one release channel, and says which
// nodes may join it.
type Farm struct {
	Name    string    `json:"name"`
	Channel string    `json:"channel"`
	Created time.Time `json:"created,omitzero"`
	// Enroll is how a node the registry has not seen joins: EnrollOpen
	// (empty: open), EnrollApproval or EnrollListed.
	Enroll string `json:"enroll,omitempty"`
	// RequireTPM refuses nodes without a TPM identity.
	RequireTPM bool `json:"require_tpm,omitempty"`
	// AllowEphemeral takes nodes that found no identity and made one up
	// for the boot (CI VMs without SMBIOS UUID); they are never TPM nodes.
	AllowEphemeral bool `json:"allow_ephemeral,omitempty"`
	// Cache, when set, is the chunk cache the farm's nodes use when their
	// command line names none (docs/chunkcache.md).
	Cache *registry.Cache `json:"cache,omitempty"`
	// Pin, when set, is the version of the farm's channel its nodes get
	// instead of the newest.
	Pin uint64 `json:"pin,omitempty"`
	// Rollout, 1 to 99, gives the channel's newest release to that share
	// of the farm's nodes (chosen by node ID, the same ones every boot)
	// and the release before it to the others; 0 gives it to all.
	Rollout int `json:"rollout,omitempty"`
	// ReadyDeadline, in seconds, is how long a node's release may take
	// from Core-0's start to ready before the node boots its last known
	// good release instead (protocol 6 nodes); 0 is no deadline.
	ReadyDeadline int `json:"ready_deadline,omitempty"`
}

// CheckRollout applies the farm's rollout rules: a share of 0 to 99, and
// not together with a pin.
func (f *Farm) CheckRollout() error {
	switch {
	case f.Rollout < 0 || f.Rollout > 99:
		return fmt.Errorf("rollout %d%%: want 1 to 99 (0, or 100, gives the newest release to every node)", f.Rollout)
	case f.Rollout != 0 && f.Pin != 0:
		return errors.New("a farm is pinned to a version or rolls the newest out, not both")
	}
	return nil
}

// InRollout says whether node is among the share percent of farm's nodes
// that get the newest release: a stable choice, so a node does not flip
// between releases from one boot to the next.
func InRollout(farm, node string, percent int) bool {
	h := sha256.Sum256([]byte(farm + "\x00" + node))
	return int(binary.BigEndian.Uint16(h[:2]))%100 < percent
}

// Allowed is the body of POST /v1/admin/allowed: a node ID or an EK
// fingerprint ("sha256:" + 64 hex digits) that farms enrolling listed
// nodes take.
type Allowed struct {
	Key string `json:"key"`
}

// Enrollment policies of a farm.
const (
	// EnrollOpen: the first boot enrolls the node.
	EnrollOpen = "open"
	// EnrollApproval: a new node waits, quarantined, until an admin runs
	// zgrid node approve.
	EnrollApproval = "approval"
	// EnrollListed: only nodes whose ID or EK fingerprint an admin listed
	// beforehand (zgrid node allow).
	EnrollListed = "listed"
)

// CheckEnroll reports whether p is an enrollment policy.
func CheckEnroll(p string) error {
	switch p {
	case "", EnrollOpen, EnrollApproval, EnrollListed:
		return nil
	}
	return fmt.Errorf("enroll policy %q: want %s, %s or %s", p, EnrollOpen, EnrollApproval, EnrollListed)
}

// Node is the registry's record of a node, as returned by the admin API.
type Node struct {
	ID              string           `json:"id"`
	Farm            string           `json:"farm"`
	Agent           string           `json:"agent,omitempty"`
	Profile         identity.Profile `json:"profile,omitzero"`
	FirstSeen       time.Time        `json:"first_seen"`
	LastSeen        time.Time        `json:"last_seen"`
	ReleaseServed   uint64           `json:"release_served,omitempty"`   // version in the last boot answer
	ReleaseReported uint64           `json:"release_reported,omitempty"` // version the node says it runs
	State           string           `json:"state"`
	Source          string           `json:"source,omitempty"` // who reported State
	Reason          string           `json:"reason,omitempty"`
	Timeline        []timeline.Step  `json:"timeline,omitempty"`
	// BootAt is when the registry answered the boot in progress.
	BootAt  time.Time               `json:"boot_at,omitzero"`
	Network *registry.NetworkChoice `json:"network,omitempty"`
	// Boots are the node's earlier boots, newest first, at most
	// KeepBoots: an operator looking at a failing node wants to see
	// whether, and how, it failed before. Lists leave them out.
	Boots []Boot `json:"boots,omitempty"`
	// HighestRelease is the highest release version the node ever
	// reported running; see docs/release.md on rollback floors.
	HighestRelease uint64   `json:"highest_release,omitempty"`
	Identity       Identity `json:"identity,omitzero"`
	// Services is what Core-0 last reported of each service in this boot.
	Services []registry.ServiceState `json:"services,omitempty"`
	// Fallback is the node's last fallback from a release that did not
	// reach ready, kept across boots.
	Fallback *FallbackRecord `json:"fallback,omitempty"`
}

// KeepBoots is how many earlier boots a node record keeps. With every
// report's limits (MaxTimelineSteps, MaxReasonLen) it bounds a record.
const KeepBoots = 8

// Boot is one earlier boot of a node: what it was served, how far it got
// (its last state and reason) and its timeline.
type Boot struct {
	At       time.Time       `json:"at,omitzero"` // zero for a boot before zgrid kept BootAt
	Release  uint64          `json:"release"`
	Reported uint64          `json:"reported,omitempty"`
	State    string          `json:"state"`
	Source   string          `json:"source,omitempty"`
	Reason   string          `json:"reason,omitempty"`
	Timeline []timeline.Step `json:"timeline,omitempty"`
}

// Reached is how far into PID 1 the boot's timeline reaches, in ms; 0
// without one.
func (b Boot) Reached() float64 {
	end := 0.0
	for _, s := range b.Timeline {
		end = max(end, s.EndMS, s.StartMS)
	}
	return end
}

// Bounds on what a kept boot's timeline holds of each step: a report's
// steps are bounded only by its body size, a history by these.
const (
	MaxKeptStepName  = 64
	MaxKeptStepError = 512
)

// PushBoot moves n's current boot into its history, the oldest beyond
// KeepBoots dropped. A node that was never answered a boot has none.
func (n *Node) PushBoot() {
	if n.ReleaseServed == 0 {
		return
	}
	steps := make([]timeline.Step, len(n.Timeline))
	for i, s := range n.Timeline {
		s.Name, s.Error = console.Clip(s.Name, MaxKeptStepName), console.Clip(s.Error, MaxKeptStepError)
		steps[i] = s
	}
	b := Boot{At: n.BootAt, Release: n.ReleaseServed, Reported: n.ReleaseReported, State: n.State, Source: n.Source, Reason: n.Reason, Timeline: steps}
	keep := min(len(n.Boots), KeepBoots-1)
	n.Boots = append([]Boot{b}, n.Boots[:keep]...)
}

// WithoutBoots is ns as lists show them: without their histories, which
// would make a fleet's list many times its size.
func WithoutBoots(ns []Node) []Node {
	for i := range ns {
		ns[i].Boots = nil
	}
	return ns
}

// Identity is what the registry knows of a node's identity and how far it
// trusts it.
type Identity struct {
	Kind   string `json:"kind"`             // KindTPM, KindDMI, KindEphemeral
	Source string `json:"source,omitempty"` // what the ID derives from
	// Approved is false while an approval farm holds the node.
	Approved bool `json:"approved"`
	// Denied is set by zgrid node deny and cleared by zgrid node approve:
	// the registry refuses the node's boot requests and reports.
	Denied   bool   `json:"denied,omitempty"`
	TPMError string `json:"tpm_error,omitempty"`
	// AKPublic is the enrolled identity key (TPMT_PUBLIC); Bound is set
	// once credential activation showed it lives in the TPM of EK.
	AKPublic      []byte `json:"ak_public,omitempty"`
	Bound         bool   `json:"bound,omitempty"`
	EKFingerprint string `json:"ek_fingerprint,omitempty"`
	EKKind        string `json:"ek_kind,omitempty"`
	// EKCert is the EK certificate's subject and issuer, and whether it
	// chained to a manufacturer CA the operator configured.
	EKCert         string `json:"ek_cert,omitempty"`
	EKCertVerified bool   `json:"ek_cert_verified,omitempty"`
	// Attestation is the verdict on the last boot's final quote.
	Attestation *Attestation `json:"attestation,omitempty"`
	// Baseline is the trust root and command line measured at the node's
	// first attested boot (or its last approval): later boots must
	// measure the same.
	Baseline []measure.Event `json:"baseline,omitempty"`
}

// Attestation states.
const (
	// AttestOK: the quote verified and the measurement log is exactly
	// what the registry served.
	AttestOK = "attested"
	// AttestMismatch: the quote verified but a measured event differs
	// from what the registry expected: an alert.
	AttestMismatch = "mismatch"
	// AttestFailed: the quote or a log did not verify.
	AttestFailed = "failed"
	// AttestPending: the boot quote verified; the final one has not come.
	AttestPending = "pending"
)

// Attestation is the registry's verdict on one boot's evidence.
type Attestation struct {
	State  string    `json:"state"`
	Detail string    `json:"detail,omitempty"`
	Time   time.Time `json:"time"`
	// What the quote covered: the PCR values, the zeroboot log, and the
	// firmware log summarised.
	PCRs           []registry.PCRValue `json:"pcrs,omitempty"`
	Events         []measure.Event     `json:"events,omitempty"`
	FirmwareEvents int                 `json:"firmware_events,omitempty"`
	FirmwareLog    string              `json:"firmware_log,omitempty"` // "matches PCRs 0-7", "absent", or why not
	ResetCount     uint32              `json:"reset_count,omitempty"`
	RestartCount   uint32              `json:"restart_count,omitempty"`
}

// Component is one flist of a release, as listed by the admin API.
type Component struct {
	Name  string        `json:"name"`
	Flist digest.Digest `json:"flist"`
	Mount string        `json:"mount"`
}

// ReleaseUpload is what an admin publishes (POST /v1/admin/releases) and
// what zgrid release create writes to a file for co-signing: a channel's
// targets metadata, signed by release keys, and the release document it
// names. A withdrawal has targets naming no document, and no Release; its
// Channel says which channel it withdraws.
type ReleaseUpload struct {
	Format  string `json:"format"`
	Channel string `json:"channel"`
	Targets []byte `json:"targets"`
	Release []byte `json:"release,omitempty"`
}

// UploadFormat is ReleaseUpload's format.
const UploadFormat = "zeroboot-upload/1"

// ReleaseInfo summarises a stored release for the admin API; the upload
// itself is in Envelope.
type ReleaseInfo struct {
	Channel    string      `json:"channel"`
	Version    uint64      `json:"version"`
	Expires    time.Time   `json:"expires"`
	Published  time.Time   `json:"published"`
	Withdrawn  bool        `json:"withdrawn,omitempty"`
	Components []Component `json:"components"`
	// NodeProtocol is the oldest node protocol that reads every
	// component (registry.NodeProtocolFor); 0 in releases published
	// before zgrid recorded it.
	NodeProtocol int             `json:"node_protocol,omitempty"`
	KeyIDs       []string        `json:"key_ids"`
	Envelope     json.RawMessage `json:"envelope,omitempty"`
}

// BaselineOf is the part of a measurement log that a registry cannot know
// in advance: the trust root and command line the node booted with. The
// first attested boot sets a node's baseline; approving it again resets it.
func BaselineOf(events []measure.Event) []measure.Event {
	var b []measure.Event
	for _, e := range events {
		if e.Type == measure.TypeTrustRoot || e.Type == measure.TypeCmdline {
			b = append(b, e)
		}
	}
	return b
}

// DecodeUpload reads a ReleaseUpload strictly. It checks the shape only;
// pkg/trust checks the signatures.
func DecodeUpload(b []byte) (*ReleaseUpload, error) {
	var up ReleaseUpload
	if err := strictjson.Decode(b, registry.MaxBodySize, &up); err != nil {
		return nil, fmt.Errorf("release upload: %w", err)
	}
	if up.Format != UploadFormat {
		return nil, fmt.Errorf("release upload: format %q, want %q", console.Sanitize(up.Format, 40), UploadFormat)
	}
	if err := release.CheckChannel(up.Channel); err != nil {
		return nil, err
	}
	return &up, nil
}
