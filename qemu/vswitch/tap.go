package vswitch

import (
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// openTapIn creates tap device name in network namespace nsName and returns
// its file. A tap belongs to the namespace /dev/net/tun was opened in, so
// both the open and TUNSETIFF happen there, on a locked thread of a goroutine
// of our own: if it cannot return to the original namespace, the thread dies
// with it instead of lingering in the wrong one.
func openTapIn(nsName, name string) (*os.File, error) {
	target, err := netns.GetFromName(nsName)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		f, err := openTap(name)
		if rerr := netns.Set(orig); rerr != nil {
			if f != nil {
				f.Close()
			}
			ch <- result{nil, fmt.Errorf("return to the original namespace: %w", rerr)}
			return // still locked: the thread ends with the goroutine
		}
		runtime.UnlockOSThread()
		ch <- result{f, err}
	}()
	r := <-ch
	return r.f, r.err
}

// openTap creates tap device name (no packet information header) in the
// calling thread's namespace.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	// Non-blocking, the file goes to Go's poller: Close ends a pending Read.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "tap "+name), nil
}
