package pgdb

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
)

// sweeps remembers when this replica last swept each kind of ticket.
type sweeps struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// due reports whether kind is to be swept at now, and if so claims the
// sweep: at most one per db.TicketSweep per replica. A clock gone back
// sweeps at once rather than wait for the old time to come again.
func (s *sweeps) due(kind string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[string]time.Time{}
	}
	last, ok := s.last[kind]
	if ok && !now.Before(last) && now.Sub(last) < db.TicketSweep {
		return false
	}
	s.last[kind] = now
	return true
}

// PutTicket inserts t, or replaces an expired ticket of its kind and ID
// not yet swept; a live one is db.ErrExists. At most once per
// db.TicketSweep this replica then sweeps the kind: the expired rows go,
// and beyond limit (0: none) the closest to expiring. So one challenge
// costs one insert, and a flood leaves at most the limit plus what all
// replicas insert in db.TicketSweep.
func (d *DB) PutTicket(t db.Ticket, limit int, now time.Time) error {
	if t.Value == nil {
		t.Value = []byte{} // bytea NOT NULL: nil would be NULL
	}
	ctx, cancel := d.ctx()
	defer cancel()
	tag, err := d.pool.Exec(ctx, `INSERT INTO zgrid_tickets (kind, id, value, expires) VALUES ($1, $2, $3, $4)
ON CONFLICT (kind, id) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires WHERE zgrid_tickets.expires <= $5`,
		t.Kind, t.ID, t.Value, t.Expires, now)
	if err != nil {
		return fmt.Errorf("put ticket %s/%s: %w", t.Kind, t.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("put ticket %s/%s: %w", t.Kind, t.ID, db.ErrExists)
	}
	if !d.sweeps.due(t.Kind, now) {
		return nil
	}
	return d.sweep(ctx, t.Kind, limit, now)
}

// sweep deletes the expired tickets of kind and, when more than limit
// are left, every one expiring no later than the (limit+1)th latest: the
// index on (kind, expires) walks limit+1 entries to find it.
func (d *DB) sweep(ctx context.Context, kind string, limit int, now time.Time) error {
	q := `DELETE FROM zgrid_tickets WHERE kind = $1 AND expires <= $2`
	args := []any{kind, now}
	if limit > 0 {
		q = `DELETE FROM zgrid_tickets WHERE kind = $1 AND (expires <= $2 OR expires <=
	(SELECT expires FROM zgrid_tickets WHERE kind = $1 ORDER BY expires DESC OFFSET $3 LIMIT 1))`
		args = append(args, limit)
	}
	if _, err := d.pool.Exec(ctx, q, args...); err != nil {
		return fmt.Errorf("sweep tickets %s: %w", kind, err)
	}
	return nil
}

// TakeTicket deletes a live ticket and returns its value, in one
// statement: of takers at once, on any replicas, the row's lock lets one
// delete it and the others find it gone. Absent or expired is
// db.ErrNotFound.
func (d *DB) TakeTicket(kind, id string, now time.Time) ([]byte, error) {
	return d.ticket("take", `DELETE FROM zgrid_tickets WHERE kind = $1 AND id = $2 AND expires > $3 RETURNING value`, kind, id, now)
}

// ReadTicket returns a live ticket's value and leaves it.
func (d *DB) ReadTicket(kind, id string, now time.Time) ([]byte, error) {
	return d.ticket("read", `SELECT value FROM zgrid_tickets WHERE kind = $1 AND id = $2 AND expires > $3`, kind, id, now)
}

func (d *DB) ticket(op, query, kind, id string, now time.Time) ([]byte, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	var v []byte
	err := d.pool.QueryRow(ctx, query, kind, id, now).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		err = db.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%s ticket %s/%s: %w", op, kind, id, err)
	}
	return v, nil
}

// DeleteTicket removes a ticket; one already gone is no error.
func (d *DB) DeleteTicket(kind, id string) error {
	ctx, cancel := d.ctx()
	defer cancel()
	if _, err := d.pool.Exec(ctx, `DELETE FROM zgrid_tickets WHERE kind = $1 AND id = $2`, kind, id); err != nil {
		return fmt.Errorf("delete ticket %s/%s: %w", kind, id, err)
	}
	return nil
}

// Secret returns the db.SecretSize random bytes named name: the first
// replica to ask inserts its own, and every one reads back the row that
// won (an insert that conflicts waits for the other's commit).
func (d *DB) Secret(name string) ([]byte, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	mine := make([]byte, db.SecretSize)
	rand.Read(mine) // never fails (crypto/rand since Go 1.24)
	if _, err := d.pool.Exec(ctx, `INSERT INTO zgrid_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, mine); err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	var s []byte
	if err := d.pool.QueryRow(ctx, `SELECT value FROM zgrid_secrets WHERE name = $1`, name).Scan(&s); err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return s, nil
}
