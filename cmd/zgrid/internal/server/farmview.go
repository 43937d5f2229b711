package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// FarmView is one farm as zgrid farm show prints it: its record, its
// nodes by state, and what its channel serves them now.
type FarmView struct {
	records.Farm
	// Nodes counts the farm's nodes by state, every state present.
	Nodes map[string]int `json:"nodes"`
	// Serves is the release the farm's nodes get, or two under a
	// rollout: the newest to its share, the one before to the rest.
	Serves []Serving `json:"serves"`
	// Problem is why the farm's nodes get no release (none published, a
	// pin not published or withdrawn): what their boots are answered.
	Problem string `json:"problem,omitempty"`
}

// Serving is a release and the share of a farm's nodes it goes to.
type Serving struct {
	Version   uint64    `json:"version"`
	Percent   int       `json:"percent"`
	Expires   time.Time `json:"expires"`
	Withdrawn bool      `json:"withdrawn,omitempty"`
}

// ShowFarm gathers a farm's view.
func (s *Server) ShowFarm(name string) (FarmView, error) {
	if err := checkName("farm", name); err != nil {
		return FarmView{}, err
	}
	f, err := s.DB.Farm(name)
	if err != nil {
		return FarmView{}, fail(dbStatus(err), "%v", err)
	}
	v := FarmView{Farm: f, Serves: []Serving{}}
	if v.Nodes, err = s.farmNodes(name); err != nil {
		return v, err
	}
	in, rest, err := s.farmReleases(f)
	var he *httpError
	if errors.As(err, &he) {
		v.Problem = he.msg
		return v, nil
	} else if err != nil {
		return v, err
	}
	if f.Rollout == 0 || rest.Version == in.Version {
		v.Serves = []Serving{serving(in, 100)}
	} else {
		v.Serves = []Serving{serving(in, f.Rollout), serving(rest, 100-f.Rollout)}
	}
	return v, nil
}

func serving(r records.ReleaseInfo, percent int) Serving {
	return Serving{Version: r.Version, Percent: percent, Expires: r.Expires, Withdrawn: r.Withdrawn}
}

// farmNodes counts a farm's nodes by state: a scan of every node, which
// an operator's look at one farm can afford.
func (s *Server) farmNodes(farm string) (map[string]int, error) {
	ns, err := s.DB.Nodes()
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, st := range registry.NodeStates {
		out[st] = 0
	}
	for _, n := range ns {
		if n.Farm == farm {
			out[n.State]++
		}
	}
	return out, nil
}

func (s *Server) getFarm(w http.ResponseWriter, r *http.Request) {
	v, err := s.ShowFarm(r.PathValue("name"))
	if err != nil {
		s.replyError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
