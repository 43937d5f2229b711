package registry

import (
	"crypto/tls"
	"io"
	"net/http"
)

var tls12 = tls.Config{MaxVersion: tls.VersionTLS12}

func mustRead(r *http.Request) []byte {
	b, _ := io.ReadAll(r.Body)
	return b
}
