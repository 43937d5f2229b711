// Package db is the registry's embedded database (bbolt): farms, releases
// per channel and version, and nodes. Every change is one transaction, so
// two publishes at once cannot both claim a version.
package db

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

var (
	bFarms    = []byte("farms")
	bReleases = []byte("releases")  // channel \x00 version(8 bytes BE) -> ReleaseInfo JSON
	bHigh     = []byte("highwater") // channel -> highest version ever published (8 bytes BE)
	bNodes    = []byte("nodes")
	bTokens   = []byte("tokens")  // node ID -> SHA-256 of its last KeepTokens boot tokens, newest first
	bMeta     = []byte("meta")    // "nodes" -> number of node records (8 bytes BE); see also kStates
	bAllowed  = []byte("allowed") // node ID or EK fingerprint -> 1, for farms that enroll listed nodes
	bSecrets  = []byte("secrets") // name -> SecretSize random bytes (Secret); made at first use
	kNodes    = []byte("nodes")
	// kStates marks that the meta bucket counts nodes by state, under
	// "state\x00<state>" (8 bytes BE): kept in the transaction that
	// changes a node's state, so metrics never decode a node record.
	kStates     = []byte("states")
	statePrefix = []byte("state\x00")
)

// KeepTokens is how many boot tokens per node stay valid: the latest and a
// few before it, so that a report sent just before a reboot (or by a
// Core-0 still running when PID 1 booted again) is not refused.
const KeepTokens = 4

// Errors callers map to HTTP status codes.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrVersion  = errors.New("version does not grow")
	ErrToken    = errors.New("boot token does not match")
	ErrFull     = errors.New("node limit reached")
	ErrInUse    = errors.New("in use")
	ErrFallback = errors.New("fallback from a release the node was not given")
	ErrDenied   = errors.New("denied by the operator")
)

// DB is safe for concurrent use. The writes of a boot storm (a boot record
// and two status reports per node) go through bbolt's Batch: concurrent
// writers share one transaction and one fsync, where one each made bbolt's
// single writer the bound (bench: BenchmarkBootStorm). A batched function
// may run twice, so each one only reads and writes inside its transaction.
type DB struct {
	b       *bolt.DB
	tickets tickets // in memory: see tickets.go
}

// countNodes writes the node counter of a database made before it had one.
func countNodes(tx *bolt.Tx) error {
	m := tx.Bucket(bMeta)
	if m.Get(kNodes) != nil {
		return nil
	}
	return m.Put(kNodes, binary.BigEndian.AppendUint64(nil, uint64(tx.Bucket(bNodes).Stats().KeyN)))
}

// countStates writes the per-state node counters of a database made
// before it had them: the one time node records are scanned for them.
func countStates(tx *bolt.Tx) error {
	m := tx.Bucket(bMeta)
	if m.Get(kStates) != nil {
		return nil
	}
	err := tx.Bucket(bNodes).ForEach(func(k, v []byte) error {
		var n struct{ State string }
		if err := json.Unmarshal(v, &n); err != nil {
			return fmt.Errorf("node %q: %w", k, err)
		}
		return addState(m, n.State, 1)
	})
	if err != nil {
		return fmt.Errorf("count nodes by state: %w", err)
	}
	return m.Put(kStates, []byte{1})
}

func stateKey(state string) []byte { return append(slices.Clip(statePrefix), state...) }

// addState adds delta (+1 or -1) to the count of nodes in state.
func addState(m *bolt.Bucket, state string, delta int64) error {
	k := stateKey(state)
	var n uint64
	if v := m.Get(k); len(v) == 8 {
		n = binary.BigEndian.Uint64(v)
	}
	if delta < 0 && n == 0 {
		return nil // never below zero, whatever an older version left
	}
	n = uint64(int64(n) + delta)
	if n == 0 {
		return m.Delete(k)
	}
	return m.Put(k, binary.BigEndian.AppendUint64(nil, n))
}

// moveState counts a node changing state in the transaction that changes
// it; known is false for a node that had no record before.
func moveState(tx *bolt.Tx, from, to string, known bool) error {
	m := tx.Bucket(bMeta)
	if known {
		if err := addState(m, from, -1); err != nil {
			return err
		}
	}
	return addState(m, to, 1)
}

