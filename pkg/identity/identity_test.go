package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const cpuinfo2 = `processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz
flags		: fpu vme

processor	: 1
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz
flags		: fpu vme
`

const meminfo = "MemTotal:        2030180 kB\nMemFree:         1500000 kB\n"

type tree map[string]string // relative path -> content; "->target" makes a symlink

func build(t *testing.T, files tree) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(content, "->"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(content), 0o444)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// machine is a QEMU-like node: two NICs (one virtual bridge), a disk, loop
// and zram devices that must not count.
func machine(dmi tree) tree {
	m := tree{
		"proc/cpuinfo": cpuinfo2,
		"proc/meminfo": meminfo,

		"sys/devices/pci0000:00/0000:00:03.0/virtio0/net/eth0/address": "52:54:00:12:34:56\n",
		"sys/devices/pci0000:00/0000:00:03.0/virtio0/driver":           "->../../../../bus/virtio/drivers/virtio_net",
		"sys/class/net/eth0": "->../../devices/pci0000:00/0000:00:03.0/virtio0/net/eth0",
		"sys/devices/pci0000:00/0000:00:03.0/virtio0/net/eth0/device": "->../../../virtio0",

		"sys/devices/pci0000:00/0000:00:04.0/net/eth1/address": "0C:C4:7A:00:00:01\n",
		"sys/devices/pci0000:00/0000:00:04.0/net/eth1/device":  "->../../../0000:00:04.0",
		"sys/devices/pci0000:00/0000:00:04.0/driver":           "->../../../bus/pci/drivers/e1000",
		"sys/class/net/eth1": "->../../devices/pci0000:00/0000:00:04.0/net/eth1",

		"sys/devices/virtual/net/br0/address": "02:00:00:00:00:01\n",
		"sys/class/net/br0":                   "->../../devices/virtual/net/br0",
		"sys/devices/virtual/net/lo/address":  "00:00:00:00:00:00\n",
		"sys/class/net/lo":                    "->../../devices/virtual/net/lo",

		"sys/block/vda/size":             "41943040\n",
		"sys/block/vda/device/model":     "QEMU HARDDISK   \n",
		"sys/block/nvme0n1/size":         "1000215216\n",
		"sys/block/nvme0n1/device/model": "Samsung SSD 970 EVO Plus 500GB\n",
		"sys/block/loop0/size":           "0\n",
		"sys/block/zram0/size":           "8\n",
		"sys/block/dm-0/size":            "8\n",
		"sys/block/sr0/size":             "8\n",
		"sys/block/ram0/size":            "8\n",
	}
	for k, v := range dmi {
		m["sys/class/dmi/id/"+k] = v
	}
	return m
}

func read(t *testing.T, files tree) (Identity, error) {
	root := build(t, files)
	return Reader{SysRoot: filepath.Join(root, "sys"), ProcRoot: filepath.Join(root, "proc")}.Read()
}

// golden recomputes the documented formula independently of NodeID.
func golden(source, value string) string {
	h := sha256.New()
	h.Write([]byte("zeroboot-node-id-v1"))
	h.Write([]byte{0})
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write([]byte(value))
	return "n" + hex.EncodeToString(h.Sum(nil))[:32]
}

