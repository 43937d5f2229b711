package tpm

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// ErrLockout reports that the TPM refuses authorizations because too many
// failed ones tripped its dictionary-attack protection.
var ErrLockout = errors.New("TPM is in dictionary-attack lockout")

// rcMessages explains the response codes a user at a console can act on.
// Others keep go-tpm's own description.
var rcMessages = map[tpm2.TPMRC]string{
	tpm2.TPMRCInitialize: "TPM was not started (TPM_RC_INITIALIZE): the firmware did not send TPM2_Startup",
	tpm2.TPMRCFailure:    "TPM is in failure mode (TPM_RC_FAILURE): its self-test failed; power-cycle the machine, and if it persists the TPM or its firmware needs replacing",
	tpm2.TPMRCReboot:     "TPM needs a reboot (TPM_RC_REBOOT)",
	tpm2.TPMRCDisabled:   "TPM command is disabled (TPM_RC_DISABLED)",
	tpm2.TPMRCHierarchy:  "TPM hierarchy is disabled (TPM_RC_HIERARCHY): enable the TPM's endorsement hierarchy in the firmware setup",
	tpm2.TPMRCBadAuth:    "wrong TPM authorization (TPM_RC_BAD_AUTH)",
	tpm2.TPMRCAuthFail:   "wrong TPM authorization (TPM_RC_AUTH_FAIL): counts toward dictionary-attack lockout",
	tpm2.TPMRCIntegrity:  "TPM integrity check failed (TPM_RC_INTEGRITY): the data was not made for this TPM or this key",
	tpm2.TPMRCRetry:      "TPM is busy (TPM_RC_RETRY), try again",
	tpm2.TPMRCTesting:    "TPM is running its self-test (TPM_RC_TESTING), try again",
	tpm2.TPMRCNVRate:     "TPM is rate-limiting NV writes (TPM_RC_NV_RATE), try again later",
}

// wrap names the operation in err and, where err carries a TPM response
// code, says what it means for the user. errors.Is on the tpm2.TPMRC still
// works on the result.
func wrap(op string, err error) error {
	var rc tpm2.TPMRC
	if !errors.As(err, &rc) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if rc.Is(tpm2.TPMRCLockout) {
		return fmt.Errorf("%s: %w (TPM_RC_LOCKOUT): wait for the lockout to expire or reset it with the lockout authorization: %w", op, ErrLockout, err)
	}
	for code, msg := range rcMessages {
		if rc.Is(code) {
			return fmt.Errorf("%s: %s: %w", op, msg, err)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}
