package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/pgdb"
	"github.com/zeroboot/zeroboot/pkg/atomicfile"
)

// pgMarker is the file zgrid serve --postgres writes in the data
// directory: its records are in PostgreSQL, and the zgrid.db zgrid init
// made there is not the registry's any more. Commands that would open
// zgrid.db go to the running server instead, and zgrid serve without
// --postgres refuses to start on the stale file.
const pgMarker = "zgrid.postgres"

const pgMarkerText = `The records of this zgrid registry (farms, releases, nodes) are in
PostgreSQL: zgrid serve --postgres. zgrid.db here, if any, is not them.
Admin commands with --data DIR talk to the running server; back the
records up with pg_dump. Remove this file only to go back to zgrid.db.
`

// recordsInPostgres reports whether data's records are in PostgreSQL.
func recordsInPostgres(data string) bool {
	_, err := os.Stat(filepath.Join(data, pgMarker))
	return err == nil
}

// openRecords opens what serve keeps its records in: PostgreSQL when
// pgURL is set, else the data directory's zgrid.db. where names it for
// the log, without a password.
func openRecords(data, pgURL string, fromFlag bool, passwordFile string) (r db.Records, where string, err error) {
	if pgURL == "" {
		if passwordFile != "" {
			return nil, "", errors.New("--postgres-password-file needs --postgres")
		}
		if recordsInPostgres(data) {
			return nil, "", fmt.Errorf("the records of %s are in PostgreSQL (%s): give --postgres URL (or $ZGRID_POSTGRES); remove that file only to serve zgrid.db again", data, filepath.Join(data, pgMarker))
		}
		d, err := db.Open(filepath.Join(data, dbFile), time.Second)
		return d, filepath.Join(data, dbFile), err
	}
	if fromFlag && urlHasPassword(pgURL) {
		// Any user on the machine reads a command line (ps).
		return nil, "", errors.New("--postgres: the URL holds a password, which the command line shows to every user: use --postgres-password-file, $PGPASSWORD, a ~/.pgpass file, or the URL in $ZGRID_POSTGRES")
	}
	password := ""
	if passwordFile != "" {
		b, err := os.ReadFile(passwordFile)
		if err != nil {
			return nil, "", fmt.Errorf("--postgres-password-file: %w", err)
		}
		if password = strings.TrimRight(string(b), "\r\n"); password == "" {
			return nil, "", fmt.Errorf("--postgres-password-file %s: file is empty", passwordFile)
		}
	}
	c, err := pgdb.Config(pgURL, password)
	if err != nil {
		return nil, "", err
	}
	where = fmt.Sprintf("postgresql://%s@%s:%d/%s", c.ConnConfig.User, c.ConnConfig.Host, c.ConnConfig.Port, c.ConnConfig.Database)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := pgdb.Open(ctx, c)
	if err != nil {
		return nil, "", err
	}
	if err := atomicfile.WriteNew(filepath.Join(data, pgMarker), []byte(pgMarkerText), 0o644); err != nil && !errors.Is(err, fs.ErrExist) {
		d.Close()
		return nil, "", fmt.Errorf("mark %s as served from PostgreSQL: %w", data, err)
	}
	return d, where, nil
}

// urlHasPassword finds a password in a postgres:// URL or a key=value
// connection string.
func urlHasPassword(s string) bool {
	if u, err := url.Parse(s); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		_, set := u.User.Password()
		return set || u.Query().Has("password")
	}
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "password=") {
			return true
		}
	}
	return false
}
