package identity

import (
	"fmt"

	"github.com/zeroboot/zeroboot/pkg/console"
)

// Profile limits. A profile travels in an unauthenticated boot request and
// is stored per node, so every field is bounded: generously for real
// hardware (a storage node with a few JBODs, a many-socket server), small
// enough that a profile within them holds at most about 70 KiB of strings.
// Read clips a profile to them; Validate refuses one past them. Lengths
// are in bytes.
const (
	MaxCPUs         = 1 << 16 // far above Linux's NR_CPUS
	MaxCPUModelLen  = 128     // an x86 brand string is 48 bytes
	MaxNICs         = 64
	MaxNICNameLen   = 15       // IFNAMSIZ - 1
	MaxMACLen       = 3*32 - 1 // MAX_ADDR_LEN (32) bytes as "xx:" pairs; InfiniBand uses 20
	MaxDriverLen    = 64       // MODULE_NAME_LEN
	MaxDisks        = 256
	MaxDiskNameLen  = 31  // DISK_NAME_LEN - 1
	MaxDiskModelLen = 128 // SCSI models are 16 bytes, ATA and NVMe 40
	MaxDMILen       = 256 // each DMI string
)

// Validate reports the first field of p outside the limits above. A
// registry runs it on every profile it is sent before storing one.
func (p *Profile) Validate() error {
	if p.CPUs < 0 || p.CPUs > MaxCPUs {
		return fmt.Errorf("profile: cpus %d outside 0..%d", p.CPUs, MaxCPUs)
	}
	if err := checkLen("cpu_model", p.CPUModel, MaxCPUModelLen); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if len(p.NICs) > MaxNICs {
		return fmt.Errorf("profile: %d nics, limit %d", len(p.NICs), MaxNICs)
	}
	for i, n := range p.NICs {
		if err := n.validate(); err != nil {
			return fmt.Errorf("profile: nic %d: %w", i, err)
		}
	}
	if len(p.Disks) > MaxDisks {
		return fmt.Errorf("profile: %d disks, limit %d", len(p.Disks), MaxDisks)
	}
	for i, d := range p.Disks {
		if err := d.validate(); err != nil {
			return fmt.Errorf("profile: disk %d: %w", i, err)
		}
	}
	for _, f := range p.DMI.fields() {
		if err := checkLen("dmi "+f.name, *f.v, MaxDMILen); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
	}
	return nil
}

func (n *NIC) validate() error {
	for _, f := range []struct {
		name string
		v    string
		max  int
	}{{"name", n.Name, MaxNICNameLen}, {"mac", n.MAC, MaxMACLen}, {"driver", n.Driver, MaxDriverLen}} {
		if err := checkLen(f.name, f.v, f.max); err != nil {
			return err
		}
	}
	return nil
}

func (d *Disk) validate() error {
	if err := checkLen("name", d.Name, MaxDiskNameLen); err != nil {
		return err
	}
	return checkLen("model", d.Model, MaxDiskModelLen)
}

func checkLen(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes, limit %d", what, len(s), max)
	}
	return nil
}

type dmiField struct {
	name string
	v    *string
}

func (d *DMI) fields() []dmiField {
	return []dmiField{{"vendor", &d.Vendor}, {"product", &d.Product}, {"product_uuid", &d.ProductUUID}, {"serial", &d.Serial}, {"board_serial", &d.BoardSerial}}
}

// clip cuts p to the limits, so that a node with more disks or longer
// strings than a registry stores still boots and is still described (by
// the first MaxDisks disks in name order, and so on). It runs after the
// node ID is chosen, which may use any NIC and the whole DMI strings.
func (p *Profile) clip() {
	p.CPUs = min(max(p.CPUs, 0), MaxCPUs)
	p.CPUModel = console.Clip(p.CPUModel, MaxCPUModelLen)
	if len(p.NICs) > MaxNICs {
		p.NICs = p.NICs[:MaxNICs]
	}
	for i := range p.NICs {
		n := &p.NICs[i]
		n.Name, n.MAC, n.Driver = console.Clip(n.Name, MaxNICNameLen), console.Clip(n.MAC, MaxMACLen), console.Clip(n.Driver, MaxDriverLen)
	}
	if len(p.Disks) > MaxDisks {
		p.Disks = p.Disks[:MaxDisks]
	}
	for i := range p.Disks {
		d := &p.Disks[i]
		d.Name, d.Model = console.Clip(d.Name, MaxDiskNameLen), console.Clip(d.Model, MaxDiskModelLen)
	}
	for _, f := range p.DMI.fields() {
		*f.v = console.Clip(*f.v, MaxDMILen)
	}
}
