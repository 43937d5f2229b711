// Package tpm talks to the node's TPM 2.0: it derives the node's identity
// key, reads the endorsement key and its certificate, answers a registry's
// credential challenge, quotes and extends PCRs, and reads the firmware's
// event log. Nothing is stored on the node: every key here is a primary key,
// re-derived from the TPM's seeds on each boot.
package tpm

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// DefaultPath is the kernel's resource manager: it lets other users of the
// TPM coexist with us and flushes our handles if we die.
const DefaultPath = "/dev/tpmrm0"

// ErrNoTPM reports that the machine has no TPM device.
var ErrNoTPM = errors.New("no TPM")

// TPM is a connection to a TPM 2.0. It is not safe for concurrent use.
type TPM struct {
	tr  transport.TPM
	key *Key
	ek  *EK
}

// New wraps a transport; tests pass swtpm's socket.
func New(t transport.TPM) *TPM { return &TPM{tr: t} }

// Open opens the TPM device at path ("" means DefaultPath). A missing device
// returns an error wrapping ErrNoTPM.
func Open(path string) (*TPM, error) {
	if path == "" {
		path = DefaultPath
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open %s: %w", path, ErrNoTPM)
	}
	tr, err := linuxtpm.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return New(tr), nil
}

// Close flushes the handles this TPM created and closes the transport if it
// is an io.Closer.
func (t *TPM) Close() error {
	var errs []error
	if t.key != nil {
		errs = append(errs, t.flush("identity key", t.key.Handle))
		t.key = nil
	}
	if t.ek != nil {
		errs = append(errs, t.flush("EK", t.ek.Handle))
		t.ek = nil
	}
	if c, ok := t.tr.(io.Closer); ok {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close TPM: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (t *TPM) flush(what string, h tpm2.TPMHandle) error {
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t.tr); err != nil {
		return wrap("flush "+what, err)
	}
	return nil
}
