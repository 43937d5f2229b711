// Package cmdline reads zeroboot's parameters from the kernel command line.
//
// The command line is the only configuration a node has before the network
// is up, and it is typed by hand into boot loaders: every mistake must come
// back as a Problem that names the parameter, never as a crash or a silent
// default.
package cmdline

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zeroboot/zeroboot/pkg/netconf"
	"github.com/zeroboot/zeroboot/pkg/release"
)

// Severity of a Problem. Any Error means the boot must not go on.
type Severity int

const (
	Warning Severity = iota
	Error
)

func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// Problem is one thing wrong with the command line.
type Problem struct {
	Param    string // canonical name, e.g. zeroboot.farm
	Value    string // value as given ("" when absent)
	Severity Severity
	Msg      string
}

func (p Problem) String() string {
	if p.Value == "" {
		return fmt.Sprintf("%s: %s: %s", p.Severity, p.Param, p.Msg)
	}
	return fmt.Sprintf("%s: %s=%q: %s", p.Severity, p.Param, p.Value, p.Msg)
}

// HasErrors reports whether any problem is an Error.
func HasErrors(ps []Problem) bool {
	for _, p := range ps {
		if p.Severity == Error {
			return true
		}
	}
	return false
}

// Config is what zeroboot takes from the command line.
type Config struct {
	Registries []*url.URL // zeroboot.registry, https only, in failover order
	Farm       string     // zeroboot.farm
	Channel    string     // zeroboot.channel; "" lets the registry choose
	Debug      bool       // zeroboot.debug
	Consoles   []string   // console=, in command-line order
	// Net is ip=, ifname=, vlan=, bond= and nameserver=, each repeatable,
	// checked against each other. Empty means Auto (DHCPv4 and router
	// advertisements) on every link.
	Net    netconf.Config
	NTP    []string // zeroboot.ntp, each HOST:PORT (port 123 by default), in order
	Rescue bool     // zeroboot.rescue
	// Cache is zeroboot.cache, a block device for the chunk cache
	// (docs/chunkcache.md); "" means none. CacheWipe is
	// zeroboot.cache.wipe: format it even when it holds other data.
	Cache     string
	CacheWipe bool
	// Watchdog is zeroboot.watchdog, the hardware watchdog's timeout;
	// 0 leaves the device alone. Parse sets DefaultWatchdog when the
	// parameter is absent.
	Watchdog time.Duration
	// DebugHang is zeroboot.debug.hang, one of HangPoints: where a debug
	// build of PID 1 blocks forever (a production build refuses it).
	DebugHang string
	// DebugPanic is zeroboot.debug.panic, one of PanicPoints: the boot
	// step in which a debug build of PID 1 panics on its first attempt
	// (a production build refuses it).
	DebugPanic string
}

// ParamDoc documents one parameter; docs/kernel-cmdline.md must mention
// every Name (a test checks it).
type ParamDoc struct {
	Name    string
	Value   string
	Default string
	Doc     string
}

