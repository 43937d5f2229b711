package vswitch

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// PortMode says how a port frames the node's traffic. The zero value is an
// access port.
type PortMode struct {
	// VID, if not 0, makes the port tagged: the node must send 802.1Q frames
	// with this VID (1-4094), which the switch strips toward the tap; frames
	// toward the node get the tag. Untagged or other-VID frames are dropped.
	VID uint16
	// Group, if not empty, makes the port a member of the LACP aggregate of
	// that name. All members of a group have the same VID.
	Group string
}

// Access is an untagged port: frames pass as they are.
func Access() PortMode { return PortMode{} }

// Tagged is a port on which the node must tag with vid.
func Tagged(vid uint16) PortMode { return PortMode{VID: vid} }

// LACP is an untagged member of the LACP aggregate group.
func LACP(group string) PortMode { return PortMode{Group: group} }

// Tagged is m with the node tagging with vid: LACP("bond0").Tagged(10) is a
// VLAN on a bond.
func (m PortMode) Tagged(vid uint16) PortMode { m.VID = vid; return m }

func (m PortMode) String() string {
	s := "access"
	if m.VID != 0 {
		s = fmt.Sprintf("tagged %d", m.VID)
	}
	if m.Group != "" {
		s += " LACP " + m.Group
	}
	return s
}

// Counters are a port's (or an LACP group's) frame counts. In and Out count
// every frame received from and sent to the port's wire, LACPDUs included.
// For a group, In and Out count data frames from and to the aggregate.
type Counters struct {
	In, Out uint64
	// OutDropped counts frames that could not be sent: the peer's socket is
	// not there (QEMU not started) or full; for a group, no member was up.
	OutDropped uint64
	// DropUntagged and DropWrongVID count frames from the node on a tagged
	// port without a tag (or only a priority tag), or with another VID.
	DropUntagged, DropWrongVID uint64
	// DropNotNegotiated counts data frames from the node on an LACP member
	// that is not negotiated.
	DropNotNegotiated uint64
	// DropOther counts frames never forwarded: runts, and frames to the
	// reserved 01:80:c2:00:00:0x addresses other than LACPDUs on a member.
	DropOther uint64
	// LACPIn and LACPOut count slow protocol frames received and LACPDUs sent.
	LACPIn, LACPOut uint64
}

// Switch is a userspace Ethernet switch; see the package comment.
type Switch struct {
	// Log, if set, gets negotiation events and the first drop of each kind
	// on each port. Set it before adding ports.
	Log func(format string, args ...any)

	dir    string
	ownDir bool
	system [6]byte // LACP system ID; ports' MACs derive from it

	mu      sync.Mutex
	ports   []*port
	groups  map[string]*group
	eps     []endpoint // plain ports, groups and taps: where frames go
	fdb     map[[6]byte]fdbEntry
	changed chan struct{} // closed and replaced on each LACP change
	closed  bool
	nextNum uint16

	done chan struct{}
	wg   sync.WaitGroup
}

type fdbEntry struct {
	ep endpoint
	at time.Time
}

const fdbAge = 5 * time.Minute

// endpoint is where a frame on the (untagged) server segment can go: a plain
// port, a tap or an LACP group.
type endpoint interface {
	output(f []byte)
}

type port struct {
	s     *Switch
	name  string
	vid   uint16
	group *group
	num   uint16  // LACP port number
	mac   [6]byte // source of the switch's LACPDUs

	conn     *net.UnixConn // QEMU port
	rc       syscall.RawConn
	swPath   string   // bound by the switch
	qemuPath string   // bound by QEMU
	tap      *os.File // tap port

	c      Counters
	warned map[string]bool
	lacp   lacpState
}

type group struct {
	name    string
	key     uint16
	vid     uint16
	members []*port
	c       Counters
}

// New makes a switch whose sockets are in dir, or if dir is "" in a new
// directory under os.TempDir() that Close removes.
func New(dir string) (*Switch, error) {
	s := &Switch{dir: dir, groups: map[string]*group{}, fdb: map[[6]byte]fdbEntry{},
		changed: make(chan struct{}), done: make(chan struct{})}
	if _, err := rand.Read(s.system[1:4]); err != nil {
		return nil, err
	}
	s.system[0] = 0x02 // locally administered, unicast
	if dir == "" {
		d, err := os.MkdirTemp("", "vsw")
		if err != nil {
			return nil, err
		}
		s.dir, s.ownDir = d, true
	}
	s.wg.Add(1)
	go s.ticker()
	return s, nil
}

