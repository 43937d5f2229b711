package main

import (
	"crypto/ed25519"
	"fmt"
	"os"

	"github.com/zeroboot/zeroboot/pkg/atomicfile"
	"github.com/zeroboot/zeroboot/pkg/release"
)

func cmdKey(args []string) error {
	return subcommand("key", map[string]func([]string) error{"new": cmdKeyNew}, args)
}

func cmdKeyNew(args []string) error {
	fs := newFlags("key new", "zgrid key new --out FILE",
		`Generate an ed25519 release signing key: FILE (private, mode 0600) and
FILE.pub (public). Prints the public key's fingerprint and key ID. Keep the
private key off the registry host: the server never signs.`,
		`  zgrid key new --out ~/keys/release-1.key
  zgrid key new --out release-2.key && zgrid trust --threshold 2 --out trust.json release-1.key.pub release-2.key.pub`)
	out := fs.String("out", "", "private key file to create (required); the public key goes to FILE.pub")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *out == "" || len(pos) > 0 {
		return usageErr(fs, "need --out FILE and no arguments")
	}
	pub, priv, err := release.GenerateKey()
	if err != nil {
		return err
	}
	if err := release.WritePrivateKey(*out, priv); err != nil {
		return err
	}
	if err := release.WritePublicKey(*out+".pub", pub); err != nil {
		os.Remove(*out)
		return err
	}
	fmt.Printf("private key  %s (mode 0600)\npublic key   %s.pub\nfingerprint  %s\nkey id       %s\n", *out, *out, release.Fingerprint(pub), release.KeyID(pub))
	return nil
}

func cmdTrust(args []string) error {
	fs := newFlags("trust", "zgrid trust --threshold N --out FILE KEY.pub...",
		`Write a trust file (format zeroboot-trust/1): the release public keys a
node accepts and how many distinct ones must sign a release. It goes into
the node's initramfs at /etc/zeroboot/trust.json; give it to zgrid serve
--trust too, so the registry refuses releases nodes would refuse.`,
		`  zgrid trust --threshold 1 --out trust.json release.key.pub
  zgrid trust --threshold 2 --out trust.json alice.key.pub bob.key.pub carol.key.pub`)
	threshold := fs.Int("threshold", 1, "number of distinct keys that must sign a release")
	out := fs.String("out", "", `trust file to write (required; "-" for stdout)`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *out == "" || len(pos) == 0 {
		return usageErr(fs, "need --out FILE and at least one public key file")
	}
	t := release.Trust{Format: release.TrustFormat, Threshold: *threshold}
	for _, p := range pos {
		pub, err := release.ReadPublicKey(p)
		if err != nil {
			return err
		}
		t.Keys = append(t.Keys, ed25519.PublicKey(pub))
	}
	b, err := t.Marshal()
	if err != nil {
		return err
	}
	if *out == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	if err := atomicfile.Write(*out, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("trust file   %s (threshold %d of %d keys)\n", *out, t.Threshold, len(t.Keys))
	for _, k := range t.Keys {
		fmt.Printf("  %s\n", release.Fingerprint(k))
	}
	return nil
}
