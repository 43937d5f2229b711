package main

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/records"
	"github.com/zeroboot/zeroboot/pkg/atomicfile"
	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/store"
)

const backupHelp = `A backup of zgrid.db holds farms, releases (with their signed uploads),
each channel's highest version, nodes, their boot tokens and the allowed
list. It does not hold the content store (DIR/store: chunks and flists
the releases name), the TLS CA and keys (DIR/tls), the admin token, or
the TUF root chain and online key (DIR/tuf): a complete backup of a data
directory is this file plus a copy of those, taken at any time (the store
only grows; the others change only with init, root init and root rotate).`

func cmdBackup(args []string) error {
	fs := newFlags("backup", "zgrid backup [--data DIR | --server URL ...] FILE",
		`Write a consistent copy of the registry database to FILE, while zgrid
serve runs or not: one read transaction, so every change is either wholly
in the copy or not at all, and the server goes on answering. With a
running server the copy comes through its admin API (GET
/v1/admin/backup); otherwise DIR/zgrid.db is read directly, read-only.
The copy is checked (meta pages, every page, zgrid's buckets) before it
replaces FILE, atomically.

`+backupHelp+`

`+connHelp,
		`  zgrid backup --data /var/lib/zgrid /backup/zgrid-$(date +%F).db
  zgrid backup --server https://192.0.2.2:8443 --token-file admin.token --ca ca.pem zgrid.db.bak`)
	var c conn
	c.register(fs)
	arg, err := oneArg(fs, args, "FILE to write")
	if err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	out := arg
	from, err := backupInto(&c, out)
	if err != nil {
		return err
	}
	sum, err := summarize(out)
	if err != nil {
		return err
	}
	fmt.Printf("backup of %s written to %s: %s\n", from, out, sum)
	return nil
}

// backupInto writes the backup to out from the local database or the
// running server, and says which.
func backupInto(c *conn, out string) (from string, err error) {
	if c.server == "" && c.data != "" && recordsInPostgres(c.data) {
		return "", fmt.Errorf("zgrid backup: the records of %s are in PostgreSQL (%s): use pg_dump", c.data, pgMarker)
	}
	d, ok, err := c.localRead()
	if err != nil {
		return "", err
	}
	if ok {
		defer d.Close()
		return filepath.Join(c.data, dbFile), saveBackup(out, func(w io.Writer) (int64, int64, error) {
			var size int64
			n, err := d.Backup(func(s int64) (io.Writer, error) { size = s; return w, nil })
			return n, size, err
		})
	}
	a, err := c.admin()
	if err != nil {
		return "", err
	}
	return a.url, saveBackup(out, a.download)
}

// download streams GET /v1/admin/backup into w.
func (a *adminClient) download(w io.Writer) (n, size int64, err error) {
	req, err := http.NewRequest("GET", a.url+"/v1/admin/backup", nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	hc := *a.http
	hc.Timeout = 0 // a large database takes its time; the server bounds it
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("GET %s: %w", req.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, 0, fmt.Errorf("GET %s: HTTP %s: %s", req.URL, resp.Status, b)
	}
	size, err = strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("GET %s: no Content-Length: %w", req.URL, err)
	}
	n, err = io.Copy(w, resp.Body)
	if err != nil {
		return n, size, fmt.Errorf("GET %s: %w", req.URL, err)
	}
	return n, size, nil
}

