package server

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

func (s *Server) postRelease(w http.ResponseWriter, r *http.Request) {
	info, err := s.acceptRelease(w, r)
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, info)
}

func (s *Server) acceptRelease(w http.ResponseWriter, r *http.Request) (records.ReleaseInfo, error) {
	body, err := readBody(w, r, registry.MaxBodySize)
	if err != nil {
		return records.ReleaseInfo{}, err
	}
	return s.Publish(body)
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request) {
	ch := r.URL.Query().Get("channel")
	if ch != "" {
		if err := checkChannel(ch); err != nil {
			s.replyError(w, r, err)
			return
		}
	}
	rs, err := s.DB.Releases(ch)
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	for i := range rs {
		if r.URL.Query().Get("envelopes") != "1" {
			rs[i].Envelope = nil
		}
	}
	writeJSON(w, http.StatusOK, nonNil(rs))
}

func (s *Server) postFarm(w http.ResponseWriter, r *http.Request) {
	var f records.Farm
	err := decodeJSON(w, r, &f)
	if err == nil {
		f, err = s.CreateFarm(f)
	}
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, f)
}

func (s *Server) listFarms(w http.ResponseWriter, r *http.Request) {
	fs, err := s.DB.Farms()
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(fs))
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	ns, err := s.DB.Nodes()
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(records.WithoutBoots(ns)))
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := checkNodeID(id)
	var n records.Node
	if err == nil {
		if n, err = s.DB.Node(id); err != nil {
			err = fail(dbStatus(err), "%v", err)
		}
	}
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// CreateFarm adds a farm following its channel, with its enrollment
// policy.
func (s *Server) CreateFarm(f records.Farm) (records.Farm, error) {
	f.Created = s.now()
	if err := s.checkFarm(f); err != nil {
		return f, err
	}
	if err := s.DB.CreateFarm(f); err != nil {
		return f, fail(dbStatus(err), "%v", err)
	}
	return f, nil
}

// UpdateFarm replaces an existing farm's channel and policy.
func (s *Server) UpdateFarm(f records.Farm) (records.Farm, error) {
	if err := s.checkFarm(f); err != nil {
		return f, err
	}
	f, err := s.DB.UpdateFarm(f)
	if err != nil {
		return f, fail(dbStatus(err), "%v", err)
	}
	return f, nil
}

func (s *Server) checkFarm(f records.Farm) error {
	if err := checkName("farm name", f.Name); err != nil {
		return err
	}
	if err := checkChannel(f.Channel); err != nil {
		return err
	}
	if err := records.CheckEnroll(f.Enroll); err != nil {
		return fail(http.StatusBadRequest, "farm %s: %v", f.Name, err)
	}
	if err := f.Cache.Check(); err != nil {
		return fail(http.StatusBadRequest, "farm %s: %v", f.Name, err)
	}
	if err := f.CheckRollout(); err != nil {
		return fail(http.StatusBadRequest, "farm %s: %v", f.Name, err)
	}
	if err := registry.CheckReadyDeadline(f.ReadyDeadline); err != nil {
		return fail(http.StatusBadRequest, "farm %s: %v", f.Name, err)
	}
	if f.Pin != 0 {
		rs, err := s.DB.Releases(f.Channel)
		if err != nil {
			return err
		}
		if _, err := pinned(f, rs); err != nil {
			return err
		}
	}
	if s.TUF != nil {
		if _, ok := s.TUF.Channels.Channels[f.Channel]; !ok {
			return fail(http.StatusBadRequest, "channel %s: nodes do not accept it (channels.json has %s)", f.Channel, strings.Join(s.TUF.Channels.Names(), ", "))
		}
	}
	return nil
}

