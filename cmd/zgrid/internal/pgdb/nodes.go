package pgdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// lockedNode is a node row read FOR UPDATE: no other transaction changes
// it (or its tokens) until this one ends. known is false for a node with
// no row yet.
type lockedNode struct {
	n      registry.Node
	tokens []byte
	known  bool
}

func lockNode(ctx context.Context, tx pgx.Tx, id string) (lockedNode, error) {
	var doc []byte
	l := lockedNode{known: true}
	err := tx.QueryRow(ctx, "SELECT doc, tokens FROM zgrid_nodes WHERE id = $1 FOR UPDATE", id).Scan(&doc, &l.tokens)
	if errors.Is(err, pgx.ErrNoRows) {
		return lockedNode{}, nil
	}
	if err != nil {
		return l, fmt.Errorf("node %s: %w", id, err)
	}
	if err := json.Unmarshal(doc, &l.n); err != nil {
		return l, fmt.Errorf("node %s: %w", id, err)
	}
	return l, nil
}

// save writes a locked node back, or inserts a new one counted against
// maxNodes. The count is raised last, just before the commit, because its
// one row is what concurrent new nodes queue on: a new node holds it for
// the shortest time, while known nodes never touch it.
func (l *lockedNode) save(ctx context.Context, tx pgx.Tx, maxNodes int) error {
	doc, err := json.Marshal(l.n)
	if err != nil {
		return fmt.Errorf("node %s: %w", l.n.ID, err)
	}
	if l.tokens == nil {
		l.tokens = []byte{}
	}
	if l.known {
		_, err := tx.Exec(ctx, "UPDATE zgrid_nodes SET farm = $2, state = $3, tokens = $4, doc = $5 WHERE id = $1", l.n.ID, l.n.Farm, l.n.State, l.tokens, string(doc))
		if err != nil {
			return fmt.Errorf("node %s: %w", l.n.ID, err)
		}
		return nil
	}
	t, err := tx.Exec(ctx, "INSERT INTO zgrid_nodes (id, farm, state, tokens, doc) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING", l.n.ID, l.n.Farm, l.n.State, l.tokens, string(doc))
	if err != nil {
		return fmt.Errorf("node %s: %w", l.n.ID, err)
	}
	if t.RowsAffected() == 0 {
		// Another replica recorded the node first: start over, as a
		// known node now.
		return errRetry
	}
	var count int64
	err = tx.QueryRow(ctx, "UPDATE zgrid_meta SET nodes = nodes + 1 WHERE $1 <= 0 OR nodes < $1 RETURNING nodes", maxNodes).Scan(&count)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := tx.QueryRow(ctx, "SELECT nodes FROM zgrid_meta").Scan(&count); err != nil {
			return fmt.Errorf("node %s: count nodes: %w", l.n.ID, err)
		}
		return db.FullError(l.n.ID, uint64(count))
	}
	if err != nil {
		return fmt.Errorf("node %s: count nodes: %w", l.n.ID, err)
	}
	return nil
}

// nodeFor locks the request's node, or starts a new one, and refreshes
// what every request says.
func nodeFor(ctx context.Context, tx pgx.Tx, req registry.BootRequest, now time.Time) (lockedNode, error) {
	l, err := lockNode(ctx, tx, req.NodeID)
	if err != nil {
		return l, err
	}
	if !l.known {
		l.n = registry.Node{ID: req.NodeID, FirstSeen: now}
	}
	db.Seen(&l.n, req, now)
	return l, nil
}

// RecordBoot notes that a node asked to boot and what it was answered,
// as db.DB's does.
func (d *DB) RecordBoot(b db.Boot, now time.Time) error {
	return d.tx(func(ctx context.Context, tx pgx.Tx) error {
		l, err := nodeFor(ctx, tx, b.Request, now)
		if err != nil {
			return err
		}
		db.ApplyBoot(&l.n, b, now)
		if l.tokens, err = db.PushToken(l.tokens, b.Request.NodeID, b.Token); err != nil {
			return err
		}
		return l.save(ctx, tx, b.MaxNodes)
	})
}

