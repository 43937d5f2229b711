package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/tlsgen"
	"github.com/zeroboot/zeroboot/pkg/repo"
)

func cmdInit(args []string) error {
	fs := newFlags("init", "zgrid init --data DIR [--san NAME_OR_IP]...",
		`Create a registry data directory: the database (zgrid.db) and the
marker saying it exists (zgrid.init), the content
store (store/), a private TLS CA and a TLS 1.3 server certificate (tls/),
the admin token (admin.token, mode 0600), and the online key that signs
freshness metadata for nodes (tuf/online.key). The server certificate names
localhost, 127.0.0.1, ::1, 192.0.2.2 (the host as seen from QEMU's user
network), this host's name, and every --san. An existing non-empty DIR is
never overwritten.`,
		`  zgrid init --data /var/lib/zgrid
  zgrid init --data ./grid --san registry.example.net --san 203.0.113.7`)
	data := fs.String("data", "", "data directory to create (required)")
	var sans listFlag
	fs.Var(&sans, "san", "extra DNS name or IP address for the server certificate (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *data == "" || len(pos) > 0 {
		return usageErr(fs, "need --data DIR and no arguments")
	}
	return initData(*data, append(tlsgen.DefaultSANs(), sans...))
}

func initData(dir string, sans []string) error {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("data directory %s exists and is not empty; refusing to overwrite it", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	for _, d := range []string{dir, filepath.Join(dir, storeDir), filepath.Join(dir, tlsDir), filepath.Join(dir, tufDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	slices.Sort(sans)
	files, err := tlsgen.Generate(filepath.Join(dir, tlsDir), tlsgen.Options{SANs: slices.Compact(sans), Now: time.Now()})
	if err != nil {
		return err
	}
	// The online key signs freshness only; it cannot sign a release or a
	// root, so it may live on the registry host.
	pub, priv, err := repo.GenerateKey()
	if err != nil {
		return err
	}
	if err := repo.WritePrivateKey(filepath.Join(dir, onlineKey), priv); err != nil {
		return err
	}
	if err := repo.WritePublicKey(filepath.Join(dir, onlineKey)+".pub", pub); err != nil {
		return err
	}
	tok := make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	tokPath := filepath.Join(dir, tokenFile)
	if err := os.WriteFile(tokPath, []byte(hex.EncodeToString(tok)+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tokPath, err)
	}
	// The only place a database is created: serve and the admin commands
	// refuse a missing one rather than start over empty.
	dbPath := filepath.Join(dir, dbFile)
	if err := db.Create(dbPath); err != nil {
		return err
	}
	fmt.Printf(`initialised registry data directory %s
  database         %s   (back it up: zgrid backup)
  marker           %s   (says the database exists; never delete it)
  content store    %s
  TLS CA cert      %s
  TLS CA key       %s   (keep private; signs server certificates)
  server cert      %s   (names: %v)
  server key       %s
  admin token      %s   (mode 0600; for --token-file)
  online key       %s   (signs freshness only: %s)

Put into every node's initramfs:
  %s   -> /etc/zeroboot/ca.pem      (the only TLS trust anchor of the node)
  the TUF root and channels (zgrid root init) -> /etc/zeroboot/root.json, /etc/zeroboot/channels.json

Next: zgrid key new --out root.key && zgrid key new --out release.key   (keep both off this host)
      zgrid root init --data %s --root-key root.key.pub --sign root.key --release-key release.key.pub
      zgrid serve --data %s --listen :8443
`, dir, dbPath, db.MarkerPath(dbPath), filepath.Join(dir, storeDir), files[tlsgen.CACert], files[tlsgen.CAKey],
		files[tlsgen.ServerCert], slices.Compact(sans), files[tlsgen.ServerKey], tokPath,
		filepath.Join(dir, onlineKey), repo.Fingerprint(pub), files[tlsgen.CACert], dir, dir)
	return nil
}
