package release

import (
	"fmt"
	"path"
	"strings"

	"github.com/zeroboot/zeroboot/pkg/console"
)

// RuntimePaths are the directories of the new root that the hand-off mounts
// over once the components are in place: PID 1's /dev, /proc, /sys and /run
// bound in, and a fresh tmpfs at /tmp. Whatever a release puts there is
// hidden at run time, and what is there then is not the release's, so no
// component may be mounted there and no entrypoint may live there: the
// entrypoint PID 1 hashed would not be the program Core-0 runs. pkg/handoff
// mounts exactly these; keep the two in step through this list.
var RuntimePaths = []string{"/dev", "/proc", "/sys", "/run", "/tmp"}

// CheckNotRuntime refuses p (a path in the new root, what names it in the
// error) when it is one of RuntimePaths or inside one. p is judged as the
// chroot resolves it: cleaned, relative to /.
func CheckNotRuntime(what, p string) error {
	clean := path.Join("/", p)
	for _, rp := range RuntimePaths {
		if clean == rp || strings.HasPrefix(clean, rp+"/") {
			return fmt.Errorf("release: %s %q: inside %s, which the hand-off mounts over the new root at boot", what, console.Sanitize(p, 80), rp)
		}
	}
	return nil
}