// Params lists every parameter zeroboot reads.
var Params = []ParamDoc{
	{"zeroboot.registry", "https://HOST[:PORT][/PATH][,https://...]", "(none: from DHCP, see docs/network.md)",
		"Registry URLs, tried in order with failover. Only https; http is refused."},
	{"zeroboot.farm", "[a-z0-9-]{1,63}", `"" (the registry decides)`,
		"Farm the node asks to join."},
	{"zeroboot.channel", "[a-z0-9][a-z0-9._-]{0,62}", `"" (the only channel in channels.json, else the farm's)`,
		"Release channel the node follows: one of those in /etc/zeroboot/channels.json."},
	{"zeroboot.debug", "bare, or 1|0|true|false|yes|no|on|off", "off",
		"Log at debug level on the console and /dev/kmsg."},
	{"zeroboot.rescue", "bare, or 1|0|true|false|yes|no|on|off", "off",
		"Stop before fetching anything and stay in the rescue state."},
	{"zeroboot.ntp", "HOST[:PORT][,HOST[:PORT]...], IPv6 as [ADDR][:PORT], at most 8", "(none)",
		"NTP servers, asked all at once; port 123 unless given."},
	{"zeroboot.cache", "/dev/NAME, a block device", "(none)",
		"Device for the verified chunk cache; formatted only when its first MiB is zeros."},
	{"zeroboot.cache.wipe", "bare, or 1|0|true|false|yes|no|on|off", "off",
		"Format the zeroboot.cache device even when it holds other data."},
	{"zeroboot.watchdog", "SECONDS: 0, or 5 to 3600", "60",
		"Hardware watchdog timeout; PID 1 pets /dev/watchdog while it is alive. 0 leaves the device alone."},
	{"zeroboot.debug.hang", "one of " + strings.Join(HangPoints, "|"), "(none)",
		"Debug builds only (-tags zeroboot_debug): PID 1 hangs there, to test the watchdog. A production build refuses it."},
	{"zeroboot.debug.panic", "one of " + strings.Join(PanicPoints, "|"), "(none)",
		"Debug builds only (-tags zeroboot_debug): PID 1 panics in that step's first attempt, to test that a step's panic is a retried failure. A production build refuses it."},
	{"console", "kernel console spec, e.g. ttyS0,115200 (repeatable)", "/dev/console",
		"Consoles PID 1 writes its log to, as the kernel reads them."},
	{"ip", "METHOD | DEVICE:METHOD[:[MTU][:MAC]] | CLIENT:[PEER]:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF[:...] (repeatable)",
		"dhcp + auto6 on every link", "Addressing per link, dracut's syntax."},
	{"ifname", "NAME:MAC (repeatable)", "(none)", "Renames the NIC with that MAC."},
	{"vlan", "NAME:PARENT, NAME vlanVID or DEV.VID (repeatable)", "(none)", "Creates an 802.1Q VLAN on PARENT."},
	{"bond", "NAME[:SLAVES[:OPTIONS[:MTU]]] (repeatable)", "(none; bare bond is bond0:eth0,eth1:mode=balance-rr)",
		"Creates a bond over SLAVES with the bonding driver's OPTIONS."},
	{"nameserver", "IP address (repeatable)", "(none)", "DNS server used in addition to those DHCP and router advertisements give."},
}

// cacheRE is a device path: under /dev, no "..", nothing a shell or a log
// would read twice.
var cacheRE = regexp.MustCompile(`^/dev/[A-Za-z0-9_-]+(/[A-Za-z0-9_.:-]+)*$`)

// CheckCacheDevice applies zeroboot.cache's grammar to a chunk cache
// device, wherever it comes from: the command line, or a farm's setting at
// the registry (which checks it when the farm is set, and the node again
// when the answer arrives).
func CheckCacheDevice(dev string) error {
	if !cacheRE.MatchString(dev) {
		return fmt.Errorf("chunk cache device %q: must match /dev/NAME", dev)
	}
	if path.Clean(dev) != dev {
		return fmt.Errorf("chunk cache device %q: not a clean path (%s)", dev, path.Clean(dev))
	}
	return nil
}

// DefaultWatchdog is the watchdog timeout without zeroboot.watchdog;
// MinWatchdog and MaxWatchdog bound the parameter. Under a third of the
// minimum between pets a loaded node could miss one; past an hour a hung
// node would wait too long, and most hardware cannot count that far.
const (
	DefaultWatchdog = 60 * time.Second
	MinWatchdog     = 5 * time.Second
	MaxWatchdog     = time.Hour
)

// HangPoints are the places zeroboot.debug.hang may name: right after the
// watchdog is armed (before the network), and in the supervision once
// Core-0 has started.
var HangPoints = []string{"watchdog", "supervise"}

// PanicPoints are the boot steps zeroboot.debug.panic may name: the ones
// that talk to the outside, where a bug on hostile input would be.
var PanicPoints = []string{"network", "time", "identity", "registry", "components", "handoff"}

// bareBond is what dracut makes of a bond parameter without value.
const bareBond = "bond0:eth0,eth1:mode=balance-rr"

