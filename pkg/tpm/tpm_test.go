package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/zeroboot/zeroboot/internal/testenv"
)

// newTPM starts swtpm on stateDir and returns a TPM on it, closed in cleanup.
func newTPM(t *testing.T, stateDir string) *TPM {
	t.Helper()
	tp := New(testenv.Swtpm(t, stateDir))
	t.Cleanup(func() { tp.Close() })
	return tp
}

func identity(t *testing.T, tp *TPM) *Key {
	t.Helper()
	start := time.Now()
	k, err := tp.IdentityKey()
	if err != nil {
		t.Fatalf("IdentityKey: %v", err)
	}
	t.Logf("figure: CreatePrimary identity key (swtpm): %v", time.Since(start))
	return k
}

func TestIdentityKeyStableAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	srv := testenv.StartSwtpm(t, dir)
	tp := New(srv.Dial(t))
	k1 := identity(t, tp)
	k1b, err := tp.IdentityKey()
	if err != nil || k1b != k1 {
		t.Fatalf("second IdentityKey in a session = %v, %v; want the same loaded key", k1b, err)
	}
	pub1 := bytes.Clone(k1.Public)
	if err := tp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	srv.Stop()

	// A second swtpm process on the same state: the same TPM after a reboot.
	k2 := identity(t, newTPM(t, dir))
	if !bytes.Equal(pub1, k2.Public) {
		t.Errorf("identity key changed across restart:\n%x\n%x", pub1, k2.Public)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](k2.Public)
	if err != nil {
		t.Fatalf("unmarshal public: %v", err)
	}
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(name.Buffer, k2.Name) {
		t.Errorf("Name %x, want the name of Public %x", k2.Name, name.Buffer)
	}
	if a := pub.ObjectAttributes; !a.Restricted || !a.SignEncrypt || !a.FixedTPM || !a.NoDA || a.Decrypt {
		t.Errorf("attributes %+v, want a restricted signing key", a)
	}
}

func TestIdentityKeyDiffersPerTPM(t *testing.T) {
	a := identity(t, newTPM(t, t.TempDir()))
	b := identity(t, newTPM(t, t.TempDir()))
	if bytes.Equal(a.Public, b.Public) {
		t.Errorf("two fresh TPMs derived the same identity key %x", a.Public)
	}
}

// srk derives the storage hierarchy's RSA SRK, which TPM2_Clear changes.
func srk(t *testing.T, tp *TPM) []byte {
	t.Helper()
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(tp.tr)
	if err != nil {
		t.Fatalf("create SRK: %v", err)
	}
	tp.flush("SRK", rsp.ObjectHandle)
	return rsp.Name.Buffer
}

func TestIdentityKeySurvivesClear(t *testing.T) {
	testenv.NeedTool(t, "tpm2_clear")
	srv := testenv.StartSwtpm(t, t.TempDir())
	tp := New(srv.Dial(t))
	pub1 := bytes.Clone(identity(t, tp).Public)
	srk1 := srk(t, tp)
	if err := tp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// swtpm serves one client at a time: ours is closed, now tpm2-tools.
	out, err := exec.Command("tpm2_clear", "--tcti=swtpm:path="+srv.Socket, "-c", "p").CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_clear: %v\n%s", err, out)
	}

	tp = New(srv.Dial(t))
	defer tp.Close()
	if srk2 := srk(t, tp); bytes.Equal(srk1, srk2) {
		t.Fatalf("SRK unchanged (%x): TPM2_Clear did not happen", srk1)
	}
	if pub2 := identity(t, tp).Public; !bytes.Equal(pub1, pub2) {
		t.Errorf("identity key changed by TPM2_Clear:\n%x\n%x", pub1, pub2)
	}
}

