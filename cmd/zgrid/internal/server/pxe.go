package server

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/cmd/zgrid/internal/db"
	"github.com/zeroboot/zeroboot/pkg/cmdline"
)

// The boot files zgrid serve --boot-dir hands out, under /boot/. Only
// these names are served: nothing else in the directory is reachable and
// there is no listing.
const (
	BootKernel = "vmlinuz"
	BootInitrd = "initramfs.cpio.zst"
	// BootUKI is the Unified Kernel Image (make uki) for UEFI HTTP boot:
	// the firmware fetches it itself, no iPXE in between.
	BootUKI = "zeroboot.efi"
)

// DefaultBootConsole is the console= part of the iPXE script's kernel
// command line, as make uki and make iso write it.
const DefaultBootConsole = "console=ttyS0 console=tty0"

// PXE is network boot (zgrid serve --boot-dir, docs/pxe.md): the kernel,
// the initramfs and an iPXE script per machine, whose command line names
// this registry and the machine's farm.
type PXE struct {
	Dir     string // holds BootKernel and BootInitrd
	Console string // console= arguments, checked by CheckBootConsole
	// RegistryPort is the HTTPS API's port: a script fetched over the
	// plain HTTP boot listener names the registry at the host the machine
	// reached, on this port.
	RegistryPort int
	// Map is the operator's farm for a machine, by canonical MAC or UUID
	// (LoadPXEMap); it wins over the script URL's farm parameter.
	Map map[string]string
}

// CheckBootDir reports whether dir holds what a machine boots: the kernel
// and initramfs (iPXE), the UKI (UEFI HTTP boot), or all three, each a
// regular file, so that serve refuses to start rather than answer 404 at
// every boot.
func CheckBootDir(dir string) error {
	have := map[string]bool{}
	for _, name := range []string{BootKernel, BootInitrd, BootUKI} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("boot dir %s: %w", dir, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("boot dir %s: %s is not a regular file", dir, name)
		}
		have[name] = true
	}
	switch {
	case have[BootKernel] && have[BootInitrd], have[BootUKI] && !have[BootKernel] && !have[BootInitrd]:
		return nil
	case have[BootKernel] || have[BootInitrd]:
		missing := map[bool]string{true: BootInitrd, false: BootKernel}[have[BootKernel]]
		return fmt.Errorf("boot dir %s: %s missing beside the other of %s and %s (make pxe writes out/pxe)", dir, missing, BootKernel, BootInitrd)
	}
	return fmt.Errorf("boot dir %s: neither %s and %s (make pxe) nor %s (make uki)", dir, BootKernel, BootInitrd, BootUKI)
}

var consoleRe = regexp.MustCompile(`^console=[A-Za-z0-9][A-Za-z0-9,._-]{0,63}$`)

// CheckBootConsole reports whether c is only console= arguments of a
// plain alphabet: it goes into every script verbatim.
func CheckBootConsole(c string) error {
	for _, f := range strings.Fields(c) {
		if !consoleRe.MatchString(f) {
			return fmt.Errorf("boot console %q: want console=NAME[,OPTIONS] arguments (A-Z a-z 0-9 , . _ -), separated by spaces", f)
		}
	}
	return nil
}

