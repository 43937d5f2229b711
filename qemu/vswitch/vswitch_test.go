package vswitch

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestQEMUPortArgument(t *testing.T) {
	s := newSwitch(t)
	arg, err := s.QEMUPort("nic1", Access())
	if err != nil {
		t.Fatal(err)
	}
	want := "dgram,id=nic1,local.type=unix,local.path=" + s.dir + "/nic1.qemu,remote.type=unix,remote.path=" + s.dir + "/nic1.sw"
	if arg != want {
		t.Errorf("QEMUPort = %q, want %q", arg, want)
	}
	if _, err := s.QEMUPort("b1", LACP("bond0").Tagged(10)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, id string
		mode     PortMode
		err      string
	}{
		{"bad id", "1nic", Access(), "not a QEMU id"},
		{"comma in id", "n,1", Access(), "not a QEMU id"},
		{"VID 4095", "nic2", Tagged(4095), "out of range"},
		{"same id", "nic1", Access(), "exists"},
		{"id is a group", "bond0", Access(), "exists"},
		{"group is a port", "nic3", LACP("nic1"), "is a port's"},
		{"group VID differs", "b2", LACP("bond0").Tagged(11), "has VID 10"},
		{"group untagged", "b3", LACP("bond0"), "has VID 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.QEMUPort(tc.id, tc.mode)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("QEMUPort(%q, %v) = %v, want error with %q", tc.id, tc.mode, err, tc.err)
			}
		})
	}
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	long, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	if _, err := long.QEMUPort("nic1", Access()); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("QEMUPort with a %d-byte socket path = %v, want too long", len(dir)+10, err)
	}
}

func TestLACPDUEncoding(t *testing.T) {
	actor := lacpInfo{SysPrio: 0x8000, System: [6]byte{2, 1, 2, 3, 0, 0}, Key: 7, PortPrio: 0x8000, Port: 3,
		State: stActivity | stTimeout | stAggregation | stSync}
	partner := lacpInfo{SysPrio: 0xffff, System: mac(1), Key: 15, PortPrio: 255, Port: 2,
		State: stActivity | stAggregation | stUp}
	f := lacpdu{Actor: actor, Partner: partner}.frame([6]byte{2, 1, 2, 3, 0, 3})
	a, p := parseTestLACPDU(t, f)
	if a != actor || p != partner {
		t.Errorf("switch's LACPDU read back as actor %v partner %v, want %v, %v", a, p, actor, partner)
	}
	if !bytes.Equal(f, lacpFrame([6]byte{2, 1, 2, 3, 0, 3}, actor, partner)) {
		t.Errorf("switch's LACPDU\n% x\ndiffers from the test's\n% x", f, lacpFrame([6]byte{2, 1, 2, 3, 0, 3}, actor, partner))
	}
	d, err := parseLACPDU(lacpFrame(mac(1), partner, actor))
	if err != nil || d.Actor != partner || d.Partner != actor {
		t.Errorf("parseLACPDU(test's LACPDU) = %+v, %v", d, err)
	}
	bad := lacpFrame(mac(1), partner, actor)
	bad[17] = 19
	if _, err := parseLACPDU(bad); err == nil {
		t.Error("parseLACPDU took an actor TLV of length 19")
	}
}

// TestLearning: unknown unicast and broadcast flood, learned unicast goes to
// its port only (no tap needed).
func TestLearning(t *testing.T) {
	s := newSwitch(t)
	a, b, c := newNode(t, s, "a", Access()), newNode(t, s, "b", Access()), newNode(t, s, "c", Access())
	a.send(marked(bcast, mac(0xa), "from-a"))
	for _, n := range []*node{b, c} {
		if n.recv(2*time.Second, hasMarker("from-a")) == nil {
			t.Fatalf("%s did not get a's broadcast", n.name)
		}
	}
	b.send(marked(mac(0xa), mac(0xb), "b-to-a"))
	if a.recv(2*time.Second, hasMarker("b-to-a")) == nil {
		t.Fatal("a did not get b's unicast")
	}
	// c never saw b-to-a: a's MAC was learned on a.
	c.send(marked(mac(0xb), mac(0xc), "c-to-b"))
	if b.recv(2*time.Second, hasMarker("c-to-b")) == nil {
		t.Fatal("b did not get c's unicast")
	}
	if a.recv(200*time.Millisecond, hasMarker("c-to-b")) != nil {
		t.Error("a got c's unicast to b's learned MAC")
	}
	if c.recv(200*time.Millisecond, hasMarker("b-to-a")) != nil {
		t.Error("c got b's unicast to a's learned MAC")
	}
}