// NodeStates counts nodes by state, from the counters RecordBoot and
// RecordStatus keep: no node record is read, however many there are.
func (d *DB) NodeStates() (map[string]int, error) {
	out := map[string]int{}
	err := d.b.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bMeta).Cursor()
		for k, v := c.Seek(statePrefix); k != nil && bytes.HasPrefix(k, statePrefix); k, v = c.Next() {
			if len(v) != 8 {
				return fmt.Errorf("node count %q: %d bytes, want 8", k, len(v))
			}
			out[string(k[len(statePrefix):])] = int(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return out, err
}

// Close closes the database.
func (d *DB) Close() error { return d.b.Close() }

// CreateFarm adds a farm; an existing name is ErrExists.
func (d *DB) CreateFarm(f records.Farm) error {
	return d.b.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bFarms)
		if b.Get([]byte(f.Name)) != nil {
			return fmt.Errorf("farm %s: %w", f.Name, ErrExists)
		}
		return put(b, []byte(f.Name), f)
	})
}

// UpdateFarm replaces an existing farm, keeping its creation time.
func (d *DB) UpdateFarm(f records.Farm) (records.Farm, error) {
	err := d.b.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bFarms)
		var old records.Farm
		if err := get(b, []byte(f.Name), &old, "farm "+f.Name); err != nil {
			return err
		}
		f.Created = old.Created
		return put(b, []byte(f.Name), f)
	})
	return f, err
}

// Farm returns one farm or ErrNotFound.
func (d *DB) Farm(name string) (records.Farm, error) {
	var f records.Farm
	err := d.b.View(func(tx *bolt.Tx) error {
		return get(tx.Bucket(bFarms), []byte(name), &f, "farm "+name)
	})
	return f, err
}

// Farms lists all farms by name.
func (d *DB) Farms() ([]records.Farm, error) {
	return list[records.Farm](d, bFarms, nil)
}

func releaseKey(channel string, version uint64) []byte {
	k := append([]byte(channel), 0)
	return binary.BigEndian.AppendUint64(k, version)
}

// AddRelease stores a release. Its version must be higher than every
// version ever published on its channel, else ErrVersion: a registry that
// re-issued an old version number could hand nodes a different release
// under a number they already accepted.
func (d *DB) AddRelease(r records.ReleaseInfo) error {
	if r.Channel == "" || bytes.IndexByte([]byte(r.Channel), 0) >= 0 {
		return fmt.Errorf("release: invalid channel %q", r.Channel)
	}
	return d.b.Update(func(tx *bolt.Tx) error {
		h := tx.Bucket(bHigh)
		if v := h.Get([]byte(r.Channel)); v != nil {
			if high := binary.BigEndian.Uint64(v); r.Version <= high {
				return VersionError(r, high)
			}
		}
		if err := h.Put([]byte(r.Channel), binary.BigEndian.AppendUint64(nil, r.Version)); err != nil {
			return err
		}
		return put(tx.Bucket(bReleases), releaseKey(r.Channel, r.Version), r)
	})
}

// LatestRelease returns the highest version on channel, or ErrNotFound.
func (d *DB) LatestRelease(channel string) (records.ReleaseInfo, error) {
	var r records.ReleaseInfo
	err := d.b.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bReleases).Cursor()
		prefix := append([]byte(channel), 0)
		// Seek past the last possible key of the channel, then step back.
		last := releaseKey(channel, ^uint64(0))
		k, v := c.Seek(last)
		switch {
		case k == nil:
			k, v = c.Last()
		case !bytes.Equal(k, last):
			k, v = c.Prev()
		}
		if k == nil || !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+8 {
			return fmt.Errorf("no release on channel %s: %w", channel, ErrNotFound)
		}
		return json.Unmarshal(v, &r)
	})
	return r, err
}

// Releases lists releases, optionally of one channel, by channel and version.
func (d *DB) Releases(channel string) ([]records.ReleaseInfo, error) {
	var prefix []byte
	if channel != "" {
		prefix = append([]byte(channel), 0)
	}
	return list[records.ReleaseInfo](d, bReleases, prefix)
}

