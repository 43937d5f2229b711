package repo

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFilesRoundTrip(t *testing.T) {
	dir := t.TempDir()
	pubK, privK, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	privPath, pubPath := filepath.Join(dir, "release.key"), filepath.Join(dir, "release.pub")
	if err := WritePrivateKey(privPath, privK); err != nil {
		t.Fatal(err)
	}
	if err := WritePublicKey(pubPath, pubK); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(privPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %04o, want 0600", fi.Mode().Perm())
	}
	gotPriv, err := ReadPrivateKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	gotPub, err := ReadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !gotPriv.Equal(privK) || !gotPub.Equal(pubK) {
		t.Fatal("keys changed in a round trip")
	}
	raw, _ := os.ReadFile(privPath)
	if !strings.HasPrefix(string(raw), "-----BEGIN "+PrivateKeyType+"-----\n") {
		t.Fatalf("private key file starts %q", raw[:40])
	}
}

func TestWriteKeyRefusesOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	if err := WritePrivateKey(path, key(0)); err != nil {
		t.Fatal(err)
	}
	if err := WritePrivateKey(path, key(1)); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second WritePrivateKey: %v", err)
	}
	got, err := ReadPrivateKey(path)
	if err != nil || !got.Equal(key(0)) {
		t.Fatalf("original key damaged: %v", err)
	}
}

func TestReadKeyRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask-proof
			t.Fatal(err)
		}
		return p
	}
	good := filepath.Join(dir, "good")
	if err := WritePrivateKey(good, key(0)); err != nil {
		t.Fatal(err)
	}
	goodPEM, _ := os.ReadFile(good)
	pubPath := filepath.Join(dir, "pub")
	if err := WritePublicKey(pubPath, pub(0)); err != nil {
		t.Fatal(err)
	}
	pubPEM, _ := os.ReadFile(pubPath)
	for _, tc := range []struct {
		name, path, want string
	}{
		{"world readable", write("world", string(goodPEM), 0o644), "mode 0644 lets group or others read"},
		{"group readable", write("group", string(goodPEM), 0o640), "mode 0640"},
		{"public key as private", write("swapped", string(pubPEM), 0o600), `PEM block "` + PublicKeyType + `"`},
		{"not pem", write("junk", "hello", 0o600), "no PEM block"},
		{"trailing", write("trail", string(goodPEM)+"extra", 0o600), "trailing data"},
		{"short seed", write("short", "-----BEGIN "+PrivateKeyType+"-----\nAAAA\n-----END "+PrivateKeyType+"-----\n", 0o600), "3 key bytes, want 32"},
		{"directory", dir, "not a regular file"},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadPrivateKey(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadPrivateKey error %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := ReadPublicKey(good); err == nil || !strings.Contains(err.Error(), `want "`+PublicKeyType+`"`) {
		t.Fatalf("ReadPublicKey of a private key: %v", err)
	}
}

func key(i byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{i + 1}, 32)) }

func pub(i byte) ed25519.PublicKey { return key(i).Public().(ed25519.PublicKey) }
