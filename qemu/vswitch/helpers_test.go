package vswitch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"github.com/zeroboot/zeroboot/internal/testenv"
	"golang.org/x/sys/unix"
)

// The tests' frames, built here with encoding/binary independently of the
// switch's own code.

const testType = 0x88b5 // IEEE local experimental ethertype

var (
	bcast    = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	serverIP = [4]byte{192, 0, 2, 1}
	nodeIP   = [4]byte{192, 0, 2, 50}
)

func mac(last byte) [6]byte { return [6]byte{0x02, 0, 0, 0, 0x0b, last} }

// eth builds an untagged frame, padded to the 60-byte minimum.
func eth(dst, src [6]byte, etype uint16, payload []byte) []byte {
	f := make([]byte, 14, 60)
	copy(f[0:6], dst[:])
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:14], etype)
	f = append(f, payload...)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

// marked is a test frame from src to dst carrying marker.
func marked(dst, src [6]byte, marker string) []byte {
	return eth(dst, src, testType, []byte(marker))
}

// tag inserts an 802.1Q tag with vid after the MACs.
func tag(f []byte, vid uint16) []byte {
	t := make([]byte, 0, len(f)+4)
	t = append(t, f[:12]...)
	t = binary.BigEndian.AppendUint16(t, 0x8100)
	t = binary.BigEndian.AppendUint16(t, vid)
	return append(t, f[12:]...)
}

func hasMarker(m string) func([]byte) bool {
	return func(f []byte) bool { return bytes.Contains(f, []byte(m)) }
}

// arpRequest asks, from src, who has serverIP.
func arpRequest(src [6]byte) []byte {
	p := make([]byte, 28)
	binary.BigEndian.PutUint16(p[0:2], 1)      // Ethernet
	binary.BigEndian.PutUint16(p[2:4], 0x0800) // IPv4
	p[4], p[5] = 6, 4
	binary.BigEndian.PutUint16(p[6:8], 1) // request
	copy(p[8:14], src[:])
	copy(p[14:18], nodeIP[:])
	copy(p[24:28], serverIP[:])
	return eth(bcast, src, 0x0806, p)
}

// isARPReply matches the server kernel's ARP reply to dst, tagged with vid
// (0: untagged).
func isARPReply(dst [6]byte, vid uint16) func([]byte) bool {
	return func(f []byte) bool {
		if len(f) < 14 || [6]byte(f[0:6]) != dst {
			return false
		}
		if vid != 0 {
			if binary.BigEndian.Uint16(f[12:14]) != 0x8100 || binary.BigEndian.Uint16(f[14:16])&0xfff != vid {
				return false
			}
			f = append(f[:12:12], f[16:]...)
		}
		return len(f) >= 42 && binary.BigEndian.Uint16(f[12:14]) == 0x0806 &&
			binary.BigEndian.Uint16(f[20:22]) == 2 && [4]byte(f[28:32]) == serverIP &&
			[4]byte(f[38:42]) == nodeIP
	}
}

// LACPDUs, test side: offsets into the whole frame.

func lacpFrame(src [6]byte, actor, partner lacpInfo) []byte {
	f := make([]byte, 124)
	copy(f[0:6], []byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x02})
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:14], 0x8809)
	f[14], f[15] = 1, 1 // LACP, version 1
	put := func(o int, typ byte, i lacpInfo) {
		f[o], f[o+1] = typ, 20
		binary.BigEndian.PutUint16(f[o+2:], i.SysPrio)
		copy(f[o+4:o+10], i.System[:])
		binary.BigEndian.PutUint16(f[o+10:], i.Key)
		binary.BigEndian.PutUint16(f[o+12:], i.PortPrio)
		binary.BigEndian.PutUint16(f[o+14:], i.Port)
		f[o+16] = i.State
	}
	put(16, 1, actor)
	put(36, 2, partner)
	f[56], f[57] = 3, 16 // collector
	// f[72], f[73]: terminator
	return f
}

func isLACPDU(f []byte) bool {
	return len(f) >= 14 && binary.BigEndian.Uint16(f[12:14]) == 0x8809
}