func (s *Switch) logf(format string, args ...any) {
	if s.Log != nil {
		s.Log("vswitch: "+format, args...)
	}
}

// warn logs the first event of kind on p.
func (p *port) warn(kind, format string, args ...any) {
	if p.warned[kind] {
		return
	}
	if p.warned == nil {
		p.warned = map[string]bool{}
	}
	p.warned[kind] = true
	p.s.logf(format+" (further ones only counted)", args...)
}

func (s *Switch) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// validID is QEMU's rule for ids: a letter, then letters, digits, '-', '.'
// and '_'.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i, c := range id {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_')) {
			return false
		}
	}
	return true
}

// nameTaken reports whether a port or group already has name; under s.mu.
func (s *Switch) nameTaken(name string) bool {
	for _, p := range s.ports {
		if p.name == name {
			return true
		}
	}
	return s.groups[name] != nil
}

// QEMUPort adds a port for the QEMU netdev id and returns the argument of
// its -netdev option. QEMU may start later: frames toward it are dropped
// until it is there.
func (s *Switch) QEMUPort(id string, mode PortMode) (netdevArg string, err error) {
	if !validID(id) {
		return "", fmt.Errorf("vswitch: %q is not a QEMU id", id)
	}
	if mode.VID > 4094 {
		return "", fmt.Errorf("vswitch: VID %d out of range", mode.VID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", errors.New("vswitch: closed")
	}
	if s.nameTaken(id) {
		return "", fmt.Errorf("vswitch: port or group %q exists", id)
	}
	g := s.groups[mode.Group]
	if mode.Group != "" {
		if g == nil && s.nameTaken(mode.Group) || mode.Group == id {
			return "", fmt.Errorf("vswitch: group name %q is a port's", mode.Group)
		}
		if g != nil && g.vid != mode.VID {
			return "", fmt.Errorf("vswitch: group %s has VID %d, not %d", g.name, g.vid, mode.VID)
		}
	}
	p := &port{s: s, name: id, vid: mode.VID,
		swPath:   filepath.Join(s.dir, id+".sw"),
		qemuPath: filepath.Join(s.dir, id+".qemu")}
	if len(p.qemuPath) >= len(unix.RawSockaddrUnix{}.Path) {
		return "", fmt.Errorf("vswitch: socket path %s too long for a unix socket", p.qemuPath)
	}
	os.Remove(p.swPath)
	if p.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p.swPath, Net: "unixgram"}); err != nil {
		return "", fmt.Errorf("vswitch: %w", err)
	}
	p.conn.SetReadBuffer(1 << 20)
	if p.rc, err = p.conn.SyscallConn(); err != nil {
		p.conn.Close()
		return "", fmt.Errorf("vswitch: %w", err)
	}
	s.nextNum++
	p.num = s.nextNum
	p.mac = s.system
	binary.BigEndian.PutUint16(p.mac[4:], p.num)
	if mode.Group != "" {
		if g == nil {
			g = &group{name: mode.Group, key: uint16(len(s.groups) + 1), vid: mode.VID}
			s.groups[g.name] = g
			s.eps = append(s.eps, g)
		}
		p.group = g
		g.members = append(g.members, p)
		p.lacp.nextTx = time.Now()
		s.notify()
	} else {
		s.eps = append(s.eps, p)
	}
	s.ports = append(s.ports, p)
	s.logf("%s: QEMU port, %v", id, mode)
	s.wg.Add(1)
	go p.readQEMU()
	return dgramNetdev(id, p.qemuPath, p.swPath), nil
}

// dgramNetdev is QEMU's -netdev argument for a dgram netdev over unix sockets.
func dgramNetdev(id, local, remote string) string {
	q := func(s string) string { return strings.ReplaceAll(s, ",", ",,") }
	return "dgram,id=" + id + ",local.type=unix,local.path=" + q(local) +
		",remote.type=unix,remote.path=" + q(remote)
}

