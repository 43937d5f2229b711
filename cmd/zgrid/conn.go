package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/server"
	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/store"
)

// Data directory layout.
const (
	dbFile     = "zgrid.db"
	storeDir   = "store"
	tlsDir     = "tls"
	tokenFile  = "admin.token"
	defaultURL = "https://127.0.0.1:8443"
)

// conn is how an admin command reaches the registry: a data directory it
// may open directly, or a running server.
type conn struct {
	data, server, tokenFile, ca string
	context                     string // a remembered registry (zgrid context)
	contextDone                 bool   // applyContext ran
}

const connHelp = `Reaching the registry: --server URL with --token-file and --ca (defaults
from $ZGRID_SERVER, $ZGRID_TOKEN_FILE, $ZGRID_CA) talks to a running server.
--data DIR alone opens DIR's database directly when no server holds it, and
otherwise talks to ` + defaultURL + ` with DIR's admin.token and tls/ca.pem;
always so when DIR's records are in PostgreSQL (zgrid serve --postgres).
With neither, the registry of --context NAME ($ZGRID_CONTEXT), or of the
current context (zgrid context use), is used.`

func (c *conn) register(fs *flag.FlagSet) {
	fs.StringVar(&c.data, "data", "", "registry data directory")
	fs.StringVar(&c.server, "server", os.Getenv("ZGRID_SERVER"), "registry URL (env ZGRID_SERVER)")
	fs.StringVar(&c.tokenFile, "token-file", os.Getenv("ZGRID_TOKEN_FILE"), "file holding the admin token (env ZGRID_TOKEN_FILE; default DATA/admin.token)")
	fs.StringVar(&c.ca, "ca", os.Getenv("ZGRID_CA"), "registry CA certificate (env ZGRID_CA; default DATA/tls/ca.pem)")
	fs.StringVar(&c.context, "context", os.Getenv("ZGRID_CONTEXT"), "a registry remembered with zgrid context add (env ZGRID_CONTEXT; default: the current one)")
}

func (c *conn) check() error {
	if err := c.applyContext(); err != nil {
		return err
	}
	if c.data == "" && c.server == "" {
		return errors.New("no registry: give --data DIR or --server URL (or set ZGRID_SERVER), or zgrid context add one")
	}
	return nil
}

// local opens the data directory's database unless a running server holds
// it. ok is false when the caller should go through the server instead.
func (c *conn) local() (d *db.DB, ok bool, err error) {
	return c.openLocal(db.Open)
}

// localRead is local for commands that only read: the database is opened
// read-only.
func (c *conn) localRead() (d *db.DB, ok bool, err error) {
	return c.openLocal(db.OpenReadOnly)
}

func (c *conn) openLocal(open func(string, time.Duration) (*db.DB, error)) (*db.DB, bool, error) {
	if c.server != "" || c.data == "" {
		return nil, false, nil
	}
	if recordsInPostgres(c.data) {
		// zgrid.db is not the registry's: only a server reaches the
		// records, and changes go through its checks.
		return nil, false, nil
	}
	d, err := open(filepath.Join(c.data, dbFile), 200*time.Millisecond)
	if errors.Is(err, db.ErrLocked) {
		// Held by a running server: talk to it.
		return nil, false, nil
	}
	if err != nil {
		// Missing, empty or damaged: say so, never go on without it.
		return nil, false, err
	}
	return d, true, nil
}

// localServer wraps an opened database in the server's logic, so that
// offline changes get exactly the checks online ones do.
func (c *conn) localServer(d *db.DB) (*server.Server, error) {
	t, err := loadTUF(c.data, defaultFreshness)
	if err != nil {
		return nil, err
	}
	return &server.Server{
		DB:         d,
		Store:      &store.Dir{Root: filepath.Join(c.data, storeDir)},
		TUF:        t,
		CheckFlist: func(b []byte) error { _, err := flist.Decode(b); return err },
	}, nil
}

// admin returns a client for the running server.
func (c *conn) admin() (*adminClient, error) {
	url, tf, ca := c.server, c.tokenFile, c.ca
	if url == "" {
		url = defaultURL
	}
	if tf == "" && c.data != "" {
		tf = filepath.Join(c.data, tokenFile)
	}
	if ca == "" && c.data != "" {
		ca = filepath.Join(c.data, tlsDir, "ca.pem")
	}
	if tf == "" || ca == "" {
		return nil, errors.New("talking to " + url + " needs --token-file and --ca (or --data DIR)")
	}
	tok, err := readToken(tf)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, fmt.Errorf("registry CA: %w", err)
	}
	hc, err := registry.NewHTTPClient(pem, nil)
	if err != nil {
		return nil, fmt.Errorf("registry CA %s: %w", ca, err)
	}
	return &adminClient{url: strings.TrimRight(url, "/"), token: tok, http: hc}, nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("admin token %s: file is empty", path)
	}
	return t, nil
}

type adminClient struct {
	url, token string
	http       *http.Client
}

// call sends a JSON (or raw, for []byte) body and decodes a JSON answer.
func (a *adminClient) call(method, path string, in, out any) error {
	var body io.Reader
	ctype := "application/json"
	switch v := in.(type) {
	case nil:
	case []byte:
		body = bytes.NewReader(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.url+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, a.url+path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, a.url+path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e registry.Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: HTTP %d: %s", a.url, resp.StatusCode, e.Error)
		}
		return fmt.Errorf("%s: HTTP %s", a.url, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}
