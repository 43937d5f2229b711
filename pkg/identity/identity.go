// Package identity names a node and describes its hardware.
//
// Without a TPM, the name comes from DMI (firmware tables) or a MAC address:
// good enough to recognise a node, worthless as proof, since any machine
// can report any DMI value. Identity.Proven says which case applies; the
// derivation is in docs/identity.md.
package identity

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Sources of a node ID, best first.
const (
	// SourceTPM: the name of the TPM's identity key (pkg/tpm), hex.
	SourceTPM    = "tpm-identity-key"
	SourceUUID   = "dmi-product-uuid"
	SourceSerial = "dmi-serial"
	SourceMAC    = "mac"
	// SourceEphemeral: random, for this boot only, when nothing else is
	// usable and the farm allows it.
	SourceEphemeral = "ephemeral"
)

// Identity is the node's name and hardware profile.
type Identity struct {
	NodeID string `json:"node_id"`
	Source string `json:"source"`
	// Proven is false: DMI and MACs identify but prove nothing. A
	// TPM-backed identity will set it.
	Proven  bool    `json:"proven"`
	Profile Profile `json:"profile"`
}

// Profile describes the hardware, for the registry's inventory.
type Profile struct {
	CPUModel    string `json:"cpu_model"`
	CPUs        int    `json:"cpus"`
	MemoryBytes uint64 `json:"memory_bytes"`
	NICs        []NIC  `json:"nics"`
	Disks       []Disk `json:"disks"`
	DMI         DMI    `json:"dmi"`
}

// NIC is a physical network interface.
type NIC struct {
	Name   string `json:"name"`
	MAC    string `json:"mac"`
	Driver string `json:"driver"`
}

// Disk is a block device backed by hardware.
type Disk struct {
	Name      string `json:"name"`
	SizeBytes uint64 `json:"size_bytes"`
	Model     string `json:"model"`
}

// DMI holds the firmware's identification strings as read (trimmed).
type DMI struct {
	Vendor      string `json:"vendor"`
	Product     string `json:"product"`
	ProductUUID string `json:"product_uuid"`
	Serial      string `json:"serial"`
	BoardSerial string `json:"board_serial"`
}

// Reader reads from a sysfs and procfs root; tests point it at fake trees.
type Reader struct {
	SysRoot  string // default "/sys"
	ProcRoot string // default "/proc"
}

// NodeID derives the node ID from a source and its normalized value:
// "n" + the first 32 hex digits of SHA-256("zeroboot-node-id-v1\x00" +
// source + "\x00" + value).
func NodeID(source, value string) string {
	h := sha256.Sum256([]byte("zeroboot-node-id-v1\x00" + source + "\x00" + value))
	return "n" + hex.EncodeToString(h[:16])
}

// Ephemeral is a node ID made up for one boot: "e" and 32 random hex
// digits, so that no derived ID (which starts with "n") can collide with
// it and operators see at once what it is.
func Ephemeral() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return "e" + hex.EncodeToString(b)
}

// Read reads the profile and derives the node ID. It fails only when no
// source gives a usable value; the error says why each one was rejected.
func (r Reader) Read() (Identity, error) {
	if r.SysRoot == "" {
		r.SysRoot = "/sys"
	}
	if r.ProcRoot == "" {
		r.ProcRoot = "/proc"
	}
	p, err := r.profile()
	if err != nil {
		return Identity{}, err
	}
	source, value, err := choose(p)
	// Clipped after choosing: the ID may come from any NIC and the whole
	// DMI strings; only the profile sent to the registry is bounded.
	p.clip()
	if err != nil {
		return Identity{Profile: p}, err
	}
	return Identity{NodeID: NodeID(source, value), Source: source, Profile: p}, nil
}

