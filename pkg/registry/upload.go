package registry

import (
	"fmt"

	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/strictjson"
)

// DecodeUpload reads a ReleaseUpload strictly. It checks the shape only;
// pkg/trust checks the signatures.
func DecodeUpload(b []byte) (*ReleaseUpload, error) {
	var up ReleaseUpload
	if err := strictjson.Decode(b, MaxBodySize, &up); err != nil {
		return nil, fmt.Errorf("release upload: %w", err)
	}
	if up.Format != UploadFormat {
		return nil, fmt.Errorf("release upload: format %q, want %q", clip(up.Format), UploadFormat)
	}
	if err := release.CheckChannel(up.Channel); err != nil {
		return nil, err
	}
	return &up, nil
}