// Boot is one boot answer to record.
type Boot struct {
	Request registry.BootRequest
	Served  uint64 // release version in the answer
	Token   string // boot token in the answer; only its SHA-256 is stored
	// MaxNodes refuses a node ID not yet known once the database holds
	// this many nodes (ErrFull); 0 means no limit.
	MaxNodes int
	// Identity is what the registry verified of the node this boot.
	Identity records.Identity
}

// RecordBoot notes that a node asked to boot and what it was answered. Its
// state becomes booting and b.Token joins its valid tokens, pushing out
// the oldest beyond KeepTokens.
func (d *DB) RecordBoot(b Boot, now time.Time) error {
	req := b.Request
	return d.b.Batch(func(tx *bolt.Tx) error {
		n, err := nodeFor(tx, req, b.MaxNodes, registry.StateBooting, now)
		if err != nil {
			return err
		}
		if err := ApplyBoot(&n, b, now); err != nil {
			return err
		}
		if err := put(tx.Bucket(bNodes), []byte(n.ID), n); err != nil {
			return err
		}
		return pushToken(tx.Bucket(bTokens), req.NodeID, b.Token)
	})
}

// RecordPending keeps a node that an approval farm holds: listed as
// pending, with the identity it proved, and no boot token.
func (d *DB) RecordPending(req registry.BootRequest, ident records.Identity, maxNodes int, now time.Time) error {
	return d.b.Batch(func(tx *bolt.Tx) error {
		n, err := nodeFor(tx, req, maxNodes, registry.StatePending, now)
		if err != nil {
			return err
		}
		if err := ApplyPending(&n, ident); err != nil {
			return err
		}
		return put(tx.Bucket(bNodes), []byte(n.ID), n)
	})
}

// nodeFor loads (or counts in) the request's node, moves its state count
// to state and refreshes what every request says.
func nodeFor(tx *bolt.Tx, req registry.BootRequest, maxNodes int, state string, now time.Time) (records.Node, error) {
	n := records.Node{ID: req.NodeID, FirstSeen: now}
	v := tx.Bucket(bNodes).Get([]byte(req.NodeID))
	if v != nil {
		if err := json.Unmarshal(v, &n); err != nil {
			return n, fmt.Errorf("node %s: %w", req.NodeID, err)
		}
	} else if err := addNode(tx, req.NodeID, maxNodes); err != nil {
		return n, err
	}
	if err := moveState(tx, n.State, state, v != nil); err != nil {
		return n, err
	}
	Seen(&n, req, now)
	return n, nil
}

// Approve lets a held or denied node boot, and makes what it measures
// next its new baseline (after a deliberate change of boot media or
// command line).
func (d *DB) Approve(id string) (records.Node, error) {
	return d.changeNode(id, ApplyApprove)
}

// Deny refuses a node's boot requests and reports until Approve.
func (d *DB) Deny(id string) (records.Node, error) {
	return d.changeNode(id, ApplyDeny)
}

// changeNode applies an operator's change to a known node, keeping the
// state counts.
func (d *DB) changeNode(id string, change func(*records.Node)) (records.Node, error) {
	var n records.Node
	err := d.b.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bNodes)
		if err := get(b, []byte(id), &n, "node "+id); err != nil {
			return err
		}
		from := n.State
		change(&n)
		if err := moveState(tx, from, n.State, true); err != nil {
			return err
		}
		return put(b, []byte(id), n)
	})
	return n, err
}

// DeleteNode removes a node's record and boot tokens, and counts it out.
// A node that boots again enrolls as new, by its farm's policy.
func (d *DB) DeleteNode(id string) (records.Node, error) {
	var n records.Node
	err := d.b.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bNodes)
		if err := get(b, []byte(id), &n, "node "+id); err != nil {
			return err
		}
		if err := b.Delete([]byte(id)); err != nil {
			return err
		}
		if err := tx.Bucket(bTokens).Delete([]byte(id)); err != nil {
			return err
		}
		m := tx.Bucket(bMeta)
		if v := m.Get(kNodes); len(v) == 8 && binary.BigEndian.Uint64(v) > 0 {
			if err := m.Put(kNodes, binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(v)-1)); err != nil {
				return err
			}
		}
		return addState(m, n.State, -1)
	})
	return n, err
}

