package identity

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// full is a profile with every list and string at its limit.
func full() Profile {
	p := Profile{CPUModel: strings.Repeat("c", MaxCPUModelLen), CPUs: MaxCPUs, MemoryBytes: 1 << 62}
	for i := range MaxNICs {
		p.NICs = append(p.NICs, NIC{Name: fmt.Sprintf("%-*d", MaxNICNameLen, i), MAC: strings.Repeat("a", MaxMACLen), Driver: strings.Repeat("d", MaxDriverLen)})
	}
	for i := range MaxDisks {
		p.Disks = append(p.Disks, Disk{Name: fmt.Sprintf("%-*d", MaxDiskNameLen, i), SizeBytes: 1 << 50, Model: strings.Repeat("m", MaxDiskModelLen)})
	}
	for _, f := range p.DMI.fields() {
		*f.v = strings.Repeat("x", MaxDMILen)
	}
	return p
}

func TestProfileValidate(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n+1) }
	tests := []struct {
		name   string
		change func(*Profile)
		want   string
	}{
		{"at the limits", func(*Profile) {}, ""},
		{"empty", func(p *Profile) { *p = Profile{} }, ""},
		{"negative cpus", func(p *Profile) { p.CPUs = -1 }, "cpus -1 outside 0..65536"},
		{"too many cpus", func(p *Profile) { p.CPUs = MaxCPUs + 1 }, "cpus 65537"},
		{"cpu model", func(p *Profile) { p.CPUModel = long(MaxCPUModelLen) }, "cpu_model is 129 bytes, limit 128"},
		{"nics", func(p *Profile) { p.NICs = append(p.NICs, NIC{}) }, "65 nics, limit 64"},
		{"nic name", func(p *Profile) { p.NICs[3].Name = long(MaxNICNameLen) }, "nic 3: name is 16 bytes"},
		{"nic mac", func(p *Profile) { p.NICs[0].MAC = long(MaxMACLen) }, "nic 0: mac is 96 bytes"},
		{"nic driver", func(p *Profile) { p.NICs[63].Driver = long(MaxDriverLen) }, "nic 63: driver is 65 bytes"},
		{"disks", func(p *Profile) { p.Disks = append(p.Disks, Disk{}) }, "257 disks, limit 256"},
		{"disk name", func(p *Profile) { p.Disks[9].Name = long(MaxDiskNameLen) }, "disk 9: name is 32 bytes"},
		{"disk model", func(p *Profile) { p.Disks[0].Model = long(MaxDiskModelLen) }, "disk 0: model is 129 bytes"},
		{"dmi vendor", func(p *Profile) { p.DMI.Vendor = long(MaxDMILen) }, "dmi vendor is 257 bytes"},
		{"dmi product", func(p *Profile) { p.DMI.Product = long(MaxDMILen) }, "dmi product is 257"},
		{"dmi uuid", func(p *Profile) { p.DMI.ProductUUID = long(MaxDMILen) }, "dmi product_uuid is 257"},
		{"dmi serial", func(p *Profile) { p.DMI.Serial = long(MaxDMILen) }, "dmi serial is 257"},
		{"dmi board serial", func(p *Profile) { p.DMI.BoardSerial = long(MaxDMILen) }, "dmi board_serial is 257"},
	}
	for _, tt := range tests {
		p := full()
		tt.change(&p)
		err := p.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "profile: ") {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestReadClips: a machine with more NICs and disks, and longer strings,
// than the limits still gets a profile a registry accepts, and its node ID
// still comes from the whole DMI string or the lowest MAC of all NICs.
func TestReadClips(t *testing.T) {
	serial := strings.Repeat("S1", MaxDMILen) // usable, twice too long
	m := machine(tree{"product_serial": serial, "sys_vendor": strings.Repeat("\xff", MaxDMILen)})
	for i := range MaxNICs + 10 {
		n := fmt.Sprintf("sys/class/net/x%03d/", i)
		m[n+"device"] = ""
		m[n+"address"] = fmt.Sprintf("00:1f:6b:00:01:%02x\n", 255-i) // lowest last, below eth1's
	}
	for i := range MaxDisks + 50 {
		m[fmt.Sprintf("sys/block/sd%04d/size", i)] = "8\n"
		m[fmt.Sprintf("sys/block/sd%04d/device/model", i)] = strings.Repeat("é", MaxDiskModelLen) // 2 bytes each
	}
	id, err := read(t, m)
	if err != nil {
		t.Fatal(err)
	}
	p := id.Profile
	if err := p.Validate(); err != nil {
		t.Fatalf("Read gave a profile Validate refuses: %v", err)
	}
	if len(p.NICs) != MaxNICs || len(p.Disks) != MaxDisks || p.NICs[0].Name != "eth0" || p.Disks[0].Name != "nvme0n1" {
		t.Errorf("%d nics (first %s), %d disks (first %s): want the first %d and %d in name order", len(p.NICs), p.NICs[0].Name, len(p.Disks), p.Disks[0].Name, MaxNICs, MaxDisks)
	}
	if d := p.Disks[len(p.Disks)-1]; !utf8.ValidString(d.Model) || len(d.Model) != MaxDiskModelLen {
		t.Errorf("disk model clipped to %d bytes (valid UTF-8 %v), want %d", len(d.Model), utf8.ValidString(d.Model), MaxDiskModelLen)
	}
	if v := p.DMI.Vendor; !utf8.ValidString(v) || len(v) > MaxDMILen {
		t.Errorf("vendor of invalid UTF-8 clipped to %d bytes, valid %v", len(v), utf8.ValidString(v))
	}
	if p.DMI.Serial != serial[:MaxDMILen] {
		t.Errorf("serial in profile is %d bytes, want the first %d", len(p.DMI.Serial), MaxDMILen)
	}
	if id.Source != SourceSerial || id.NodeID != golden(SourceSerial, serial) {
		t.Errorf("node ID %s from %s, want one from the whole serial", id.NodeID, id.Source)
	}

	// Without DMI, the lowest MAC is on a NIC past the clip.
	delete(m, "sys/class/dmi/id/product_serial")
	root := build(t, m)
	id, err = Reader{SysRoot: filepath.Join(root, "sys"), ProcRoot: filepath.Join(root, "proc")}.Read()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("00:1f:6b:00:01:%02x", 255-(MaxNICs+9)); id.NodeID != golden(SourceMAC, want) {
		t.Errorf("node ID %s from %s, want one from MAC %s", id.NodeID, id.Source, want)
	}
}