var (
	macRe  = regexp.MustCompile(`^[0-9a-f]{2}([:-])[0-9a-f]{2}(?:[:-][0-9a-f]{2}){4}$`)
	uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// canonMAC is an Ethernet MAC as iPXE's ${net0/mac} prints it (lower
// case, colons); hyphens are taken too, as BMCs and DHCP servers print
// them, but not mixed with colons.
func canonMAC(s string) (string, error) {
	l := strings.ToLower(s)
	m := macRe.FindStringSubmatch(l)
	if m == nil || strings.Count(l, m[1]) != 5 {
		return "", fmt.Errorf("mac %q: want six hex bytes separated by colons, like 52:54:00:12:34:56", shorten(s, 32))
	}
	return strings.ReplaceAll(l, "-", ":"), nil
}

// canonUUID is an SMBIOS UUID as iPXE's ${uuid} prints it, in lower case.
func canonUUID(s string) (string, error) {
	l := strings.ToLower(s)
	if !uuidRe.MatchString(l) {
		return "", fmt.Errorf("uuid %q: want 8-4-4-4-12 hex digits, like 5a1c0b0e-0000-4000-8000-000000000001", shorten(s, 48))
	}
	return l, nil
}

// shorten keeps a message quoting a bad value short.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// LoadPXEMap reads the operator's machine-to-farm map: one "MAC FARM" or
// "UUID FARM" per line, # starts a comment. A key given twice is refused:
// which farm was meant?
func LoadPXEMap(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("boot map: %w", err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fs := strings.Fields(line)
		if len(fs) == 0 {
			continue
		}
		key, farm, err := mapEntry(fs)
		if err != nil {
			return nil, fmt.Errorf("boot map %s:%d: %w", path, n, err)
		}
		if old, dup := m[key]; dup {
			return nil, fmt.Errorf("boot map %s:%d: %s listed twice (farms %s and %s)", path, n, key, old, farm)
		}
		m[key] = farm
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("boot map %s: %w", path, err)
	}
	return m, nil
}

func mapEntry(fs []string) (key, farm string, err error) {
	if len(fs) != 2 {
		return "", "", fmt.Errorf("want MAC-or-UUID FARM, got %d fields", len(fs))
	}
	key, err = canonMAC(fs[0])
	if err != nil {
		if key, err = canonUUID(fs[0]); err != nil {
			return "", "", fmt.Errorf("%q is neither a MAC (52:54:00:12:34:56) nor a UUID (8-4-4-4-12 hex)", shorten(fs[0], 48))
		}
	}
	if err := checkFarm(fs[1]); err != nil {
		return "", "", err
	}
	return key, fs[1], nil
}

var farmRe = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// checkFarm is zeroboot.farm's grammar: the name goes onto a command line
// the node parses, which is stricter than the registry's farm names.
func checkFarm(f string) error {
	if !farmRe.MatchString(f) {
		return fmt.Errorf("farm %q: want 1-63 characters of a-z 0-9 - (the grammar of zeroboot.farm)", shorten(f, 64))
	}
	return nil
}

// BootHandler serves only /boot/: the plain HTTP boot listener
// (--boot-listen), for firmware that cannot check our CA.
func (s *Server) BootHandler() http.Handler {
	mux := http.NewServeMux()
	s.bootRoutes(mux)
	return s.wrap(mux)
}

// bootRoutes are the network boot endpoints, on both listeners. They take
// no credential, so they share the node endpoints' rate limit.
func (s *Server) bootRoutes(mux *http.ServeMux) {
	mux.Handle("GET /boot/ipxe", s.limit(s.pxeScript))
	mux.Handle("GET /boot/{file}", s.limit(s.bootFile))
}

// BootHTTPServer is the plain HTTP boot listener with the API's timeouts.
func (s *Server) BootHTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s.BootHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log().Handler(), slog.LevelDebug),
	}
}

var errNoPXE = fail(http.StatusNotFound, "network boot is off: start zgrid serve with --boot-dir DIR (docs/pxe.md)")

func (s *Server) bootFile(w http.ResponseWriter, r *http.Request) {
	if s.PXE == nil {
		s.replyError(w, r, errNoPXE)
		return
	}
	name := r.PathValue("file")
	if name != BootKernel && name != BootInitrd && name != BootUKI {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no boot file %q: only %s, %s, %s and ipxe", shorten(name, 64), BootKernel, BootInitrd, BootUKI))
		return
	}
	f, err := os.Open(filepath.Join(s.PXE.Dir, name))
	if err != nil {
		s.replyError(w, r, fmt.Errorf("boot file %s: %w", name, err))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		s.replyError(w, r, fmt.Errorf("boot file %s: not a regular file (%v)", name, err))
		return
	}
	w.Header().Set("Content-Type", bootFileType(name))
	if r.Method == http.MethodGet {
		// Which machine fetched which image: an HTTP boot leaves no other
		// trace on the server before PID 1 reports.
		s.log().Info("boot file", "client", r.RemoteAddr, "file", name, "bytes", fi.Size(), "range", r.Header.Get("Range") != "")
	}
	// ServeContent sets Content-Length and answers HEAD and ranges.
	http.ServeContent(w, r, name, fi.ModTime(), f)
}

