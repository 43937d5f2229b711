package pgdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// lockedNode is a node row read FOR UPDATE: no other transaction changes
// it (or its tokens) until this one ends. known is false for a node with
// no row yet.
type lockedNode struct {
	n      records.Node
	tokens []byte
	known  bool
}

// errNotKnown is a change that needs the node to exist.
func errNotKnown(id string) error { return fmt.Errorf("node %s: %w", id, db.ErrNotFound) }

// nodeTx reads node id FOR UPDATE, lets change decide what it becomes, and
// writes that: one transaction in two round trips, the BEGIN sent with the
// read and the COMMIT with the write. A boot storm is three of these per
// node; one statement a round trip made it five each. change returns the
// node limit a new node is counted against (0: none), and may run more
// than once when a conflicting transaction forces a retry.
func (d *DB) nodeTx(id string, change func(l *lockedNode) (maxNodes int, err error)) error {
	ctx, cancel := d.ctx()
	defer cancel()
	var err error
	for range 10 {
		if err = d.nodeTxOnce(ctx, id, change); !retryable(err) {
			return err
		}
	}
	return fmt.Errorf("node %s: gave up after 10 conflicting attempts: %w", id, err)
}

func (d *DB) nodeTxOnce(ctx context.Context, id string, change func(l *lockedNode) (int, error)) error {
	c, err := d.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("node %s: %w", id, err)
	}
	defer c.Release()
	defer func() {
		// An error left the transaction open (or failed, its COMMIT
		// skipped): end it, so the connection goes back clean.
		// If even that fails, the pool closes a connection it gets back
		// in a transaction.
		if c.Conn().PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			c.Exec(rctx, "ROLLBACK")
			cancel()
		}
	}()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SELECT doc, tokens FROM zgrid_nodes WHERE id = $1 FOR UPDATE", id)
	br := c.SendBatch(ctx, b)
	l, err := readNode(br, id)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("node %s: %w", id, cerr)
	}
	if err != nil {
		return err
	}
	maxNodes, err := change(&l)
	if err != nil {
		return err
	}
	doc, err := json.Marshal(l.n)
	if err != nil {
		return fmt.Errorf("node %s: %w", id, err)
	}
	if l.tokens == nil {
		l.tokens = []byte{}
	}
	w := &pgx.Batch{}
	if l.known {
		w.Queue("UPDATE zgrid_nodes SET farm = $2, state = $3, tokens = $4, doc = $5 WHERE id = $1", id, l.n.Farm, l.n.State, l.tokens, string(doc))
	} else {
		// The count and the row in one statement: the row goes in only
		// if the count went up. The count's one row is what new nodes
		// queue on, so it is locked here, with the COMMIT right behind.
		// A node another transaction inserted meanwhile is a unique
		// violation, retried as a known node.
		w.Queue(`WITH counted AS (UPDATE zgrid_meta SET nodes = nodes + 1 WHERE $6 <= 0 OR nodes < $6 RETURNING nodes)
INSERT INTO zgrid_nodes (id, farm, state, tokens, doc) SELECT $1, $2, $3, $4, $5 FROM counted`, id, l.n.Farm, l.n.State, l.tokens, string(doc), maxNodes)
	}
	w.Queue("COMMIT")
	br = c.SendBatch(ctx, w)
	t, err := br.Exec()
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("node %s: %w", id, err)
	}
	if !l.known && t.RowsAffected() == 0 {
		var count int64
		if err := c.QueryRow(ctx, "SELECT nodes FROM zgrid_meta").Scan(&count); err != nil {
			return fmt.Errorf("node %s: count nodes: %w", id, err)
		}
		return db.FullError(id, uint64(count))
	}
	return nil
}

// readNode reads the results of BEGIN and the node's SELECT.
func readNode(br pgx.BatchResults, id string) (lockedNode, error) {
	if _, err := br.Exec(); err != nil {
		return lockedNode{}, fmt.Errorf("node %s: begin: %w", id, err)
	}
	var doc []byte
	l := lockedNode{known: true}
	err := br.QueryRow().Scan(&doc, &l.tokens)
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

// seen starts a new node, or refreshes a known one, as every boot
// request does.
func seen(l *lockedNode, req registry.BootRequest, now time.Time) {
	if !l.known {
		l.n, l.tokens = records.Node{ID: req.NodeID, FirstSeen: now}, nil
	}
	db.Seen(&l.n, req, now)
}

// RecordBoot notes that a node asked to boot and what it was answered,
// as db.DB's does.
func (d *DB) RecordBoot(b db.Boot, now time.Time) error {
	return d.nodeTx(b.Request.NodeID, func(l *lockedNode) (int, error) {
		seen(l, b.Request, now)
		if err := db.ApplyBoot(&l.n, b, now); err != nil {
			return 0, err
		}
		var err error
		l.tokens, err = db.PushToken(l.tokens, b.Request.NodeID, b.Token)
		return b.MaxNodes, err
	})
}

// RecordPending keeps a node that an approval farm holds.
func (d *DB) RecordPending(req registry.BootRequest, ident records.Identity, maxNodes int, now time.Time) error {
	return d.nodeTx(req.NodeID, func(l *lockedNode) (int, error) {
		seen(l, req, now)
		return maxNodes, db.ApplyPending(&l.n, ident)
	})
}

// RecordStatus stores a node's report: an unknown node is ErrNotFound, a
// token not among its last KeepTokens ErrToken.
func (d *DB) RecordStatus(rep registry.StatusReport, att *records.Attestation, now time.Time) error {
	return d.nodeTx(rep.NodeID, func(l *lockedNode) (int, error) {
		if !l.known {
			return 0, errNotKnown(rep.NodeID)
		}
		if !db.TokenMatches(l.tokens, rep.Token) {
			return 0, fmt.Errorf("status for node %s: %w", rep.NodeID, db.ErrToken)
		}
		return 0, db.ApplyStatus(&l.n, rep, att, now)
	})
}

// Approve lets a held or denied node boot and clears its baseline.
func (d *DB) Approve(id string) (records.Node, error) {
	return d.changeNode(id, db.ApplyApprove)
}

// Deny refuses a node's boot requests and reports until Approve.
func (d *DB) Deny(id string) (records.Node, error) {
	return d.changeNode(id, db.ApplyDeny)
}

// changeNode applies an operator's change to a known node.
func (d *DB) changeNode(id string, change func(*records.Node)) (records.Node, error) {
	var n records.Node
	err := d.nodeTx(id, func(l *lockedNode) (int, error) {
		if !l.known {
			return 0, errNotKnown(id)
		}
		change(&l.n)
		n = l.n
		return 0, nil
	})
	return n, err
}

// DeleteNode removes a node's record and boot tokens, and counts it out.
func (d *DB) DeleteNode(id string) (records.Node, error) {
	var n records.Node
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
func (d *DB) Node(id string) (records.Node, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	var n records.Node
	err := getDoc(ctx, d.pool, &n, "node "+id, "SELECT doc FROM zgrid_nodes WHERE id = $1", id)
	return n, err
}

// Nodes lists all nodes by ID.
func (d *DB) Nodes() ([]records.Node, error) {
	return list[records.Node](d, "nodes", "SELECT doc FROM zgrid_nodes ORDER BY id")
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
