package server

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/trust"
)

// Publish checks and stores a release upload. It refuses what every node
// would refuse at boot: targets that do not verify against the current
// root (unknown or revoked keys, too few signatures, expired), a release
// document that does not match them or is of another channel, a channel
// nodes do not accept, a version not above the channel's highest,
// components missing from the store, an entrypoint that is not an
// executable file of a component, and setuid/setgid files or device nodes
// in a component that the release does not allow them in. A withdrawal
// (targets naming no release) needs the same signatures. The CLI calls it
// directly when it owns the database.
func (s *Server) Publish(body []byte) (records.ReleaseInfo, error) {
	var info records.ReleaseInfo
	if s.TUF == nil {
		return info, fail(http.StatusServiceUnavailable, "%v", errNoTUF)
	}
	up, err := records.DecodeUpload(body)
	if err != nil {
		return info, fail(http.StatusBadRequest, "%v", err)
	}
	if _, ok := s.TUF.Channels.Channels[up.Channel]; !ok {
		return info, fail(http.StatusBadRequest, "channel %s: nodes do not accept it (not in channels.json: %s)", up.Channel, strings.Join(s.TUF.Channels.Names(), ", "))
	}
	now := s.now()
	r, err := trust.VerifyRelease(s.TUF.Roots, up.Targets, up.Release, now)
	withdrawn := errors.Is(err, trust.ErrWithdrawn)
	switch {
	case withdrawn && len(up.Release) > 0:
		return info, fail(http.StatusBadRequest, "release refused: a withdrawal carries no release document")
	case err != nil && !withdrawn:
		return info, fail(http.StatusBadRequest, "release refused: %v", err)
	}
	if info, err = s.summarise(up, r, withdrawn); err != nil {
		return info, err
	}
	if !withdrawn {
		if info.NodeProtocol, err = s.checkContents(r); err != nil {
			return info, err
		}
	}
	info.Published = now
	info.Envelope = body
	if err := s.DB.AddRelease(info); err != nil {
		return info, fail(dbStatus(err), "%v", err)
	}
	s.log().Info("release published", "channel", info.Channel, "version", info.Version, "withdrawn", withdrawn, "keys", len(info.KeyIDs))
	if info.NodeProtocol > registry.MinNodeProtocol {
		s.log().Warn(fmt.Sprintf("release %s v%d has components nodes of boot protocol below %d cannot read; they are refused it", info.Channel, info.Version, info.NodeProtocol),
			"channel", info.Channel, "version", info.Version, "node_protocol", info.NodeProtocol)
	}
	info.Envelope = nil
	return info, nil
}

func (s *Server) summarise(up *records.ReleaseUpload, r *release.Release, withdrawn bool) (records.ReleaseInfo, error) {
	m, err := metadata.Targets().FromBytes(up.Targets)
	if err != nil {
		return records.ReleaseInfo{}, fail(http.StatusBadRequest, "targets: %v", err)
	}
	info := records.ReleaseInfo{Channel: up.Channel, Version: uint64(m.Signed.Version), Expires: m.Signed.Expires, Withdrawn: withdrawn}
	for _, sig := range m.Signatures {
		info.KeyIDs = append(info.KeyIDs, sig.KeyID)
	}
	if withdrawn {
		return info, nil
	}
	if r.Channel != up.Channel {
		return info, fail(http.StatusBadRequest, "release refused: the document is for channel %s, the upload for %s", r.Channel, up.Channel)
	}
	for _, c := range r.Components {
		info.Components = append(info.Components, records.Component{Name: c.Name, Flist: c.Flist, Mount: c.Mount})
	}
	return info, nil
}

// checkContents opens every component's flist from the store and checks
// it against the release: present, no setuid/setgid or device entries
// unless allowed, and the entrypoint an executable regular file. It
// returns the oldest node protocol that reads every component.
func (s *Server) checkContents(r *release.Release) (int, error) {
	owner := entrypointOwner(r)
	proto := registry.MinNodeProtocol
	for _, c := range r.Components {
		b, err := os.ReadFile(s.Store.FlistPath(c.Flist))
		if errors.Is(err, os.ErrNotExist) {
			return 0, fail(http.StatusUnprocessableEntity, "component %s: flist %s not in the store: upload it first", c.Name, c.Flist)
		} else if err != nil {
			return 0, err
		}
		f, err := flist.Decode(b)
		if err != nil {
			return 0, fail(http.StatusUnprocessableEntity, "component %s: flist %s: %v", c.Name, c.Flist, err)
		}
		proto = max(proto, registry.NodeProtocolFor(f.Hash))
		pol := flist.Policy{AllowSetuid: c.AllowSetuid, AllowDevices: c.AllowDevices}
		if err := f.FirstPrivileged(pol); err != nil {
			flag := "setuid=yes"
			var pe *flist.PolicyError
			if errors.As(err, &pe) && pe.Device() {
				flag = "devices=yes"
			}
			return 0, fail(http.StatusUnprocessableEntity, "component %s: %v (the release may allow it: %s on --component)", c.Name, err, flag)
		}
		if c.Name == owner {
			rel, _ := under(r.Entrypoint.Path, c.Mount)
			if err := checkExecutable(f, rel); err != nil {
				return 0, fail(http.StatusUnprocessableEntity, "entrypoint %s in component %s: %v", r.Entrypoint.Path, c.Name, err)
			}
		}
	}
	if owner == "" {
		return 0, fail(http.StatusUnprocessableEntity, "entrypoint %s is in no component", r.Entrypoint.Path)
	}
	return proto, nil
}

// entrypointOwner names the component the entrypoint is in: the one with
// the deepest mount above it, which hides the others there.
func entrypointOwner(r *release.Release) string {
	owner, depth := "", -1
	for _, c := range r.Components {
		if _, ok := under(r.Entrypoint.Path, c.Mount); ok && len(c.Mount) > depth {
			owner, depth = c.Name, len(c.Mount)
		}
	}
	return owner
}

// under gives p relative to mount when p is inside it.
func under(p, mount string) (string, bool) {
	if mount == "/" {
		return strings.TrimPrefix(p, "/"), true
	}
	if rest, ok := strings.CutPrefix(p, mount+"/"); ok {
		return rest, true
	}
	return "", false
}

func checkExecutable(f *flist.Flist, rel string) error {
	for _, e := range f.Entries {
		if path.Clean(e.Path) != rel {
			continue
		}
		if e.Type != flist.TypeFile {
			return fmt.Errorf("not a regular file (type %v)", e.Type)
		}
		if e.Mode&0o111 == 0 {
			return fmt.Errorf("mode %#o is not executable", e.Mode)
		}
		return nil
	}
	return errors.New("no such file in the component")
}
