package server

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// ChallengeTTL is how long a nonce stays good: one challenge, one quote and
// one request, with room for a slow TPM.
const ChallengeTTL = 2 * time.Minute

// maxNonces bounds the outstanding nonces: /v1/challenge takes no
// credential, so a flood must not grow the records without bound. Beyond
// it the closest to expiring go first (the rate limiter keeps one client
// from getting there alone).
const maxNonces = 100000

// nonceKind is the kind of the nonces' tickets in the records: any
// replica redeems a nonce another issued. Each is good once, for the
// node it was issued to, until it expires; a quote over any other value
// is a replay or a forgery.
const nonceKind = "nonce"

// nonce is what a nonce's ticket holds.
type nonce struct {
	Node string `json:"node"`
	// Final marks the nonce of the quote before hand-off, and Expect is
	// what that quote's log must hold beyond the node's baseline.
	Final  bool            `json:"final,omitempty"`
	Expect []measure.Event `json:"expect,omitempty"`
}

// issueNonce is a /v1/challenge nonce for node.
func (s *Server) issueNonce(node string) (string, error) {
	return s.addNonce(nonce{Node: node}, ChallengeTTL)
}

// issueFinal is the nonce of a boot answer, for the quote the node sends
// before hand-off.
func (s *Server) issueFinal(node string, expect []measure.Event) (string, error) {
	return s.addNonce(nonce{Node: node, Final: true, Expect: expect}, finalNonceTTL)
}

func (s *Server) addNonce(e nonce, ttl time.Duration) (string, error) {
	b := make([]byte, registry.NonceSize)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	v := hex.EncodeToString(b)
	val, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("nonce for node %s: %w", e.Node, err)
	}
	now := s.now()
	if err := s.DB.PutTicket(db.Ticket{Kind: nonceKind, ID: v, Value: val, Expires: now.Add(ttl)}, maxNonces, now); err != nil {
		return "", fmt.Errorf("nonce for node %s: %w", e.Node, err)
	}
	return v, nil
}

// useNonce consumes a challenge nonce v for node: it reports whether v
// was issued to node and is still good. A nonce is gone after its first
// use, whatever the outcome.
func (s *Server) useNonce(v, node string) (bool, error) {
	e, ok, err := s.takeNonce(v, node)
	return ok && !e.Final, err
}

// useFinal consumes a boot answer's nonce and returns what its quote must
// show.
func (s *Server) useFinal(v, node string) ([]measure.Event, bool, error) {
	e, ok, err := s.takeNonce(v, node)
	return e.Expect, ok && e.Final, err
}

// takeNonce takes v's ticket: not found is no error, only not ok.
func (s *Server) takeNonce(v, node string) (nonce, bool, error) {
	var e nonce
	val, err := s.DB.TakeTicket(nonceKind, v, s.now())
	if errors.Is(err, db.ErrNotFound) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("node %s: quote nonce: %w", node, err)
	}
	if err := json.Unmarshal(val, &e); err != nil {
		return e, false, fmt.Errorf("node %s: quote nonce: %w", node, err)
	}
	return e, e.Node == node, nil
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
	v, err := s.issueNonce(req.NodeID)
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, registry.ChallengeResponse{Protocol: registry.Protocol, Nonce: v})
}