// maxNTP bounds zeroboot.ntp: more servers only slow a node that cannot
// reach any down.
const maxNTP = 8

const prefix = "zeroboot."

var (
	farmRE = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)
)

// Parse reads a kernel command line (the contents of /proc/cmdline). It
// always returns a Config; problems say what was ignored or wrong.
func Parse(cmdline string) (Config, []Problem) {
	p := parser{seen: map[string]string{}}
	p.cfg.Watchdog = DefaultWatchdog
	for _, a := range split(cmdline) {
		p.arg(a)
	}
	p.netCheck()
	// No registry on the command line: the network step takes it from
	// DHCP (a PXE setup needs no per-node command line) and fails, naming
	// both places, when DHCP has none either.
	return p.cfg, p.problems
}

type parser struct {
	cfg      Config
	problems []Problem
	seen     map[string]string // zeroboot.* name -> first value
}

func (p *parser) errorf(param, value, format string, args ...any) {
	p.problems = append(p.problems, Problem{param, value, Error, fmt.Sprintf(format, args...)})
}

func (p *parser) warnf(param, value, format string, args ...any) {
	p.problems = append(p.problems, Problem{param, value, Warning, fmt.Sprintf(format, args...)})
}

func (p *parser) arg(a arg) {
	// The kernel treats '-' and '_' in parameter names as the same.
	name := strings.ReplaceAll(a.key, "-", "_")
	switch {
	case name == "console":
		if a.val != "" {
			p.cfg.Consoles = append(p.cfg.Consoles, a.val)
		}
		return
	case netParams[name]:
		p.net(name, a)
		return
	case !strings.HasPrefix(name, prefix):
		if strings.HasPrefix(strings.ToLower(name), prefix) {
			p.warnf(a.key, a.val, "ignored: parameter names are case-sensitive, write %s", strings.ToLower(name))
		}
		return // the kernel's or another program's
	}
	if first, dup := p.seen[name]; dup {
		p.errorf(name, a.val, "given twice (%q and %q): ambiguous, keep one", first, a.val)
		return
	}
	p.seen[name] = a.val
	switch name {
	case "zeroboot.registry":
		p.registry(a)
	case "zeroboot.farm":
		if p.need(name, a) && p.match(name, a.val, farmRE, "[a-z0-9-]{1,63}") {
			p.cfg.Farm = a.val
		}
	case "zeroboot.channel":
		if !p.need(name, a) {
			break
		}
		// One grammar for channels, the release format's.
		if err := release.CheckChannel(a.val); err != nil {
			p.errorf(name, a.val, "must match [a-z0-9][a-z0-9._-]{0,62}")
		} else {
			p.cfg.Channel = a.val
		}
	case "zeroboot.debug":
		p.cfg.Debug = p.boolean(name, a)
	case "zeroboot.rescue":
		p.cfg.Rescue = p.boolean(name, a)
	case "zeroboot.ntp":
		p.ntp(a)
	case "zeroboot.cache":
		if !p.need(name, a) {
			break
		}
		if err := CheckCacheDevice(a.val); err != nil {
			p.errorf(name, a.val, "%v", err)
		} else {
			p.cfg.Cache = a.val
		}
	case "zeroboot.cache.wipe":
		p.cfg.CacheWipe = p.boolean(name, a)
	case "zeroboot.watchdog":
		p.watchdog(a)
	case "zeroboot.debug.hang":
		if p.need(name, a) {
			p.debugHang(a)
		}
	case "zeroboot.debug.panic":
		if p.need(name, a) {
			p.cfg.DebugPanic = p.oneOf(name, a, PanicPoints)
		}
	default:
		p.warnf(name, a.val, "unknown zeroboot parameter, ignored (known: %s)", strings.Join(knownNames(), ", "))
	}
}

func knownNames() []string {
	var ns []string
	for _, d := range Params {
		if strings.HasPrefix(d.Name, prefix) {
			ns = append(ns, d.Name)
		}
	}
	return ns
}

