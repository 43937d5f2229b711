package server

import (
	"time"

	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/release"
)

// ReleaseOpener returns an OpenRelease that parses a release envelope and, with a trust, verifies its
// signatures; without one it checks only the structure (nodes still verify
// everything themselves).
func ReleaseOpener(trust *release.Trust) func([]byte, time.Time) (registry.ReleaseInfo, error) {
	return func(b []byte, now time.Time) (registry.ReleaseInfo, error) {
		var info registry.ReleaseInfo
		env, err := release.ParseEnvelope(b)
		if err != nil {
			return info, err
		}
		var r *release.Release
		if trust != nil {
			if r, err = trust.Verify(env, release.Options{Now: now}); err != nil {
				return info, err
			}
		} else if r, err = release.DecodePayload(env.Payload); err != nil {
			return info, err
		}
		info = registry.ReleaseInfo{Channel: r.Channel, Version: r.Version, Expires: r.Expires}
		for _, c := range r.Components {
			info.Components = append(info.Components, registry.Component{Name: c.Name, Flist: c.Flist, Mount: c.Mount})
		}
		for _, s := range env.Signatures {
			info.KeyIDs = append(info.KeyIDs, s.KeyID)
		}
		return info, nil
	}
}
