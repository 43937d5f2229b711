package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
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

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/server"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/tlsgen"
	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/store"
	"github.com/zeroboot/zeroboot/pkg/trust"
)

func cmdServe(args []string) error {
	fs := newFlags("serve", "zgrid serve --data DIR [--listen ADDR] [--freshness D] [--mirror URL]... [--mirrors-first] [--rate R] [--burst N] [--max-nodes N] [--ek-ca FILE]... [--boot-dir DIR [--boot-listen ADDR] [--boot-console C] [--boot-map FILE]] [--viewer-token-file F] [--postgres URL [--postgres-password-file F]] [-v] [--log-format text|json]",
		`Run the registry: boot and status endpoints for nodes, the content store
under /store/ for anyone, and the admin API (bearer token) over HTTPS with
TLS 1.3 only, using the certificate in DIR/tls. Every release uploaded is
verified against DIR's TUF root chain (zgrid root init) as nodes verify it;
each boot answer carries the newer roots, the channel's release and a
snapshot and timestamp signed with DIR/tuf/online.key that expire after
--freshness.
Mirrors are extra store base URLs handed to nodes after this server's own
(before it with --mirrors-first). A node verifies every byte whichever
store served it, and tries a store that failed after the others for a
minute.
The node endpoints (/v1/boot, /v1/status) take no credential, so each
client address (an IPv6 /64 counts as one) may send --rate requests per
second on average and --burst at once, else HTTP 429; a fleet behind one
NAT address shares one allowance. A boot from a node ID not yet known is
refused (HTTP 503) once the database holds --max-nodes nodes.
With --ek-ca (PEM files of TPM manufacturers' CAs, roots and
intermediates), a TPM node enrolls only if its EK certificate chains to one
of them; without, EK certificates are recorded but not checked.
With --boot-dir (vmlinuz and initramfs.cpio.zst, as make pxe writes them,
and/or the UKI zeroboot.efi of make uki for UEFI HTTP boot) it serves
network boot under /boot/: those files and GET /boot/ipxe, an iPXE script whose command line names this registry and the machine's farm
(--boot-map: "MAC-or-UUID FARM" lines; else the farm= parameter; else
default). --boot-listen adds a plain HTTP listener for /boot/ only, for
firmware that cannot check our CA (docs/pxe.md says what that trusts).
With --postgres URL ($ZGRID_POSTGRES) the records (farms, releases,
nodes) are in that PostgreSQL database instead of DIR/zgrid.db, so several
zgrid serve replicas, each with a copy of DIR (TLS, TUF keys, admin
token), serve one fleet behind one address (docs/scale-out.md). The
schema is made on first use. A password comes from
--postgres-password-file, $PGPASSWORD, ~/.pgpass or a URL in
$ZGRID_POSTGRES, never from the command line. DIR is marked (zgrid.postgres)
so that admin commands with --data go to the server, not to zgrid.db.
Stops cleanly on SIGINT or SIGTERM.`,
		`  zgrid serve --data /var/lib/zgrid --listen :8443
  zgrid serve --data ./grid --listen 127.0.0.1:8443 --mirror https://cdn.example.net/zeroboot/store
  zgrid serve --data /var/lib/zgrid --boot-dir /srv/zeroboot/pxe --boot-listen :8080 --boot-map /etc/zgrid/pxe.map
  zgrid serve --data /var/lib/zgrid --postgres postgres://zgrid@db.example.net/zgrid --postgres-password-file /etc/zgrid/pg.password`)
	data := fs.String("data", "", "data directory (required)")
	listen := fs.String("listen", ":8443", "address to listen on")
	window := fs.Duration("freshness", defaultFreshness, "validity of the snapshot/timestamp signatures handed to nodes: how long a replayed answer works")
	verbose := fs.Bool("v", false, "log at debug level (every request)")
	logFormat := fs.String("log-format", "text", "log lines as text (key=value) or json (one object a line)")
	rate := fs.Float64("rate", server.DefaultRate, "node endpoint requests per second per client address (0: no limit)")
	burst := fs.Int("burst", server.DefaultBurst, "node endpoint requests a client address may send at once")
	maxNodes := fs.Int("max-nodes", server.DefaultMaxNodes, "refuse boots from new node IDs once this many nodes are known (0: no limit)")
	bootDir := fs.String("boot-dir", "", "serve network boot under /boot/ from this directory (vmlinuz, initramfs.cpio.zst: make pxe; zeroboot.efi: make uki)")
	bootListen := fs.String("boot-listen", "", "also serve /boot/ over plain HTTP on this address (needs --boot-dir; off by default)")
	bootConsole := fs.String("boot-console", server.DefaultBootConsole, "console= arguments of the iPXE scripts' kernel command line")
	bootMap := fs.String("boot-map", "", `file of "MAC-or-UUID FARM" lines: each machine's farm in its iPXE script`)
	viewerFile := fs.String("viewer-token-file", "", "file holding a token that logs into the explorer (/ui/) read-only (default: none, admins only)")
	pgURL := fs.String("postgres", "", "keep the records in this PostgreSQL database (URL; env ZGRID_POSTGRES), not DATA/zgrid.db")
	pgPassword := fs.String("postgres-password-file", "", "file holding the PostgreSQL password")
	var mirrors, ekCAs listFlag
	fs.Var(&mirrors, "mirror", "store base URL of a mirror offered to nodes (repeatable)")
	mirrorsFirst := fs.Bool("mirrors-first", false, "offer the mirrors before this server's own store (a CDN takes the load, this server is the fallback)")
	fs.Var(&ekCAs, "ek-ca", "PEM file of TPM manufacturer CA certificates EK certificates must chain to (repeatable)")
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
	if *mirrorsFirst && len(mirrors) == 0 {
		return usageErr(fs, "--mirrors-first needs at least one --mirror")
	}
	for _, m := range mirrors {
		if u, err := url.Parse(m); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("--mirror %q: want an absolute http(s) URL", m)
		}
	}
	if *window < time.Minute {
		return fmt.Errorf("--freshness %s: want at least 1m", *window)
	}
	tuf, err := loadTUF(*data, *window)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch *logFormat {
	case "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	default:
		return usageErr(fs, "--log-format %q: want text or json", *logFormat)
	}
	log := slog.New(h)
	token, err := readToken(filepath.Join(*data, tokenFile))
	if err != nil {
		return err
	}
	cert, err := tlsgen.NewReloader(filepath.Join(*data, tlsDir), log)
	if err != nil {
		return err
	}
	fromFlag := *pgURL != ""
	if !fromFlag {
		*pgURL = os.Getenv("ZGRID_POSTGRES")
	}
	d, records, err := openRecords(*data, *pgURL, fromFlag, *pgPassword)
	if err != nil {
		return err
	}
	defer d.Close()
	s := &server.Server{
		DB:           d,
		Store:        &store.Dir{Root: filepath.Join(*data, storeDir)},
		Token:        token,
		Mirrors:      mirrors,
		MirrorsFirst: *mirrorsFirst,
		Rate:         *rate,
		Burst:        *burst,
		MaxNodes:     *maxNodes,
		TUF:          tuf,
		CheckFlist:   func(b []byte) error { _, err := flist.Decode(b); return err },
		Log:          log,
	}
	if s.EKRoots, s.EKIntermediates, err = loadEKCAs(ekCAs); err != nil {
		return err
	}
	if *viewerFile != "" {
		if s.ViewerToken, err = readToken(*viewerFile); err != nil {
			return fmt.Errorf("--viewer-token-file: %w", err)
		}
		if s.ViewerToken == token {
			return errors.New("--viewer-token-file: the viewer token is the admin token; give viewers their own")
		}
	}
	warnUnverified(s, log)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if s.PXE, err = bootConfig(*bootDir, *bootListen, *bootConsole, *bootMap, ln.Addr().(*net.TCPAddr).Port); err != nil {
		return err
	}
	hs := s.HTTPServer(*listen, cert.GetCertificate)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 2) // the API and the boot listener
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	bs, err := serveBoot(s, *bootListen, errc, log)
	if err != nil {
		return err
	}
	log.Info("zgrid serving", "url", "https://"+ln.Addr().String(), "data", *data, "records", records, "root_version", len(tuf.Roots), "channels", tuf.Channels.Names(), "freshness", *window, "mirrors", len(mirrors),
		"rate", *rate, "burst", *burst, "max_nodes", *maxNodes)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if bs != nil {
		if err := bs.Shutdown(sctx); err != nil {
			return err
		}
	}
	if err := hs.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// bootConfig checks the --boot-* flags: the files must be there and the
