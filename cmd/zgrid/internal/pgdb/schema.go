package pgdb

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// SchemaVersion is the version of the tables this zgrid reads and
// writes. A database at a higher one was made or upgraded by a newer
// zgrid, and this one refuses it rather than write records the newer
// replicas misread.
const SchemaVersion = 3

// ErrSchemaNewer is opening a database whose schema is newer than this
// zgrid's.
var ErrSchemaNewer = errors.New("database schema newer than this zgrid")

// schemaLock is the advisory lock key under which replicas starting at
// once create or upgrade the schema one at a time ("zgrid" in ASCII).
const schemaLock = 0x7a67726964

// migrations[v] takes the schema from version v to v+1. Keys and names
// are text in the "C" collation, so lists come in the byte order bbolt's
// keys do. Documents are json, not jsonb: json keeps the text as
// written, and jsonb refuses the \u0000 a node may send in a reason.
var migrations = []string{
	0: `
CREATE TABLE zgrid_schema (version integer NOT NULL);
INSERT INTO zgrid_schema (version) VALUES (0);
-- One row: the number of node records, which the node limit is checked
-- against in the transaction that adds a node.
CREATE TABLE zgrid_meta (one boolean PRIMARY KEY DEFAULT true CHECK (one), nodes bigint NOT NULL);
INSERT INTO zgrid_meta (nodes) VALUES (0);
CREATE TABLE zgrid_farms (name text COLLATE "C" PRIMARY KEY, doc json NOT NULL);
CREATE TABLE zgrid_releases (
	channel text COLLATE "C" NOT NULL,
	version bigint NOT NULL,
	doc json NOT NULL,
	PRIMARY KEY (channel, version)
);
-- The highest version ever published per channel: it stays when
-- releases are removed, so a number is never handed out twice.
CREATE TABLE zgrid_highwater (channel text COLLATE "C" PRIMARY KEY, version bigint NOT NULL);
CREATE TABLE zgrid_nodes (
	id text COLLATE "C" PRIMARY KEY,
	farm text COLLATE "C" NOT NULL,
	state text COLLATE "C" NOT NULL,
	tokens bytea NOT NULL, -- SHA-256 of the last KeepTokens boot tokens, newest first
	doc json NOT NULL
);
CREATE INDEX zgrid_nodes_farm ON zgrid_nodes (farm);
CREATE INDEX zgrid_nodes_state ON zgrid_nodes (state);
CREATE TABLE zgrid_allowed (key text COLLATE "C" PRIMARY KEY);
`,
	1: `
-- Tickets: short-lived values one replica issues and any redeems (TPM
-- nonces, explorer sessions). UNLOGGED: no WAL flush on every
-- /v1/challenge; a crash (or a failover to a standby, which has no copy)
-- empties the table, and nodes ask again, people log in again.
CREATE UNLOGGED TABLE zgrid_tickets (
	kind text COLLATE "C" NOT NULL,
	id text COLLATE "C" NOT NULL,
	value bytea NOT NULL,
	expires timestamptz NOT NULL,
	PRIMARY KEY (kind, id)
);
-- The sweep's: expired rows, and the latest to expire of a kind.
CREATE INDEX zgrid_tickets_expires ON zgrid_tickets (kind, expires);
-- Secrets every replica must hold alike (the credential activation key),
-- made by the first to need one.
CREATE TABLE zgrid_secrets (name text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
`,
	2: `
-- No table changes: a node record may now be denied (state "denied",
-- identity.denied) and keeps its earlier boots (boots). A zgrid of schema
-- 2 reads past both: it would boot a denied node and drop histories, so
-- the version moves on to make it refuse this database.
SELECT 1;
`,
}

func init() {
	if len(migrations) != SchemaVersion {
		panic("pgdb: SchemaVersion does not match the migrations")
	}
}

// migrate creates the schema in an empty database, upgrades an older
// one, and refuses a newer one, all in one transaction under an advisory
// lock: replicas starting together neither race nor see half a schema.
func migrate(ctx context.Context, c *pgx.Conn) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLock); err != nil {
		return fmt.Errorf("lock the schema: %w", err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass('zgrid_schema') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("look for the schema: %w", err)
	}
	v := 0
	if exists {
		if err := tx.QueryRow(ctx, "SELECT version FROM zgrid_schema").Scan(&v); err != nil {
			return fmt.Errorf("read the schema version: %w", err)
		}
	}
	if v > SchemaVersion {
		return fmt.Errorf("%w: the database is at schema version %d, this zgrid knows %d: upgrade zgrid on every replica", ErrSchemaNewer, v, SchemaVersion)
	}
	for ; v < SchemaVersion; v++ {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return fmt.Errorf("schema version %d to %d: %w", v, v+1, err)
		}
		if _, err := tx.Exec(ctx, "UPDATE zgrid_schema SET version = $1", v+1); err != nil {
			return fmt.Errorf("schema version %d to %d: %w", v, v+1, err)
		}
	}
	return tx.Commit(ctx)
}
