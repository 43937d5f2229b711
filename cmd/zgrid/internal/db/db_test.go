package db

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/zeroboot/zeroboot/pkg/registry"
)

// tok is a distinct well-formed boot token for each i.
func tok(i int) string { return fmt.Sprintf("%064x", i+1) }

// TestMaxNodesReopened: the node count survives reopening and is rebuilt
// for a database that lacks it (the limit itself is in the conformance
// suite).
func TestMaxNodesReopened(t *testing.T) {
	p := created(t)
	d, err := Open(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	boot := func(id string) error {
		return d.RecordBoot(Boot{Request: registry.BootRequest{NodeID: id}, Token: tok(0), MaxNodes: 3}, t0)
	}
	for _, id := range []string{"a", "b", "c", "a"} {
		if err := boot(id); err != nil {
			t.Fatalf("boot %s: %v", id, err)
		}
	}
	// A database from before the counter: drop it, reopen, count again.
	if err := d.b.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Delete(kNodes) }); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if d, err = Open(p, time.Second); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if n, err := d.NodeCount(); n != 3 || err != nil {
		t.Fatalf("NodeCount() after reopening = %d, %v; want 3", n, err)
	}
	if err := boot("d"); !errors.Is(err, ErrFull) {
		t.Fatalf("limit forgotten after reopening: %v", err)
	}
}

// TestNodeStatesReopened: the per-state counts (whose changes the
// conformance suite checks) survive reopening, are rebuilt once for a
// database that lacks them, and are read without reading node records.
func TestNodeStatesReopened(t *testing.T) {
	p := created(t)
	d, err := Open(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { d.Close() }()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []func() error{
		func() error {
			return d.RecordBoot(Boot{Request: registry.BootRequest{NodeID: "n1"}, Token: tok(1)}, t0)
		},
		func() error {
			return d.RecordBoot(Boot{Request: registry.BootRequest{NodeID: "n2"}, Token: tok(2)}, t0)
		},
		func() error {
			return d.RecordBoot(Boot{Request: registry.BootRequest{NodeID: "n3"}, Token: tok(3)}, t0)
		},
		func() error {
			return d.RecordStatus(registry.StatusReport{NodeID: "n1", Source: "pid1", State: "ready", Token: tok(1)}, nil, t0)
		},
		func() error {
			return d.RecordStatus(registry.StatusReport{NodeID: "n2", Source: "pid1", State: "failed", Reason: "r", Token: tok(2)}, nil, t0)
		},
	}
	for i, do := range steps {
		if err := do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	check := func(when string, want map[string]int) {
		t.Helper()
		got, err := d.NodeStates()
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("%s: NodeStates() = %v, %v; want %v", when, got, err, want)
		}
	}
	want := map[string]int{"booting": 1, "ready": 1, "failed": 1}
	check("recorded", want)
	reopen := func() {
		t.Helper()
		d.Close()
		if d, err = Open(p, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	reopen()
	check("reopened", want)

	// A database from before the counters: they are rebuilt from the
	// records on opening.
	err = d.b.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		for _, k := range [][]byte{kStates, stateKey("booting"), stateKey("ready"), stateKey("failed")} {
			if err := m.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	reopen()
	check("rebuilt", want)

	// Node records are not read: one no longer decodes, and the counts
	// still come.
	if err := d.b.Update(func(tx *bolt.Tx) error { return tx.Bucket(bNodes).Put([]byte("n1"), []byte("{garbage")) }); err != nil {
		t.Fatal(err)
	}
	check("with a damaged record", want)
}

func TestOpenLocked(t *testing.T) {
	p := created(t)
	d, err := Open(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := Open(p, 50*time.Millisecond); err == nil {
		t.Fatal("second Open of a locked database succeeded")
	}
}

// created is the path of a database Create made in a new directory.
func created(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "zgrid.db")
	if err := Create(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSecretReopened: a secret is kept in the file, so a restarted
// registry has the same; a backup made before secrets existed (no
// bucket) still verifies, and gets its secret at the first call.
func TestSecretReopened(t *testing.T) {
	p := created(t)
	d, err := Open(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first, err := d.Secret("activation")
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if d, err = Open(p, time.Second); err != nil {
		t.Fatal(err)
	}
	again, err := d.Secret("activation")
	if err != nil || !bytes.Equal(again, first) {
		t.Fatalf("Secret after reopening = %x, %v; want %x", again, err, first)
	}
	if err := d.b.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bSecrets) }); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if err := Verify(p); err != nil {
		t.Fatalf("Verify of a database without secrets: %v", err)
	}
	if d, err = Open(p, time.Second); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if s, err := d.Secret("activation"); err != nil || len(s) != SecretSize || bytes.Equal(s, first) {
		t.Fatalf("Secret of a database without secrets = %x, %v; want a new one", s, err)
	}
}
