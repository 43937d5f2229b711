package vswitch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The minimal 802.1AX (802.3ad) partner. Per member port the switch keeps the
// node's actor information from its last LACPDU and what the node says about
// the switch (its partner information). The switch is active, aggregatable
// and asks for the short timeout, so the node sends every second; the switch
// sends every second if the node asked for the short timeout (or has not been
// heard yet), else every 30 s, and at once when the node's view of the switch
// is out of date or the node's own information changed, at most 3 LACPDUs a
// second. The switch's actor state has synchronization as soon as it has
// heard the node on that port, and collecting and distributing once the node
// is in sync and echoes the switch's actor information. A member forwards data
// once the node's state shows synchronization, collecting and distributing and
// its partner information matches the switch's actor information; a member
// not heard for 3 s goes back to defaulted.

const (
	etherTypeVLAN = 0x8100
	etherTypeSlow = 0x8809 // slow protocols: LACP, marker
	subtypeLACP   = 1

	lacpduLen = 110 // after the Ethernet header

	fastPeriodic = time.Second
	slowPeriodic = 30 * time.Second
	// shortTimeout is 3 × the fast periodic time, the time a member may be
	// silent before it leaves the aggregate (the switch asks for it).
	shortTimeout = 3 * fastPeriodic

	sysPriority  = 0x8000
	portPriority = 0x8000
)

// slowProtocolsDst is the destination of every LACPDU.
var slowProtocolsDst = [6]byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x02}

// Actor and partner state bits.
const (
	stActivity     = 1 << 0 // active LACP
	stTimeout      = 1 << 1 // short timeout
	stAggregation  = 1 << 2 // aggregatable
	stSync         = 1 << 3 // in synchronization
	stCollecting   = 1 << 4
	stDistributing = 1 << 5
	stDefaulted    = 1 << 6 // using defaulted partner information
	stExpired      = 1 << 7
	stUp           = stSync | stCollecting | stDistributing
)

func stateString(st uint8) string {
	names := []string{"ACT", "TMO", "AGG", "SYN", "COL", "DIS", "DEF", "EXP"}
	var on []string
	for i, n := range names {
		if st&(1<<i) != 0 {
			on = append(on, n)
		}
	}
	return fmt.Sprintf("0x%02x[%s]", st, strings.Join(on, "|"))
}

// lacpInfo is an actor or partner TLV's content.
type lacpInfo struct {
	SysPrio  uint16
	System   [6]byte
	Key      uint16
	PortPrio uint16
	Port     uint16
	State    uint8
}

// sameLink reports whether a and b name the same port of the same
// aggregate, with the same aggregation bit (as Linux's matched test does).
func (a lacpInfo) sameLink(b lacpInfo) bool {
	return a.SysPrio == b.SysPrio && a.System == b.System && a.Key == b.Key &&
		a.PortPrio == b.PortPrio && a.Port == b.Port &&
		a.State&stAggregation == b.State&stAggregation
}

func (a lacpInfo) String() string {
	return fmt.Sprintf("sys %d/%x key %d port %d/%d state %s",
		a.SysPrio, a.System[:], a.Key, a.PortPrio, a.Port, stateString(a.State))
}

type lacpdu struct {
	Actor, Partner lacpInfo
	MaxDelay       uint16 // collector max delay, tens of µs
}

func isSlowProtocol(f []byte) bool {
	return len(f) >= 14 && binary.BigEndian.Uint16(f[12:14]) == etherTypeSlow
}

// parseLACPDU parses a whole Ethernet frame holding an LACPDU.
func parseLACPDU(f []byte) (lacpdu, error) {
	var d lacpdu
	if len(f) < 14+lacpduLen-50 { // the trailing reserved octets may be cut
		return d, fmt.Errorf("LACPDU of %d bytes", len(f))
	}
	p := f[14:]
	switch {
	case p[0] != subtypeLACP:
		return d, fmt.Errorf("slow protocol subtype %d is not LACP", p[0])
	case p[1] < 1:
		return d, errors.New("LACP version 0")
	case p[2] != 1 || p[3] != 20:
		return d, fmt.Errorf("actor TLV type %d length %d", p[2], p[3])
	case p[22] != 2 || p[23] != 20:
		return d, fmt.Errorf("partner TLV type %d length %d", p[22], p[23])
	case p[42] != 3 || p[43] != 16:
		return d, fmt.Errorf("collector TLV type %d length %d", p[42], p[43])
	}
	d.Actor = getInfo(p[4:22])
	d.Partner = getInfo(p[24:42])
	d.MaxDelay = binary.BigEndian.Uint16(p[44:46])
	return d, nil
}

func getInfo(b []byte) lacpInfo {
	var i lacpInfo
	i.SysPrio = binary.BigEndian.Uint16(b[0:2])
	copy(i.System[:], b[2:8])
	i.Key = binary.BigEndian.Uint16(b[8:10])
	i.PortPrio = binary.BigEndian.Uint16(b[10:12])
	i.Port = binary.BigEndian.Uint16(b[12:14])
	i.State = b[14]
	return i
}

func putInfo(b []byte, i lacpInfo) {
	binary.BigEndian.PutUint16(b[0:2], i.SysPrio)
	copy(b[2:8], i.System[:])
	binary.BigEndian.PutUint16(b[8:10], i.Key)
	binary.BigEndian.PutUint16(b[10:12], i.PortPrio)
	binary.BigEndian.PutUint16(b[12:14], i.Port)
	b[14] = i.State
}

