package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
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
	known, err := s.knownNode(req.NodeID)
	if err != nil {
		return nil, err
	}
	adm, err := s.admit(&req, farm, known)
	if err == errPending {
		return nil, s.hold(&req, adm.ident)
	}
	if err != nil {
		s.log().Warn("boot refused", "node", req.NodeID, "farm", req.Farm, "kind", adm.ident.Kind, "err", err)
		return nil, err
	}
	if adm.answer != nil {
		s.log().Info("enrolling", "node", req.NodeID, "step", enrollStep(adm.answer))
		return adm.answer, nil
	}
	channel, err := s.channelFor(&req, farm.Channel)
	if err != nil {
		return nil, err
	}
	rel, err := s.releaseFor(farm, channel, req.NodeID)
	if err != nil {
		return nil, err
	}
	proto := answerProtocol(&req)
	rel, good, err := s.lastKnownGood(farm, channel, rel, known, proto)
	if err != nil {
		return nil, err
	}
	if err := checkReadable(rel, proto); err != nil {
		s.log().Warn("boot refused: release unreadable by the node", "node", req.NodeID, "protocol", proto, "channel", channel, "version", rel.Version, "node_protocol", rel.NodeProtocol)
		return nil, err
	}
	if known != nil && known.HighestRelease > rel.Version {
		// The node's image floor decides whether it boots this; the
		// operator should know it goes back.
		s.log().Warn("serving a release below the highest the node ran", "node", req.NodeID, "channel", channel, "version", rel.Version, "highest", known.HighestRelease)
	}
	bundle, err := s.bundle(&req, rel)
	if err != nil {
		return nil, err
	}
	token := newToken()
	err = s.DB.RecordBoot(db.Boot{Request: req, Served: rel.Version, Token: token, MaxNodes: s.maxNodes(), Identity: adm.ident}, s.now())
	if errors.Is(err, db.ErrFull) {
		s.log().Warn("boot refused: node limit", "node", req.NodeID, "max_nodes", s.maxNodes())
		return nil, fail(http.StatusServiceUnavailable, "%v (--max-nodes %d); nodes already known still boot", err, s.maxNodes())
	} else if err != nil {
		return nil, deniedOr(err)
	}
	s.metrics.boot()
	s.log().Info("boot", "node", req.NodeID, "farm", req.Farm, "channel", channel, "version", rel.Version, "agent", req.Agent, "identity", adm.ident.Kind)
	resp := &registry.BootResponse{
		Protocol: proto,
		NodeID:   req.NodeID,
		Channel:  channel,
		TUF:      bundle,
		Stores:   s.stores(r),
		Token:    token,
	}
	if resp.Protocol >= registry.ProtocolCache {
		resp.Cache = farm.Cache
	}
	if good != nil {
		fb, err := s.bundle(&req, *good)
		if err != nil {
			return nil, err
		}
		resp.Fallback = &registry.Fallback{DeadlineSeconds: farm.ReadyDeadline, TUF: fb}
	}
	if adm.ident.Kind == registry.KindTPM {
		if resp.QuoteNonce, err = s.issueFinal(req.NodeID, expected(rel)); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// answerProtocol answers a node in its own protocol: a protocol 2 node
// refuses any other, and gets no field it does not know.
func answerProtocol(req *registry.BootRequest) int {
	if req.Protocol < registry.Protocol {
		return req.Protocol
	}
	return registry.Protocol
}

// knownNode is the node's record, or nil for a node never seen.
func (s *Server) knownNode(id string) (*records.Node, error) {
	n, err := s.DB.Node(id)
	if errors.Is(err, db.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &n, nil
}

// deniedOr answers a node denied between admission and its record 403,
// as admission would have; other errors stay what they are.
func deniedOr(err error) error {
	if errors.Is(err, db.ErrDenied) {
		return fail(http.StatusForbidden, "%v", err)
	}
	return err
}

// hold records a node that waits for approval and tells it so: 409, which
// a node answers by asking again every few seconds.
func (s *Server) hold(req *registry.BootRequest, ident records.Identity) error {
	if err := s.DB.RecordPending(*req, ident, s.maxNodes(), s.now()); err != nil {
		if errors.Is(err, db.ErrFull) {
			return fail(http.StatusServiceUnavailable, "%v (--max-nodes %d)", err, s.maxNodes())
		}
		return deniedOr(err)
	}
	s.log().Info("boot held for approval", "node", req.NodeID, "farm", req.Farm, "identity", ident.Kind)
	return fail(http.StatusConflict, "node %s (%s identity) awaits approval in farm %s: zgrid node approve %s", req.NodeID, ident.Kind, req.Farm, req.NodeID)
}

func enrollStep(r *registry.BootResponse) string {
	if r.SendEK {
		return "asked for the endorsement key"
	}
	return "sent a credential to activate"
}

// newToken is a fresh boot token: whoever can show it received this boot
// answer, which a node ID (printed, guessable) does not prove.
func newToken() string {
	b := make([]byte, registry.TokenSize)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b)
}

// stores is what a node fetches from, in the order it tries them.
func (s *Server) stores(r *http.Request) []string {
	if s.MirrorsFirst {
		return append(slices.Clone(s.Mirrors), s.ownStore(r))
	}
	return append([]string{s.ownStore(r)}, s.Mirrors...)
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
	att, err := s.attestation(&rep)
	if err != nil {
		return err
	}
	err = s.DB.RecordStatus(rep, att, s.now())
	switch {
	case errors.Is(err, db.ErrNotFound):
		return fail(http.StatusNotFound, "node %s unknown: it must boot through this registry first", rep.NodeID)
	case errors.Is(err, db.ErrToken):
		s.log().Warn("status refused: boot token does not match", "node", rep.NodeID, "client", r.RemoteAddr)
		return fail(http.StatusForbidden, "status for node %s: boot token does not match", rep.NodeID)
	case errors.Is(err, db.ErrFallback):
		return fail(http.StatusConflict, "%v", err)
	case errors.Is(err, db.ErrDenied):
		s.log().Warn("status refused: node denied", "node", rep.NodeID, "client", r.RemoteAddr)
		return fail(http.StatusForbidden, "status for %v", err)
	}
	if err != nil {
		return err
	}
	s.log().Info("status", "node", rep.NodeID, "source", rep.Source, "state", rep.State, "reason", rep.Reason)
	if fb := rep.FellBack; fb != nil {
		s.log().Warn("node fell back to its last known good release", "node", rep.NodeID, "from", fb.From, "to", rep.ReleaseVersion, "reason", fb.Reason)
	}
	if att != nil {
		lvl := slog.LevelInfo
		if att.State != records.AttestOK {
			lvl = slog.LevelWarn
		}
		s.log().Log(context.Background(), lvl, "attestation", "node", rep.NodeID, "state", att.State, "detail", att.Detail)
	}
	return nil
}

// attestation verifies the quote a report carries against the node's
// enrolled key. It runs before the database checks the token; a forger
// cannot spend the node's nonce, which only the node's boot answer held.
func (s *Server) attestation(rep *registry.StatusReport) (*records.Attestation, error) {
	if rep.TPM == nil {
		return nil, nil
	}
	n, err := s.DB.Node(rep.NodeID)
	if errors.Is(err, db.ErrNotFound) {
		return nil, fail(http.StatusNotFound, "node %s unknown: it must boot through this registry first", rep.NodeID)
	} else if err != nil {
		return nil, err
	}
	if n.Identity.Kind != registry.KindTPM {
		return nil, fail(http.StatusBadRequest, "status for node %s: a quote from a node enrolled without a TPM", rep.NodeID)
	}
	return s.verifyFinal(n, rep), nil
}