func (p *parser) need(name string, a arg) bool {
	if a.val == "" {
		p.errorf(name, "", "needs a value: %s=...", name)
		return false
	}
	return true
}

func (p *parser) match(name, val string, re *regexp.Regexp, pattern string) bool {
	if !re.MatchString(val) {
		p.errorf(name, val, "must match %s", pattern)
		return false
	}
	return true
}

func (p *parser) boolean(name string, a arg) bool {
	if !a.hasVal {
		return true
	}
	switch strings.ToLower(a.val) {
	case "1", "true", "yes", "on", "y":
		return true
	case "0", "false", "no", "off", "n":
		return false
	}
	p.errorf(name, a.val, "not a boolean: use %s, %s=1 or %s=0", name, name, name)
	return false
}

func (p *parser) registry(a arg) {
	if !p.need("zeroboot.registry", a) {
		return
	}
	urls, problems := ParseRegistries(a.val)
	for _, pr := range problems {
		if pr.dup {
			p.warnf("zeroboot.registry", pr.item, "listed twice, using it once")
		} else {
			p.errorf("zeroboot.registry", pr.item, "%v", pr.err)
		}
	}
	p.cfg.Registries = append(p.cfg.Registries, urls...)
}

// RegistryProblem is one item of a registry list that was not taken.
type RegistryProblem struct {
	item string
	dup  bool // listed twice: used once, a warning
	err  error
}

func (r RegistryProblem) Error() string {
	if r.dup {
		return fmt.Sprintf("%q: listed twice, using it once", r.item)
	}
	return fmt.Sprintf("%q: %v", r.item, r.err)
}

// ParseRegistries reads a comma-separated list of registry URLs: the one
// grammar for zeroboot.registry and for a registry list that DHCP gives
// (which earns no more trust than one typed: only https, and the pinned
// CA still decides).
func ParseRegistries(list string) ([]*url.URL, []RegistryProblem) {
	var urls []*url.URL
	var problems []RegistryProblem
	seen := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		u, err := registryURL(s)
		switch {
		case err != nil:
			problems = append(problems, RegistryProblem{item: s, err: err})
		case seen[u.String()]:
			problems = append(problems, RegistryProblem{item: s, dup: true})
		default:
			seen[u.String()] = true
			urls = append(urls, u)
		}
	}
	return urls, problems
}

func registryURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, fmt.Errorf("empty URL in the list (stray comma?)")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %v", err)
	}
	switch {
	case u.Scheme == "http":
		return nil, fmt.Errorf("http refused: the registry must be reached over https (no insecure fallback)")
	case u.Scheme != "https":
		return nil, fmt.Errorf("scheme %q refused: use https://HOST", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("no host: use https://HOST[:PORT]")
	case u.User != nil:
		return nil, fmt.Errorf("credentials in the URL refused: the command line is world-readable")
	case u.Fragment != "" || u.RawQuery != "":
		return nil, fmt.Errorf("query or fragment not allowed in a registry URL")
	}
	return u, nil
}

// netParams are dracut's network parameters. Like console= they are not
// zeroboot.* and are repeatable: a node may have several links.
var netParams = map[string]bool{"ip": true, "ifname": true, "vlan": true, "bond": true, "nameserver": true}

// net reads one network parameter into Config.Net. Each value is checked
// alone here; conflicts between values are for netCheck, once all are read.
func (p *parser) net(name string, a arg) {
	n := &p.cfg.Net
	v := a.val
	var err error
	switch name {
	case "ip":
		var ip netconf.IP
		if ip, err = netconf.ParseIP(v); err == nil {
			n.IPs = append(n.IPs, ip)
		}
	case "ifname":
		var r netconf.Rename
		if r, err = netconf.ParseRename(v); err == nil {
			n.Renames = append(n.Renames, r)
		}
	case "vlan":
		var vl netconf.VLAN
		if vl, err = netconf.ParseVLAN(v); err == nil {
			n.VLANs = append(n.VLANs, vl)
		}
	case "bond":
		if !a.hasVal {
			v = bareBond
		}
		var b netconf.Bond
		if b, err = netconf.ParseBond(v); err == nil {
			n.Bonds = append(n.Bonds, b)
		}
	case "nameserver":
		var ns netip.Addr
		if ns, err = netconf.ParseNameserver(v); err == nil {
			n.DNS = append(n.DNS, ns)
		}
	}
	if err != nil {
		p.errorf(name, a.val, "%v", err)
	}
}

