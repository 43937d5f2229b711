package server

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
	"time"

	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// ChallengeTTL is how long a nonce stays good: one challenge, one quote and
// one request, with room for a slow TPM.
const ChallengeTTL = 2 * time.Minute

// maxNonces bounds the outstanding nonces: /v1/challenge takes no
// credential, so a flood must not grow memory without bound. Beyond it the
// oldest expire first (the rate limiter keeps one client from getting
// there alone).
const maxNonces = 100000

// nonces are the challenges issued and not yet used. Each is good once, for
// the node it was issued to, until it expires; a quote over any other value
// is a replay or a forgery.
type nonces struct {
	mu sync.Mutex
	m  map[string]nonce
}

type nonce struct {
	node    string
	expires time.Time
	// final marks the nonce of the quote before hand-off, and expect is
	// what that quote's log must hold beyond the node's baseline.
	final  bool
	expect []measure.Event
}

func (n *nonces) issue(node string, now time.Time) string {
	return n.add(nonce{node: node, expires: now.Add(ChallengeTTL)}, now)
}

// issueFinal is the nonce of a boot answer, for the quote the node sends
// before hand-off.
func (n *nonces) issueFinal(node string, expect []measure.Event, now time.Time) string {
	return n.add(nonce{node: node, expires: now.Add(finalNonceTTL), final: true, expect: expect}, now)
}

func (n *nonces) add(e nonce, now time.Time) string {
	b := make([]byte, registry.NonceSize)
	rand.Read(b)
	v := hex.EncodeToString(b)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = map[string]nonce{}
	}
	if len(n.m) >= maxNonces {
		n.sweep(now)
	}
	n.m[v] = e
	return v
}

// sweep drops expired nonces, and if that is not enough the ones closest
// to expiring.
func (n *nonces) sweep(now time.Time) {
	for k, v := range n.m {
		if now.After(v.expires) {
			delete(n.m, k)
		}
	}
	for cut := now.Add(ChallengeTTL / 2); len(n.m) >= maxNonces; cut = cut.Add(ChallengeTTL / 4) {
		for k, v := range n.m {
			if v.expires.Before(cut) {
				delete(n.m, k)
			}
		}
	}
}

// use consumes a challenge nonce v for node: it reports whether v was
// issued to node and is still good. A nonce is gone after its first use,
// whatever the outcome.
func (n *nonces) use(v, node string, now time.Time) bool {
	e, ok := n.take(v, node, now)
	return ok && !e.final
}

// useFinal consumes a boot answer's nonce and returns what its quote must
// show.
func (n *nonces) useFinal(v, node string, now time.Time) ([]measure.Event, bool) {
	e, ok := n.take(v, node, now)
	return e.expect, ok && e.final
}

func (n *nonces) take(v, node string, now time.Time) (nonce, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.m[v]
	delete(n.m, v)
	return e, ok && e.node == node && !now.After(e.expires)
}

func (s *Server) challenge(w http.ResponseWriter, r *http.Request) {
	var req registry.ChallengeRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.replyError(w, r, err)
		return
	}
	if req.Protocol < registry.ProtocolTPM {
		s.replyError(w, r, fail(http.StatusBadRequest, "challenge: node speaks protocol %d; challenges are protocol %d", req.Protocol, registry.ProtocolTPM))
		return
	}
	if err := checkNodeID(req.NodeID); err != nil {
		s.replyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, registry.ChallengeResponse{Protocol: registry.Protocol, Nonce: s.nonces.issue(req.NodeID, s.now())})
}