// parseTestLACPDU checks the switch's LACPDU byte for byte and returns its
// actor and partner information.
func parseTestLACPDU(t *testing.T, f []byte) (actor, partner lacpInfo) {
	t.Helper()
	want := map[int]byte{14: 1, 15: 1, 16: 1, 17: 20, 36: 2, 37: 20, 56: 3, 57: 16, 72: 0, 73: 0}
	if len(f) != 124 || !bytes.Equal(f[0:6], []byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x02}) {
		t.Fatalf("LACPDU of %d bytes to %x", len(f), f[0:6])
	}
	for o, b := range want {
		if f[o] != b {
			t.Fatalf("LACPDU byte %d is %d, want %d: % x", o, f[o], b, f)
		}
	}
	if !bytes.Equal(f[74:], make([]byte, 50)) || !bytes.Equal(f[33:36], []byte{0, 0, 0}) {
		t.Fatalf("LACPDU reserved bytes not zero: % x", f)
	}
	get := func(o int) lacpInfo {
		var i lacpInfo
		i.SysPrio = binary.BigEndian.Uint16(f[o+2:])
		copy(i.System[:], f[o+4:o+10])
		i.Key = binary.BigEndian.Uint16(f[o+10:])
		i.PortPrio = binary.BigEndian.Uint16(f[o+12:])
		i.Port = binary.BigEndian.Uint16(f[o+14:])
		i.State = f[o+16]
		return i
	}
	return get(16), get(36)
}

// node stands in for a QEMU NIC: it binds the netdev's local.path and sends
// to its remote.path, one frame per datagram.
type node struct {
	t    *testing.T
	name string
	conn *net.UnixConn
	sw   *net.UnixAddr
}

// netdevPaths checks arg is the dgram form and returns its two paths.
func netdevPaths(t *testing.T, id, arg string) (local, remote string) {
	t.Helper()
	kv := map[string]string{}
	parts := strings.Split(arg, ",")
	if parts[0] != "dgram" {
		t.Fatalf("netdev %q is not dgram", arg)
	}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		kv[k] = v
	}
	if kv["id"] != id || kv["local.type"] != "unix" || kv["remote.type"] != "unix" || len(kv) != 5 {
		t.Fatalf("netdev %q", arg)
	}
	return kv["local.path"], kv["remote.path"]
}

func newNode(t *testing.T, s *Switch, id string, mode PortMode) *node {
	t.Helper()
	arg, err := s.QEMUPort(id, mode)
	if err != nil {
		t.Fatal(err)
	}
	local, remote := netdevPaths(t, id, arg)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: local, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &node{t: t, name: id, conn: c, sw: &net.UnixAddr{Name: remote, Net: "unixgram"}}
}

func (n *node) send(f []byte) {
	n.t.Helper()
	if _, err := n.conn.WriteToUnix(f, n.sw); err != nil {
		n.t.Fatalf("%s: send: %v", n.name, err)
	}
}

// recv returns the first frame within d that match wants, nil if none.
func (n *node) recv(d time.Duration, match func([]byte) bool) []byte {
	n.t.Helper()
	deadline := time.Now().Add(d)
	buf := make([]byte, 1<<16)
	for {
		n.conn.SetReadDeadline(deadline)
		k, _, err := n.conn.ReadFromUnix(buf)
		if err != nil {
			if !os.IsTimeout(err) {
				n.t.Fatalf("%s: recv: %v", n.name, err)
			}
			return nil
		}
		if match(buf[:k]) {
			return append([]byte(nil), buf[:k]...)
		}
	}
}

