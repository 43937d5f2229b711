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
	bin := NeedTool(t, "swtpm")
	// t.TempDir paths can exceed the 108-byte limit of a unix socket path.
	sockDir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	s := &SwtpmServer{Socket: filepath.Join(sockDir, "sock")}
	s.cmd = exec.Command(bin, "socket", "--tpm2",
		"--tpmstate", "dir="+stateDir,
		"--server", "type=unixio,path="+s.Socket,
		"--ctrl", "type=unixio,path="+s.Socket+".ctrl",
		"--flags", "not-need-init,startup-clear")
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
	bin := NeedTool(t, "swtpm")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	s := &SwtpmServer{Socket: filepath.Join(sockDir, "ctrl")}
	s.cmd = exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+stateDir,
		"--ctrl", "type=unixio,path="+s.Socket, "--terminate")
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
