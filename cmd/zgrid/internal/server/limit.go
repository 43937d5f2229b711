package server

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Defaults for the node endpoints' rate limit and the node cap. A fleet
// behind one NAT address boots through one bucket: 100 nodes powered on
// at once fit the burst, and 20/s lets a rack of them retry without
// tripping it.
const (
	DefaultRate     = 20
	DefaultBurst    = 100
	DefaultMaxNodes = 100000
	// maxClients bounds the limiter's memory: at most this many client
	// addresses have a bucket (about 100 bytes each).
	maxClients = 1 << 16
)

// limiter is a token bucket per client address.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	max   int // buckets kept at most
	now   func() time.Time

	mu        sync.Mutex
	clients   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst, clients int, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: float64(max(burst, 1)), max: clients, now: now, clients: map[string]*bucket{}}
}

// allow takes a token from key's bucket. Without one it reports how long
// until the next token.
func (l *limiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.clients[key]
	if b == nil {
		l.makeRoom(now)
		b = &bucket{tokens: l.burst, last: now}
		l.clients[key] = b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 { // a clock stepping back refills nothing
		b.tokens = math.Min(l.burst, b.tokens+dt*l.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// makeRoom keeps the map under max before a new client joins it. Buckets
// idle long enough to be full again are the same as no bucket, so they go
// first; the sweep runs at most once per refill time, so a flood of new
// addresses cannot make every request walk the map. If that is not
// enough, an arbitrary client loses its bucket: that can only give it
// more requests, never fewer.
func (l *limiter) makeRoom(now time.Time) {
	if len(l.clients) < l.max {
		return
	}
	refill := time.Duration(l.burst / l.rate * float64(time.Second))
	if now.Sub(l.lastSweep) >= refill {
		l.lastSweep = now
		for k, b := range l.clients {
			if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
				delete(l.clients, k)
			}
		}
	}
	for k := range l.clients {
		if len(l.clients) < l.max {
			break
		}
		delete(l.clients, k)
	}
}

func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// clientKey is the address a request's bucket is kept under. An IPv6
// client usually holds a whole /64, so the /64 is one client; otherwise
// one host could take a fresh bucket per request.
func clientKey(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		host, _, err := net.SplitHostPort(remoteAddr)
		if err != nil {
			return remoteAddr
		}
		return host
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// limit wraps a node endpoint in the per-client rate limit.
func (s *Server) limit(h http.HandlerFunc) http.Handler {
	l := s.limiter()
	if l == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := clientKey(r.RemoteAddr)
		ok, wait := l.allow(key)
		if !ok {
			s.metrics.rateLimited()
			secs := max(1, int(math.Ceil(wait.Seconds())))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, http.StatusTooManyRequests, fmt.Sprintf("rate limit: client %s is over %g requests/s (burst %d) on the node endpoints; retry in %ds",
				key, l.rate, int(l.burst), secs))
			return
		}
		h(w, r)
	})
}

// limiter is the server's one limiter, built from Rate and Burst on first
// use; nil when Rate is negative.
func (s *Server) limiter() *limiter {
	s.limOnce.Do(func() {
		rate, burst := s.Rate, s.Burst
		if rate < 0 {
			return
		}
		if rate == 0 {
			rate = DefaultRate
		}
		if burst <= 0 {
			burst = DefaultBurst
		}
		s.lim = newLimiter(rate, burst, maxClients, s.now)
	})
	return s.lim
}

func (s *Server) maxNodes() int {
	switch {
	case s.MaxNodes < 0:
		return 0
	case s.MaxNodes == 0:
		return DefaultMaxNodes
	}
	return s.MaxNodes
}
