// Package handoff assembles the root Core-0 runs in, records what was booted
// in /run/zeroboot/boot.json, and builds the command that starts Core-0.
//
// PID 1 does not switch_root or exec into Core-0: it stays in the initramfs
// as Core-0's parent, because it must restart Core-0 when it exits and reap
// every orphan the new root produces. Core-0 is confined to the new root with
// chroot instead, and sees /dev, /proc, /sys and /run through bind mounts, so
// PID 1 keeps its own view of them, and a fresh /tmp (release.RuntimePaths).
// The entrypoint is hashed after those mounts, as the chroot resolves it,
// and the hashed file is the one executed (Root.BindEntrypoint).
package handoff

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/zeroboot/zeroboot/pkg/atomicfile"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/measure"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/supervise"
	"github.com/zeroboot/zeroboot/pkg/timeline"
)

// Paths shared by PID 1 and Core-0. /run is bind-mounted into the new root,
// so PID 1 writes them at the same path Core-0 reads them.
const (
	BootInfoPath = "/run/zeroboot/boot.json"
	// CAPath is where PID 1 copies the registry CA it trusts, so Core-0
	// talks to the registry with the same trust anchor.
	CAPath = "/run/zeroboot/ca.pem"
	// EnvBootInfo names the environment variable that tells Core-0 where
	// boot.json is.
	EnvBootInfo = "ZEROBOOT_BOOT_INFO"
	// ExitNoRestart is the exit status with which Core-0 asks PID 1 not
	// to restart it (a failure no restart can fix): PID 1 logs it, stops
	// supervising and reports the node failed.
	ExitNoRestart = supervise.ExitNoRestart
)

// maxBootInfo bounds what ReadBootInfo accepts; a real one is a few KiB.
const maxBootInfo = 4 << 20

// ComponentInfo is one component of the booted release.
type ComponentInfo struct {
	Name  string `json:"name"`
	Flist string `json:"flist"` // digest of the flist metadata, sha256:...
	Mount string `json:"mount"` // absolute path in the new root
}

// ServiceInfo is one service of the booted release (release.Service,
// inlined) and its executable as PID 1 found and hashed it after the
// binds. Core-0 hashes File again before every start and refuses to run it
// when the digest differs.
type ServiceInfo struct {
	release.Service
	File   string `json:"file"`   // Exec.Path with its symlinks resolved inside the root
	Digest string `json:"digest"` // sha256:... of File
}

// BootInfo is what PID 1 tells Core-0 about the boot.
type BootInfo struct {
	NodeID   string `json:"node_id"`
	Farm     string `json:"farm"`
	Registry string `json:"registry"` // the URL that answered
	// RegistryProtocol is the protocol of the registry's boot answer:
	// Core-0 sends per-service states only to a registry of
	// registry.ProtocolServices and up.
	RegistryProtocol int `json:"registry_protocol,omitempty"`
	// Token is this boot's registry token: Core-0 sends it with its
	// status reports, which the registry refuses without it.
	Token          string          `json:"token"`
	ReleaseChannel string          `json:"release_channel"`
	ReleaseVersion uint64          `json:"release_version"`
	Components     []ComponentInfo `json:"components"`
	// Services are the release's services, for Core-0 to run.
	Services         []ServiceInfo   `json:"services,omitempty"`
	Entrypoint       string          `json:"entrypoint"`        // path in the new root
	EntrypointDigest string          `json:"entrypoint_digest"` // sha256:... of the file executed, hashed after the binds
	Timeline         []timeline.Step `json:"timeline"`
	BootedAt         time.Time       `json:"booted_at"`
	// IdentityKind is how the node proved who it is (registry.KindTPM,
	// KindDMI, KindEphemeral); Events is the measurement log, extended into
	// the TPM's PCR measure.PCR when Measured.
	IdentityKind string          `json:"identity_kind"`
	Measured     bool            `json:"measured"`
	Events       []measure.Event `json:"events"`
	// Restarts is how many times PID 1 started Core-0 before this start
	// in this boot: 0 for the first. PID 1 rewrites boot.json before
	// every start.
	Restarts int `json:"restarts"`
	// ReadyFile, when set, is the file Core-0 creates once every required
	// service is ready (ReadyFile): PID 1 is waiting for it to judge the
	// farm's ready deadline, and boots the fallback release without it.
	ReadyFile string `json:"ready_file,omitempty"`
	// FellBackFrom is the release version PID 1 booted first, in a boot
	// that fell back from it to this one.
	FellBackFrom uint64 `json:"fell_back_from,omitempty"`
}

// WriteBootInfo writes bi to path atomically (temporary file, fsync,
// rename, directory fsync), mode 0644, creating the parent directory.
func WriteBootInfo(path string, bi BootInfo) error {
	b, err := json.MarshalIndent(bi, "", "  ")
	if err != nil {
		return fmt.Errorf("encode boot info: %w", err)
	}
	b = append(b, '\n')
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write boot info %s: %w", path, err)
	}
	// 0600: boot.json carries the boot token, a credential for reports.
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("boot info: %w", err)
	}
	return nil
}

// ReadBootInfo reads what WriteBootInfo wrote. Unknown fields are accepted
// so that an older Core-0 still starts under a newer PID 1.
func ReadBootInfo(path string) (BootInfo, error) {
	var bi BootInfo
	f, err := os.Open(path)
	if err != nil {
		return bi, fmt.Errorf("read boot info: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxBootInfo+1))
	if err != nil {
		return bi, fmt.Errorf("read boot info %s: %w", path, err)
	}
	if len(b) > maxBootInfo {
		return bi, fmt.Errorf("read boot info %s: larger than %d bytes", path, maxBootInfo)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&bi); err != nil {
		return bi, fmt.Errorf("decode boot info %s: %w", path, err)
	}
	if d.More() {
		return bi, fmt.Errorf("decode boot info %s: trailing data after the JSON object", path)
	}
	return bi, nil
}

// FileDigest hashes a file without holding it in memory.
func FileDigest(path string) (digest.Digest, error) {
	var d digest.Digest
	f, err := os.Open(path)
	if err != nil {
		return d, fmt.Errorf("digest: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return d, fmt.Errorf("digest %s: %w", path, err)
	}
	copy(d[:], h.Sum(nil))
	return d, nil
}