func newSwitch(t *testing.T) *Switch {
	t.Helper()
	s, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	s.Log = t.Logf
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// waitFor polls cond for up to 3 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// server is the tap side: a tap in a namespace of the test's own, with
// 192.0.2.1/24, and a packet socket on it.
type server struct {
	t  *testing.T
	ns string
	f  *os.File
	rc syscall.RawConn
}

var nsSeq atomic.Int32

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func newServer(t *testing.T, s *Switch) *server {
	t.Helper()
	testenv.NeedRoot(t, "a tap in a network namespace")
	testenv.NeedTool(t, "ip")
	ns := fmt.Sprintf("zbvsw%d-%d", os.Getpid(), nsSeq.Add(1))
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	const tap = "vsw0"
	if err := s.TapIn(ns, tap); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "-n", ns, "addr", "add", "192.0.2.1/24", "dev", tap)
	run(t, "ip", "-n", ns, "link", "set", tap, "up")
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// The packet socket is made in the namespace, on a thread of a
	// goroutine that ends locked if it cannot come back.
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err == nil {
			err = netns.Set(h)
		}
		if err != nil {
			ch <- res{-1, err}
			return
		}
		fd, err := func() (int, error) {
			ifi, err := net.InterfaceByName(tap)
			if err != nil {
				return -1, err
			}
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
			if err != nil {
				return -1, err
			}
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
				unix.Close(fd)
				return -1, err
			}
			if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
				unix.Close(fd)
				return -1, err
			}
			return fd, nil
		}()
		if serr := netns.Set(orig); serr != nil {
			ch <- res{-1, serr}
			return
		}
		orig.Close()
		runtime.UnlockOSThread()
		ch <- res{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("packet socket on %s in %s: %v", tap, ns, r.err)
	}
	sv := &server{t: t, ns: ns, f: os.NewFile(uintptr(r.fd), "packet")}
	t.Cleanup(func() { sv.f.Close() })
	if sv.rc, err = sv.f.SyscallConn(); err != nil {
		t.Fatal(err)
	}
	return sv
}

func (sv *server) send(f []byte) {
	sv.t.Helper()
	if _, err := sv.f.Write(f); err != nil {
		sv.t.Fatalf("tap side send: %v", err)
	}
}

// recv returns the first frame that reached the tap from the switch within d
// and matches, nil if none.
func (sv *server) recv(d time.Duration, match func([]byte) bool) []byte {
	sv.t.Helper()
	sv.f.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1<<16)
	for {
		var n, oobn int
		var from unix.Sockaddr
		var rerr error
		oob := make([]byte, 256)
		err := sv.rc.Read(func(fd uintptr) bool {
			n, oobn, _, from, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			if !os.IsTimeout(err) {
				sv.t.Fatalf("tap side recv: %v", err)
			}
			return nil
		}
		if rerr != nil {
			sv.t.Fatalf("tap side recv: %v", rerr)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue // the namespace's own transmissions
		}
		f := append([]byte(nil), buf[:n]...)
		if vid, tpid, ok := auxVLAN(oob[:oobn]); ok {
			// The kernel took the tag off into the packet's metadata
			// (as it does on receive even without 8021q): put it back.
			t := binary.BigEndian.AppendUint16(append(f[:12:12], 0, 0), vid)
			binary.BigEndian.PutUint16(t[12:14], tpid)
			f = append(t, f[12:]...)
		}
		if match(f) {
			return f
		}
	}
}

// auxVLAN returns the tag PACKET_AUXDATA says the kernel removed.
func auxVLAN(oob []byte) (tci, tpid uint16, ok bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, 0, false
	}
	for _, m := range msgs {
		// struct tpacket_auxdata: status, len, snaplen (u32), mac, net,
		// vlan_tci, vlan_tpid (u16).
		if m.Header.Level != unix.SOL_PACKET || m.Header.Type != unix.PACKET_AUXDATA || len(m.Data) < 20 {
			continue
		}
		status := binary.NativeEndian.Uint32(m.Data[0:4])
		if status&unix.TP_STATUS_VLAN_VALID == 0 {
			return 0, 0, false
		}
		tci, tpid = binary.NativeEndian.Uint16(m.Data[16:18]), binary.NativeEndian.Uint16(m.Data[18:20])
		if status&unix.TP_STATUS_VLAN_TPID_VALID == 0 {
			tpid = 0x8100
		}
		return tci, tpid, true
	}
	return 0, 0, false
}
