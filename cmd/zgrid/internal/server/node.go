package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// checkNodeID and checkName are registry's checks (one definition for node
// and registry) as 400 answers.
func checkNodeID(id string) error {
	if err := registry.CheckNodeID(id); err != nil {
		return fail(http.StatusBadRequest, "%v", err)
	}
	return nil
}

func checkName(what, n string) error {
	if err := registry.CheckName(what, n); err != nil {
		return fail(http.StatusBadRequest, "%v", err)
	}
	return nil
}

func (s *Server) boot(w http.ResponseWriter, r *http.Request) {
	resp, err := s.bootAnswer(w, r)
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// DefaultFarm is the farm of nodes that name none.
const DefaultFarm = "default"

func (s *Server) bootAnswer(w http.ResponseWriter, r *http.Request) (*registry.BootResponse, error) {
	var req registry.BootRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return nil, err
	}
	if err := checkProtocol(&req); err != nil {
		return nil, err
	}
	// Every field is bounded before anything is looked up or stored: the
	// request takes no credential.
	if err := req.Validate(); err != nil {
		return nil, fail(http.StatusBadRequest, "%v", err)
	}
	if s.TUF == nil {
		return nil, fail(http.StatusServiceUnavailable, "%v", errNoTUF)
	}
	if req.Farm == "" {
		// A node booted without zeroboot.farm lets the registry decide:
		// it joins the farm named "default", if the operator made one.
		req.Farm = DefaultFarm
	}
	farm, err := s.DB.Farm(req.Farm)
	if errors.Is(err, db.ErrNotFound) {
		return nil, fail(http.StatusNotFound, "farm %s not found", req.Farm)
	} else if err != nil {
		return nil, err
	}
	channel, err := s.channelFor(&req, farm.Channel)
	if err != nil {
		return nil, err
	}
	rel, err := s.DB.LatestRelease(channel)
	if errors.Is(err, db.ErrNotFound) {
		return nil, fail(http.StatusNotFound, "no release on channel %s", channel)
	} else if err != nil {
		return nil, err
	}
	bundle, err := s.bundle(&req, rel)
	if err != nil {
		return nil, err
	}
	token := newToken()
	err = s.DB.RecordBoot(db.Boot{Request: req, Served: rel.Version, Token: token, MaxNodes: s.maxNodes()}, s.now())
	if errors.Is(err, db.ErrFull) {
		s.log().Warn("boot refused: node limit", "node", req.NodeID, "max_nodes", s.maxNodes())
		return nil, fail(http.StatusServiceUnavailable, "%v (--max-nodes %d); nodes already known still boot", err, s.maxNodes())
	} else if err != nil {
		return nil, err
	}
	s.metrics.boot()
	s.log().Info("boot", "node", req.NodeID, "farm", req.Farm, "channel", channel, "version", rel.Version, "agent", req.Agent)
	return &registry.BootResponse{
		Protocol: registry.Protocol,
		NodeID:   req.NodeID,
		Channel:  channel,
		TUF:      bundle,
		Stores:   append([]string{s.ownStore(r)}, s.Mirrors...),
		Token:    token,
	}, nil
}

// newToken is a fresh boot token: whoever can show it received this boot
// answer, which a node ID (printed, guessable) does not prove.
func newToken() string {
	b := make([]byte, registry.TokenSize)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b)
}

// ownStore is our store's URL as the node reached us, so that it works
// through whatever address or name the node used (NAT, QEMU user net).
func (s *Server) ownStore(r *http.Request) string {
	u := url.URL{Scheme: "https", Host: r.Host, Path: "/store"}
	if r.TLS == nil {
		u.Scheme = "http"
	}
	return u.String()
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if err := s.recordStatus(w, r); err != nil {
		s.replyError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) recordStatus(w http.ResponseWriter, r *http.Request) error {
	var rep registry.StatusReport
	if err := decodeJSON(w, r, &rep); err != nil {
		return err
	}
	if err := checkNodeID(rep.NodeID); err != nil {
		return err
	}
	if rep.Token == "" {
		return fail(http.StatusUnauthorized, "status for node %s: boot token missing: send the token of the node's boot answer", rep.NodeID)
	}
	if err := rep.Validate(); err != nil {
		return fail(http.StatusBadRequest, "%v", err)
	}
	err := s.DB.RecordStatus(rep, s.now())
	switch {
	case errors.Is(err, db.ErrNotFound):
		return fail(http.StatusNotFound, "node %s unknown: it must boot through this registry first", rep.NodeID)
	case errors.Is(err, db.ErrToken):
		s.log().Warn("status refused: boot token does not match", "node", rep.NodeID, "client", r.RemoteAddr)
		return fail(http.StatusForbidden, "status for node %s: boot token does not match", rep.NodeID)
	}
	if err != nil {
		return err
	}
	s.log().Info("status", "node", rep.NodeID, "source", rep.Source, "state", rep.State, "reason", rep.Reason)
	return nil
}
