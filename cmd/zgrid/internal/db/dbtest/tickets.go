package dbtest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
)

// tickets: a ticket put through one handle is read, taken once and
// deleted through the other; it is good before its expiry, not at it;
// kinds do not share IDs; a live ID is not put twice.
func tickets(t *testing.T, a, b db.Records) {
	exp := t0.Add(time.Minute)
	put := func(kind, id, v string) error {
		return a.PutTicket(db.Ticket{Kind: kind, ID: id, Value: []byte(v), Expires: exp}, 0, t0)
	}
	for _, tk := range [][3]string{{"nonce", "n1", "one"}, {"nonce", "n2", "two"}, {"session", "n1", "sess"}, {"session", "gone", "x"}} {
		if err := put(tk[0], tk[1], tk[2]); err != nil {
			t.Fatalf("put %s/%s: %v", tk[0], tk[1], err)
		}
	}
	if err := put("nonce", "n1", "again"); !errors.Is(err, db.ErrExists) {
		t.Fatalf("put of a live ID again: err=%v, want ErrExists", err)
	}
	if err := b.DeleteTicket("session", "gone"); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteTicket("session", "never"); err != nil {
		t.Fatalf("delete of an absent ticket: %v", err)
	}
	for _, tc := range []struct {
		name     string
		do       func(kind, id string, now time.Time) ([]byte, error)
		kind, id string
		now      time.Time
		want     string // "" for ErrNotFound
	}{
		{"read through the other handle", b.ReadTicket, "session", "n1", t0, "sess"},
		{"read again", a.ReadTicket, "session", "n1", exp.Add(-time.Microsecond), "sess"},
		{"read at the expiry", b.ReadTicket, "session", "n1", exp, ""},
		{"deleted", b.ReadTicket, "session", "gone", t0, ""},
		{"take", b.TakeTicket, "nonce", "n1", t0, "one"},
		{"take again", a.TakeTicket, "nonce", "n1", t0, ""},
		{"take at the expiry", b.TakeTicket, "nonce", "n2", exp, ""},
		{"unknown kind", b.TakeTicket, "other", "n2", t0, ""},
	} {
		got, err := tc.do(tc.kind, tc.id, tc.now)
		switch {
		case tc.want == "" && !errors.Is(err, db.ErrNotFound):
			t.Errorf("%s: %q, %v; want ErrNotFound", tc.name, got, err)
		case tc.want != "" && (err != nil || string(got) != tc.want):
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	// An expired ID may be put again, through either handle.
	if err := b.PutTicket(db.Ticket{Kind: "session", ID: "n1", Value: []byte("new"), Expires: exp.Add(time.Hour)}, 0, exp); err != nil {
		t.Fatalf("put over an expired ticket: %v", err)
	}
	if got, err := a.ReadTicket("session", "n1", exp); err != nil || string(got) != "new" {
		t.Fatalf("read of the ticket put again: %q, %v", got, err)
	}
}

// concurrentTake: takers of one ticket at once, half through each
// handle: exactly one gets it, every time.
func concurrentTake(t *testing.T, a, b db.Records) {
	const rounds, takers = 20, 8
	for r := range rounds {
		id := fmt.Sprintf("t%d", r)
		if err := pick(r, a, b).PutTicket(db.Ticket{Kind: "nonce", ID: id, Value: []byte(id), Expires: t0.Add(time.Minute)}, 0, t0); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		got := make([][]byte, takers)
		errs := make([]error, takers)
		start := make(chan struct{})
		for i := range takers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got[i], errs[i] = pick(i, a, b).TakeTicket("nonce", id, t0)
			}()
		}
		close(start)
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil && string(got[i]) == id:
				won++
			case !errors.Is(err, db.ErrNotFound):
				t.Errorf("round %d taker %d: %q, %v", r, i, got[i], err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d of %d takers got the ticket, want 1", r, won, takers)
		}
	}
}

// ticketLimit: beyond its limit a kind keeps the tickets latest to
// expire; a backend may lag by db.TicketSweep, not more. Other kinds
// are not touched.
func ticketLimit(t *testing.T, a, b db.Records) {
	const limit, n = 10, 3 * 10
	exp := func(i int) time.Time { return t0.Add(time.Hour + time.Duration(i)*time.Second) }
	if err := a.PutTicket(db.Ticket{Kind: "other", ID: "x", Expires: exp(0)}, limit, t0); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := pick(i, a, b).PutTicket(db.Ticket{Kind: "nonce", ID: fmt.Sprint(i), Expires: exp(i)}, limit, t0); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	later := t0.Add(db.TicketSweep)
	if err := a.PutTicket(db.Ticket{Kind: "nonce", ID: "last", Expires: exp(n)}, limit, later); err != nil {
		t.Fatal(err)
	}
	var kept []int
	for i := range n + 1 {
		id := fmt.Sprint(i)
		if i == n {
			id = "last"
		}
		if _, err := b.TakeTicket("nonce", id, later); err == nil {
			kept = append(kept, i)
		} else if !errors.Is(err, db.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if len(kept) == 0 || len(kept) > limit || kept[len(kept)-1] != n || kept[len(kept)-1]-kept[0] != len(kept)-1 {
		t.Fatalf("kept %v of %d tickets with limit %d: want at most %d, the latest to expire", kept, n+1, limit, limit)
	}
	if _, err := b.ReadTicket("other", "x", later); err != nil {
		t.Fatalf("another kind's ticket: %v", err)
	}
	// Expired tickets leave room before any live one goes.
	for i := range limit {
		if err := a.PutTicket(db.Ticket{Kind: "short", ID: fmt.Sprint(i), Expires: t0.Add(time.Second)}, limit, t0); err != nil {
			t.Fatal(err)
		}
	}
	for i := range limit {
		if err := b.PutTicket(db.Ticket{Kind: "short", ID: fmt.Sprint("live", i), Expires: exp(i)}, limit, later.Add(db.TicketSweep)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range limit {
		if _, err := a.ReadTicket("short", fmt.Sprint("live", i), later); err != nil {
			t.Errorf("live ticket %d dropped while expired ones made room: %v", i, err)
		}
	}
}

// secret: made once, the same through both handles and at every call.
func secret(t *testing.T, a, b db.Records) {
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	errs := make([]error, len(got))
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = pick(i, a, b).Secret("activation")
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || len(got[i]) != db.SecretSize || !bytes.Equal(got[i], got[0]) {
			t.Fatalf("Secret %d = %x, %v; want the same %d bytes as the first, %x", i, got[i], errs[i], db.SecretSize, got[0])
		}
	}
	if again, err := b.Secret("activation"); err != nil || !bytes.Equal(again, got[0]) {
		t.Fatalf("Secret again = %x, %v; want %x", again, err, got[0])
	}
	other, err := a.Secret("other")
	if err != nil || len(other) != db.SecretSize || bytes.Equal(other, got[0]) {
		t.Fatalf("another name's secret = %x, %v; want its own", other, err)
	}
}