// frame builds the LACPDU's Ethernet frame from src.
func (d lacpdu) frame(src [6]byte) []byte {
	f := make([]byte, 14+lacpduLen)
	copy(f[0:6], slowProtocolsDst[:])
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:14], etherTypeSlow)
	p := f[14:]
	p[0], p[1] = subtypeLACP, 1
	p[2], p[3] = 1, 20
	putInfo(p[4:22], d.Actor)
	p[22], p[23] = 2, 20
	putInfo(p[24:42], d.Partner)
	p[42], p[43] = 3, 16
	binary.BigEndian.PutUint16(p[44:46], d.MaxDelay)
	// p[58], p[59]: terminator TLV, type 0 length 0; the rest is reserved.
	return f
}

// lacpState is one member's LACP state, under Switch.mu.
type lacpState struct {
	known    bool      // the node was heard and has not timed out
	node     lacpInfo  // the node's actor information
	nodeView lacpInfo  // the node's partner information: what it thinks of us
	lastRx   time.Time // the node's last LACPDU
	up       bool      // negotiated: data flows
	ntt      bool      // need to transmit
	nextTx   time.Time // the next periodic LACPDU
	tx       [3]time.Time
}

// actor is the switch's actor information on member p.
func (s *Switch) actor(p *port) lacpInfo {
	st := uint8(stActivity | stTimeout | stAggregation)
	l := &p.lacp
	if l.known {
		st |= stSync
		if l.node.State&stSync != 0 && l.nodeView.sameLink(s.actorID(p)) {
			st |= stCollecting | stDistributing
		}
	} else {
		st |= stDefaulted
	}
	a := s.actorID(p)
	a.State = st
	return a
}

// actorID is the switch's actor information on p without its state (other
// than aggregatable).
func (s *Switch) actorID(p *port) lacpInfo {
	return lacpInfo{SysPrio: sysPriority, System: s.system, Key: p.group.key,
		PortPrio: portPriority, Port: p.num, State: stAggregation}
}

// whyNotUp says why member p is not negotiated, or "" if it is.
func (s *Switch) whyNotUp(p *port) string {
	l := &p.lacp
	switch {
	case !l.known:
		return "no LACPDU from the node"
	case l.node.State&stUp != stUp:
		return "node's actor state " + stateString(l.node.State) + " lacks SYN|COL|DIS"
	case !l.nodeView.sameLink(s.actorID(p)):
		return fmt.Sprintf("node's partner information (%v) is not ours (%v)", l.nodeView, s.actor(p))
	}
	return ""
}

// rxLACP takes the node's LACPDU f on member p.
func (s *Switch) rxLACP(p *port, f []byte, now time.Time) {
	d, err := parseLACPDU(f)
	if err != nil {
		p.warn("bad-lacpdu", "%s: bad LACPDU from %x: %v", p.name, f[6:12], err)
		return
	}
	l := &p.lacp
	if !l.known || d.Actor != l.node {
		if !l.known {
			s.logf("%s: LACP partner %v", p.name, d.Actor)
		}
		l.ntt = true
	}
	l.known, l.node, l.nodeView, l.lastRx = true, d.Actor, d.Partner, now
	if d.Partner != s.actor(p) {
		l.ntt = true
	}
	s.updateUp(p)
	s.lacpTx(p, now)
}

// updateUp recomputes whether member p is negotiated.
func (s *Switch) updateUp(p *port) {
	up := s.whyNotUp(p) == ""
	if up == p.lacp.up {
		return
	}
	p.lacp.up = up
	if up {
		s.logf("%s: LACP negotiated, in aggregate %s (node %v)", p.name, p.group.name, p.lacp.node)
	} else {
		s.logf("%s: LACP member of %s down: %s", p.name, p.group.name, s.whyNotUp(p))
		p.lacp.ntt = true
	}
	s.notify()
}

// lacpTick runs member p's timers.
func (s *Switch) lacpTick(p *port, now time.Time) {
	l := &p.lacp
	if l.known && now.Sub(l.lastRx) >= shortTimeout {
		s.logf("%s: no LACPDU for %v: defaulted, out of aggregate %s", p.name, now.Sub(l.lastRx).Round(time.Millisecond), p.group.name)
		l.known, l.node, l.nodeView = false, lacpInfo{}, lacpInfo{}
		l.ntt = true
		s.updateUp(p)
	}
	if !now.Before(l.nextTx) {
		l.ntt = true
	}
	s.lacpTx(p, now)
}

// lacpTx sends member p's LACPDU if one is due and the rate allows.
func (s *Switch) lacpTx(p *port, now time.Time) {
	l := &p.lacp
	if !l.ntt || now.Sub(l.tx[0]) < fastPeriodic {
		return
	}
	d := lacpdu{Actor: s.actor(p)}
	if l.known {
		d.Partner = l.node
	}
	l.ntt = false
	copy(l.tx[:], l.tx[1:])
	l.tx[len(l.tx)-1] = now
	period := fastPeriodic
	if l.known && l.node.State&stTimeout == 0 {
		period = slowPeriodic
	}
	l.nextTx = now.Add(period)
	if p.send(d.frame(p.mac)) {
		p.c.LACPOut++
	}
}
