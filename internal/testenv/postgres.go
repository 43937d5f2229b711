package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresServer is a PostgreSQL server a test started for itself: its own
// cluster in a temporary directory, on 127.0.0.1 at a free port (which
// asks for Password, SCRAM) and on a unix socket (which trusts the
// caller), stopped and removed when the test ends.
type PostgresServer struct {
	Host     string // 127.0.0.1
	Port     int
	Socket   string // the unix socket's directory
	User     string // the superuser initdb made
	Password string // User's, needed over TCP
	dbs      atomic.Int64
}

// PostgresBin is the directory of Debian's postgresql server binaries
// (initdb, postgres), the newest installed, or "" without one.
func PostgresBin() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) < pgMajor(dirs[j]) })
	if len(dirs) == 0 {
		return ""
	}
	return filepath.Dir(dirs[len(dirs)-1])
}

func pgMajor(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

// Postgres starts a PostgreSQL server for t (make deps installs
// postgresql-15). PostgreSQL refuses to run as root, so as root the
// cluster belongs to the postgres user and its processes run as it;
// otherwise they run as the caller. settings are extra postgres -c
// options ("fsync=off").
func Postgres(t testing.TB, settings ...string) *PostgresServer {
	t.Helper()
	bin := PostgresBin()
	Need(t, bin != "", "PostgreSQL server binaries (initdb, postgres) not installed (make deps: postgresql-15)")
	cred, err := postgresCredential()
	Need(t, err == nil, "no unprivileged user to run PostgreSQL as: %v", err)
	// Not t.TempDir: its parents are private to root, and postgres runs
	// as another user.
	dir, err := os.MkdirTemp("", "zeroboot-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	for _, d := range []string{dir, sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if cred != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := &PostgresServer{Host: "127.0.0.1", Socket: sock, User: "zgrid", Password: "pw-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(s.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		if err := os.Chown(pwfile, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", s.User, "--pwfile", pwfile, "--auth-local=trust", "--auth-host=scram-sha-256",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb %s: %v\n%s", data, err, out)
	}
	// A free port may be taken between here and postgres binding it: a
	// start that fails on the port tries another.
	for try := 0; ; try++ {
		s.Port = freePort(t)
		err := s.start(t, bin, data, cred, settings)
		if err == nil {
			return s
		}
		if try == 2 || !strings.Contains(err.Error(), "could not bind") {
			t.Fatal(err)
		}
	}
}

// postgresCredential is whom postgres runs as: nil (the caller) unless
// the caller is root, then the postgres user.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs postgres until the test ends and waits until it accepts
// connections; a server that exits first is an error with its log.
func (s *PostgresServer) start(t testing.TB, bin, data string, cred *syscall.Credential, settings []string) error {
	args := []string{"-D", data, "-h", s.Host, "-p", strconv.Itoa(s.Port), "-k", s.Socket, "-c", "max_connections=300", "-c", "logging_collector=off"}
	for _, c := range settings {
		args = append(args, "-c", c)
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	ready, exited := make(chan struct{}), make(chan error, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if log.Len() < 64<<10 {
				log.WriteString(sc.Text() + "\n")
			}
			if !once && strings.Contains(sc.Text(), "ready to accept connections") {
				once = true
				close(ready)
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-exited:
		return fmt.Errorf("postgres exited before it was ready (%v):\n%s", err, log.String())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		return fmt.Errorf("postgres not ready after 60 s:\n%s", log.String())
	}
	t.Cleanup(func() {
		// SIGINT is the fast shutdown: clients are cut off, no checkpoint
		// wait beyond the one it must do.
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	return nil
}

// URL is a connection URL for database name over TCP, without the
// password it needs.
func (s *PostgresServer) URL(name string) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", s.User, s.Host, s.Port, name)
}

// PasswordURL is URL with the password in it.
func (s *PostgresServer) PasswordURL(name string) string {
	return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", s.User, s.Password, s.Host, s.Port, name)
}

// SocketURL is a connection URL for database name over the unix socket.
func (s *PostgresServer) SocketURL(name string) string {
	return fmt.Sprintf("postgres://%s@/%s?host=%s&port=%d", s.User, name, s.Socket, s.Port)
}

// NewDatabase creates an empty database and returns its name: each test
// (or subtest) its own, on one server.
func (s *PostgresServer) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.SocketURL("postgres"))
	if err != nil {
		t.Fatalf("connect to the test's postgres: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return name
}
