package db

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// Records is what the registry keeps: farms, releases per channel and
// version, nodes with their boot tokens, and the allow list. The embedded
// bbolt database (DB) is one; PostgreSQL (package pgdb), shared by several
// zgrid serve replicas, is the other. Both keep the same invariants under
// concurrent callers: a version grows per channel, a report needs one of
// the node's last KeepTokens tokens, a new node is refused past MaxNodes,
// a ticket is taken once. They also hold what replicas must share beyond
// records: short-lived tickets and secrets (tickets.go).
// The conformance suite in package dbtest checks both the same way.
type Records interface {
	CreateFarm(f records.Farm) error
	UpdateFarm(f records.Farm) (records.Farm, error)
	Farm(name string) (records.Farm, error)
	Farms() ([]records.Farm, error)
	DeleteFarm(name string, force bool) (int, error)

	AddRelease(r records.ReleaseInfo) error
	LatestRelease(channel string) (records.ReleaseInfo, error)
	Releases(channel string) ([]records.ReleaseInfo, error)

	RecordBoot(b Boot, now time.Time) error
	RecordPending(req registry.BootRequest, ident records.Identity, maxNodes int, now time.Time) error
	RecordStatus(rep registry.StatusReport, att *records.Attestation, now time.Time) error
	Approve(id string) (records.Node, error)
	Deny(id string) (records.Node, error)
	DeleteNode(id string) (records.Node, error)
	Node(id string) (records.Node, error)
	Nodes() ([]records.Node, error)
	NodeCount() (int, error)
	NodeStates() (map[string]int, error)

	Allow(key string) error
	Listed(id, ekFingerprint string) (bool, error)

	// A nonce or session issued by one replica is redeemed at another,
	// and the activation key is the same for all.
	PutTicket(t Ticket, limit int, now time.Time) error
	TakeTicket(kind, id string, now time.Time) ([]byte, error)
	ReadTicket(kind, id string, now time.Time) ([]byte, error)
	DeleteTicket(kind, id string) error
	Secret(name string) ([]byte, error)

	Close() error
}

// Backuper is a Records that copies itself into one file (bbolt). Other
// backends have their own tools (pg_dump), so callers type-assert.
type Backuper interface {
	Backup(start func(size int64) (io.Writer, error)) (int64, error)
}

var (
	_ Records  = (*DB)(nil)
	_ Backuper = (*DB)(nil)
)

// ApplyBoot changes n as a boot answered with b does: state booting, the
// served release, and the identity verified this boot. Both backends call
// it, so a node record means the same whichever holds it. A denied node is
// refused here too, in the write: a boot admitted just before the denial
// must not write it away.
func ApplyBoot(n *records.Node, b Boot, now time.Time) error {
	if err := notDenied(n); err != nil {
		return err
	}
	n.PushBoot()
	n.ReleaseServed, n.ReleaseReported, n.BootAt = b.Served, 0, now
	n.State, n.Source, n.Reason, n.Timeline, n.Services = registry.StateBooting, "", "", nil, nil
	att := n.Identity.Attestation
	n.Identity = b.Identity
	if b.Identity.Kind == registry.KindTPM {
		pend := &records.Attestation{State: records.AttestPending, Time: now, Detail: "boot quote verified; waiting for the quote before hand-off"}
		if att != nil {
			// The counters seen so far, which the next quote must
			// not go below.
			pend.ResetCount, pend.RestartCount = att.ResetCount, att.RestartCount
		}
		n.Identity.Attestation = pend
	}
	return nil
}

// ApplyPending changes n as an approval farm holding it does.
func ApplyPending(n *records.Node, ident records.Identity) error {
	if err := notDenied(n); err != nil {
		return err
	}
	n.State, n.Source, n.Reason = registry.StatePending, "", "awaits zgrid node approve"
	n.Identity = ident
	return nil
}