// DeleteFarm removes a farm. While nodes are assigned to it, it is refused
// (ErrInUse, naming how many) unless force: their records stay, and they
// are refused boots until a farm of that name exists again. It returns
// how many nodes were assigned.
func (d *DB) DeleteFarm(name string, force bool) (int, error) {
	n := 0
	err := d.b.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bFarms)
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("farm %s: %w", name, ErrNotFound)
		}
		err := tx.Bucket(bNodes).ForEach(func(_, v []byte) error {
			var node struct {
				Farm string `json:"farm"`
			}
			if err := json.Unmarshal(v, &node); err != nil {
				return err
			}
			if node.Farm == name {
				n++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("farm %s: count its nodes: %w", name, err)
		}
		if n > 0 && !force {
			return fmt.Errorf("farm %s has %d nodes: %w (delete them, or force)", name, n, ErrInUse)
		}
		return b.Delete([]byte(name))
	})
	return n, err
}

// Allow lists a node ID or an EK fingerprint ("sha256:...") for farms that
// take listed nodes only.
func (d *DB) Allow(key string) error {
	return d.b.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bAllowed).Put([]byte(key), []byte{1})
	})
}

// Listed reports whether the node ID or EK fingerprint was allowed.
func (d *DB) Listed(id, ekFingerprint string) (bool, error) {
	var ok bool
	err := d.b.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bAllowed)
		ok = b.Get([]byte(id)) != nil || (ekFingerprint != "" && b.Get([]byte(ekFingerprint)) != nil)
		return nil
	})
	return ok, err
}

// addNode counts a new node, refusing it when max are already known.
func addNode(tx *bolt.Tx, id string, max int) error {
	m := tx.Bucket(bMeta)
	var count uint64
	if v := m.Get(kNodes); len(v) == 8 {
		count = binary.BigEndian.Uint64(v)
	}
	if max > 0 && count >= uint64(max) {
		return FullError(id, count)
	}
	return m.Put(kNodes, binary.BigEndian.AppendUint64(nil, count+1))
}

// pushToken makes token the node's newest valid token.
func pushToken(b *bolt.Bucket, id, token string) error {
	v, err := PushToken(b.Get([]byte(id)), id, token)
	if err != nil {
		return err
	}
	return b.Put([]byte(id), v)
}

// RecordStatus stores a node's report. A report from an unknown node is
// ErrNotFound (nodes must boot through the registry first); one whose
// token is not among the node's last KeepTokens is ErrToken.
func (d *DB) RecordStatus(rep registry.StatusReport, att *records.Attestation, now time.Time) error {
	return d.b.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bNodes)
		var n records.Node
		if err := get(b, []byte(rep.NodeID), &n, "node "+rep.NodeID); err != nil {
			return err
		}
		if !TokenMatches(tx.Bucket(bTokens).Get([]byte(rep.NodeID)), rep.Token) {
			return fmt.Errorf("status for node %s: %w", rep.NodeID, ErrToken)
		}
		if err := moveState(tx, n.State, rep.State, true); err != nil {
			return err
		}
		if err := ApplyStatus(&n, rep, att, now); err != nil {
			return err
		}
		return put(b, []byte(n.ID), n)
	})
}

// NodeCount is the number of node records.
func (d *DB) NodeCount() (int, error) {
	var n uint64
	err := d.b.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bMeta).Get(kNodes); len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return int(n), err
}

// Node returns one node or ErrNotFound.
func (d *DB) Node(id string) (records.Node, error) {
	var n records.Node
	err := d.b.View(func(tx *bolt.Tx) error {
		return get(tx.Bucket(bNodes), []byte(id), &n, "node "+id)
	})
	return n, err
}

// Nodes lists all nodes by ID.
func (d *DB) Nodes() ([]records.Node, error) {
	return list[records.Node](d, bNodes, nil)
}

func put(b *bolt.Bucket, k []byte, v any) error {
	j, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", k, err)
	}
	return b.Put(k, j)
}

func get(b *bolt.Bucket, k []byte, v any, what string) error {
	j := b.Get(k)
	if j == nil {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err := json.Unmarshal(j, v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func list[T any](d *DB, bucket, prefix []byte) ([]T, error) {
	var out []T
	err := d.b.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var t T
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("decode %s %q: %w", bucket, k, err)
			}
			out = append(out, t)
		}
		return nil
	})
	return slices.Clip(out), err
}
