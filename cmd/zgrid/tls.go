package main

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/tlsgen"
	"github.com/zeroboot/zeroboot/pkg/console"
)

func cmdTLS(args []string) error {
	return subcommand("tls", map[string]func([]string) error{"show": cmdTLSShow, "reissue": cmdTLSReissue, "rotate": cmdTLSRotate}, args)
}

func cmdTLSShow(args []string) error {
	fs := newFlags("tls show", "zgrid tls show --data DIR [-o table|json|yaml]",
		"Show the registry CA (every certificate of ca.pem: two while the CA is\nrotated), the server certificate and its issuer, and the rotation's state.",
		"  zgrid tls show --data ./grid\n  zgrid tls show --data ./grid -o json")
	data := fs.String("data", "", "data directory (required)")
	out := registerOutput(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *data == "" {
		return usageErr(fs, "need --data")
	}
	if err := out.check(fs); err != nil {
		return err
	}
	dir := filepath.Join(*data, tlsDir)
	st, err := tlsgen.RotationState(dir)
	if err != nil {
		return err
	}
	srv, err := tlsgen.LoadCert(filepath.Join(dir, tlsgen.ServerCert))
	if err != nil {
		return err
	}
	if !out.table() {
		return out.print(tlsViewOf(st, srv))
	}
	for _, c := range st.Bundle {
		printCert(tlsgen.CACert, c)
	}
	printCert(tlsgen.ServerCert, srv)
	fmt.Printf("%-11s issued by %s\n", "", console.Sanitize(srv.Issuer.CommonName, 200))
	if st.Next == nil {
		fmt.Println("rotation    none under way")
		return nil
	}
	fmt.Printf("rotation    under way: ca.pem holds the old CA and %s; the server's certificate is from the old one until zgrid tls rotate finish\n",
		console.Sanitize(st.Next.Subject.CommonName, 200))
	return nil
}

// tlsView is tls show -o json.
type tlsView struct {
	CA       []certView `json:"ca"` // ca.pem, in order
	Server   certView   `json:"server"`
	Rotating bool       `json:"rotating"`
	NextCA   *certView  `json:"next_ca"` // the CA a rotation moves to; null when none is under way
}

// certView is what tls show prints of a certificate: common names, not
// whole subjects, as the table does.
type certView struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Names     []string  `json:"names"` // DNS names and IP addresses
}

func certViewOf(c *x509.Certificate) certView {
	return certView{Subject: c.Subject.CommonName, Issuer: c.Issuer.CommonName, NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		Names: tlsgen.SANs(c)}
}

func tlsViewOf(st tlsgen.Rotation, srv *x509.Certificate) tlsView {
	v := tlsView{CA: []certView{}, Server: certViewOf(srv), Rotating: st.Next != nil}
	for _, c := range st.Bundle {
		v.CA = append(v.CA, certViewOf(c))
	}
	if st.Next != nil {
		next := certViewOf(st.Next)
		v.NextCA = &next
	}
	return v
}

