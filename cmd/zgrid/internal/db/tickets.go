package db

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A Ticket is a short-lived opaque value that one replica issues and any
// replica redeems: a TPM nonce, an explorer session. The records only
// keep it until it expires and hand it out once (TakeTicket) or as often
// as asked (ReadTicket); what Value means is the caller's business, so
// the backends learn nothing of nonces or sessions and one table serves
// every kind.
type Ticket struct {
	Kind    string    // which caller's: "nonce", "session"
	ID      string    // random and unguessable: whoever names it may redeem it
	Value   []byte    // the caller's encoding
	Expires time.Time // good before this instant, gone at it
}

// TicketSweep is how long a backend may hold more than a kind's limit of
// live tickets: PostgreSQL counts and sweeps them at most once in that
// time per replica, so that a flood of /v1/challenge costs one insert
// each and not a count of the table.
const TicketSweep = 5 * time.Second

// SecretSize is the size of a Secret.
const SecretSize = 32

// tickets are the bbolt backend's tickets, in memory: bbolt has one
// process, so no other replica needs them, and writing them to the file
// would put a write and an fsync on every challenge of the boot path. A
// restart forgets them (a node asks again, a person logs in again).
type tickets struct {
	mu sync.Mutex
	m  map[string]map[string]Ticket // kind -> ID -> ticket
}

func (t *tickets) put(tk Ticket, limit int, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]map[string]Ticket{}
	}
	m := t.m[tk.Kind]
	if m == nil {
		m = map[string]Ticket{}
		t.m[tk.Kind] = m
	}
	if old, ok := m[tk.ID]; ok && now.Before(old.Expires) {
		return fmt.Errorf("put ticket %s/%s: %w", tk.Kind, tk.ID, ErrExists)
	}
	if limit > 0 && len(m) >= limit {
		bound(m, limit, now)
	}
	tk.Value = bytes.Clone(tk.Value)
	m[tk.ID] = tk
	return nil
}

// bound drops the expired tickets of a kind at its limit, and then the
// closest to expiring down to three quarters of it: a quarter of the
// limit free, so that a flood sorts the map once per limit/4 tickets, not
// at every one.
func bound(m map[string]Ticket, limit int, now time.Time) {
	for id, tk := range m {
		if !now.Before(tk.Expires) {
			delete(m, id)
		}
	}
	keep := limit * 3 / 4
	if len(m) <= keep {
		return
	}
	byExpiry := slices.SortedFunc(maps.Values(m), func(a, b Ticket) int { return a.Expires.Compare(b.Expires) })
	for _, tk := range byExpiry[:len(byExpiry)-keep] {
		delete(m, tk.ID)
	}
}

// get returns the live ticket kind/id, removing it if take.
func (t *tickets) get(kind, id string, now time.Time, take bool) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tk, ok := t.m[kind][id]
	if ok && (take || !now.Before(tk.Expires)) {
		delete(t.m[kind], id)
	}
	if !ok || !now.Before(tk.Expires) {
		return nil, fmt.Errorf("ticket %s/%s: %w", kind, id, ErrNotFound)
	}
	return bytes.Clone(tk.Value), nil
}

func (t *tickets) remove(kind, id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m[kind], id)
}

// PutTicket keeps t until it expires. limit bounds the live tickets of
// its kind (0: no bound): at it, the expired go, then the closest to
// expiring. A live ticket of the same kind and ID is ErrExists.
func (d *DB) PutTicket(t Ticket, limit int, now time.Time) error {
	return d.tickets.put(t, limit, now)
}

// TakeTicket returns a live ticket's value and removes it: of two
// takers, one gets it. Absent or expired is ErrNotFound.
func (d *DB) TakeTicket(kind, id string, now time.Time) ([]byte, error) {
	return d.tickets.get(kind, id, now, true)
}

// ReadTicket returns a live ticket's value and leaves it.
func (d *DB) ReadTicket(kind, id string, now time.Time) ([]byte, error) {
	return d.tickets.get(kind, id, now, false)
}

// DeleteTicket removes a ticket; one already gone is no error.
func (d *DB) DeleteTicket(kind, id string) error {
	d.tickets.remove(kind, id)
	return nil
}

// Secret returns the SecretSize random bytes named name, made at the
// first call and kept in the file (bucket secrets) from then on. The
// bucket is made here rather than by prepare: Verify and read-only opens
// require prepare's buckets, and a backup made before secrets existed
// must still restore.
func (d *DB) Secret(name string) ([]byte, error) {
	var s []byte
	err := d.b.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bSecrets); b != nil {
			s = bytes.Clone(b.Get([]byte(name)))
		}
		return nil
	})
	if err != nil || s != nil {
		return s, wrapSecret(name, err)
	}
	err = d.b.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bSecrets)
		if err != nil {
			return err
		}
		if s = bytes.Clone(b.Get([]byte(name))); s != nil {
			return nil
		}
		s = make([]byte, SecretSize)
		rand.Read(s) // never fails (crypto/rand since Go 1.24)
		return b.Put([]byte(name), s)
	})
	return s, wrapSecret(name, err)
}

func wrapSecret(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("secret %s: %w", name, err)
}