// map readable now, not at the first machine's boot. No --boot-dir: nil,
// and the /boot/ endpoints say network boot is off.
func bootConfig(dir, listen, console, mapFile string, apiPort int) (*server.PXE, error) {
	if dir == "" {
		if listen != "" || mapFile != "" {
			return nil, errors.New("--boot-listen and --boot-map need --boot-dir")
		}
		return nil, nil
	}
	if err := server.CheckBootDir(dir); err != nil {
		return nil, fmt.Errorf("--boot-dir: %w", err)
	}
	if err := server.CheckBootConsole(console); err != nil {
		return nil, fmt.Errorf("--boot-console: %w", err)
	}
	p := &server.PXE{Dir: dir, Console: console, RegistryPort: apiPort}
	if mapFile != "" {
		m, err := server.LoadPXEMap(mapFile)
		if err != nil {
			return nil, fmt.Errorf("--boot-map: %w", err)
		}
		p.Map = m
	}
	return p, nil
}

// serveBoot starts the plain HTTP boot listener when --boot-listen is
// set; its end goes to errc like the API's.
func serveBoot(s *server.Server, addr string, errc chan<- error, log *slog.Logger) (*http.Server, error) {
	if addr == "" || s.PXE == nil {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--boot-listen: %w", err)
	}
	bs := s.BootHTTPServer(addr)
	go func() {
		if err := bs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("boot listener %s: %w", addr, err)
		}
	}()
	log.Info("zgrid serving network boot", "url", "http://"+ln.Addr().String()+"/boot/ipxe", "dir", s.PXE.Dir, "mapped", len(s.PXE.Map))
	return bs, nil
}

