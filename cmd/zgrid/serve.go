package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/server"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/tlsgen"
	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/store"
)

func cmdServe(args []string) error {
	fs := newFlags("serve", "zgrid serve --data DIR [--listen ADDR] [--trust FILE] [--mirror URL]... [--rate R] [--burst N] [--max-nodes N]",
		`Run the registry: boot and status endpoints for nodes, the content store
under /store/ for anyone, and the admin API (bearer token) over HTTPS with
TLS 1.3 only, using the certificate in DIR/tls. With --trust, uploaded
releases must verify against the trust file nodes carry (recommended).
Mirrors are extra store base URLs handed to nodes after this server's own.
The node endpoints (/v1/boot, /v1/status) take no credential, so each
client address (an IPv6 /64 counts as one) may send --rate requests per
second on average and --burst at once, else HTTP 429; a fleet behind one
NAT address shares one allowance. A boot from a node ID not yet known is
refused (HTTP 503) once the database holds --max-nodes nodes.
Stops cleanly on SIGINT or SIGTERM.`,
		`  zgrid serve --data /var/lib/zgrid --listen :8443 --trust trust.json
  zgrid serve --data ./grid --listen 127.0.0.1:8443 --mirror https://cdn.example.net/zeroboot/store`)
	data := fs.String("data", "", "data directory (required)")
	listen := fs.String("listen", ":8443", "address to listen on")
	trustFile := fs.String("trust", "", "trust file: refuse releases that do not verify against it")
	verbose := fs.Bool("v", false, "log every request")
	rate := fs.Float64("rate", server.DefaultRate, "node endpoint requests per second per client address (0: no limit)")
	burst := fs.Int("burst", server.DefaultBurst, "node endpoint requests a client address may send at once")
	maxNodes := fs.Int("max-nodes", server.DefaultMaxNodes, "refuse boots from new node IDs once this many nodes are known (0: no limit)")
	var mirrors listFlag
	fs.Var(&mirrors, "mirror", "store base URL of a mirror offered to nodes (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *data == "" || len(pos) > 0 {
		return usageErr(fs, "need --data DIR and no arguments")
	}
	switch {
	case *rate < 0 || math.IsNaN(*rate) || math.IsInf(*rate, 0):
		return fmt.Errorf("--rate %v: want a number of requests per second, 0 for no limit", *rate)
	case *burst < 1:
		return fmt.Errorf("--burst %d: want at least 1", *burst)
	case *maxNodes < 0:
		return fmt.Errorf("--max-nodes %d: want a count, 0 for no limit", *maxNodes)
	}
	if *rate == 0 {
		*rate = -1 // Server: negative is off, 0 is the default
	}
	if *maxNodes == 0 {
		*maxNodes = -1
	}
	for _, m := range mirrors {
		if u, err := url.Parse(m); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("--mirror %q: want an absolute http(s) URL", m)
		}
	}
	var trust *release.Trust
	if *trustFile != "" {
		b, err := os.ReadFile(*trustFile)
		if err != nil {
			return err
		}
		if trust, err = release.ParseTrust(b); err != nil {
			return fmt.Errorf("%s: %w", *trustFile, err)
		}
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	token, err := readToken(filepath.Join(*data, tokenFile))
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(tlsgen.LoadServer(filepath.Join(*data, tlsDir)))
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	d, err := db.Open(filepath.Join(*data, dbFile), time.Second)
	if err != nil {
		return err
	}
	defer d.Close()
	s := &server.Server{
		DB:          d,
		Store:       &store.Dir{Root: filepath.Join(*data, storeDir)},
		Token:       token,
		Mirrors:     mirrors,
		Rate:        *rate,
		Burst:       *burst,
		MaxNodes:    *maxNodes,
		OpenRelease: server.ReleaseOpener(trust),
		CheckFlist:  func(b []byte) error { _, err := flist.Decode(b); return err },
		Log:         log,
	}
	if trust != nil {
		warnUnverified(s, log)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	hs := s.HTTPServer(*listen, cert)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	log.Info("zgrid serving", "url", "https://"+ln.Addr().String(), "data", *data, "trust", *trustFile != "", "mirrors", len(mirrors),
		"rate", *rate, "burst", *burst, "max_nodes", *maxNodes)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// warnUnverified logs each channel's current release that the trust file
// would refuse (published offline before the server had --trust): nodes
// following it will refuse it too.
func warnUnverified(s *server.Server, log *slog.Logger) {
	farms, err := s.DB.Farms()
	if err != nil {
		return
	}
	for _, f := range farms {
		r, err := s.DB.LatestRelease(f.Channel)
		if err != nil {
			continue
		}
		if _, err := s.OpenRelease(r.Envelope, time.Now()); err != nil {
			log.Warn("current release does not verify against the trust file; nodes will refuse it",
				"farm", f.Name, "channel", f.Channel, "version", r.Version, "err", err)
		}
	}
}