func (p *port) readQEMU() {
	defer p.s.wg.Done()
	buf := make([]byte, 1<<16)
	for {
		n, _, err := p.conn.ReadFromUnix(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.s.logf("%s: read: %v", p.name, err)
			}
			return
		}
		p.s.input(p, buf[:n])
	}
}

// TapIn adds the uplink: a tap device tapName created inside the existing
// network namespace nsName. The caller's thread stays where it was. The test
// then gives the tap an address and sets it up (ip -n nsName ...); Close
// removes it.
func (s *Switch) TapIn(nsName, tapName string) error {
	if tapName == "" || len(tapName) >= unix.IFNAMSIZ {
		return fmt.Errorf("vswitch: bad interface name %q", tapName)
	}
	s.mu.Lock()
	taken, closed := s.nameTaken(tapName), s.closed
	s.mu.Unlock()
	if closed {
		return errors.New("vswitch: closed")
	}
	if taken {
		return fmt.Errorf("vswitch: port or group %q exists", tapName)
	}
	f, err := openTapIn(nsName, tapName)
	if err != nil {
		return fmt.Errorf("vswitch: tap %s in %s: %w", tapName, nsName, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.nameTaken(tapName) {
		f.Close()
		return fmt.Errorf("vswitch: closed, or %q exists", tapName)
	}
	p := &port{s: s, name: tapName, tap: f}
	s.ports = append(s.ports, p)
	s.eps = append(s.eps, p)
	s.logf("%s: tap in namespace %s", tapName, nsName)
	s.wg.Add(1)
	go p.readTap()
	return nil
}

func (p *port) readTap() {
	defer p.s.wg.Done()
	buf := make([]byte, 1<<16)
	for {
		n, err := p.tap.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				p.s.logf("%s: read: %v", p.name, err)
			}
			return
		}
		p.s.input(p, buf[:n])
	}
}

// input takes frame f from p's wire.
func (s *Switch) input(p *port, f []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	p.c.In++
	if len(f) < 14 {
		p.c.DropOther++
		return
	}
	if isSlowProtocol(f) {
		p.c.LACPIn++
		if p.group != nil && [6]byte(f[0:6]) == slowProtocolsDst && f[14] == subtypeLACP {
			s.rxLACP(p, f, time.Now())
		} else {
			p.c.DropOther++
		}
		return
	}
	if f[0] == 0x01 && f[1] == 0x80 && f[2] == 0xc2 && f[3] == 0 && f[4] == 0 && f[5]&0xf0 == 0 {
		p.c.DropOther++ // link-local: STP, LLDP, ...; bridges never forward these
		return
	}
	var from endpoint = p
	if p.group != nil {
		if !p.lacp.up {
			p.c.DropNotNegotiated++
			p.warn("not-negotiated", "%s: dropped a frame from %x: LACP not negotiated: %s", p.name, f[6:12], s.whyNotUp(p))
			return
		}
		p.group.c.In++
		from = p.group
	}
	if p.vid != 0 {
		if f = p.untag(f); f == nil {
			return
		}
	}
	s.forward(from, f)
}

// untag checks and strips the node's tag, or counts the drop and returns nil.
func (p *port) untag(f []byte) []byte {
	if len(f) < 18 || binary.BigEndian.Uint16(f[12:14]) != etherTypeVLAN ||
		binary.BigEndian.Uint16(f[14:16])&0xfff == 0 {
		p.c.DropUntagged++
		p.warn("untagged", "%s: dropped an untagged frame from %x: the port is tagged %d", p.name, f[6:12], p.vid)
		return nil
	}
	if vid := binary.BigEndian.Uint16(f[14:16]) & 0xfff; vid != p.vid {
		p.c.DropWrongVID++
		p.warn("wrong-vid", "%s: dropped a frame from %x tagged %d: the port is tagged %d", p.name, f[6:12], vid, p.vid)
		return nil
	}
	out := make([]byte, len(f)-4)
	copy(out, f[:12])
	copy(out[12:], f[16:])
	return out
}

