// Command demosvc is the demo service that releases and the QEMU tests
// give Core-0 to run: it can listen on TCP, answer GET /healthz, create
// the notify file Core-0 names in $ZEROBOOT_NOTIFY, wait for another
// service's port, and exit on purpose, so every readiness kind and every
// failure Core-0 handles can be shown on a real node.
//
// Exit status: 0 after SIGTERM; --exit N after --exit-after; 2 on bad
// flags; 1 when it cannot listen.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type svc struct {
	Listen    string        // TCP address to accept on; empty: none
	HTTP      string        // address to answer GET /healthz on; empty: none
	WaitFor   string        // TCP address that must accept before we are up
	Delay     time.Duration // pause before coming up, to make readiness visible
	ExitAfter time.Duration // 0: run until signalled
	Exit      int           // status for --exit-after
	Notify    string        // file to create once up ($ZEROBOOT_NOTIFY)
	Out       io.Writer
}

func main() {
	s, err := parseFlags(os.Args[1:], os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demosvc:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(s.run(ctx))
}

func parseFlags(args []string, getenv func(string) string) (*svc, error) {
	fs := flag.NewFlagSet("demosvc", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s := &svc{Notify: getenv("ZEROBOOT_NOTIFY"), Out: os.Stdout}
	fs.StringVar(&s.Listen, "listen", "", "TCP address to accept connections on")
	fs.StringVar(&s.HTTP, "http", "", "address to answer GET /healthz on")
	fs.StringVar(&s.WaitFor, "wait-for", "", "TCP address that must accept before this service comes up")
	fs.DurationVar(&s.Delay, "delay", 0, "pause before coming up")
	fs.DurationVar(&s.ExitAfter, "exit-after", 0, "exit this long after coming up (0: never)")
	fs.IntVar(&s.Exit, "exit", 1, "exit status for --exit-after")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if s.Delay < 0 || s.ExitAfter < 0 {
		return nil, errors.New("--delay and --exit-after must not be negative")
	}
	return s, nil
}

func (s *svc) run(ctx context.Context) int {
	if s.WaitFor != "" {
		if err := waitTCP(ctx, s.WaitFor); err != nil {
			fmt.Fprintf(s.Out, "waiting for %s: %v\n", s.WaitFor, err)
			return 0
		}
		fmt.Fprintf(s.Out, "%s accepts\n", s.WaitFor)
	}
	if sleep(ctx, s.Delay) != nil {
		return 0
	}
	closers, err := s.up()
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	if err != nil {
		fmt.Fprintln(s.Out, err)
		return 1
	}
	fmt.Fprintln(s.Out, "up")
	var exit <-chan time.Time
	if s.ExitAfter > 0 {
		exit = time.After(s.ExitAfter)
	}
	select {
	case <-ctx.Done():
		fmt.Fprintln(s.Out, "stopping")
		return 0
	case <-exit:
		fmt.Fprintf(s.Out, "exiting %d on purpose (--exit-after %s)\n", s.Exit, s.ExitAfter)
		return s.Exit
	}
}

// up opens what the flags ask for and notifies last, so a notified
// service really is up.
func (s *svc) up() ([]io.Closer, error) {
	var cs []io.Closer
	if s.Listen != "" {
		l, err := net.Listen("tcp", s.Listen)
		if err != nil {
			return cs, fmt.Errorf("listen %s: %w", s.Listen, err)
		}
		cs = append(cs, l)
		go accept(l)
		fmt.Fprintf(s.Out, "listening on %s\n", s.Listen)
	}
	if s.HTTP != "" {
		l, err := net.Listen("tcp", s.HTTP)
		if err != nil {
			return cs, fmt.Errorf("listen %s: %w", s.HTTP, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		cs = append(cs, srv)
		go srv.Serve(l)
		fmt.Fprintf(s.Out, "serving /healthz on %s\n", s.HTTP)
	}
	if s.Notify != "" {
		if err := os.WriteFile(s.Notify, []byte("ready\n"), 0o644); err != nil {
			return cs, fmt.Errorf("notify: %w", err)
		}
		fmt.Fprintf(s.Out, "notified %s\n", s.Notify)
	}
	return cs, nil
}

func accept(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func waitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if sleep(ctx, 200*time.Millisecond) != nil {
			return ctx.Err()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
