package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/server"
	"github.com/zeroboot/zeroboot/pkg/registry"
)

// versionTimeout bounds the question to the server: a version check
// should not hang for the API client's two minutes on a dead host.
const versionTimeout = 10 * time.Second

func cmdVersion(args []string) error {
	fs := newFlags("version", "zgrid version [--server URL --ca FILE | --data DIR]",
		`Print this zgrid's version, VCS revision and Go version, then, given a
registry (--server URL, or --data DIR for `+defaultURL+`), the same for the
server that answers there (GET /v1/version, no token needed). Without
--server or --data only the client is printed. A server that cannot be
reached, or does not tell its version, is an error (exit 1, the reason on
stderr) after the client line.`,
		`  zgrid version
  zgrid version --data /var/lib/zgrid
  zgrid version --server https://192.0.2.2:8443 --ca ca.pem`)
	var c conn
	c.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr(fs, "no arguments expected")
	}
	return printVersions(os.Stdout, &c)
}

// printVersions writes the client's line, then the server's when c names
// one.
func printVersions(w io.Writer, c *conn) error {
	client := server.Build()
	fmt.Fprintf(w, "client: %s\n", describe(client))
	if c.server == "" && c.data == "" {
		fmt.Fprintf(w, "server: not asked (give --server URL or --data DIR)\n")
		return nil
	}
	url, srv, err := c.serverVersion()
	if err != nil {
		return fmt.Errorf("server %s: %w", url, err)
	}
	fmt.Fprintf(w, "server: %s at %s\n", describe(srv), url)
	if srv != client {
		fmt.Fprintf(w, "note: the server runs another build than this client\n")
	}
	return nil
}

func describe(b server.BuildInfo) string {
	return fmt.Sprintf("zgrid %s, revision %s, %s", b.Version, b.Revision, b.GoVersion)
}

// serverVersion asks the registry c names for its build. It needs the CA
// (the registry's own) but not the admin token.
func (c *conn) serverVersion() (string, server.BuildInfo, error) {
	url, ca := c.server, c.ca
	if url == "" {
		url = defaultURL
	}
	url = strings.TrimRight(url, "/")
	if ca == "" && c.data != "" {
		ca = filepath.Join(c.data, tlsDir, "ca.pem")
	}
	if ca == "" {
		return url, server.BuildInfo{}, errors.New("no registry CA: give --ca FILE (or --data DIR)")
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		return url, server.BuildInfo{}, fmt.Errorf("registry CA: %w", err)
	}
	hc, err := registry.NewHTTPClient(pem, nil)
	if err != nil {
		return url, server.BuildInfo{}, fmt.Errorf("registry CA %s: %w", ca, err)
	}
	hc.Timeout = versionTimeout
	b, err := getVersion(hc, url+"/v1/version")
	return url, b, err
}

func getVersion(hc *http.Client, url string) (server.BuildInfo, error) {
	var b server.BuildInfo
	resp, err := hc.Get(url)
	if err != nil {
		return b, fmt.Errorf("could not be reached: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, registry.MaxBodySize))
	if err != nil {
		return b, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return b, fmt.Errorf("no version: GET %s: HTTP 404: the server is a zgrid from before GET /v1/version, or not a zgrid", url)
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("no version: GET %s: HTTP %s", url, resp.Status)
	}
	// Not strict: a newer server may say more than this client knows.
	if err := json.Unmarshal(body, &b); err != nil || b.Version == "" {
		return b, fmt.Errorf("no version: GET %s: not a version answer: %.200q", url, body)
	}
	return b, nil
}
