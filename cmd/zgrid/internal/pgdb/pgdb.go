// Package pgdb keeps the registry's records (db.Records) in PostgreSQL,
// so that several zgrid serve replicas behind one address serve one fleet.
// Each kind of record is a table with its key, the columns queries and
// constraints need, and the record itself as a JSON document, as bbolt
// holds it. Every change is one transaction at read committed whose rows
// are locked (SELECT ... FOR UPDATE, INSERT ... ON CONFLICT) before they
// are read for a decision, so the invariants package db keeps hold across
// replicas too.
package pgdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
)

// DefaultMaxConns is each replica's connections to PostgreSQL unless the
// URL says pool_max_conns=N.
const DefaultMaxConns = 16

// opTimeout bounds one operation, so that a database that stopped
// answering fails requests instead of holding them.
const opTimeout = 30 * time.Second

// DB is safe for concurrent use, by several processes on one database.
type DB struct {
	pool   *pgxpool.Pool
	sweeps sweeps // of tickets, by this replica (tickets.go)
}

var _ db.Records = (*DB)(nil)

// Config parses a connection URL (or key=value string) as libpq does;
// password, if not empty, replaces the URL's. PGPASSWORD and PGPASSFILE
// work as with libpq.
func Config(url, password string) (*pgxpool.Config, error) {
	c, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL, password and all.
		return nil, errors.New("parse the PostgreSQL URL: malformed (it is not repeated here, as it may hold a password)")
	}
	if password != "" {
		c.ConnConfig.Password = password
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default is the CPU count; a boot's transaction
		// mostly waits for its commit to reach the disk, and more in
		// flight share one WAL flush (group commit).
		c.MaxConns = DefaultMaxConns
	}
	return c, nil
}

// Open connects, creates the schema in an empty database or upgrades an
// older one, and refuses one newer than this zgrid (ErrSchemaNewer).
func Open(ctx context.Context, c *pgxpool.Config) (*DB, error) {
	where := fmt.Sprintf("database %s on %s:%d", c.ConnConfig.Database, c.ConnConfig.Host, c.ConnConfig.Port)
	pool, err := pgxpool.NewWithConfig(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL %s: %w", where, err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL %s: %w", where, err)
	}
	err = migrate(ctx, conn.Conn())
	conn.Release()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL %s: %w", where, err)
	}
	return &DB{pool: pool}, nil
}

// Close closes the pool.
func (d *DB) Close() error { d.pool.Close(); return nil }

// tx runs fn in a transaction, again (a few times) when PostgreSQL
// resolved a conflict with another transaction by failing this one.
func (d *DB) tx(fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var err error
	for range 10 {
		err = pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error { return fn(ctx, tx) })
		if !retryable(err) {
			return err
		}
	}
	return fmt.Errorf("gave up after 10 conflicting attempts: %w", err)
}

// retryable is an error PostgreSQL resolves a conflict with: a
// serialization failure, a deadlock, or a row inserted meanwhile by
// another transaction (a unique violation).
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01" || pe.Code == "23505")
}

func (d *DB) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

// getDoc decodes the one document query returns into v; none is
// ErrNotFound, named by what.
func getDoc(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, v any, what, query string, args ...any) error {
	var doc []byte
	err := q.QueryRow(ctx, query, args...).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, db.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := json.Unmarshal(doc, v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func list[T any](d *DB, what, query string, args ...any) ([]T, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	rows, err := d.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) {
		var doc []byte
		var t T
		if err := r.Scan(&doc); err != nil {
			return t, err
		}
		return t, json.Unmarshal(doc, &t)
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	return out, nil
}

func encode(v any) (string, error) {
	j, err := json.Marshal(v)
	return string(j), err
}

// CreateFarm adds a farm; an existing name is ErrExists.
func (d *DB) CreateFarm(f records.Farm) error {
	doc, err := encode(f)
	if err != nil {
		return fmt.Errorf("farm %s: %w", f.Name, err)
	}
	return d.tx(func(ctx context.Context, tx pgx.Tx) error {
		t, err := tx.Exec(ctx, "INSERT INTO zgrid_farms (name, doc) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", f.Name, doc)
		if err != nil {
			return fmt.Errorf("create farm %s: %w", f.Name, err)
		}
		if t.RowsAffected() == 0 {
			return fmt.Errorf("farm %s: %w", f.Name, db.ErrExists)
		}
		return nil
	})
}

// UpdateFarm replaces an existing farm, keeping its creation time.
func (d *DB) UpdateFarm(f records.Farm) (records.Farm, error) {
	err := d.tx(func(ctx context.Context, tx pgx.Tx) error {
		var old records.Farm
		if err := getDoc(ctx, tx, &old, "farm "+f.Name, "SELECT doc FROM zgrid_farms WHERE name = $1 FOR UPDATE", f.Name); err != nil {
			return err
		}
		f.Created = old.Created
		doc, err := encode(f)
		if err != nil {
			return fmt.Errorf("farm %s: %w", f.Name, err)
		}
		_, err = tx.Exec(ctx, "UPDATE zgrid_farms SET doc = $2 WHERE name = $1", f.Name, doc)
		return err
	})
	return f, err
}

// Farm returns one farm or ErrNotFound.
func (d *DB) Farm(name string) (records.Farm, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	var f records.Farm
	err := getDoc(ctx, d.pool, &f, "farm "+name, "SELECT doc FROM zgrid_farms WHERE name = $1", name)
	return f, err
}

// Farms lists all farms by name.
func (d *DB) Farms() ([]records.Farm, error) {
	return list[records.Farm](d, "farms", "SELECT doc FROM zgrid_farms ORDER BY name")
}

// DeleteFarm removes a farm, refused (ErrInUse) while nodes are assigned
// to it unless force, as db.DB's does. It returns how many were.
func (d *DB) DeleteFarm(name string, force bool) (int, error) {
	n := 0
	err := d.tx(func(ctx context.Context, tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, "SELECT 1 FROM zgrid_farms WHERE name = $1 FOR UPDATE", name).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("farm %s: %w", name, db.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("farm %s: %w", name, err)
		}
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM zgrid_nodes WHERE farm = $1", name).Scan(&n); err != nil {
			return fmt.Errorf("farm %s: count its nodes: %w", name, err)
		}
		if n > 0 && !force {
			return fmt.Errorf("farm %s has %d nodes: %w (delete them, or force)", name, n, db.ErrInUse)
		}
		_, err = tx.Exec(ctx, "DELETE FROM zgrid_farms WHERE name = $1", name)
		return err
	})
	return n, err
}

