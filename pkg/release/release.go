// Package release defines the release document: which flists a node mounts
// where, what each may contain, and what it runs. The document is a TUF
// target file (TargetName) of a channel's targets metadata; it is trusted
// only through pkg/trust, which checks the TUF chain from the root built
// into the initramfs down to this document's length and hash. Its version
// and expiry are the targets metadata's, never the document's own, so each
// has one meaning. See docs/release.md.
package release

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/strictjson"
)

// Format is the release format a document without services is written
// in; FormatServices adds the services Core-0 runs. Marshal writes the
// older one when it can hold the release, so nodes that predate services
// still boot releases that declare none.
const (
	Format         = "zeroboot-release/2"
	FormatServices = "zeroboot-release/3"
)

// TargetName is the target path of the release document in a channel's
// TUF targets metadata.
const TargetName = "release.json"

// MaxSize bounds the release document.
const MaxSize = 256 << 10

const formatPrefix = "zeroboot-release/"

// Release is what a node of a channel boots.
type Release struct {
	Format     string      `json:"format"`
	Channel    string      `json:"channel"`
	Components []Component `json:"components"`
	Entrypoint Entrypoint  `json:"entrypoint"`
	// Services are for Core-0 (FormatServices only).
	Services []Service `json:"services,omitempty"`

	// Version and Expires come from the targets metadata that named this
	// document (set by pkg/trust), not from the document.
	Version uint64    `json:"-"`
	Expires time.Time `json:"-"`
}

// Component is one flist mounted at Mount in the assembled root.
type Component struct {
	Name  string        `json:"name"`
	Flist digest.Digest `json:"flist"`
	Mount string        `json:"mount"`
	// AllowSetuid and AllowDevices let this component carry setuid/setgid
	// files and device nodes (an OS base with /usr/bin/passwd); without
	// them such an entry is refused at publish and at boot.
	AllowSetuid  bool `json:"allow_setuid,omitempty"`
	AllowDevices bool `json:"allow_devices,omitempty"`
}

// Entrypoint is what PID 1 hands off to once the root is assembled.
type Entrypoint struct {
	Path string   `json:"path"`
	Args []string `json:"args"`
	Env  []string `json:"env"`
}

// Limits keep a signed but careless release from becoming a resource
// problem on the node.
const (
	MaxComponents = 256
	MaxArgs       = 256
	MaxEnv        = 256
	maxNameLen    = 64
	maxPathLen    = 4096
	maxStringLen  = 64 << 10
)

// Validate checks everything about r that does not depend on time, trust or
// policy: format, names, paths, digests. Decode calls it; so does Marshal,
// before anything is signed.
func (r *Release) Validate() error {
	if err := checkFormat(r.Format); err != nil {
		return err
	}
	if err := CheckChannel(r.Channel); err != nil {
		return err
	}
	if err := checkComponents(r.Components); err != nil {
		return err
	}
	if err := r.Entrypoint.check("entrypoint"); err != nil {
		return err
	}
	if r.Format == FormatServices && len(r.Services) == 0 {
		return fmt.Errorf("release: format %q declares no services: write %q", FormatServices, Format)
	}
	return r.checkServices()
}