func testCert(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "zeroboot test EK", Organization: []string{strings.Repeat("padding ", 40)}},
		NotBefore:    time.Now(),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestEK(t *testing.T) {
	srv := testenv.StartSwtpm(t, t.TempDir())
	tp := New(srv.Dial(t))
	start := time.Now()
	ek, err := tp.EK()
	if err != nil {
		t.Fatalf("EK: %v", err)
	}
	t.Logf("figure: CreatePrimary RSA EK (swtpm): %v", time.Since(start))
	if ek.Kind != "rsa2048" {
		t.Errorf("Kind = %q, want rsa2048", ek.Kind)
	}
	if ek.Cert != nil {
		t.Errorf("Cert = %x, want nil: swtpm has no EK certificate index", ek.Cert)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ek.Public)
	if err != nil || pub.Type != tpm2.TPMAlgRSA {
		t.Fatalf("EK public: %v, %v", pub, err)
	}

	// A certificate stored with trailing padding, longer than one NV read.
	cert := testCert(t)
	stored := append(bytes.Clone(cert), bytes.Repeat([]byte{0xff}, 1200-len(cert))...)
	testenv.WriteNV(t, tp.tr, RSAEKCertIndex, stored)
	got, err := tp.readNV(RSAEKCertIndex)
	if err != nil {
		t.Fatalf("readNV: %v", err)
	}
	if !bytes.Equal(got, cert) {
		t.Fatalf("read cert %d bytes, want the %d-byte DER", len(got), len(cert))
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}

	// And through EK() in a new session: the same EK, now with its cert.
	tp = New(srv.Dial(t))
	defer tp.Close()
	ek2, err := tp.EK()
	if err != nil {
		t.Fatalf("EK: %v", err)
	}
	if !bytes.Equal(ek2.Public, ek.Public) {
		t.Errorf("EK changed between sessions")
	}
	if !bytes.Equal(ek2.Cert, cert) {
		t.Fatalf("EK().Cert = %d bytes, want the %d-byte DER", len(ek2.Cert), len(cert))
	}
	if _, err := x509.ParseCertificate(ek2.Cert); err != nil {
		t.Errorf("parse EK cert: %v", err)
	}
}

func TestActivateCredential(t *testing.T) {
	tp := newTPM(t, t.TempDir())
	key := identity(t, tp)
	ek, err := tp.EK()
	if err != nil {
		t.Fatalf("EK: %v", err)
	}
	ekPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](ek.Public)
	if err != nil {
		t.Fatal(err)
	}
	encap, err := tpm2.ImportEncapsulationKey(ekPub)
	if err != nil {
		t.Fatalf("ImportEncapsulationKey: %v", err)
	}
	want := []byte("registry challenge 0123456789abc")

	for _, tc := range []struct {
		name    string
		forName []byte
		ok      bool
	}{
		{"identity key", key.Name, true},
		{"another key", ek.Name, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blob, secret, err := tpm2.CreateCredential(rand.Reader, encap, tc.forName, want)
			if err != nil {
				t.Fatalf("CreateCredential: %v", err)
			}
			start := time.Now()
			got, err := tp.ActivateCredential(key, ek, blob, secret)
			t.Logf("figure: ActivateCredential (swtpm): %v", time.Since(start))
			switch {
			case tc.ok && err != nil:
				t.Fatalf("ActivateCredential: %v", err)
			case tc.ok && !bytes.Equal(got, want):
				t.Errorf("secret %q, want %q", got, want)
			case !tc.ok && err == nil:
				t.Errorf("credential for another name activated: %q", got)
			case !tc.ok:
				t.Logf("refused as expected: %v", err)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	tp := newTPM(t, t.TempDir())
	key := identity(t, tp)
	if err := tp.Extend(15, sha256.Sum256([]byte("quoted"))); err != nil {
		t.Fatal(err)
	}
	nonce := []byte("nonce-0123456789")
	pcrs := []int{15, 0, 1, 2, 3, 4, 5, 6, 7} // unordered on purpose
	start := time.Now()
	q, err := tp.Quote(key, nonce, pcrs)
	if err != nil {
		t.Fatalf("Quote: %v", err)
	}
	t.Logf("figure: Quote 9 PCRs + PCR_Read (swtpm): %v", time.Since(start))

	att, err := tpm2.Unmarshal[tpm2.TPMSAttest](q.Attest)
	if err != nil {
		t.Fatalf("unmarshal TPMS_ATTEST: %v", err)
	}
	if att.Magic != tpm2.TPMGeneratedValue {
		t.Errorf("magic %#x, want TPM_GENERATED", att.Magic)
	}
	if !bytes.Equal(att.ExtraData.Buffer, nonce) {
		t.Errorf("extra data %q, want nonce %q", att.ExtraData.Buffer, nonce)
	}
	info, err := att.Attested.Quote()
	if err != nil {
		t.Fatal(err)
	}
	sels := info.PCRSelect.PCRSelections
	if len(sels) != 1 || sels[0].Hash != tpm2.TPMAlgSHA256 || !bytes.Equal(sels[0].PCRSelect, []byte{0xff, 0x80, 0x00}) {
		t.Errorf("selection %+v, want SHA-256 PCRs 0-7,15", sels)
	}
	h := sha256.New()
	for _, p := range []int{0, 1, 2, 3, 4, 5, 6, 7, 15} {
		if len(q.PCRs[p]) != 32 {
			t.Fatalf("PCR %d value %x", p, q.PCRs[p])
		}
		h.Write(q.PCRs[p])
	}
	if !bytes.Equal(info.PCRDigest.Buffer, h.Sum(nil)) {
		t.Errorf("PCR digest %x, want SHA-256 of the PCR values %x", info.PCRDigest.Buffer, h.Sum(nil))
	}

	sig, err := tpm2.Unmarshal[tpm2.TPMTSignature](q.Signature)
	if err != nil {
		t.Fatal(err)
	}
	es, err := sig.Signature.ECDSA()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](key.Public)
	if err != nil {
		t.Fatal(err)
	}
	point, err := pub.Unique.ECC()
	if err != nil {
		t.Fatal(err)
	}
	ecPub := &ecdsa.PublicKey{
		Curve: elliptic.P256(),
		X:     new(big.Int).SetBytes(point.X.Buffer),
		Y:     new(big.Int).SetBytes(point.Y.Buffer),
	}
	digest := sha256.Sum256(q.Attest)
	r, s := new(big.Int).SetBytes(es.SignatureR.Buffer), new(big.Int).SetBytes(es.SignatureS.Buffer)
	if !ecdsa.Verify(ecPub, digest[:], r, s) {
		t.Error("quote signature does not verify against the identity key")
	}
	digest[0] ^= 1
	if ecdsa.Verify(ecPub, digest[:], r, s) {
		t.Error("signature verifies over altered data")
	}
}

func TestExtend(t *testing.T) {
	tp := newTPM(t, t.TempDir())
	before, err := tp.PCRs([]int{16})
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("event"))
	if err := tp.Extend(16, d); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	after, err := tp.PCRs([]int{16})
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(append(bytes.Clone(before[16]), d[:]...))
	if !bytes.Equal(after[16], want[:]) {
		t.Errorf("PCR 16 = %x, want SHA-256(old || digest) = %x", after[16], want)
	}
	if err := tp.Extend(24, d); err == nil {
		t.Error("Extend(24) succeeded")
	}
}

