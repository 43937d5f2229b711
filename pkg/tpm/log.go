package tpm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/zeroboot/zeroboot/pkg/measure"
)

// DefaultSecurityFS is where the kernel publishes the firmware event log.
const DefaultSecurityFS = "/sys/kernel/security"

// MaxFirmwareLog bounds the firmware event log: the one limit node and
// registry share.
const MaxFirmwareLog = measure.MaxFirmwareLog

// FirmwareLog reads the firmware's TCG event log from securityfs under root
// ("" means DefaultSecurityFS). A machine without one returns nil, nil.
func FirmwareLog(root string) ([]byte, error) {
	if root == "" {
		root = DefaultSecurityFS
	}
	p := filepath.Join(root, "tpm0", "binary_bios_measurements")
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read firmware event log: %w", err)
	}
	defer f.Close()
	// securityfs reports size 0: read one byte past the bound to detect it.
	b, err := io.ReadAll(io.LimitReader(f, MaxFirmwareLog+1))
	if err != nil {
		return nil, fmt.Errorf("read firmware event log %s: %w", p, err)
	}
	if len(b) > MaxFirmwareLog {
		return nil, fmt.Errorf("read firmware event log %s: larger than %d bytes", p, MaxFirmwareLog)
	}
	return b, nil
}