// Marshal validates r and encodes it as the release document, in the
// oldest format that holds it (Format or FormatServices).
func (r *Release) Marshal() ([]byte, error) {
	if r.Format == Format && len(r.Services) > 0 {
		c := *r
		c.Format = FormatServices
		r = &c
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("release: encode: %w", err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("release: %d bytes, at most %d", len(b), MaxSize)
	}
	return append(b, '\n'), nil
}

// Decode reads a release document strictly (one reading: see
// pkg/strictjson; no unknown fields) and validates it. It checks no
// signature: only pkg/trust makes a document trustworthy. The format is
// read first, leniently, so a document of a newer format is refused as
// such rather than as "unknown field".
func Decode(b []byte) (*Release, error) {
	var head struct {
		Format string `json:"format"`
	}
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&head); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if err := checkFormat(head.Format); err != nil {
		return nil, err
	}
	var r Release
	if err := strictjson.Decode(b, MaxSize, &r); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

func checkFormat(f string) error {
	switch {
	case f == Format || f == FormatServices:
		return nil
	case strings.HasPrefix(f, formatPrefix):
		return fmt.Errorf("release: format %q is a version this node does not understand (want %q or %q)", clip(f), Format, FormatServices)
	default:
		return fmt.Errorf("release: format %q is not a zeroboot release (want %q or %q)", clip(f), Format, FormatServices)
	}
}

func checkComponents(cs []Component) error {
	if len(cs) == 0 {
		return errors.New("release: no components")
	}
	if len(cs) > MaxComponents {
		return fmt.Errorf("release: %d components, at most %d", len(cs), MaxComponents)
	}
	names := make(map[string]bool, len(cs))
	mounts := make(map[string]string, len(cs))
	for i, c := range cs {
		if err := checkName(fmt.Sprintf("component %d name", i), c.Name); err != nil {
			return err
		}
		if names[c.Name] {
			return fmt.Errorf("release: component name %q appears twice", c.Name)
		}
		names[c.Name] = true
		if c.Flist.IsZero() {
			return fmt.Errorf("release: component %q: no flist digest", c.Name)
		}
		if err := checkPath(fmt.Sprintf("component %q mount", c.Name), c.Mount); err != nil {
			return err
		}
		if err := CheckNotRuntime(fmt.Sprintf("component %q mount", c.Name), c.Mount); err != nil {
			return err
		}
		if other, ok := mounts[c.Mount]; ok {
			return fmt.Errorf("release: components %q and %q both mount at %s", other, c.Name, c.Mount)
		}
		mounts[c.Mount] = c.Name
	}
	return nil
}

// check validates a command: the entrypoint, or a service's exec (what
// names it in errors).
func (e *Entrypoint) check(what string) error {
	if err := checkPath(what+" path", e.Path); err != nil {
		return err
	}
	if err := CheckNotRuntime(what+" path", e.Path); err != nil {
		return err
	}
	if len(e.Args) > MaxArgs {
		return fmt.Errorf("release: %s has %d args, at most %d", what, len(e.Args), MaxArgs)
	}
	for i, a := range e.Args {
		if err := checkString(fmt.Sprintf("%s arg %d", what, i), a); err != nil {
			return err
		}
	}
	if len(e.Env) > MaxEnv {
		return fmt.Errorf("release: %s has %d env entries, at most %d", what, len(e.Env), MaxEnv)
	}
	keys := make(map[string]bool, len(e.Env))
	for i, kv := range e.Env {
		if err := checkString(fmt.Sprintf("%s env %d", what, i), kv); err != nil {
			return err
		}
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !envKey(k) {
			return fmt.Errorf("release: %s env %d %q: want KEY=VALUE with KEY of [A-Za-z_][A-Za-z0-9_]*", what, i, clip(kv))
		}
		if keys[k] {
			return fmt.Errorf("release: %s env sets %s twice", what, k)
		}
		keys[k] = true
	}
	return nil
}

// CheckChannel accepts a channel name, [a-z0-9][a-z0-9._-]{0,62}: the one
// grammar for channels on the command line, in releases, in a node's
// channels file and on the registry. Channels name directories on the
// registry and appear on consoles.
func CheckChannel(s string) error {
	if len(s) == 0 || len(s) > 63 {
		return fmt.Errorf("release: channel %q: want 1 to 63 characters", clip(s))
	}
	for i, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')) {
			return fmt.Errorf("release: channel %q: want [a-z0-9][a-z0-9._-]*", clip(s))
		}
	}
	return nil
}

// checkName accepts [a-z0-9._-]{1,64}, except "." and "..": names end up as
// directory and file names on the node.
func checkName(what, s string) error {
	if len(s) == 0 || len(s) > maxNameLen {
		return fmt.Errorf("release: %s %q: want 1 to %d characters", what, clip(s), maxNameLen)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("release: %s %q: not a name", what, s)
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("release: %s %q: character %q outside [a-z0-9._-]", what, clip(s), c)
		}
	}
	return nil
}

func checkPath(what, p string) error {
	if err := checkString(what, p); err != nil {
		return err
	}
	if len(p) > maxPathLen {
		return fmt.Errorf("release: %s: %d bytes, at most %d", what, len(p), maxPathLen)
	}
	if !path.IsAbs(p) {
		return fmt.Errorf("release: %s %q: not an absolute path", what, clip(p))
	}
	if path.Clean(p) != p {
		return fmt.Errorf("release: %s %q: not clean (want %q)", what, clip(p), path.Clean(p))
	}
	return nil
}

func checkString(what, s string) error {
	if len(s) > maxStringLen {
		return fmt.Errorf("release: %s: %d bytes, at most %d", what, len(s), maxStringLen)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("release: %s %q: contains a NUL byte", what, clip(s))
	}
	return nil
}

func envKey(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range []byte(k) {
		if !(c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// clip makes attacker-supplied strings short and free of terminal controls
// before they reach a console.
func clip(s string) string { return console.Sanitize(s, 80) }