// TestAccess: frames pass an access port as they are, both ways, and the
// namespace's kernel answers ARP through it.
func TestAccess(t *testing.T) {
	s := newSwitch(t)
	sv := newServer(t, s)
	n := newNode(t, s, "nic1", Access())
	for _, tc := range []struct {
		name, marker string
		frame        []byte
	}{
		{"untagged", "access-1", marked(bcast, mac(1), "access-1")},
		{"tagged passes as is", "access-2", tag(marked(bcast, mac(1), "access-2"), 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.send(tc.frame)
			got := sv.recv(2*time.Second, hasMarker(tc.marker))
			if !bytes.Equal(got, tc.frame) {
				t.Fatalf("tap got\n% x\nwant\n% x", got, tc.frame)
			}
		})
	}
	back := marked(mac(1), [6]byte{2, 0, 0, 0, 0x5e, 1}, "to-node")
	sv.send(back)
	if got := n.recv(2*time.Second, hasMarker("to-node")); !bytes.Equal(got, back) {
		t.Fatalf("node got\n% x\nwant\n% x", got, back)
	}
	n.send(arpRequest(mac(1)))
	if n.recv(2*time.Second, isARPReply(mac(1), 0)) == nil {
		t.Fatal("no ARP reply from 192.0.2.1 through the access port")
	}
	if c := s.Counters("nic1"); c.In < 3 || c.Out < 2 {
		t.Errorf("nic1 counters %+v", c)
	}
}

// TestTagged: the node on a tagged port must tag with the port's VID.
func TestTagged(t *testing.T) {
	s := newSwitch(t)
	sv := newServer(t, s)
	n := newNode(t, s, "nic1", Tagged(10))
	for _, tc := range []struct {
		name    string
		vid     int // -1: untagged
		pass    bool
		counter func(Counters) uint64
	}{
		{"untagged", -1, false, func(c Counters) uint64 { return c.DropUntagged }},
		{"priority tag only", 0, false, func(c Counters) uint64 { return c.DropUntagged }},
		{"wrong VID", 11, false, func(c Counters) uint64 { return c.DropWrongVID }},
		{"right VID", 10, true, func(c Counters) uint64 { return c.In - c.DropUntagged - c.DropWrongVID }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := "tagged-" + strings.ReplaceAll(tc.name, " ", "-")
			plain := marked(bcast, mac(1), marker)
			f := plain
			if tc.vid >= 0 {
				f = tag(plain, uint16(tc.vid))
			}
			before := tc.counter(s.Counters("nic1"))
			n.send(f)
			waitFor(t, "the switch to count the frame", func() bool { return tc.counter(s.Counters("nic1")) == before+1 })
			got := sv.recv(300*time.Millisecond, hasMarker(marker))
			switch {
			case tc.pass && !bytes.Equal(got, plain):
				t.Errorf("tap got\n% x\nwant the frame untagged\n% x", got, plain)
			case !tc.pass && got != nil:
				t.Errorf("tap got a frame the port should drop: % x", got)
			}
		})
	}
	t.Run("tag added toward the node", func(t *testing.T) {
		plain := marked(mac(1), [6]byte{2, 0, 0, 0, 0x5e, 1}, "tagged-to-node")
		sv.send(plain)
		if got := n.recv(2*time.Second, hasMarker("tagged-to-node")); !bytes.Equal(got, tag(plain, 10)) {
			t.Errorf("node got\n% x\nwant\n% x", got, tag(plain, 10))
		}
	})
	t.Run("ARP through the VLAN", func(t *testing.T) {
		n.send(arpRequest(mac(1)))
		if n.recv(300*time.Millisecond, isARPReply(mac(1), 0)) != nil {
			t.Error("an untagged ARP request was answered")
		}
		n.send(tag(arpRequest(mac(1)), 10))
		if n.recv(2*time.Second, isARPReply(mac(1), 10)) == nil {
			t.Error("no ARP reply tagged 10 to an ARP request tagged 10")
		}
	})
	c := s.Counters("nic1")
	if c.DropUntagged != 3 || c.DropWrongVID != 1 {
		t.Errorf("nic1 counters %+v, want 3 untagged (one ARP) and 1 wrong-VID drops", c)
	}
}

// lacpNode plays the node's side of LACP on one member.
type lacpNode struct {
	*node
	slave [6]byte
	actor lacpInfo
}

// sendPDU sends the node's LACPDU with partner information p.
func (l *lacpNode) sendPDU(p lacpInfo) { l.send(lacpFrame(l.slave, l.actor, p)) }

// recvPDU returns the switch's next LACPDU on l that matches, parsed.
func (l *lacpNode) recvPDU(match func(actor, partner lacpInfo) bool) (actor, partner lacpInfo) {
	l.t.Helper()
	f := l.recv(3*time.Second, func(f []byte) bool {
		if !isLACPDU(f) {
			return false
		}
		a, p := parseTestLACPDU(l.t, f)
		return match(a, p)
	})
	if f == nil {
		l.t.Fatalf("%s: no matching LACPDU from the switch", l.name)
	}
	return parseTestLACPDU(l.t, f)
}

