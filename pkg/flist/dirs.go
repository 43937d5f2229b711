package flist

import (
	"os"
	"path"
)

// maxOpenDirs bounds the directories an extraction keeps open: entries come
// sorted by path, so a directory's entries are mostly together and a few
// dozen cover the interleaving of nested ones.
const maxOpenDirs = 64

// dirs keeps recently used directories of an extraction open as roots of
// their own, so creating an entry costs one openat on its parent instead of
// a walk from the top (os.Root opens every component of a path, which was
// a fifth of an extraction's CPU on a tree of small files). Each is opened
// through the extraction's root, so it cannot lie outside it. Used by the
// one goroutine that creates entries.
type dirs struct {
	root  *os.Root
	open  map[string]*os.Root
	order []string // oldest first, for eviction
}

func newDirs(root *os.Root) *dirs {
	return &dirs{root: root, open: make(map[string]*os.Root)}
}

// parent returns the root of p's parent directory and p's last element.
func (d *dirs) parent(p string) (*os.Root, string, error) {
	dir, base := path.Split(p)
	if dir == "" {
		return d.root, base, nil
	}
	dir = dir[:len(dir)-1]
	if r, ok := d.open[dir]; ok {
		return r, base, nil
	}
	r, err := d.root.OpenRoot(dir)
	if err != nil {
		return nil, "", err
	}
	if len(d.order) == maxOpenDirs {
		d.open[d.order[0]].Close()
		delete(d.open, d.order[0])
		d.order = d.order[1:]
	}
	d.open[dir] = r
	d.order = append(d.order, dir)
	return r, base, nil
}

func (d *dirs) close() {
	for _, r := range d.open {
		r.Close()
	}
	clear(d.open)
	d.order = nil
}