// warnUnverified logs each channel's current release that nodes would
// refuse now (expired, or signed by keys a rotated root revoked): nodes
// following it fail their boots until a new release is published.
func warnUnverified(s *server.Server, log *slog.Logger) {
	for _, ch := range s.TUF.Channels.Names() {
		r, err := s.DB.LatestRelease(ch)
		if err != nil {
			continue
		}
		up, err := records.DecodeUpload(r.Envelope)
		if err == nil {
			_, err = trust.VerifyRelease(s.TUF.Roots, up.Targets, up.Release, time.Now())
		}
		if err != nil {
			log.Warn("current release is refused by nodes", "channel", ch, "version", r.Version, "err", err)
		}
	}
}

// loadEKCAs reads --ek-ca files: self-signed certificates are roots, the
// others intermediates. No files: nil pools, EK certificates unchecked.
func loadEKCAs(files []string) (roots, inter *x509.CertPool, err error) {
	if len(files) == 0 {
		return nil, nil, nil
	}
	roots, inter = x509.NewCertPool(), x509.NewCertPool()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("--ek-ca: %w", err)
		}
		n := 0
		for blk, rest := pem.Decode(b); blk != nil; blk, rest = pem.Decode(rest) {
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("--ek-ca %s: certificate %d: %w", f, n+1, err)
			}
			if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
				roots.AddCert(c)
			} else {
				inter.AddCert(c)
			}
			n++
		}
		if n == 0 {
			return nil, nil, fmt.Errorf("--ek-ca %s: no PEM certificate", f)
		}
	}
	return roots, inter, nil
}