// bootFileType is the Content-Type of a boot file. UEFI HTTP boot decides
// by it how to start what it fetched (the UEFI specification's "HTTP
// Boot": application/efi is an image to load and start).
func bootFileType(name string) string {
	if name == BootUKI {
		return "application/efi"
	}
	return "application/octet-stream"
}

// pxeQuery is the script URL's parameters, checked and canonical.
type pxeQuery struct{ mac, uuid, farm string }

// parsePXEQuery takes mac, uuid and farm, each at most once; anything
// else is refused, so that a typo in a DHCP option shows.
func parsePXEQuery(raw string) (pxeQuery, error) {
	var q pxeQuery
	if len(raw) > 512 {
		return q, fail(http.StatusBadRequest, "query: %d bytes, want at most 512", len(raw))
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, fail(http.StatusBadRequest, "query: %v", err)
	}
	for k, v := range vals {
		if len(v) != 1 {
			return q, fail(http.StatusBadRequest, "query: %s given %d times, want once", shorten(k, 16), len(v))
		}
		if err := q.set(k, v[0]); err != nil {
			return q, fail(http.StatusBadRequest, "query: %v", err)
		}
	}
	return q, nil
}

// set checks one parameter. Empty mac and uuid are "not known": iPXE
// expands ${uuid} to nothing on a machine without one.
func (q *pxeQuery) set(k, v string) error {
	var err error
	switch {
	case k == "mac" && v != "":
		q.mac, err = canonMAC(v)
	case k == "uuid" && v != "":
		q.uuid, err = canonUUID(v)
	case k == "farm":
		q.farm, err = v, checkFarm(v)
	case k == "mac", k == "uuid":
	default:
		err = fmt.Errorf("unknown parameter %q: want mac, uuid, farm", shorten(k, 16))
	}
	return err
}

// farmFor is the machine's farm: the operator's map by MAC, then by UUID,
// then the URL's farm, then DefaultFarm, with where it came from.
func (p *PXE) farmFor(q pxeQuery) (farm, from string) {
	if f, ok := p.Map[q.mac]; ok && q.mac != "" {
		return f, "map (mac)"
	}
	if f, ok := p.Map[q.uuid]; ok && q.uuid != "" {
		return f, "map (uuid)"
	}
	if q.farm != "" {
		return q.farm, "query"
	}
	return DefaultFarm, "default"
}

func (s *Server) pxeScript(w http.ResponseWriter, r *http.Request) {
	script, err := s.buildScript(r)
	if err != nil {
		s.log().Warn("ipxe script refused", "client", r.RemoteAddr, "err", err)
		s.replyError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(script)))
	w.Write([]byte(script))
}

func (s *Server) buildScript(r *http.Request) (string, error) {
	if s.PXE == nil {
		return "", errNoPXE
	}
	q, err := parsePXEQuery(r.URL.RawQuery)
	if err != nil {
		return "", err
	}
	farm, from := s.PXE.farmFor(q)
	if _, err := s.DB.Farm(farm); errors.Is(err, db.ErrNotFound) {
		return "", fail(http.StatusNotFound, "farm %s (from %s) not found: zgrid farm create %s", farm, from, farm)
	} else if err != nil {
		return "", err
	}
	reg, err := s.PXE.registryURL(r)
	if err != nil {
		return "", err
	}
	script, err := Script(s.PXE.Console, reg, farm, scriptComment(q, farm, from))
	if err != nil {
		return "", err
	}
	s.log().Info("ipxe script", "client", r.RemoteAddr, "mac", q.mac, "uuid", q.uuid, "farm", farm, "from", from, "registry", reg)
	return script, nil
}

// scriptComment says in the script which machine it was made for; every
// value in it has been checked and made canonical.
func scriptComment(q pxeQuery, farm, from string) string {
	c := "zeroboot from zgrid: farm " + farm + " (" + from + ")"
	if q.mac != "" {
		c += " mac " + q.mac
	}
	if q.uuid != "" {
		c += " uuid " + q.uuid
	}
	return c
}