func TestNodeIDSource(t *testing.T) {
	const uuid = "4C4C4544-0042-3510-8052-B4C04F4B4E32"
	tests := []struct {
		name       string
		dmi        tree
		dropNICs   bool
		wantSource string
		wantValue  string
		wantErr    []string
	}{
		{"uuid", tree{"product_uuid": uuid + "\n", "product_serial": "ABC123\n"}, false, SourceUUID, strings.ToLower(uuid), nil},
		{"placeholder uuid -> serial", tree{"product_uuid": "03000200-0400-0500-0006-000700080009\n", "product_serial": " ABC123 \n"}, false, SourceSerial, "ABC123", nil},
		{"zero uuid, O.E.M. serial -> board serial", tree{"product_uuid": "00000000-0000-0000-0000-000000000000", "product_serial": "To Be Filled By O.E.M.", "board_serial": "BSN-77"}, false, SourceSerial, "BSN-77", nil},
		{"all F uuid", tree{"product_uuid": "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "product_serial": "S1"}, false, SourceSerial, "S1", nil},
		{"garbage uuid", tree{"product_uuid": "not-a-uuid", "product_serial": "S1"}, false, SourceSerial, "S1", nil},
		{"all placeholders -> lowest global MAC", tree{"product_uuid": "03000200-0400-0500-0006-000700080009", "product_serial": "Default string", "board_serial": "0000000"}, false, SourceMAC, "0c:c4:7a:00:00:01", nil},
		{"no dmi -> MAC", nil, false, SourceMAC, "0c:c4:7a:00:00:01", nil},
		{"nothing", tree{"product_serial": "System Serial Number", "board_serial": "Not Specified"}, true, "", "", []string{
			"no node identity", "product UUID missing", `product serial "System Serial Number" is a placeholder`,
			`board serial "Not Specified" is a placeholder`, "no physical NIC"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := machine(tt.dmi)
			if tt.dropNICs {
				for k := range m {
					if strings.HasPrefix(k, "sys/class/net/eth") {
						delete(m, k)
					}
				}
			}
			id, err := read(t, m)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error, got %+v", id)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Source != tt.wantSource || id.NodeID != golden(tt.wantSource, tt.wantValue) {
				t.Errorf("got %s from %s, want %s from %s=%q", id.NodeID, id.Source, golden(tt.wantSource, tt.wantValue), tt.wantSource, tt.wantValue)
			}
			if id.Proven {
				t.Error("DMI identity claims to be proven")
			}
		})
	}
}

func TestNodeIDStable(t *testing.T) {
	dmi := tree{"product_uuid": "4C4C4544-0042-3510-8052-B4C04F4B4E32"}
	a, err := read(t, machine(dmi))
	if err != nil {
		t.Fatal(err)
	}
	// Same machine, other NIC order, other case: same ID.
	dmi2 := tree{"product_uuid": "4c4c4544-0042-3510-8052-b4c04f4b4e32\n"}
	m := machine(dmi2)
	delete(m, "sys/class/net/eth0")
	b, err := read(t, m)
	if err != nil {
		t.Fatal(err)
	}
	if a.NodeID != b.NodeID || len(a.NodeID) != 33 || a.NodeID[0] != 'n' {
		t.Errorf("IDs %q and %q", a.NodeID, b.NodeID)
	}
	// Sources are separated: the same string from another source differs.
	if NodeID(SourceUUID, "x") == NodeID(SourceSerial, "x") {
		t.Error("sources collide")
	}
}

func TestProfile(t *testing.T) {
	id, err := read(t, machine(tree{"sys_vendor": "QEMU\n", "product_name": "Standard PC (Q35 + ICH9, 2009)\n", "product_uuid": "4c4c4544-0042-3510-8052-b4c04f4b4e32"}))
	if err != nil {
		t.Fatal(err)
	}
	p := id.Profile
	if p.CPUModel != "Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz" || p.CPUs != 2 {
		t.Errorf("cpu %q x%d", p.CPUModel, p.CPUs)
	}
	if p.MemoryBytes != 2030180*1024 {
		t.Errorf("memory %d", p.MemoryBytes)
	}
	wantNICs := []NIC{{"eth0", "52:54:00:12:34:56", "virtio_net"}, {"eth1", "0c:c4:7a:00:00:01", "e1000"}}
	if !reflect.DeepEqual(p.NICs, wantNICs) {
		t.Errorf("nics %+v, want %+v", p.NICs, wantNICs)
	}
	wantDisks := []Disk{{"nvme0n1", 1000215216 * 512, "Samsung SSD 970 EVO Plus 500GB"}, {"vda", 41943040 * 512, "QEMU HARDDISK"}}
	if !reflect.DeepEqual(p.Disks, wantDisks) {
		t.Errorf("disks %+v, want %+v", p.Disks, wantDisks)
	}
	if p.DMI.Vendor != "QEMU" || p.DMI.Product != "Standard PC (Q35 + ICH9, 2009)" {
		t.Errorf("dmi %+v", p.DMI)
	}
	b, err := json.Marshal(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"node_id"`, `"source":"dmi-product-uuid"`, `"proven":false`, `"cpu_model"`, `"memory_bytes"`, `"size_bytes"`, `"product_uuid"`, `"board_serial"`, `"driver":"e1000"`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
}

func TestLowestMAC(t *testing.T) {
	tests := []struct {
		macs []string
		want string
	}{
		{[]string{"ac:1f:6b:00:00:02", "0c:c4:7a:00:00:09", "ac:1f:6b:00:00:01"}, "0c:c4:7a:00:00:09"},
		{[]string{"52:54:00:12:34:56"}, ""},                                             // QEMU's prefix is locally administered
		{[]string{"02:00:00:00:00:01", "fe:00:00:00:00:01"}, ""},                        // locally administered
		{[]string{"01:00:5e:00:00:01", "00:00:00:00:00:00"}, ""},                        // multicast, zero
		{[]string{"80:00:00:00:00:20:fe:80", "ac:1f:6b:00:00:01"}, "ac:1f:6b:00:00:01"}, // infiniband-length skipped
	}
	for _, tt := range tests {
		var nics []NIC
		for _, m := range tt.macs {
			nics = append(nics, NIC{MAC: m})
		}
		if got := lowestMAC(nics); got != tt.want {
			t.Errorf("lowestMAC(%v) = %q, want %q", tt.macs, got, tt.want)
		}
	}
}

func TestReadErrors(t *testing.T) {
	m := machine(tree{"product_uuid": "4c4c4544-0042-3510-8052-b4c04f4b4e32"})
	m["proc/meminfo"] = "MemTotal: lots\n"
	if _, err := read(t, m); err == nil || !strings.Contains(err.Error(), `bad MemTotal line "MemTotal: lots"`) {
		t.Errorf("bad meminfo: %v", err)
	}
	m = machine(tree{"product_uuid": "4c4c4544-0042-3510-8052-b4c04f4b4e32"})
	m["sys/block/vda/size"] = "-1\n"
	if _, err := read(t, m); err == nil || !strings.Contains(err.Error(), `vda/size: "-1" is not a sector count`) {
		t.Errorf("bad size: %v", err)
	}
	m = machine(nil)
	delete(m, "proc/cpuinfo")
	if _, err := read(t, m); err == nil || !strings.Contains(err.Error(), "cpu info") {
		t.Errorf("no cpuinfo: %v", err)
	}
}
