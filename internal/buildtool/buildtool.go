// Package buildtool holds what the image builders (cmd/mkuki, cmd/mkiso)
// check before they start: input files that must be there, and the
// programs they run, each error naming the file or the Debian package to
// install.
package buildtool

import (
	"fmt"
	"os"
	"os/exec"
)

// Input is a file a build needs; What names it in the error (a flag, or
// the file and its package).
type Input struct{ What, Path string }

// In is an Input.
func In(what, path string) Input { return Input{What: what, Path: path} }

// Check says which input is missing or not a regular file. Inputs with an
// empty Path are optional ones not given.
func Check(inputs ...Input) error {
	for _, f := range inputs {
		if f.Path == "" {
			continue
		}
		if fi, err := os.Stat(f.Path); err != nil {
			return fmt.Errorf("%s %s: %w", f.What, f.Path, err)
		} else if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s %s: not a regular file", f.What, f.Path)
		}
	}
	return nil
}

// Find returns the path of program, or an error saying which Debian
// package installs it.
func Find(program, pkg string) (string, error) {
	p, err := exec.LookPath(program)
	if err != nil {
		return "", fmt.Errorf("%s not found (install %s): %w", program, pkg, err)
	}
	return p, nil
}
