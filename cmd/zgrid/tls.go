package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/tlsgen"
)

func cmdTLS(args []string) error {
	return subcommand("tls", map[string]func([]string) error{"show": cmdTLSShow, "reissue": cmdTLSReissue}, args)
}

func cmdTLSShow(args []string) error {
	fs := newFlags("tls show", "zgrid tls show --data DIR",
		"Show the registry CA and the server certificate: names, validity.", "  zgrid tls show --data ./grid")
	data := fs.String("data", "", "data directory (required)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *data == "" {
		return usageErr(fs, "need --data")
	}
	dir := filepath.Join(*data, tlsDir)
	for _, f := range []string{tlsgen.CACert, tlsgen.ServerCert} {
		c, err := tlsgen.LoadCert(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		fmt.Printf("%-11s %s, valid %s to %s", f, c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		if names := tlsgen.SANs(c); len(names) > 0 {
			fmt.Printf(", names %s", strings.Join(names, ", "))
		}
		fmt.Println()
	}
	return nil
}

func cmdTLSReissue(args []string) error {
	fs := newFlags("tls reissue", "zgrid tls reissue --data DIR --san NAME [--san NAME]... [--replace]",
		`Issue a new server certificate, signed by the same CA, for more names
(a new DNS name or address the registry is reached at): nodes trust only
the CA in their initramfs, so they keep trusting the server. The names are
added to the current certificate's unless --replace. The old pair is kept
as server.pem.old and server.key.old; restart zgrid serve to use the new
one.`,
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
	fmt.Printf("server certificate reissued for %s, valid until %s; restart zgrid serve to use it\n",
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
