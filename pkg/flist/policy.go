package flist

import "fmt"

// Policy says which dangerous entries Extract accepts. The zero value
// refuses device nodes and setuid/setgid files: a component that needs
// them (an OS image with /usr/bin/passwd or sudo, a /dev skeleton) must
// be allowed them by name, in the signed release.
type Policy struct {
	AllowDevices bool
	AllowSetuid  bool
}

// PolicyError is a Policy's refusal of one entry: a character or block
// device, or a regular file with the setuid or setgid bit. (A setgid
// directory only makes new files inherit its group, and is fine.)
type PolicyError struct {
	Path string
	Type Type
	Mode uint32
}

func (e *PolicyError) Error() string {
	if e.Device() {
		return fmt.Sprintf("%s: %s refused by policy (device nodes not allowed)", e.Path, e.Type)
	}
	return fmt.Sprintf("%s: mode %#o refused by policy (setuid/setgid files not allowed)", e.Path, e.Mode)
}

// Device reports whether the refusal is for a device node (AllowDevices
// would lift it) rather than a setuid/setgid file (AllowSetuid).
func (e *PolicyError) Device() bool { return e.Type == TypeCharDev || e.Type == TypeBlockDev }

// FirstPrivileged returns a *PolicyError for the first entry, in path
// order, that p does not allow, or nil. It is the very check Extract
// makes, so the registry can run it at publish time: a release that every
// node would refuse is never stored, and the error names the same path
// with the same words as the node would.
func (f *Flist) FirstPrivileged(p Policy) error {
	for _, e := range f.Entries {
		dev := e.Type == TypeCharDev || e.Type == TypeBlockDev
		setid := e.Type == TypeFile && e.Mode&0o6000 != 0
		if (dev && !p.AllowDevices) || (setid && !p.AllowSetuid) {
			return &PolicyError{Path: e.Path, Type: e.Type, Mode: e.Mode}
		}
	}
	return nil
}