// netCheck turns the conflicts between network parameters into problems
// on the later parameter of each pair.
func (p *parser) netCheck() {
	for _, c := range p.cfg.Net.Conflicts() {
		p.errorf(c.Param, c.Value, "%s", c.Msg)
	}
}

// watchdog reads zeroboot.watchdog: whole seconds, no unit, so that
// "60" cannot be mistaken for minutes.
func (p *parser) watchdog(a arg) {
	const name = "zeroboot.watchdog"
	if !p.need(name, a) {
		return
	}
	n, err := strconv.ParseUint(a.val, 10, 32)
	d := time.Duration(n) * time.Second
	if err != nil || n != 0 && (d < MinWatchdog || d > MaxWatchdog) {
		p.errorf(name, a.val, "want whole seconds: 0 (off) or %d to %d", MinWatchdog/time.Second, MaxWatchdog/time.Second)
		return
	}
	p.cfg.Watchdog = d
}

func (p *parser) debugHang(a arg) {
	p.cfg.DebugHang = p.oneOf("zeroboot.debug.hang", a, HangPoints)
}

// oneOf is a.val when it is one of vals; otherwise an error, and "".
func (p *parser) oneOf(name string, a arg, vals []string) string {
	if slices.Contains(vals, a.val) {
		return a.val
	}
	p.errorf(name, a.val, "want one of %s", strings.Join(vals, ", "))
	return ""
}

func (p *parser) ntp(a arg) {
	const name = "zeroboot.ntp"
	if !p.need(name, a) {
		return
	}
	items := strings.Split(a.val, ",")
	if len(items) > maxNTP {
		p.errorf(name, a.val, "%d servers, at most %d", len(items), maxNTP)
		return
	}
	seen := map[string]bool{}
	for _, s := range items {
		hp, err := ntpServer(s)
		switch {
		case err != nil:
			p.errorf(name, s, "%v", err)
		case seen[hp]:
			p.warnf(name, s, "listed twice, using it once")
		default:
			seen[hp] = true
			p.cfg.NTP = append(p.cfg.NTP, hp)
		}
	}
}

// ntpServer reads HOST[:PORT] (IPv6 as [ADDR][:PORT]) and returns
// HOST:PORT, ready for net.Dial, with port 123 when none is given.
func ntpServer(s string) (string, error) {
	host, port, err := splitHostPort(s)
	if err != nil {
		return "", err
	}
	p := 123
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return "", fmt.Errorf("port %q: want a number from 1 to 65535", port)
		}
		p = int(n)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if err := netconf.CheckHostAddr("server", a); err != nil {
			return "", err
		}
		host = a.String()
	} else if err := netconf.CheckHostname(host); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

func splitHostPort(s string) (host, port string, err error) {
	switch {
	case s == "":
		return "", "", fmt.Errorf("empty server in the list (stray comma?)")
	case strings.HasPrefix(s, "["):
		i := strings.IndexByte(s, ']')
		if i < 0 {
			return "", "", fmt.Errorf("'[' without ']'")
		}
		host, rest := s[1:i], s[i+1:]
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return "", "", fmt.Errorf("[%s]: brackets hold an IPv6 address", host)
		}
		if rest == "" {
			return host, "", nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", "", fmt.Errorf("only :PORT may follow ']'")
		}
		return host, rest[1:], nil
	case strings.Count(s, ":") > 1:
		return "", "", fmt.Errorf("an IPv6 address must be in square brackets: [ADDR] or [ADDR]:PORT")
	}
	host, port, _ = strings.Cut(s, ":")
	if port == "" && strings.HasSuffix(s, ":") {
		return "", "", fmt.Errorf("empty port after ':'")
	}
	return host, port, nil
}
