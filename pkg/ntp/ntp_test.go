package ntp_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	bntp "github.com/beevik/ntp"

	"github.com/zeroboot/zeroboot/pkg/ntp"
)

const day = 24 * time.Hour

func TestQuery(t *testing.T) {
	liar := server{offset: 3 * time.Minute}
	tests := []struct {
		name     string
		servers  []server
		err      []string // in the error, nil for none
		agreeing []int    // indexes of the servers that agree
		outliers []int
		refused  map[int]string // index: in its refusal
		single   bool
		offset   time.Duration // expected Result.Offset, within 100 ms
	}{
		{name: "three agree", servers: []server{{offset: 10 * day}, {offset: 10*day + 3*time.Millisecond}, {offset: 10*day - 2*time.Millisecond}},
			agreeing: []int{0, 1, 2}, offset: 10 * day},
		{name: "one liar among three is ignored", servers: []server{{offset: time.Hour}, liar, {offset: time.Hour + 5*time.Millisecond}},
			agreeing: []int{0, 2}, outliers: []int{1}, offset: time.Hour},
		{name: "two liars disagreeing with one", servers: []server{{offset: 3 * time.Minute}, {offset: -2 * time.Hour}, {}},
			err: []string{"servers disagree", "says +3m0", "says -2h0m0", "says +0s"}},
		{name: "two that disagree", servers: []server{{}, liar},
			err: []string{"servers disagree", "no majority of the 2 valid answers"}},
		{name: "two that agree", servers: []server{{offset: -day}, {offset: -day + 900*time.Millisecond}},
			agreeing: []int{0, 1}, offset: -day + 450*time.Millisecond},
		{name: "single server", servers: []server{{offset: 5 * time.Second}}, agreeing: []int{0}, single: true, offset: 5 * time.Second},
		{name: "one of three answers: single", servers: []server{{silent: true}, {offset: time.Minute}, {garbage: []byte("hello")}},
			agreeing: []int{1}, single: true, offset: time.Minute,
			refused: map[int]string{0: "no answer within 500ms", 2: "unexpected EOF"}},
		{name: "kiss-o'-death", servers: []server{{kiss: "RATE"}, {kiss: "DENY"}, {kiss: "\x1b[2J"}, {}},
			agreeing: []int{3}, single: true,
			refused: map[int]string{0: `kiss code "RATE" (the server limits how often`, 1: `kiss code "DENY" (the server refuses this node)`, 2: `kiss code "?[2J"`}},
		{name: "spoofed origin", servers: []server{{badOrigin: true}, {}, {}},
			agreeing: []int{1, 2}, refused: map[int]string{0: "server response didn't match request"}},
		{name: "not synchronised, bad stratum, too far from its reference", servers: []server{{leap: 3}, {stratum: 16}, {rootDisp: 2 * time.Second}, {}},
			agreeing: []int{3}, single: true,
			refused: map[int]string{0: "invalid leap second", 1: "invalid stratum", 2: "want less than 1.5s"}},
		{name: "garbage packet", servers: []server{{garbage: bytes.Repeat([]byte{0xff}, 48)}},
			err: []string{"none of 1 servers gave a valid answer", "invalid mode"}, refused: map[int]string{0: "invalid mode"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addrs := make([]string, len(tt.servers))
			for i, s := range tt.servers {
				addrs[i] = s.start(t)
			}
			var logs bytes.Buffer
			res, err := ntp.Query(context.Background(), ntp.Config{Servers: addrs, Timeout: 500 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil))})
			if strings.ContainsAny(logs.String(), "\x1b") || (err != nil && strings.Contains(err.Error(), "\x1b")) {
				t.Errorf("escape character reached the log or error: %q %v", logs.String(), err)
			}
			for i, want := range tt.refused {
				if !refusedWith(res.Refused, addrs[i], want) {
					t.Errorf("server %d (%s): no refusal naming it with %q in %q", i, addrs[i], want, res.Refused)
				}
			}
			if len(res.Refused) != len(tt.refused) {
				t.Errorf("refused %q, want %d", res.Refused, len(tt.refused))
			}
			if tt.err != nil {
				if err == nil {
					t.Fatalf("no error; result %+v", res)
				}
				for _, want := range tt.err {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				if !res.Time.IsZero() || len(res.Agreeing) != 0 {
					t.Errorf("failed query has a time: %+v", res)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := servers(res.Agreeing), pick(addrs, tt.agreeing); !equalSet(got, want) {
				t.Errorf("agreeing %q, want %q", got, want)
			}
			if got, want := servers(res.Outliers), pick(addrs, tt.outliers); !equalSet(got, want) {
				t.Errorf("outliers %q, want %q", got, want)
			}
			if res.Single != tt.single {
				t.Errorf("Single = %v, want %v", res.Single, tt.single)
			}
			if d := res.Offset - tt.offset; d > 100*time.Millisecond || d < -100*time.Millisecond {
				t.Errorf("offset %v, want %v", res.Offset, tt.offset)
			}
			if d := res.Now().Sub(time.Now().Add(tt.offset)); d > 100*time.Millisecond || d < -100*time.Millisecond {
				t.Errorf("Now() is %v off the servers' time", d)
			}
			for _, s := range res.Agreeing {
				if s.Stratum != 2 || s.RTT < 0 || s.RTT > 500*time.Millisecond || s.Addr != s.Server {
					t.Errorf("sample %+v", s)
				}
			}
		})
	}
}

func refusedWith(errs []error, server, want string) bool {
	for _, err := range errs {
		if strings.Contains(err.Error(), "ntp server "+server+": ") && strings.Contains(err.Error(), want) {
			return true
		}
	}
	return false
}

func servers(s []ntp.Sample) []string {
	var names []string
	for _, x := range s {
		names = append(names, x.Server)
	}
	return names
}

func pick(addrs []string, idx []int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, addrs[i])
	}
	return out
}

func equalSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// The library's errors stay reachable for callers that want to tell a
// kiss-o'-death from other refusals.
func TestQueryKissOfDeathIs(t *testing.T) {
	res, err := ntp.Query(context.Background(), ntp.Config{Servers: []string{server{kiss: "RATE"}.start(t)}})
	if err == nil || len(res.Refused) != 1 || !errors.Is(res.Refused[0], bntp.ErrKissOfDeath) {
		t.Fatalf("err %v refused %v", err, res.Refused)
	}
}

func TestQueryAllSilent(t *testing.T) {
	var addrs []string
	for range 5 {
		addrs = append(addrs, server{silent: true}.start(t))
	}
	start := time.Now()
	res, err := ntp.Query(context.Background(), ntp.Config{Servers: addrs, Timeout: 400 * time.Millisecond})
	took := time.Since(start)
	if err == nil {
		t.Fatalf("no error: %+v", res)
	}
	// Asked one after the other, they would take 2 s.
	if took < 400*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("took %v, want the 400ms timeout (all at once)", took)
	}
	for _, a := range addrs {
		if !strings.Contains(err.Error(), "ntp server "+a+": no answer within 400ms") {
			t.Errorf("error %q does not name %s", err, a)
		}
	}
}

func TestQueryContextEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := ntp.Query(ctx, ntp.Config{Servers: []string{server{silent: true}.start(t)}, Timeout: 10 * time.Second})
	if took := time.Since(start); err == nil || took > 2*time.Second {
		t.Fatalf("err %v after %v", err, took)
	}
}

// One server under two names (and listed twice) must not vote twice.
func TestQueryCountsAServerOnce(t *testing.T) {
	liar := server{offset: time.Hour}.start(t)
	port := liar[strings.LastIndexByte(liar, ':')+1:]
	honest := server{}.start(t)
	res, err := ntp.Query(context.Background(), ntp.Config{Servers: []string{liar, "[::ffff:127.0.0.1]:" + port, liar, honest}, Timeout: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no majority of the 2 valid answers") || len(res.Refused) != 0 {
		t.Fatalf("err %v, result %+v", err, res)
	}
}

func TestQueryServerNames(t *testing.T) {
	honest := server{}.start(t)
	res, err := ntp.Query(context.Background(), ntp.Config{
		Servers: []string{honest, "", "[::1", "host:0", "host:ntp", "a]b:123", "ntp\x1b[2J.example", "fe80::1%\x1b"},
		Timeout: 500 * time.Millisecond,
	})
	if err != nil || !res.Single {
		t.Fatalf("err %v result %+v", err, res)
	}
	if len(res.Refused) != 7 {
		t.Errorf("refused %q, want 7", res.Refused)
	}
	for _, err := range res.Refused {
		if strings.Contains(err.Error(), "\x1b") {
			t.Errorf("refusal %q repeats an escape character", err)
		}
	}
	if _, err := ntp.Query(context.Background(), ntp.Config{}); err == nil || !strings.Contains(err.Error(), "no server to ask") {
		t.Errorf("no servers: %v", err)
	}
}