func dataFrame(vid uint16, dst, src [6]byte, marker string) []byte {
	f := marked(dst, src, marker)
	if vid != 0 {
		f = tag(f, vid)
	}
	return f
}

// TestLACP plays a node bonding two NICs: no data before negotiation, data
// on both members after, and a member that goes silent leaves.
func TestLACP(t *testing.T) {
	for _, vid := range []uint16{0, 10} {
		t.Run(fmt.Sprintf("vid %d", vid), func(t *testing.T) { testLACP(t, vid) })
	}
}

func testLACP(t *testing.T, vid uint16) {
	s := newSwitch(t)
	sv := newServer(t, s)
	bond := mac(0x0b) // the bond's MAC, its data frames' source
	var members []*lacpNode
	for i := range 2 {
		id := fmt.Sprintf("nic%d", i+1)
		members = append(members, &lacpNode{
			node:  newNode(t, s, id, LACP("bond0").Tagged(vid)),
			slave: mac(byte(0x11 + i)),
			actor: lacpInfo{SysPrio: 0xffff, System: bond, Key: 15, PortPrio: 255, Port: uint16(i + 1),
				State: stActivity | stTimeout | stAggregation},
		})
	}
	a, b := members[0], members[1]
	notNeg := func(n *lacpNode) uint64 { return s.Counters(n.name).DropNotNegotiated }

	// A node that just sends does not get through.
	a.send(dataFrame(vid, bcast, bond, "no-lacp"))
	waitFor(t, "the drop before LACP", func() bool { return notNeg(a) == 1 })
	if sv.recv(200*time.Millisecond, hasMarker("no-lacp")) != nil {
		t.Fatal("tap got data sent before LACP")
	}

	// The node's first LACPDU: the switch answers with its actor (in sync,
	// not yet collecting) and the node's information as its partner.
	var sw []lacpInfo
	for _, m := range members {
		m.sendPDU(lacpInfo{})
		actor, partner := m.recvPDU(func(_, p lacpInfo) bool { return p == m.actor })
		want := uint8(stActivity | stTimeout | stAggregation | stSync)
		if actor.State != want {
			t.Errorf("%s: switch's actor state %s, want %s", m.name, stateString(actor.State), stateString(want))
		}
		if partner != m.actor {
			t.Errorf("%s: switch's partner %v, want %v", m.name, partner, m.actor)
		}
		sw = append(sw, actor)
	}
	if sw[0].System != sw[1].System || sw[0].Key != sw[1].Key || sw[0].SysPrio != sw[1].SysPrio ||
		sw[0].Port == sw[1].Port || sw[0].System == [6]byte{} {
		t.Fatalf("switch's actors %v and %v are not one aggregate's", sw[0], sw[1])
	}
	b.send(dataFrame(vid, bcast, bond, "half-lacp"))
	waitFor(t, "the drop before sync", func() bool { return notNeg(b) == 1 })

	// In sync, collecting, distributing, but wrong about the switch: no.
	for _, m := range members {
		m.actor.State |= stUp
	}
	wrong := sw[0]
	wrong.Key++
	a.sendPDU(wrong)
	a.recvPDU(func(_, p lacpInfo) bool { return p == a.actor })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := s.WaitNegotiated(ctx, "bond0")
	cancel()
	if err == nil || !strings.Contains(err.Error(), "is not ours") {
		t.Fatalf("WaitNegotiated with the node wrong about the switch's key = %v", err)
	}
	a.send(dataFrame(vid, bcast, bond, "wrong-partner"))
	waitFor(t, "the drop with wrong partner information", func() bool { return notNeg(a) == 2 })

	// Right: the switch collects and distributes, data flows.
	for i, m := range members {
		m.sendPDU(sw[i])
		actor, _ := m.recvPDU(func(a, p lacpInfo) bool { return p == m.actor && a.State&stUp == stUp })
		sw[i] = actor
	}
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.WaitNegotiated(ctx, "bond0"); err != nil {
		t.Fatal(err)
	}
	if up := s.Negotiated("bond0"); len(up) != 2 {
		t.Fatalf("Negotiated = %v", up)
	}
	for _, m := range members {
		marker := "lacp-data-" + m.name
		m.send(dataFrame(vid, bcast, bond, marker))
		if got, want := sv.recv(2*time.Second, hasMarker(marker)), marked(bcast, bond, marker); !bytes.Equal(got, want) {
			t.Fatalf("tap got\n% x\nwant\n% x", got, want)
		}
	}
	if vid != 0 {
		a.send(marked(bcast, bond, "bond-untagged"))
		waitFor(t, "the untagged drop on the bond", func() bool { return s.Counters(a.name).DropUntagged == 1 })
	}
	a.send(dataFrame(vid, bcast, bond, "")[:12:12]) // a runt
	sendARP := func(m *lacpNode) {
		f := arpRequest(bond)
		if vid != 0 {
			f = tag(f, vid)
		}
		m.send(f)
	}
	sendARP(b)
	if !recvEither(members, isARPReply(bond, vid)) {
		t.Fatal("no ARP reply through the bond")
	}

	// a keeps talking, b goes silent: after 3 s b leaves the aggregate.
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(500 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				a.conn.WriteToUnix(lacpFrame(a.slave, a.actor, sw[0]), a.sw)
			}
		}
	}()
	defer func() { close(stop); <-done }()
	silent := time.Now()
	for deadline := silent.Add(5 * time.Second); len(s.Negotiated("bond0")) == 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("silent member still in the aggregate after 5 s")
		}
	}
	if el := time.Since(silent); el < 2500*time.Millisecond {
		t.Errorf("member left after %v, before 3 × the 1 s timeout", el)
	}
	if up := s.Negotiated("bond0"); len(up) != 1 || up[0] != a.name {
		t.Fatalf("Negotiated after b went silent = %v, want [%s]", up, a.name)
	}
	b.send(dataFrame(vid, bcast, bond, "after-silence"))
	waitFor(t, "the drop on the silent member", func() bool { return notNeg(b) == 2 })
	for i := range 4 {
		marker := fmt.Sprintf("to-bond-%d", i)
		sv.send(marked(bond, [6]byte{2, 0, 0, 0, 0x5e, byte(i)}, marker))
		if a.recv(2*time.Second, hasMarker(marker)) == nil {
			t.Fatalf("remaining member did not get %s", marker)
		}
	}
	if b.recv(200*time.Millisecond, hasMarker("to-bond")) != nil {
		t.Error("silent member got data")
	}
	// The silent member's LACPDUs say so: defaulted, no partner.
	if actor, _ := b.recvPDU(func(a, p lacpInfo) bool { return p == lacpInfo{} }); actor.State&(stDefaulted|stUp) != stDefaulted {
		t.Errorf("switch's actor state on the silent member %s", stateString(actor.State))
	}
	g, ca := s.Counters("bond0"), s.Counters(a.name)
	t.Logf("bond0 %+v; %s %+v; %s %+v", g, a.name, ca, b.name, s.Counters(b.name))
	if g.In < 3 || g.Out < 5 || ca.LACPIn < 5 || ca.LACPOut < 3 || ca.DropOther != 1 {
		t.Errorf("want bond0 In >= 3, Out >= 5; %s LACPIn >= 5, LACPOut >= 3, DropOther 1 (the runt)", a.name)
	}
}