// RecordPending keeps a node that an approval farm holds.
func (d *DB) RecordPending(req registry.BootRequest, ident registry.Identity, maxNodes int, now time.Time) error {
	return d.tx(func(ctx context.Context, tx pgx.Tx) error {
		l, err := nodeFor(ctx, tx, req, now)
		if err != nil {
			return err
		}
		db.ApplyPending(&l.n, ident)
		return l.save(ctx, tx, maxNodes)
	})
}

// RecordStatus stores a node's report: an unknown node is ErrNotFound, a
// token not among its last KeepTokens ErrToken.
func (d *DB) RecordStatus(rep registry.StatusReport, att *registry.Attestation, now time.Time) error {
	return d.tx(func(ctx context.Context, tx pgx.Tx) error {
		l, err := lockNode(ctx, tx, rep.NodeID)
		if err != nil {
			return err
		}
		if !l.known {
			return fmt.Errorf("node %s: %w", rep.NodeID, db.ErrNotFound)
		}
		if !db.TokenMatches(l.tokens, rep.Token) {
			return fmt.Errorf("status for node %s: %w", rep.NodeID, db.ErrToken)
		}
		if err := db.ApplyStatus(&l.n, rep, att, now); err != nil {
			return err
		}
		return l.save(ctx, tx, 0)
	})
}

// Approve lets a held node boot and clears its baseline.
func (d *DB) Approve(id string) (registry.Node, error) {
	var n registry.Node
	err := d.tx(func(ctx context.Context, tx pgx.Tx) error {
		l, err := lockNode(ctx, tx, id)
		if err != nil {
			return err
		}
		if !l.known {
			return fmt.Errorf("node %s: %w", id, db.ErrNotFound)
		}
		l.n.Identity.Approved = true
		l.n.Identity.Baseline = nil
		n = l.n
		return l.save(ctx, tx, 0)
	})
	return n, err
}

// DeleteNode removes a node's record and boot tokens, and counts it out.
func (d *DB) DeleteNode(id string) (registry.Node, error) {
	var n registry.Node
	err := d.tx(func(ctx context.Context, tx pgx.Tx) error {
		if err := getDoc(ctx, tx, &n, "node "+id, "DELETE FROM zgrid_nodes WHERE id = $1 RETURNING doc", id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE zgrid_meta SET nodes = greatest(nodes - 1, 0)")
		return err
	})
	return n, err
}

// Node returns one node or ErrNotFound.
func (d *DB) Node(id string) (registry.Node, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	var n registry.Node
	err := getDoc(ctx, d.pool, &n, "node "+id, "SELECT doc FROM zgrid_nodes WHERE id = $1", id)
	return n, err
}

// Nodes lists all nodes by ID.
func (d *DB) Nodes() ([]registry.Node, error) {
	return list[registry.Node](d, "nodes", "SELECT doc FROM zgrid_nodes ORDER BY id")
}

// NodeCount is the number of node records, as the node limit counts them.
func (d *DB) NodeCount() (int, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	var n int64
	if err := d.pool.QueryRow(ctx, "SELECT nodes FROM zgrid_meta").Scan(&n); err != nil {
		return 0, fmt.Errorf("count nodes: %w", err)
	}
	return int(n), nil
}

// NodeStates counts nodes by state. bbolt keeps counters for this; here
// they would be rows every report of every replica queues on, so the
// index on state is counted instead (a metrics scrape, not a boot, pays).
func (d *DB) NodeStates() (map[string]int, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	rows, err := d.pool.Query(ctx, "SELECT state, count(*) FROM zgrid_nodes GROUP BY state")
	if err != nil {
		return nil, fmt.Errorf("count nodes by state: %w", err)
	}
	out := map[string]int{}
	var state string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error {
		out[state] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count nodes by state: %w", err)
	}
	return out, nil
}
