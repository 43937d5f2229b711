// Package vswitch is a userspace Ethernet switch for end-to-end tests: the
// far side of a node's 802.1Q VLAN and 802.3ad (LACP) bond.
//
// A node must bring up a VLAN and an LACP bond before its first contact, and
// a test has to show that it really did: a node that does not tag, or that
// sends on one NIC without LACP, must not reach the server. The guest kernel
// has 8021q and bonding, but the host kernel the tests run on has neither, so
// the switch side cannot be a Linux VLAN device, bond or bridge. This package
// does it in Go instead:
//
//   - QEMU NICs connect over unix datagram sockets, one Ethernet frame per
//     datagram (QEMU 7.2's -netdev dgram). QEMUPort creates the switch's
//     socket and returns the -netdev argument for QEMU.
//   - TapIn creates the uplink: a tap device inside a network namespace, where
//     the test gives it an address and runs dnsmasq and the registry. Frames on
//     the tap are untagged.
//   - A port is Access (frames pass as they are), Tagged(vid) (the node must
//     tag with vid: the tag is stripped toward the tap and added toward the
//     node, anything else from the node is dropped), or a member of an LACP
//     group, optionally tagged: LACP("bond0").Tagged(10). The switch is a
//     minimal 802.1AX partner (see lacp.go) and forwards no data on a member
//     until the node's LACPDUs on it show synchronization, collecting and
//     distributing and echo the switch's own actor information; a member whose
//     LACPDUs stop for 3 s (the switch asks for the short timeout, so the node
//     sends every second) leaves the aggregate.
//
// There is one broadcast domain, the tap's: a port's VID says only how the
// node frames its traffic on that wire. The switch learns source MACs per
// port (an LACP group is one port) and floods the rest. Counters tells what
// each port or group passed and dropped; Log, if set, reports negotiation and
// the first drop of each kind on each port.
//
// A test wires a VM to it like this (ids must not clash with other netdevs of
// the VM; give each NIC its own MAC, and give a bonded virtio NIC a speed and
// full duplex, without which Linux makes the port an individual link):
//
//	sw, err := vswitch.New("") // sockets in a fresh short directory under $TMPDIR
//	sw.Log = t.Logf
//	t.Cleanup(func() { sw.Close() })
//	// ip netns add zbs; then:
//	err = sw.TapIn("zbs", "sw0")
//	// ip -n zbs addr add 192.0.2.1/24 dev sw0; ip -n zbs link set sw0 up;
//	// dnsmasq --interface=sw0 ... inside zbs
//	nic1, err := sw.QEMUPort("nic1", vswitch.LACP("bond0").Tagged(10))
//	nic2, err := sw.QEMUPort("nic2", vswitch.LACP("bond0").Tagged(10))
//	// qemu-system-x86_64 ... \
//	//   -netdev <nic1> -device virtio-net-pci,netdev=nic1,mac=52:54:00:00:10:01,speed=1000,duplex=full \
//	//   -netdev <nic2> -device virtio-net-pci,netdev=nic2,mac=52:54:00:00:10:02,speed=1000,duplex=full
//	err = sw.WaitNegotiated(ctx, "bond0")
//
// where a -netdev argument QEMUPort returns looks like
//
//	dgram,id=nic1,local.type=unix,local.path=/tmp/vsw123/nic1.qemu,remote.type=unix,remote.path=/tmp/vsw123/nic1.sw
//
// QEMU binds local.path (unlinking what was there) and sends each frame to
// remote.path, the switch's socket; the switch sends to local.path and drops
// frames while QEMU is not there yet. Socket paths must stay under 108 bytes,
// which is why New("") picks a short directory rather than t.TempDir().
package vswitch