func printCert(file string, c *x509.Certificate) {
	fmt.Printf("%-11s %s, valid %s to %s", file, console.Sanitize(c.Subject.CommonName, 200), c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	if names := tlsgen.SANs(c); len(names) > 0 {
		fmt.Printf(", names %s", console.Sanitize(strings.Join(names, ", "), 1000))
	}
	fmt.Println()
}

func cmdTLSReissue(args []string) error {
	fs := newFlags("tls reissue", "zgrid tls reissue --data DIR --san NAME [--san NAME]... [--replace]",
		`Issue a new server certificate, signed by the same CA, for more names
(a new DNS name or address the registry is reached at): nodes trust only
the CA in their initramfs, so they keep trusting the server. The names are
added to the current certificate's unless --replace. The old pair is kept
as server.pem.old and server.key.old. A running zgrid serve on this data
directory serves the new one from its next handshake (it looks at the
files at most once a second): no restart.`,
		`  zgrid tls reissue --data ./grid --san registry.lab.example --san 198.51.100.7`)
	data := fs.String("data", "", "data directory (required)")
	var sans listFlag
	fs.Var(&sans, "san", "DNS name or IP address for the server certificate (repeatable; required)")
	replace := fs.Bool("replace", false, "the certificate names only the --san given, not also the current ones")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *data == "" || len(sans) == 0 {
		return usageErr(fs, "need --data and at least one --san")
	}
	dir := filepath.Join(*data, tlsDir)
	names := []string(sans)
	if !*replace {
		cur, err := tlsgen.LoadCert(filepath.Join(dir, tlsgen.ServerCert))
		if err != nil {
			return err
		}
		names = append(tlsgen.SANs(cur), names...)
	}
	leaf, err := tlsgen.Reissue(dir, tlsgen.Options{SANs: uniq(names), Now: time.Now()})
	if err != nil {
		return err
	}
	fmt.Printf("server certificate reissued for %s, valid until %s; a running zgrid serve uses it from its next handshake\n",
		strings.Join(tlsgen.SANs(leaf), ", "), leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// uniq keeps the first of each name, in order.
func uniq(names []string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func cmdTLSRotate(args []string) error {
	return subcommand("tls rotate", map[string]func([]string) error{
		"begin": cmdTLSRotateBegin, "finish": cmdTLSRotateFinish, "abort": cmdTLSRotateAbort,
	}, args)
}

// rotateFlags parses the --data flag the rotate commands take.
func rotateFlags(name, synopsis, about, examples string, args []string) (string, error) {
	fs := newFlags(name, synopsis, about, examples)
	data := fs.String("data", "", "data directory (required)")
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if *data == "" || len(pos) > 0 {
		return "", usageErr(fs, "need --data and no arguments")
	}
	return filepath.Join(*data, tlsDir), nil
}

func cmdTLSRotateBegin(args []string) error {
	dir, err := rotateFlags("tls rotate begin", "zgrid tls rotate begin --data DIR",
		`Start replacing the registry CA without losing a node. A new CA is made
(tls/next-ca.pem, tls/next-ca.key) and tls/ca.pem becomes the bundle of
the current CA and the new one (the old file kept as ca.pem.old); the
server keeps its certificate from the current CA, so every node still
connects. Images built from now on trust both CAs. Build them from this
ca.pem (make iso|uki|pxe GRID=DIR, mkinitramfs -file), roll them out to
every node, then run zgrid tls rotate finish. Refused while a rotation is
under way.`,
		`  zgrid tls rotate begin --data /var/lib/zgrid
  make iso GRID=/var/lib/zgrid REGISTRY=https://registry.example:8443 FARM=rack1   # then roll out
  zgrid tls rotate finish --data /var/lib/zgrid`, args)
	if err != nil {
		return err
	}
	next, err := tlsgen.BeginRotation(dir, time.Now())
	if err != nil {
		return err
	}
	fmt.Printf(`new CA %q made: %s
%s now holds the current CA and the new one; the server keeps its certificate from the current CA.
next: build every node's image with this ca.pem and roll it out, then zgrid tls rotate finish --data DIR
`, next.Subject.CommonName, filepath.Join(dir, tlsgen.NextCACert), filepath.Join(dir, tlsgen.CACert))
	return nil
}

func cmdTLSRotateFinish(args []string) error {
	dir, err := rotateFlags("tls rotate finish", "zgrid tls rotate finish --data DIR",
		`Complete a CA rotation (zgrid tls rotate begin) once every node boots an
image built with the bundle ca.pem: the server gets a certificate from the
new CA for the same names, tls/ca.pem holds the new CA alone and tls/ca.key
is its key. The replaced files are kept as server.pem.old, server.key.old,
ca.pem.old (the bundle) and ca.key.old (the old CA's key: delete it once
the rotation is done). Restart zgrid serve to use the new certificate:
from then on, a node whose image trusts only the old CA is refused
("not signed by a CA this node trusts"). Refused when no rotation is under
way.`,
		`  zgrid tls rotate finish --data /var/lib/zgrid`, args)
	if err != nil {
		return err
	}
	leaf, err := tlsgen.FinishRotation(dir, time.Now())
	if err != nil {
		return err
	}
	fmt.Printf(`server certificate from %q for %s, valid until %s
%s holds the new CA alone; the old CA's key is kept as %s.old (delete it once no image trusts the old CA)
a running zgrid serve uses it from its next handshake: nodes whose image trusts only the old CA are refused from then on
`, leaf.Issuer.CommonName, strings.Join(tlsgen.SANs(leaf), ", "), leaf.NotAfter.UTC().Format(time.RFC3339),
		filepath.Join(dir, tlsgen.CACert), filepath.Join(dir, tlsgen.CAKey))
	return nil
}

func cmdTLSRotateAbort(args []string) error {
	dir, err := rotateFlags("tls rotate abort", "zgrid tls rotate abort --data DIR",
		`Give up a CA rotation before its finish: tls/ca.pem holds the current CA
alone again and the new CA and its key are removed. The server certificate
never changed. Images built during the overlap keep working: they trust
the current CA (and a CA whose key is gone).`,
		`  zgrid tls rotate abort --data /var/lib/zgrid`, args)
	if err != nil {
		return err
	}
	if err := tlsgen.AbortRotation(dir); err != nil {
		return err
	}
	fmt.Printf("rotation aborted: %s holds the current CA alone\n", filepath.Join(dir, tlsgen.CACert))
	return nil
}
