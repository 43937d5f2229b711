package flist

// FirstPrivileged returns the extractor's refusal of the first entry p
// does not allow (a device node, a setuid/setgid file), or nil: the
// registry runs it at publish time so that a release every node would
// refuse is never stored.
func (f *Flist) FirstPrivileged(p Policy) error { return p.check(f) }