// forward sends untagged frame f, from endpoint from, where it goes; under s.mu.
func (s *Switch) forward(from endpoint, f []byte) {
	now := time.Now()
	dst, src := [6]byte(f[0:6]), [6]byte(f[6:12])
	if src[0]&1 == 0 {
		s.fdb[src] = fdbEntry{from, now}
	}
	if dst[0]&1 == 0 {
		if e, ok := s.fdb[dst]; ok && now.Sub(e.at) < fdbAge {
			if e.ep != from {
				e.ep.output(f)
			}
			return
		}
	}
	for _, ep := range s.eps {
		if ep != from {
			ep.output(f)
		}
	}
}

// output sends untagged frame f toward p's node, tagging it if p is tagged.
func (p *port) output(f []byte) {
	if p.vid != 0 {
		t := make([]byte, len(f)+4)
		copy(t, f[:12])
		binary.BigEndian.PutUint16(t[12:14], etherTypeVLAN)
		binary.BigEndian.PutUint16(t[14:16], p.vid)
		copy(t[16:], f[12:])
		f = t
	}
	p.send(f)
}

// output sends f out one negotiated member, chosen by a hash of the MACs.
func (g *group) output(f []byte) {
	var up []*port
	for _, m := range g.members {
		if m.lacp.up {
			up = append(up, m)
		}
	}
	if len(up) == 0 {
		g.c.OutDropped++
		return
	}
	h := 0
	for _, b := range f[0:12] {
		h += int(b)
	}
	g.c.Out++
	up[h%len(up)].output(f)
}

// send puts f on p's wire, never waiting: a full or absent peer drops it.
func (p *port) send(f []byte) bool {
	var err error
	if p.tap != nil {
		_, err = p.tap.Write(f)
	} else {
		cerr := p.rc.Write(func(fd uintptr) bool {
			err = unix.Sendto(int(fd), f, unix.MSG_DONTWAIT, &unix.SockaddrUnix{Name: p.qemuPath})
			return true
		})
		if cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		p.c.OutDropped++
		p.warn("send", "%s: send: %v", p.name, err)
		return false
	}
	p.c.Out++
	return true
}

func (s *Switch) ticker() {
	defer s.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.mu.Lock()
			for _, p := range s.ports {
				if p.group != nil {
					s.lacpTick(p, now)
				}
			}
			s.mu.Unlock()
		}
	}
}

// Counters gives the counts of the port (a netdev id or a tap name) or LACP
// group called name; zero if there is none.
func (s *Switch) Counters(name string) Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[name]; g != nil {
		return g.c
	}
	for _, p := range s.ports {
		if p.name == name {
			return p.c
		}
	}
	return Counters{}
}

// Negotiated lists the members of group that are negotiated, forwarding data.
func (s *Switch) Negotiated(group string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var up []string
	if g := s.groups[group]; g != nil {
		for _, m := range g.members {
			if m.lacp.up {
				up = append(up, m.name)
			}
		}
	}
	return up
}

// WaitNegotiated waits until every member of group is negotiated. If ctx
// ends first, the error says what each member that is not up lacks.
func (s *Switch) WaitNegotiated(ctx context.Context, group string) error {
	for {
		s.mu.Lock()
		g := s.groups[group]
		if g == nil {
			s.mu.Unlock()
			return fmt.Errorf("vswitch: no LACP group %q", group)
		}
		if s.closed {
			s.mu.Unlock()
			return errors.New("vswitch: closed")
		}
		var why []string
		for _, m := range g.members {
			if w := s.whyNotUp(m); w != "" {
				why = append(why, m.name+": "+w)
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if why == nil {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("vswitch: LACP group %s not negotiated (%s): %w", group, strings.Join(why, "; "), ctx.Err())
		}
	}
}

// Close stops the switch, removes its taps and sockets (and its directory if
// New made it).
func (s *Switch) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.notify()
	ports := s.ports
	s.mu.Unlock()
	for _, p := range ports {
		if p.conn != nil {
			p.conn.Close()
		} else {
			p.tap.Close()
		}
	}
	s.wg.Wait()
	var errs []error
	for _, p := range ports {
		if p.conn != nil {
			for _, f := range []string{p.swPath, p.qemuPath} {
				if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
	}
	if s.ownDir {
		errs = append(errs, os.Remove(s.dir))
	}
	return errors.Join(errs...)
}
