package main

import (
	"fmt"
	"os"

	"github.com/zeroboot/zeroboot/pkg/repo"
)

func cmdKey(args []string) error {
	return subcommand("key", map[string]func([]string) error{"new": cmdKeyNew}, args)
}

func cmdKeyNew(args []string) error {
	fs := newFlags("key new", "zgrid key new --out FILE",
		`Generate an ed25519 signing key (a root key or a release key): FILE
(private, mode 0600) and FILE.pub (public). Prints the public key's
fingerprint and TUF key ID. Keep root and release keys off the registry
host: the server holds only its online key (zgrid init makes it).`,
		`  zgrid key new --out ~/keys/root-1.key
  zgrid key new --out release-1.key && zgrid root rotate --data ./grid --sign root-1.key --release-key release-1.key.pub`)
	out := fs.String("out", "", "private key file to create (required); the public key goes to FILE.pub")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *out == "" || len(pos) > 0 {
		return usageErr(fs, "need --out FILE and no arguments")
	}
	pub, priv, err := repo.GenerateKey()
	if err != nil {
		return err
	}
	if err := repo.WritePrivateKey(*out, priv); err != nil {
		return err
	}
	if err := repo.WritePublicKey(*out+".pub", pub); err != nil {
		os.Remove(*out)
		return err
	}
	fmt.Printf("private key  %s (mode 0600)\npublic key   %s.pub\nfingerprint  %s\nkey id       %s\n", *out, *out, repo.Fingerprint(pub), repo.KeyID(pub))
	return nil
}