// saveBackup has fill write the copy into a temporary file beside out,
// checks it arrived whole and is a usable database, and renames it over
// out: out is never a partial or broken backup.
func saveBackup(out string, fill func(io.Writer) (n, size int64, err error)) (err error) {
	f, err := os.CreateTemp(filepath.Dir(out), atomicfile.TempPrefix+filepath.Base(out)+"-*")
	if err != nil {
		return fmt.Errorf("write backup %s: %w", out, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, size, err := fill(f)
	if err != nil {
		return fmt.Errorf("write backup %s: %w", out, err)
	}
	if n != size {
		return fmt.Errorf("write backup %s: got %d of %d bytes", out, n, size)
	}
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync backup %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := db.Verify(tmp); err != nil {
		return fmt.Errorf("backup %s does not check out, not written: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("write backup %s: %w", out, err)
	}
	return atomicfile.SyncDir(filepath.Dir(out))
}

func cmdRestore(args []string) error {
	fs := newFlags("restore", "zgrid restore --data DIR FILE",
		`Replace DIR/zgrid.db with the backup FILE (zgrid backup). FILE is checked
first (meta pages, every page, zgrid's buckets) and so is its copy in DIR;
the copy is then renamed over zgrid.db, so a crash leaves the old database
or the restored one, never a mix. The database it replaces is kept beside
it as zgrid.db.replaced-<UTC time>. Refused while zgrid serve (or any
other zgrid command) has DIR's database open: stop the server first,
start it again after. The content store, TLS files, token and TUF
files in DIR are not touched (they are not in the backup).

`+backupHelp+`

After a restore, the channels' highest versions are those of the backup:
publish above any version nodes may have seen since.`,
		`  zgrid restore --data /var/lib/zgrid /backup/zgrid-2026-12-01.db`)
	data := fs.String("data", "", "data directory whose database to replace (required)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *data == "" || len(pos) != 1 {
		return usageErr(fs, "need --data DIR and one backup FILE")
	}
	if recordsInPostgres(*data) {
		return fmt.Errorf("zgrid restore: the records of %s are in PostgreSQL (%s), not its zgrid.db: restore them with pg_restore", *data, pgMarker)
	}
	dbPath := filepath.Join(*data, dbFile)
	replaced, err := db.Restore(pos[0], dbPath)
	if err != nil {
		return err
	}
	sum, err := summarize(dbPath)
	if err != nil {
		return err
	}
	fmt.Printf("restored %s from %s: %s\n", dbPath, pos[0], sum)
	if replaced != "" {
		fmt.Printf("the database it replaced is kept as %s\n", replaced)
	}
	missing, err := missingFlists(dbPath, &store.Dir{Root: filepath.Join(*data, storeDir)})
	if err != nil {
		return err
	}
	for _, m := range missing {
		fmt.Fprintf(os.Stderr, "warning: %s; restore %s too (the store is not in the backup)\n", m, filepath.Join(*data, storeDir))
	}
	return nil
}

// missingFlists names the flists that each channel's newest release (what
// nodes boot) needs and the store lacks: a backup restored without the
// store it was taken with.
func missingFlists(dbPath string, st *store.Dir) ([]string, error) {
	d, err := db.OpenReadOnly(dbPath, time.Second)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	rels, err := d.Releases("")
	if err != nil {
		return nil, err
	}
	newest := map[string]records.ReleaseInfo{}
	for _, r := range rels {
		newest[r.Channel] = r // listed by channel and version: the last wins
	}
	var out []string
	for _, ch := range slices.Sorted(maps.Keys(newest)) {
		r := newest[ch]
		up, err := records.DecodeUpload(r.Envelope)
		if err != nil || len(up.Release) == 0 {
			continue // a withdrawal names no flist; a bad upload is publish's concern
		}
		doc, err := release.Decode(up.Release)
		if err != nil {
			continue
		}
		for _, c := range doc.Components {
			if _, err := os.Stat(st.FlistPath(c.Flist)); err != nil {
				out = append(out, fmt.Sprintf("channel %s version %d: component %s needs flist %s, not in the store", ch, r.Version, c.Name, c.Flist))
			}
		}
	}
	return out, nil
}

// summarize says what a database file holds, for the operator to check
// it is the backup they meant.
func summarize(path string) (string, error) {
	info, err := db.CheckFile(path)
	if err != nil {
		return "", err
	}
	d, err := db.OpenReadOnly(path, time.Second)
	if err != nil {
		return "", err
	}
	defer d.Close()
	farms, err := d.Farms()
	if err != nil {
		return "", err
	}
	rels, err := d.Releases("")
	if err != nil {
		return "", err
	}
	nodes, err := d.NodeCount()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d bytes, transaction %d, %d farms, %d releases, %d nodes", info.Size, info.TxID, len(farms), len(rels), nodes), nil
}
