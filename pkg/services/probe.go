package services

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// probe checks run id's readiness every Interval until it passes, the
// run ends (ctx), or Timeout has gone by, which kills the run.
func (s *service) probe(ctx context.Context, id, pid int) {
	p := s.spec.Ready
	pctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	var last error
	for {
		err := s.check(pctx)
		if err == nil {
			s.markReady(id)
			return
		}
		if ctx.Err() != nil {
			return // the run ended or the service is stopping
		}
		// An attempt cut short by the deadline says less than the one
		// before it.
		if last == nil || pctx.Err() == nil {
			last = err
		}
		if pctx.Err() != nil {
			s.notReady(id, pid, fmt.Sprintf("not ready after %v: %v", p.timeout(), last))
			return
		}
		t := time.NewTimer(p.interval())
		select {
		case <-pctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// check makes one attempt of the service's probe.
func (s *service) check(ctx context.Context) error {
	p := s.spec.Ready
	switch p.Kind {
	case ProbeExec:
		return s.checkExec(ctx, p.Command)
	case ProbeTCP:
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.Address)
		if err != nil {
			return err
		}
		return c.Close()
	case ProbeHTTP:
		return s.checkHTTP(ctx, p.URL)
	case ProbeNotify:
		if _, err := os.Stat(s.notifyPath); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%s not created yet", s.notifyPath)
			}
			return err
		}
		return nil
	}
	return nil
}

// checkExec runs the probe command through the Reaper (nothing else may
// wait for children) in its own process group, which is killed whole if
// ctx ends first. It runs with the service's environment; its output is
// dropped.
func (s *service) checkExec(ctx context.Context, argv []string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{}, s.spec.Env...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	ch, err := s.sup.Reaper.Start(cmd)
	if err != nil {
		return fmt.Errorf("probe %s: %w", argv[0], err)
	}
	defer cmd.Process.Release()
	pgid := cmd.Process.Pid
	select {
	case st := <-ch:
		if !st.Success() {
			return fmt.Errorf("probe %s: %s", argv[0], st)
		}
		return nil
	case <-ctx.Done():
		// The leader is not reaped before ch delivers, so pgid is still
		// this probe's group.
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-ch
		return fmt.Errorf("probe %s: %w", argv[0], ctx.Err())
	}
}

// checkHTTP wants a 2xx answer to a GET.
func (s *service) checkHTTP(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := s.m.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