func TestPCRsMoreThanEight(t *testing.T) {
	tp := newTPM(t, t.TempDir())
	all := make([]int, numPCRs)
	for i := range all {
		all[i] = i
	}
	got, err := tp.PCRs(all)
	if err != nil {
		t.Fatalf("PCRs: %v", err)
	}
	if len(got) != numPCRs {
		t.Fatalf("got %d PCRs, want %d", len(got), numPCRs)
	}
	for p, v := range got {
		if len(v) != 32 {
			t.Errorf("PCR %d = %x", p, v)
		}
	}
}

func TestWrap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		lockout bool
		want    string
	}{
		{"lockout", tpm2.TPMRCLockout, true, "create identity key: TPM is in dictionary-attack lockout"},
		{"initialize", tpm2.TPMRCInitialize, false, "TPM2_Startup"},
		{"failure", tpm2.TPMRCFailure, false, "failure mode"},
		{"fmt1 auth fail, session 1", tpm2.TPMRCAuthFail + 0x100 + 0x800, false, "dictionary-attack lockout"},
		{"fmt1 hierarchy, handle 1", tpm2.TPMRCHierarchy + 0x100, false, "endorsement hierarchy"},
		{"other code", tpm2.TPMRCValue, false, "TPM_RC_VALUE"},
		{"not a TPM code", errors.New("broken pipe"), false, "create identity key: broken pipe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := wrap("create identity key", tc.err)
			if got := errors.Is(err, ErrLockout); got != tc.lockout {
				t.Errorf("errors.Is(%v, ErrLockout) = %v", err, got)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("%v does not wrap %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q does not say %q", err, tc.want)
			}
		})
	}
}

