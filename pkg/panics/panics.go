// Package panics turns a panic into an error. In PID 1 an unrecovered panic
// in any goroutine ends the process, and the kernel panics with it; code
// that handles hostile input (DHCP packets, chunks, registry answers) runs
// inside Catch so that a bug there fails a boot step instead.
package panics

import (
	"fmt"
	"runtime/debug"
)

// Catch returns fn wrapped so that a panic becomes an error carrying the
// panic value and the stack.
func Catch(fn func() error) func() error {
	return func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		return fn()
	}
}