var scriptLineRe = regexp.MustCompile(`^[A-Za-z0-9 ._:/=,()#!\[\]-]*$`)

// Script is the iPXE script that boots the node: the kernel and initramfs
// relative to the script's own URL (iPXE resolves them against it, so
// they come over the same scheme, host and port), then the command line
// as make uki writes it. initrd= is for the kernel's EFI stub under UEFI
// iPXE, which loads the initramfs by that name; BIOS kernels ignore it.
//
// The command line is parsed as PID 1 will parse it, and any problem is
// refused here rather than at the node. The whole script must be of a
// plain alphabet: iPXE expands ${...} and splits on spaces in every line,
// so no $, braces, quotes or control characters can reach it.
func Script(console, registryURL, farm, comment string) (string, error) {
	if err := CheckBootConsole(console); err != nil {
		return "", fmt.Errorf("ipxe script: %w", err)
	}
	args := strings.TrimSpace(console + " panic=-1 zeroboot.registry=" + registryURL + " zeroboot.farm=" + farm)
	cfg, problems := cmdline.Parse(args)
	if len(problems) > 0 || len(cfg.Registries) != 1 || cfg.Farm != farm {
		return "", fmt.Errorf("ipxe script: command line %q: %v", args, problems)
	}
	lines := []string{"#!ipxe"}
	if comment != "" {
		lines = append(lines, "# "+comment)
	}
	lines = append(lines,
		"kernel "+BootKernel+" initrd="+BootInitrd+" "+args,
		"initrd "+BootInitrd,
		"boot")
	for _, l := range lines {
		if !scriptLineRe.MatchString(l) {
			return "", fmt.Errorf("ipxe script: a character outside the allowed alphabet in %q", l)
		}
	}
	return strings.Join(lines, "\n") + "\n", nil
}

var hostRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// registryURL is the registry as the machine reached us, as ownStore
// gives our store: over HTTPS the request's own host and port; over the
// plain boot listener the same host on the API's port. The Host header is
// the client's to choose, so it must be an IP address without zone or a
// DNS name.
func (p *PXE) registryURL(r *http.Request) (string, error) {
	host, port, err := splitHostPort(r.Host)
	if err != nil {
		return "", fail(http.StatusBadRequest, "Host %q: %v", shorten(r.Host, 64), err)
	}
	if r.TLS == nil {
		port = strconv.Itoa(p.RegistryPort)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", fail(http.StatusBadRequest, "Host %q: an address with a zone cannot be a registry URL", shorten(r.Host, 64))
		}
		host = a.String()
	} else if host = strings.ToLower(host); len(host) > 253 || !hostRe.MatchString(host) {
		return "", fail(http.StatusBadRequest, "Host %q: want an IP address or a DNS name", shorten(r.Host, 64))
	}
	if port == "" || port == "443" {
		return "https://" + bracket(host), nil
	}
	return "https://" + net.JoinHostPort(host, port), nil
}

// splitHostPort splits a Host header whose port may be absent.
func splitHostPort(h string) (host, port string, err error) {
	if h == "" {
		return "", "", errors.New("empty: the request names no host")
	}
	host, port, err = net.SplitHostPort(h)
	if err != nil {
		// No port: a bare name, or an IPv6 address in brackets.
		host, port = h, ""
		if b, ok := strings.CutPrefix(h, "["); ok {
			host, ok = strings.CutSuffix(b, "]")
			if !ok {
				return "", "", errors.New("want HOST or HOST:PORT")
			}
		}
		if strings.ContainsAny(host, "[]") || (strings.Contains(host, ":") && host == h) {
			return "", "", errors.New("want HOST or HOST:PORT")
		}
	}
	if a, err := netip.ParseAddr(host); strings.HasPrefix(h, "[") && (err != nil || !a.Is6()) {
		return "", "", errors.New("only an IPv6 address goes in brackets")
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "", "", fmt.Errorf("port %q: want 1-65535", shorten(port, 8))
		}
	}
	return host, port, nil
}

func bracket(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}
