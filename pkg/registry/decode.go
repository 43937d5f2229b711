package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/zeroboot/zeroboot/pkg/strictjson"
)

// DecodeStrict decodes exactly one JSON value from b into v, refusing
// bodies over MaxBodySize, unknown fields and trailing data, so that a
// message the peer did not mean (or a typo in a field name) is an error
// instead of a silently ignored value.
func DecodeStrict(b []byte, v any) error {
	if len(b) > MaxBodySize {
		return fmt.Errorf("decode JSON: %d bytes exceeds the limit of %d", len(b), MaxBodySize)
	}
	// One reading: no duplicate or case-twin keys, no key that differs
	// from a field name only in case (which encoding/json would accept).
	if err := strictjson.Check(b, strictjson.Names(v)); err != nil {
		return fmt.Errorf("decode JSON: %w", err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("decode JSON: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return fmt.Errorf("decode JSON: trailing data after the value")
	}
	return nil
}
