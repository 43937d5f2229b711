package pgdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db/dbtest"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/internal/testenv"
)

func open(t *testing.T, url string) *DB {
	t.Helper()
	c, err := Config(url, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestConformance runs the suite bbolt passes on PostgreSQL, each case on
// a new database through two pools, as two replicas would reach it.
func TestConformance(t *testing.T) {
	s := testenv.Postgres(t, "fsync=off") // the records need not survive the test
	dbtest.Run(t, func(t *testing.T) (db.Records, db.Records) {
		url := s.SocketURL(s.NewDatabase(t))
		return open(t, url), open(t, url)
	})
}

// TestSchema: a second Open finds the schema made by the first, replicas
// opening at once make it once, and a schema newer than this zgrid's is
// refused, naming both versions.
func TestSchema(t *testing.T) {
	s := testenv.Postgres(t, "fsync=off") // the records need not survive the test
	url := s.PasswordURL(s.NewDatabase(t))
	var wg sync.WaitGroup
	ds := make([]*DB, 4)
	errs := make([]error, len(ds))
	for i := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := Config(url, "")
			ds[i], errs[i] = Open(context.Background(), c)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d at once: %v", i, err)
		}
		defer ds[i].Close()
	}
	if err := ds[0].CreateFarm(records.Farm{Name: "lab", Channel: "stable"}); err != nil {
		t.Fatal(err)
	}
	again := open(t, url)
	if _, err := again.Farm("lab"); err != nil {
		t.Fatalf("reopened database lost its farm: %v", err)
	}
	if _, err := ds[1].pool.Exec(context.Background(), "UPDATE zgrid_schema SET version = $1", SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	c, _ := Config(url, "")
	_, err := Open(context.Background(), c)
	if !errors.Is(err, ErrSchemaNewer) || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d, this zgrid knows %d", SchemaVersion+1, SchemaVersion)) {
		t.Fatalf("Open of a newer schema: %v, want ErrSchemaNewer naming both versions", err)
	}
}

// TestConfig: a password given apart replaces the URL's, and a URL that
// does not parse is refused without being repeated.
func TestConfig(t *testing.T) {
	c, err := Config("postgres://zgrid@db.example:5433/grid", "s3cret")
	if err != nil || c.ConnConfig.Password != "s3cret" || c.ConnConfig.Port != 5433 || c.ConnConfig.Database != "grid" {
		t.Fatalf("Config = %+v, %v", c, err)
	}
	_, err = Config("postgres://zgrid:hunter2@db.example:notaport/grid", "")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("malformed URL: err=%v, want one that does not repeat the password", err)
	}
}

// BenchmarkStorm is dbtest.Storm on PostgreSQL with its default
// durability (fsync on), over the unix socket, 200 at a time.
func BenchmarkStorm(b *testing.B) {
	s := testenv.Postgres(b)
	c, err := Config(s.SocketURL(s.NewDatabase(b)), "")
	if err != nil {
		b.Fatal(err)
	}
	d, err := Open(context.Background(), c)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	dbtest.Storm(b, d, 200)
}

// TestSchemaUpgrade: a database of schema 1 (before tickets and secrets)
// is upgraded in place by the next Open, its records kept.
func TestSchemaUpgrade(t *testing.T) {
	s := testenv.Postgres(t, "fsync=off") // the records need not survive the test
	url := s.SocketURL(s.NewDatabase(t))
	d := open(t, url)
	if err := d.CreateFarm(records.Farm{Name: "lab", Channel: "stable"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.pool.Exec(context.Background(), "DROP TABLE zgrid_tickets, zgrid_secrets; UPDATE zgrid_schema SET version = 1"); err != nil {
		t.Fatal(err)
	}
	d = open(t, url)
	var v int
	if err := d.pool.QueryRow(context.Background(), "SELECT version FROM zgrid_schema").Scan(&v); err != nil || v != SchemaVersion {
		t.Fatalf("schema version after the upgrade: %d, %v; want %d", v, err, SchemaVersion)
	}
	if _, err := d.Farm("lab"); err != nil {
		t.Fatalf("upgrade lost a farm: %v", err)
	}
	if _, err := d.Secret("activation"); err != nil {
		t.Fatalf("Secret after the upgrade: %v", err)
	}
	if err := d.PutTicket(db.Ticket{Kind: "nonce", ID: "a", Expires: time.Now().Add(time.Minute)}, 0, time.Now()); err != nil {
		t.Fatalf("PutTicket after the upgrade: %v", err)
	}
}
