package testenv

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// SwtpmServer is a running swtpm (a software TPM 2.0) serving one client at
// a time on a unix socket.
type SwtpmServer struct {
	// Socket is the command socket; its control channel is Socket+".ctrl",
	// where tpm2-tools' TCTI "swtpm:path=SOCKET" expects it.
	Socket string
	cmd    *exec.Cmd
}

// Swtpm starts swtpm on stateDir and returns a connection to it. swtpm is
// stopped in t.Cleanup; state written to stateDir survives, so a second
// Swtpm on the same dir is the same TPM after a reboot.
func Swtpm(t testing.TB, stateDir string) transport.TPMCloser {
	t.Helper()
	return StartSwtpm(t, stateDir).Dial(t)
}

// StartSwtpm starts swtpm on stateDir, already past TPM2_Startup(CLEAR).
func StartSwtpm(t testing.TB, stateDir string) *SwtpmServer {
	t.Helper()
	return startSwtpm(t, stateDir, "sock", func(sock string) []string {
		return []string{"--server", "type=unixio,path=" + sock, "--ctrl", "type=unixio,path=" + sock + ".ctrl",
			"--flags", "not-need-init,startup-clear"}
	})
}

// startSwtpm runs swtpm on stateDir with the socket arguments args gives
// for a socket path named name; it is stopped in t.Cleanup.
func startSwtpm(t testing.TB, stateDir, name string, args func(sock string) []string) *SwtpmServer {
	t.Helper()
	bin := NeedTool(t, "swtpm")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// t.TempDir paths can exceed the 108-byte limit of a unix socket path.
	sockDir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	s := &SwtpmServer{Socket: filepath.Join(sockDir, name)}
	s.cmd = exec.Command(bin, append([]string{"socket", "--tpm2", "--tpmstate", "dir=" + stateDir}, args(s.Socket)...)...)
	// swtpm chatters on every disconnect: show it only when it may explain
	// a failure.
	var stderr bytes.Buffer
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("swtpm stderr:\n%s", stderr.Bytes())
		}
	})
	return s
}

// Dial connects to the server, waiting up to 10s for its socket. The
// connection is closed in t.Cleanup if the test did not close it.
func (s *SwtpmServer) Dial(t testing.TB) transport.TPMCloser {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", s.Socket)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return transport.FromReadWriteCloser(c)
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect to swtpm at %s: %v", s.Socket, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop terminates swtpm and waits for it, so that its state is on disk
// before another swtpm opens the same dir.
func (s *SwtpmServer) Stop() {
	if s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// SwtpmForQEMU starts swtpm on stateDir as QEMU's TPM emulator backend (a
// control socket only; the guest's firmware sends TPM2_Startup) and returns
// the QEMU arguments that attach it as a TIS TPM. swtpm ends with QEMU's
// connection, or in t.Cleanup.
func SwtpmForQEMU(t testing.TB, stateDir string) []string {
	t.Helper()
	s := startSwtpm(t, stateDir, "ctrl", func(sock string) []string {
		return []string{"--ctrl", "type=unixio,path=" + sock, "--terminate"}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(s.Socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm control socket %s never appeared", s.Socket)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return []string{"-chardev", "socket,id=chrtpm,path=" + s.Socket,
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0"}
}

// WriteNV defines index under platform auth, as a TPM manufacturer does,
// and writes data to it: how tests store an EK certificate in a swtpm.
func WriteNV(t testing.TB, tr transport.TPM, index tpm2.TPMHandle, data []byte) {
	t.Helper()
	platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
	pub := tpm2.TPMSNVPublic{
		NVIndex: index,
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{
			PPWrite: true, PPRead: true, OwnerRead: true, AuthRead: true,
			NoDA: true, PlatformCreate: true, NT: tpm2.TPMNTOrdinary,
		},
		DataSize: uint16(len(data)),
	}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: platform, PublicInfo: tpm2.New2B(pub)}).Execute(tr); err != nil {
		t.Fatalf("define NV %#x: %v", index, err)
	}
	name, err := tpm2.NVName(&pub)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 512 {
		end := min(off+512, len(data))
		_, err := tpm2.NVWrite{
			AuthHandle: platform,
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: *name},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[off:end]},
			Offset:     uint16(off),
		}.Execute(tr)
		if err != nil {
			t.Fatalf("write NV %#x at %d: %v", index, off, err)
		}
	}
}