// recvEither reports whether a frame that matches reaches any of members
// within 2 s.
func recvEither(members []*lacpNode, match func([]byte) bool) bool {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		for _, m := range members {
			if m.recv(50*time.Millisecond, match) != nil {
				return true
			}
		}
	}
	return false
}

// TestLACPPeriodic: the switch sends every second to a node that asks for
// the short timeout and does not repeat itself to one that asks for the long.
func TestLACPPeriodic(t *testing.T) {
	for _, tc := range []struct {
		name     string
		state    uint8
		min, max int
	}{
		{"fast", stActivity | stTimeout | stAggregation | stUp, 2, 4},
		{"slow", stActivity | stAggregation | stUp, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSwitch(t)
			m := &lacpNode{node: newNode(t, s, "nic1", LACP("bond0")), slave: mac(0x11),
				actor: lacpInfo{SysPrio: 0xffff, System: mac(0x0b), Key: 15, PortPrio: 255, Port: 1, State: tc.state}}
			m.sendPDU(lacpInfo{})
			sw, _ := m.recvPDU(func(_, p lacpInfo) bool { return p == m.actor })
			m.sendPDU(sw)
			sw, _ = m.recvPDU(func(a, p lacpInfo) bool { return p == m.actor && a.State&stUp == stUp })
			m.sendPDU(sw)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := s.WaitNegotiated(ctx, "bond0"); err != nil {
				t.Fatal(err)
			}
			// Keep the member alive, count what the switch sends in 2.5 s.
			n := 0
			for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); {
				m.sendPDU(sw)
				if m.recv(500*time.Millisecond, isLACPDU) != nil {
					n++
				}
			}
			if n < tc.min || n > tc.max {
				t.Errorf("switch sent %d LACPDUs in 2.5 s, want %d to %d", n, tc.min, tc.max)
			}
		})
	}
}