// choose picks the best identifying value, per docs/identity.md.
func choose(p Profile) (source, value string, err error) {
	u, reason := normalizeUUID(p.DMI.ProductUUID)
	if reason == "" {
		return SourceUUID, u, nil
	}
	why := []string{"product UUID " + reason}
	for _, s := range []struct{ name, v string }{{"product serial", p.DMI.Serial}, {"board serial", p.DMI.BoardSerial}} {
		if reason := serialProblem(s.v); reason != "" {
			why = append(why, s.name+" "+reason)
			continue
		}
		return SourceSerial, s.v, nil
	}
	if mac := lowestMAC(p.NICs); mac != "" {
		return SourceMAC, mac, nil
	}
	why = append(why, "no physical NIC with a globally administered MAC")
	return "", "", fmt.Errorf("no node identity: %s", strings.Join(why, "; "))
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Firmware defaults seen on many boards at once: they name no machine.
var placeholderUUIDs = map[string]bool{
	"03000200-0400-0500-0006-000700080009": true, // AMI default
	"00020003-0004-0005-0006-000700080009": true, // the same, byte-swapped
	"12345678-1234-5678-90ab-cddeefaabbcc": true,
}

// normalizeUUID returns the lower-cased UUID, or a reason it is unusable.
func normalizeUUID(s string) (string, string) {
	u := strings.ToLower(strings.TrimSpace(s))
	switch {
	case u == "":
		return "", "missing"
	case !uuidRE.MatchString(u):
		return "", fmt.Sprintf("%q is not a UUID", s)
	case oneChar(strings.ReplaceAll(u, "-", "")):
		return "", fmt.Sprintf("%q is a placeholder", u)
	case placeholderUUIDs[u]:
		return "", fmt.Sprintf("%q is a known firmware placeholder", u)
	}
	return u, ""
}

var placeholderSerials = map[string]bool{
	"to be filled by o.e.m.":   true,
	"to be filled by oem":      true,
	"default string":           true,
	"none":                     true,
	"system serial number":     true,
	"chassis serial number":    true,
	"base board serial number": true,
	"serial number":            true,
	"not specified":            true,
	"not applicable":           true,
	"not available":            true,
	"n/a":                      true,
	"na":                       true,
	"unknown":                  true,
	"empty":                    true,
	"0123456789":               true,
	"123456789":                true,
}

// serialProblem says why a serial is unusable, or "".
func serialProblem(s string) string {
	t := strings.TrimSpace(s)
	switch {
	case t == "":
		return "empty"
	case placeholderSerials[strings.ToLower(t)] || oneChar(t):
		return fmt.Sprintf("%q is a placeholder", t)
	}
	return ""
}

// oneChar reports whether s repeats a single character ("0", "00000",
// "xxxxxxxx", "ffff..."): firmware filler, not an identifier.
func oneChar(s string) bool {
	return s != "" && strings.Count(s, s[:1]) == len(s)
}

// lowestMAC returns the smallest globally administered unicast Ethernet MAC
// among nics, or "". Locally administered addresses are set by software
// and change between boots.
func lowestMAC(nics []NIC) string {
	var macs []string
	for _, n := range nics {
		if globalMAC(n.MAC) {
			macs = append(macs, n.MAC)
		}
	}
	if len(macs) == 0 {
		return ""
	}
	return slices.Min(macs)
}

var macRE = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)

func globalMAC(mac string) bool {
	if !macRE.MatchString(mac) || mac == "00:00:00:00:00:00" {
		return false
	}
	b, _ := strconv.ParseUint(mac[:2], 16, 8)
	return b&0x02 == 0 && b&0x01 == 0 // not locally administered, not multicast
}

func (r Reader) profile() (Profile, error) {
	var p Profile
	var err error
	if p.CPUModel, p.CPUs, err = cpuinfo(filepath.Join(r.ProcRoot, "cpuinfo")); err != nil {
		return p, err
	}
	if p.MemoryBytes, err = memTotal(filepath.Join(r.ProcRoot, "meminfo")); err != nil {
		return p, err
	}
	if p.NICs, err = nics(filepath.Join(r.SysRoot, "class/net")); err != nil {
		return p, err
	}
	if p.Disks, err = disks(filepath.Join(r.SysRoot, "block")); err != nil {
		return p, err
	}
	p.DMI = dmi(filepath.Join(r.SysRoot, "class/dmi/id"))
	return p, nil
}

// attr reads a one-line sysfs attribute, "" when absent or unreadable
// (product_uuid is root-only; DMI is absent on many ARM boards).
func attr(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func dmi(dir string) DMI {
	return DMI{
		Vendor:      attr(filepath.Join(dir, "sys_vendor")),
		Product:     attr(filepath.Join(dir, "product_name")),
		ProductUUID: attr(filepath.Join(dir, "product_uuid")),
		Serial:      attr(filepath.Join(dir, "product_serial")),
		BoardSerial: attr(filepath.Join(dir, "board_serial")),
	}
}

func cpuinfo(path string) (model string, cpus int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("read cpu info: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			cpus++
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return model, cpus, nil
}

func memTotal(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read memory info: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "MemTotal:" {
			continue
		}
		kb, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil || len(f) != 3 || f[2] != "kB" {
			return 0, fmt.Errorf("parse %s: bad MemTotal line %q", path, sc.Text())
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return 0, fmt.Errorf("parse %s: no MemTotal line", path)
}

// entries lists a sysfs class directory; an absent one is empty.
func entries(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names, nil // ReadDir sorts
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// nics lists interfaces backed by a device (virtual ones have none).
func nics(dir string) ([]NIC, error) {
	names, err := entries(dir)
	if err != nil {
		return nil, err
	}
	out := []NIC{} // "nics": [] rather than null in JSON
	for _, n := range names {
		if !exists(filepath.Join(dir, n, "device")) {
			continue
		}
		nic := NIC{Name: n, MAC: strings.ToLower(attr(filepath.Join(dir, n, "address")))}
		if l, err := os.Readlink(filepath.Join(dir, n, "device", "driver")); err == nil {
			nic.Driver = filepath.Base(l)
		}
		out = append(out, nic)
	}
	return out, nil
}

var virtualDisks = []string{"loop", "ram", "zram", "dm-", "sr"}

func disks(dir string) ([]Disk, error) {
	names, err := entries(dir)
	if err != nil {
		return nil, err
	}
	out := []Disk{}
	for _, n := range names {
		if slices.ContainsFunc(virtualDisks, func(p string) bool { return strings.HasPrefix(n, p) }) {
			continue
		}
		d := Disk{Name: n, Model: attr(filepath.Join(dir, n, "device", "model"))}
		if s := attr(filepath.Join(dir, n, "size")); s != "" {
			sectors, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parse %s/%s/size: %q is not a sector count", dir, n, s)
			}
			d.SizeBytes = sectors * 512
		}
		out = append(out, d)
	}
	return out, nil
}
