package testenv

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// InNS runs fn with the calling goroutine's OS thread in ns: sockets fn
// creates (a listener, a raw socket, a dial) belong to ns for good, and
// /proc/sys/net files fn opens are ns's. The thread goes back to its own
// namespace afterwards, or, if it cannot, stays locked so Go discards it
// with the goroutine rather than reuse a thread in the wrong namespace.
func InNS(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("return to original namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}