func TestDERLen(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		n    int
		ok   bool
	}{
		{"short form", []byte{0x30, 0x02, 1, 2, 0xff}, 4, true},
		{"long form", append([]byte{0x30, 0x81, 0x80}, make([]byte, 0x90)...), 0x83, true},
		{"two-byte length", append([]byte{0x30, 0x82, 0x01, 0x00}, make([]byte, 0x100)...), 0x104, true},
		{"truncated", []byte{0x30, 0x05, 1}, 0, false},
		{"not a sequence", []byte{0x04, 0x01, 1}, 0, false},
		{"empty", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := derLen(tc.b)
			if (err == nil) != tc.ok || n != tc.n {
				t.Errorf("derLen = %d, %v; want %d, ok=%v", n, err, tc.n, tc.ok)
			}
		})
	}
}

func TestFirmwareLog(t *testing.T) {
	write := func(t *testing.T, n int) string {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "tpm0"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "tpm0", "binary_bios_measurements"), bytes.Repeat([]byte{7}, n), 0o644); err != nil {
			t.Fatal(err)
		}
		return root
	}
	for _, tc := range []struct {
		name string
		root func(t *testing.T) string
		n    int
		ok   bool
	}{
		{"absent", func(t *testing.T) string { return t.TempDir() }, 0, true},
		{"present", func(t *testing.T) string { return write(t, 4096) }, 4096, true},
		{"at the bound", func(t *testing.T) string { return write(t, MaxFirmwareLog) }, MaxFirmwareLog, true},
		{"too big", func(t *testing.T) string { return write(t, MaxFirmwareLog+1) }, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := FirmwareLog(tc.root(t))
			if (err == nil) != tc.ok || len(b) != tc.n {
				t.Errorf("FirmwareLog = %d bytes, %v; want %d, ok=%v", len(b), err, tc.n, tc.ok)
			}
			if tc.name == "absent" && b != nil {
				t.Errorf("absent log returned %v, want nil", b)
			}
		})
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "tpmrm0"))
	if !errors.Is(err, ErrNoTPM) {
		t.Errorf("Open(missing) = %v, want ErrNoTPM", err)
	}
}

// TestLockoutFromSwtpm provokes a real TPM_RC_LOCKOUT: one failed
// authorization allowed, then a wrong password on a DA-protected NV index.
func TestLockoutFromSwtpm(t *testing.T) {
	testenv.NeedTool(t, "tpm2_dictionarylockout")
	srv := testenv.StartSwtpm(t, t.TempDir())
	out, err := exec.Command("tpm2_dictionarylockout", "--tcti=swtpm:path="+srv.Socket,
		"--setup-parameters", "--max-tries=1", "--recovery-time=600", "--lockout-recovery-time=600").CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_dictionarylockout: %v\n%s", err, out)
	}
	tp := New(srv.Dial(t))
	defer tp.Close()

	const index = tpm2.TPMHandle(0x01500001)
	pub := tpm2.TPMSNVPublic{
		NVIndex:    index,
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{AuthRead: true, AuthWrite: true, NT: tpm2.TPMNTOrdinary},
		DataSize:   8,
	}
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	_, err = tpm2.NVDefineSpace{
		AuthHandle: owner,
		Auth:       tpm2.TPM2BAuth{Buffer: []byte("right")},
		PublicInfo: tpm2.New2B(pub),
	}.Execute(tp.tr)
	if err != nil {
		t.Fatalf("define NV: %v", err)
	}
	name, err := tpm2.NVName(&pub)
	if err != nil {
		t.Fatal(err)
	}
	read := func() error {
		_, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: index, Name: *name, Auth: tpm2.PasswordAuth([]byte("wrong"))},
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: *name},
			Size:       8,
		}.Execute(tp.tr)
		return wrap("read NV", err)
	}
	if err := read(); errors.Is(err, ErrLockout) || !errors.Is(err, tpm2.TPMRCAuthFail) {
		t.Fatalf("first wrong password: %v, want TPM_RC_AUTH_FAIL", err)
	}
	err = read()
	if !errors.Is(err, ErrLockout) {
		t.Fatalf("second wrong password: %v, want ErrLockout", err)
	}
	t.Logf("console sees: %v", err)
}

// TestIdentityTemplateBytes pins the template to the bytes docs/tpm.md
// documents: any change derives a different identity key on every node.
func TestIdentityTemplateBytes(t *testing.T) {
	const want = "0023" + "000b" + "00050472" + "0000" + "0010" + "0018" + "000b" + "0003" + "0010" +
		"0014" + "7a65726f626f6f742d6964656e746974792d7631" + "0000"
	if got := hex.EncodeToString(tpm2.Marshal(IdentityTemplate())); got != want {
		t.Errorf("identity template\n got %s\nwant %s", got, want)
	}
}