func (s *Server) putFarm(w http.ResponseWriter, r *http.Request) {
	var f records.Farm
	err := decodeJSON(w, r, &f)
	if err == nil && f.Name != r.PathValue("name") {
		err = fail(http.StatusBadRequest, "farm %q in the body, %q in the path", f.Name, r.PathValue("name"))
	}
	if err == nil {
		f, err = s.UpdateFarm(f)
	}
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

// Approve lets a node held by an approval farm, or denied, boot, and
// resets its measurement baseline.
func (s *Server) Approve(id string) (records.Node, error) {
	return s.changeNode(id, "approved", s.DB.Approve)
}

// Deny refuses a node's boot requests and status reports until Approve.
func (s *Server) Deny(id string) (records.Node, error) {
	return s.changeNode(id, "denied", s.DB.Deny)
}

func (s *Server) changeNode(id, done string, change func(string) (records.Node, error)) (records.Node, error) {
	if err := checkNodeID(id); err != nil {
		return records.Node{}, err
	}
	n, err := change(id)
	if err != nil {
		return n, fail(dbStatus(err), "%v", err)
	}
	s.log().Info("node "+done, "node", id, "farm", n.Farm)
	return n, nil
}

// nodeAction answers an admin request that changes one node.
func (s *Server) nodeAction(change func(string) (records.Node, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, err := change(r.PathValue("id"))
		if err != nil {
			s.replyError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, n)
	}
}

// DeleteNode forgets a node (its record, tokens and counts).
func (s *Server) DeleteNode(id string) (records.Node, error) {
	n, err := s.DB.DeleteNode(id)
	if err != nil {
		return n, fail(dbStatus(err), "%v", err)
	}
	s.log().Info("node deleted", "node", id, "farm", n.Farm)
	return n, nil
}

func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) {
	n, err := s.DeleteNode(r.PathValue("id"))
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, n)
}

// FarmDeleted is the answer to DELETE /v1/admin/farms/{name}.
type FarmDeleted struct {
	Farm  string `json:"farm"`
	Nodes int    `json:"nodes"` // assigned to it when it was deleted
}

// DeleteFarm removes a farm; with nodes assigned only when forced.
func (s *Server) DeleteFarm(name string, force bool) (FarmDeleted, error) {
	n, err := s.DB.DeleteFarm(name, force)
	if err != nil {
		return FarmDeleted{}, fail(dbStatus(err), "%v", err)
	}
	s.log().Info("farm deleted", "farm", name, "nodes", n, "forced", force)
	return FarmDeleted{Farm: name, Nodes: n}, nil
}

func (s *Server) deleteFarm(w http.ResponseWriter, r *http.Request) {
	force := r.URL.Query().Get("force")
	if force != "" && force != "true" {
		s.replyError(w, r, fail(http.StatusBadRequest, "force=%q: want true or nothing", force))
		return
	}
	d, err := s.DeleteFarm(r.PathValue("name"), force == "true")
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// Allow lists a node ID or EK fingerprint for farms that enroll listed
// nodes only.
func (s *Server) Allow(key string) error {
	if strings.HasPrefix(key, "sha256:") {
		if len(key) != len("sha256:")+64 || strings.Trim(key[len("sha256:"):], "0123456789abcdef") != "" {
			return fail(http.StatusBadRequest, "EK fingerprint %q: want sha256: and 64 lower-case hex digits", key)
		}
	} else if err := checkNodeID(key); err != nil {
		return err
	}
	return s.DB.Allow(key)
}

func (s *Server) allow(w http.ResponseWriter, r *http.Request) {
	var a records.Allowed
	err := decodeJSON(w, r, &a)
	if err == nil {
		err = s.Allow(a.Key)
	}
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// backupTimeout bounds one backup download; the server's write timeout
// (minutes) is too short for a large database on a slow link.
const backupTimeout = time.Hour

// backup streams a consistent copy of the database: one read transaction
// (bbolt's WriteTo), so the server keeps answering and writing meanwhile,
// and none of those writes is in the copy, half or whole. Content-Length
// is the copy's size, so a cut download is seen by the client.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	started := false
	// Best effort: a ResponseWriter without deadlines keeps the server's.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(backupTimeout))
	bk, ok := s.DB.(db.Backuper)
	if !ok {
		// PostgreSQL: one file of the records is pg_dump's job, and a
		// copy through one replica would not be the other replicas'.
		s.replyError(w, r, fail(http.StatusNotImplemented, "backup: the records are in PostgreSQL, not a zgrid.db: back them up with pg_dump"))
		return
	}
	n, err := bk.Backup(func(size int64) (io.Writer, error) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Header().Set("Content-Disposition", `attachment; filename="zgrid.db"`)
		w.WriteHeader(http.StatusOK)
		started = true
		return w, nil
	})
	if err != nil && !started {
		s.replyError(w, r, err)
		return
	}
	if err != nil {
		// The status is sent; the short body tells the client.
		s.log().Error("backup cut short", "bytes", n, "err", err)
		return
	}
	s.log().Info("backup sent", "bytes", n)
}