// ApplyApprove lets n boot, lifts a denial, and clears its baseline so
// that its next attested boot sets a new one. A held or denied node shows
// as pending until it asks again.
func ApplyApprove(n *records.Node) {
	n.Identity.Approved, n.Identity.Denied, n.Identity.Baseline = true, false, nil
	if n.State == registry.StatePending || n.State == registry.StateDenied {
		n.State, n.Source, n.Reason = registry.StatePending, "", "approved: boots at its next request"
	}
}

// ApplyDeny refuses n's boot requests and reports from now on. Its
// record and tokens stay, so that the operator still sees it, and a
// report from its current boot is told why rather than that its token is
// wrong.
func ApplyDeny(n *records.Node) {
	n.Identity.Approved, n.Identity.Denied = false, true
	n.State, n.Source, n.Reason = registry.StateDenied, "", "by the operator; zgrid node approve lifts it"
}

func notDenied(n *records.Node) error {
	if n.Identity.Denied {
		return fmt.Errorf("node %s: %w (zgrid node approve %s lifts it)", n.ID, ErrDenied, n.ID)
	}
	return nil
}

// Seen refreshes what every boot request says about its node.
func Seen(n *records.Node, req registry.BootRequest, now time.Time) {
	n.LastSeen, n.Farm, n.Agent, n.Profile = now, req.Farm, req.Agent, req.Profile
}

// ApplyStatus changes n as its report says. The token was checked before.
func ApplyStatus(n *records.Node, rep registry.StatusReport, att *records.Attestation, now time.Time) error {
	if err := notDenied(n); err != nil {
		return err
	}
	n.LastSeen = now
	n.State, n.Source, n.Reason = rep.State, rep.Source, rep.Reason
	if rep.ReleaseVersion != 0 {
		n.ReleaseReported = rep.ReleaseVersion
		n.HighestRelease = max(n.HighestRelease, rep.ReleaseVersion)
	}
	if len(rep.Timeline) > 0 {
		n.Timeline = rep.Timeline
	}
	if rep.Network != nil {
		n.Network = rep.Network
	}
	if len(rep.Services) > 0 {
		n.Services = rep.Services
	}
	if fb := rep.FellBack; fb != nil {
		if fb.From != n.ReleaseServed {
			return fmt.Errorf("node %s fell back from version %d, served %d: %w", rep.NodeID, fb.From, n.ReleaseServed, ErrFallback)
		}
		n.Fallback = &records.FallbackRecord{From: fb.From, To: rep.ReleaseVersion, At: now, Reason: fb.Reason}
	}
	if att != nil {
		n.Identity.Attestation = att
		if att.State == records.AttestOK && len(n.Identity.Baseline) == 0 {
			n.Identity.Baseline = records.BaselineOf(att.Events)
		}
	}
	return nil
}

// PushToken returns the node's stored token hashes (newest first) with
// token's in front, the oldest beyond KeepTokens dropped.
func PushToken(old []byte, id, token string) ([]byte, error) {
	if token == "" {
		return nil, fmt.Errorf("node %s: boot without a token", id)
	}
	h := sha256.Sum256([]byte(token))
	keep := min(len(old)/sha256.Size, KeepTokens-1) * sha256.Size
	return append(h[:], old[:keep]...), nil
}

// TokenMatches compares token's hash with every stored one, in constant
// time and without stopping at a match, so timing tells nothing.
func TokenMatches(stored []byte, token string) bool {
	h := sha256.Sum256([]byte(token))
	match := 0
	for i := 0; i+sha256.Size <= len(stored); i += sha256.Size {
		match |= subtle.ConstantTimeCompare(h[:], stored[i:i+sha256.Size])
	}
	return match == 1
}

// FullError is the ErrFull of a new node refused at the limit.
func FullError(id string, count uint64) error {
	return fmt.Errorf("node %s is new and the registry holds %d nodes, its limit: %w", id, count, ErrFull)
}

// VersionError is the ErrVersion of a release not above its channel's high.
func VersionError(r records.ReleaseInfo, high uint64) error {
	return fmt.Errorf("release %s/%d: %w: channel %s is at version %d", r.Channel, r.Version, ErrVersion, r.Channel, high)
}
