package tlsgen

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Reloader serves the certificate in CertFile and KeyFile and loads it
// again when either file changes, so that zgrid tls reissue and tls
// rotate finish take effect on a running server, at its next handshake.
// A pair that does not load (written half, key and certificate from two
// different moments) leaves the last good one in use, with a warning.
type Reloader struct {
	CertFile, KeyFile string
	Log               *slog.Logger
	// Every is how often the files are looked at, at most (default 1 s):
	// a stat per handshake would cost more than it buys.
	Every time.Duration

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

// NewReloader loads the pair once; a pair that does not load now is an
// error, not a server without a certificate.
func NewReloader(dir string, log *slog.Logger) (*Reloader, error) {
	certFile, keyFile := LoadServer(dir)
	r := &Reloader{CertFile: certFile, KeyFile: keyFile, Log: log}
	stamp, err := r.stampNow()
	if err != nil {
		return nil, err
	}
	if err := r.load(stamp); err != nil {
		return nil, err
	}
	r.checked = time.Now()
	return r, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	every := r.Every
	if every <= 0 {
		every = time.Second
	}
	if time.Since(r.checked) < every {
		return r.cert, nil
	}
	r.checked = time.Now()
	stamp, err := r.stampNow()
	if err == nil && stamp != r.stamp {
		err = r.load(stamp)
		if err == nil {
			r.Log.Info("server certificate reloaded", "cert", r.CertFile, "not_after", r.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if err != nil {
		r.Log.Warn("server certificate not reloaded; serving the one loaded before", "err", err)
	}
	return r.cert, nil
}

func (r *Reloader) load(stamp string) error {
	c, err := tls.LoadX509KeyPair(r.CertFile, r.KeyFile)
	if err != nil {
		return fmt.Errorf("server certificate %s: %w", r.CertFile, err)
	}
	r.cert, r.stamp = &c, stamp
	return nil
}

// stampNow names both files' versions by size and modification time.
func (r *Reloader) stampNow() (string, error) {
	var s string
	for _, f := range []string{r.CertFile, r.KeyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("server certificate: %w", err)
		}
		s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}