// AddRelease stores a release whose version is higher than every one
// ever published on its channel, else ErrVersion. The high-water row is
// raised with a conditional upsert, which PostgreSQL evaluates on the
// row's latest version under its lock: of two publishers of one version,
// one sees the other's.
func (d *DB) AddRelease(r records.ReleaseInfo) error {
	if r.Channel == "" || strings.IndexByte(r.Channel, 0) >= 0 {
		return fmt.Errorf("release: invalid channel %q", r.Channel)
	}
	if r.Version > math.MaxInt64 {
		return fmt.Errorf("release %s/%d: PostgreSQL holds versions up to %d", r.Channel, r.Version, int64(math.MaxInt64))
	}
	doc, err := encode(r)
	if err != nil {
		return fmt.Errorf("release %s/%d: %w", r.Channel, r.Version, err)
	}
	return d.tx(func(ctx context.Context, tx pgx.Tx) error {
		t, err := tx.Exec(ctx, `INSERT INTO zgrid_highwater (channel, version) VALUES ($1, $2)
ON CONFLICT (channel) DO UPDATE SET version = EXCLUDED.version WHERE zgrid_highwater.version < EXCLUDED.version`, r.Channel, int64(r.Version))
		if err != nil {
			return fmt.Errorf("release %s/%d: %w", r.Channel, r.Version, err)
		}
		if t.RowsAffected() == 0 {
			var high int64
			if err := tx.QueryRow(ctx, "SELECT version FROM zgrid_highwater WHERE channel = $1", r.Channel).Scan(&high); err != nil {
				return fmt.Errorf("release %s/%d: %w", r.Channel, r.Version, err)
			}
			return db.VersionError(r, uint64(high))
		}
		_, err = tx.Exec(ctx, "INSERT INTO zgrid_releases (channel, version, doc) VALUES ($1, $2, $3)", r.Channel, int64(r.Version), doc)
		if err != nil {
			return fmt.Errorf("release %s/%d: %w", r.Channel, r.Version, err)
		}
		return nil
	})
}

// LatestRelease returns the highest version on channel, or ErrNotFound.
func (d *DB) LatestRelease(channel string) (records.ReleaseInfo, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	var r records.ReleaseInfo
	err := getDoc(ctx, d.pool, &r, "no release on channel "+channel, "SELECT doc FROM zgrid_releases WHERE channel = $1 ORDER BY version DESC LIMIT 1", channel)
	return r, err
}

// Releases lists releases, optionally of one channel, by channel and version.
func (d *DB) Releases(channel string) ([]records.ReleaseInfo, error) {
	if channel == "" {
		return list[records.ReleaseInfo](d, "releases", "SELECT doc FROM zgrid_releases ORDER BY channel, version")
	}
	return list[records.ReleaseInfo](d, "releases of "+channel, "SELECT doc FROM zgrid_releases WHERE channel = $1 ORDER BY version", channel)
}

// Allow lists a node ID or an EK fingerprint for farms that take listed
// nodes only.
func (d *DB) Allow(key string) error {
	ctx, cancel := d.ctx()
	defer cancel()
	if _, err := d.pool.Exec(ctx, "INSERT INTO zgrid_allowed (key) VALUES ($1) ON CONFLICT DO NOTHING", key); err != nil {
		return fmt.Errorf("allow %s: %w", key, err)
	}
	return nil
}

// Listed reports whether the node ID or EK fingerprint was allowed.
func (d *DB) Listed(id, ekFingerprint string) (bool, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	var ok bool
	err := d.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM zgrid_allowed WHERE key = $1 OR (key = $2 AND $2 <> ''))", id, ekFingerprint).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("is node %s listed: %w", id, err)
	}
	return ok, nil
}
