package measure

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// The values of the events PID 1 measures. Node and registry both build
// them here: the registry compares what a node measured with what it
// served, byte for byte.

// TrustRootValue names the TUF root.json the node carries.
func TrustRootValue(rootJSON []byte) string {
	h := sha256.Sum256(rootJSON)
	return "root.json sha256:" + hex.EncodeToString(h[:])
}

// ReleaseValue names a verified release.
func ReleaseValue(channel string, version uint64) string {
	return fmt.Sprintf("%s v%d", channel, version)
}

// ComponentValue names a verified component: its name, flist digest and
// where it is mounted in the new root.
func ComponentValue(name, flist, mount string) string {
	return fmt.Sprintf("%s %s at %s", name, flist, mount)
}

// MaxFirmwareLog bounds the firmware's event log a node reads and sends:
// real logs are 20-100 KiB; base64 in a report it stays under the API's
// 1 MiB body limit.
const MaxFirmwareLog = 512 << 10
