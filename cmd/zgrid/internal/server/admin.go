package server

import (
	"net/http"
	"strings"

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

func (s *Server) acceptRelease(w http.ResponseWriter, r *http.Request) (registry.ReleaseInfo, error) {
	body, err := readBody(w, r, registry.MaxBodySize)
	if err != nil {
		return registry.ReleaseInfo{}, err
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
	var f registry.Farm
	err := decodeJSON(w, r, &f)
	if err == nil {
		f, err = s.CreateFarm(f.Name, f.Channel)
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
	writeJSON(w, http.StatusOK, nonNil(ns))
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := checkNodeID(id)
	var n registry.Node
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

// CreateFarm adds a farm following channel.
func (s *Server) CreateFarm(name, channel string) (registry.Farm, error) {
	f := registry.Farm{Name: name, Channel: channel, Created: s.now()}
	if err := checkName("farm name", name); err != nil {
		return f, err
	}
	if err := checkChannel(channel); err != nil {
		return f, err
	}
	if s.TUF != nil {
		if _, ok := s.TUF.Channels.Channels[channel]; !ok {
			return f, fail(http.StatusBadRequest, "channel %s: nodes do not accept it (channels.json has %s)", channel, strings.Join(s.TUF.Channels.Names(), ", "))
		}
	}
	if err := s.DB.CreateFarm(f); err != nil {
		return f, fail(dbStatus(err), "%v", err)
	}
	return f, nil
}
