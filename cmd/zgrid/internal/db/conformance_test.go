package db_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db/dbtest"
)

// TestConformance runs the suite every Records backend passes on bbolt;
// one process holds the file, so both handles are the same.
func TestConformance(t *testing.T) {
	dbtest.Run(t, func(t *testing.T) (db.Records, db.Records) {
		p := filepath.Join(t.TempDir(), "zgrid.db")
		if err := db.Create(p); err != nil {
			t.Fatal(err)
		}
		d, err := db.Open(p, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d, d
	})
}

// BenchmarkStorm is dbtest.Storm on bbolt, 200 at a time:
//
//	go test -run '^$' -bench Storm -benchtime 10000x ./cmd/zgrid/internal/db/ ./cmd/zgrid/internal/pgdb/
func BenchmarkStorm(b *testing.B) {
	p := filepath.Join(b.TempDir(), "zgrid.db")
	if err := db.Create(p); err != nil {
		b.Fatal(err)
	}
	d, err := db.Open(p, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	dbtest.Storm(b, d, 200)
}
