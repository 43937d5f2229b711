package netconf

import (
	"errors"
	"fmt"
)

// Conflict is a problem between entries of a Config. It names the entry
// at fault, the later one on the command line, by its parameter and value,
// and says which earlier entry it collides with.
type Conflict struct {
	Param string // "ip", "ifname", "vlan" or "bond"
	Value string // the entry's String: its canonical value
	Msg   string
}

func (c Conflict) Error() string { return fmt.Sprintf("%s=%s: %s", c.Param, c.Value, c.Msg) }

// Check reports every conflict between entries (see Conflicts), joined
// into one error; nil when there is none.
func (c *Config) Check() error {
	var errs []error
	for _, k := range c.Conflicts() {
		errs = append(errs, k)
	}
	return errors.Join(errs...)
}

// Conflicts lists, in command-line order per parameter, what makes the
// entries impossible together: a name defined twice among renames, VLANs
// and bonds; a MAC renamed twice; a VLAN on itself, or twice on one parent
// with one ID, or on a bond slave; a bond without slaves, or sharing a
// slave with another bond; two ip= for one device, or two without device;
// an ip= for a bond slave (the bond takes the slave's traffic, so its
// address would be lost); and two ip= that give different host names.
func (c *Config) Conflicts() []Conflict {
	var out []Conflict
	add := func(param string, v fmt.Stringer, format string, args ...any) {
		out = append(out, Conflict{param, v.String(), fmt.Sprintf(format, args...)})
	}
	slaveOf := map[string]string{} // slave -> "bond=..."
	for _, b := range c.Bonds {
		if len(b.Slaves) == 0 {
			add("bond", b, "bond %s has no slaves", b.Name)
		}
		for _, s := range b.Slaves {
			if first, dup := slaveOf[s]; dup {
				add("bond", b, "slave %s is already in %s: a link has one bond", s, first)
				continue
			}
			slaveOf[s] = "bond=" + b.String()
		}
	}
	out = append(out, c.nameConflicts(slaveOf)...)
	out = append(out, c.ipConflicts(slaveOf)...)
	return out
}

// nameConflicts checks the links this configuration names or creates.
func (c *Config) nameConflicts(slaveOf map[string]string) []Conflict {
	var out []Conflict
	named := map[string]string{} // name -> "param=value" that defines it
	define := func(param string, v fmt.Stringer, name string) {
		if first, dup := named[name]; dup {
			out = append(out, Conflict{param, v.String(), fmt.Sprintf("name %s is already given by %s", name, first)})
			return
		}
		named[name] = param + "=" + v.String()
	}
	macs := map[string]string{}
	for _, r := range c.Renames {
		define("ifname", r, r.Name)
		if first, dup := macs[r.MAC.String()]; dup {
			out = append(out, Conflict{"ifname", r.String(), fmt.Sprintf("MAC %s is already renamed by ifname=%s", r.MAC, first)})
		} else {
			macs[r.MAC.String()] = r.String()
		}
	}
	type tag struct {
		parent string
		id     int
	}
	tags := map[tag]string{}
	for _, v := range c.VLANs {
		define("vlan", v, v.Name)
		switch t := (tag{v.Parent, v.ID}); {
		case v.Name == v.Parent:
			out = append(out, Conflict{"vlan", v.String(), fmt.Sprintf("VLAN %s is its own parent", v.Name)})
		case slaveOf[v.Parent] != "":
			out = append(out, Conflict{"vlan", v.String(), fmt.Sprintf("parent %s is a slave in %s: put the VLAN on the bond", v.Parent, slaveOf[v.Parent])})
		case tags[t] != "":
			out = append(out, Conflict{"vlan", v.String(), fmt.Sprintf("VLAN ID %d on %s is already vlan=%s", v.ID, v.Parent, tags[t])})
		default:
			tags[t] = v.String()
		}
	}
	for _, b := range c.Bonds {
		define("bond", b, b.Name)
	}
	return out
}

// ipConflicts checks the ip= entries against each other and the bonds.
func (c *Config) ipConflicts(slaveOf map[string]string) []Conflict {
	var out []Conflict
	add := func(ip IP, format string, args ...any) {
		out = append(out, Conflict{"ip", ip.String(), fmt.Sprintf(format, args...)})
	}
	devices := map[string]string{}
	var hostname, hostnameBy string
	for _, ip := range c.IPs {
		switch first, dup := devices[ip.Device]; {
		case dup && ip.Device == "":
			add(ip, "a second ip= without device (the first is ip=%s): which applies to the links no ip= names?", first)
		case dup:
			add(ip, "a second ip= for %s (the first is ip=%s): keep one", ip.Device, first)
		default:
			devices[ip.Device] = ip.String()
		}
		if b := slaveOf[ip.Device]; b != "" {
			add(ip, "%s is a slave in %s: the bond takes its traffic, configure the bond instead", ip.Device, b)
		}
		switch {
		case ip.Hostname == "":
		case hostname == "":
			hostname, hostnameBy = ip.Hostname, ip.String()
		case ip.Hostname != hostname:
			add(ip, "host name %s, but ip=%s gives %s: a node has one", ip.Hostname, hostnameBy, hostname)
		}
	}
	return out
}
