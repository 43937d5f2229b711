// Package watchdog keeps the machine's hardware watchdog (/dev/watchdog)
// from resetting the node while PID 1 is alive, and lets it reset the node
// when PID 1 is not.
//
// Opening the device arms it. The timeout is set with WDIOC_SETTIMEOUT and
// read back with WDIOC_GETTIMEOUT (drivers round it, or refuse it and keep
// their own). A pet loop then writes to the device every third of that
// timeout, but only while the heartbeat is fresh: PID 1 calls Alive from
// its own loops, and a heartbeat older than MaxSilence stops the petting,
// so the hardware fires. The loop never writes the magic close character
// 'V' and never closes the device: on a hang, and during an orderly
// reboot or power-off (PID 1 still runs and keeps petting until the kernel
// takes over), the watchdog stays armed.
package watchdog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultPath is the kernel's first watchdog device.
const DefaultPath = "/dev/watchdog"

// wdiocGetTimeout is WDIOC_GETTIMEOUT of <linux/watchdog.h>,
// _IOR('W', 7, int): golang.org/x/sys/unix has WDIOC_SETTIMEOUT but not
// this one.
const wdiocGetTimeout = 0x80045707

// ErrNoDevice says the machine has no watchdog device: not a failure, a
// node without one just has no hardware reset on a hang.
var ErrNoDevice = errors.New("no watchdog device")

// Clock is the time the pet loop runs on; tests inject a fake one.
type Clock interface {
	Now() time.Time
	// NewTicker ticks every d until stop is called.
	NewTicker(d time.Duration) (c <-chan time.Time, stop func())
}

// Ioctls are the device's timeout calls on an open file descriptor.
type Ioctls struct {
	SetTimeout func(fd int, seconds int) error
	GetTimeout func(fd int) (int, error)
}

// SystemIoctls are the real ioctls.
var SystemIoctls = Ioctls{
	SetTimeout: func(fd, s int) error { return unix.IoctlSetPointerInt(fd, unix.WDIOC_SETTIMEOUT, s) },
	GetTimeout: func(fd int) (int, error) { return unix.IoctlGetInt(fd, wdiocGetTimeout) },
}

// Watchdog is one armed watchdog device.
type Watchdog struct {
	// Path is the device; "" means DefaultPath.
	Path string
	// Timeout is the timeout asked for, in whole seconds.
	Timeout time.Duration
	// MaxSilence is how old the heartbeat may be before the petting
	// stops; 0 means two and a half pet intervals: one missed beat is
	// tolerated, and half an interval covers the phase between a
	// heartbeat that ticks as often as the pet loop and the loop.
	MaxSilence time.Duration
	Ioctls     Ioctls // zero means SystemIoctls
	Clock      Clock  // nil means the system clock
	Log        *slog.Logger

	f        *os.File
	timeout  time.Duration // the device's, as read back
	interval time.Duration
	// beat is the last Alive as time since base: monotonic, so that PID 1
	// setting the clock (NTP, the registry's Date) never ages it.
	base time.Time
	beat atomic.Int64

	mu      sync.Mutex
	petting bool // last tick petted; logs only the changes
	lastErr string
}

// Open opens and so arms the device, sets the timeout and reads back the
// one the device took. A missing device is ErrNoDevice (wrapped).
func (w *Watchdog) Open() error {
	path := w.path()
	secs := int(w.Timeout / time.Second)
	if secs <= 0 {
		return fmt.Errorf("watchdog %s: timeout %v: want at least 1 s", path, w.Timeout)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("open %s: %w", path, ErrNoDevice)
	}
	if err != nil {
		return fmt.Errorf("open watchdog: %w", err)
	}
	w.f, w.base = f, w.clock().Now()
	w.timeout, w.interval = w.setTimeout(int(f.Fd()), secs)
	w.Alive()
	w.petting = true
	// The first pet resets whatever count the device ran before it was
	// opened (firmware may have armed it long ago).
	if err := w.write(); err != nil {
		w.disarm()
		return err
	}
	return nil
}

// disarm is the magic close, only for a device Open could not pet: left
// armed, it would reset a node that has no way to keep it quiet. A hang
// and a shutdown never get here.
func (w *Watchdog) disarm() {
	w.f.Write([]byte("V"))
	w.f.Close()
	w.f = nil
}

// setTimeout asks for secs and returns the timeout the device has, and
// the pet interval for it. A device that refuses the timeout keeps its
// own; one whose timeout cannot be read is petted every second.
func (w *Watchdog) setTimeout(fd, secs int) (time.Duration, time.Duration) {
	io := w.ioctls()
	if err := io.SetTimeout(fd, secs); err != nil {
		w.log().Warn(fmt.Sprintf("watchdog %s: timeout %d s refused (%v); keeping the device's", w.path(), secs, err))
	}
	got, err := io.GetTimeout(fd)
	if err != nil || got <= 0 {
		w.log().Warn(fmt.Sprintf("watchdog %s: timeout not readable (%v); petting every second", w.path(), err))
		return 0, time.Second
	}
	t := time.Duration(got) * time.Second
	return t, t / 3
}

// EffectiveTimeout is the device's timeout as read back by Open (0:
// unknown).
func (w *Watchdog) EffectiveTimeout() time.Duration { return w.timeout }

// Interval is how often the pet loop pets.
func (w *Watchdog) Interval() time.Duration { return w.interval }

// Alive records PID 1's heartbeat. Safe from any goroutine.
func (w *Watchdog) Alive() { w.beat.Store(int64(w.clock().Now().Sub(w.base))) }

// Run pets the device every Interval while the heartbeat is fresh, until
// ctx ends. It returns ctx.Err() and leaves the device armed.
func (w *Watchdog) Run(ctx context.Context) error {
	if w.f == nil {
		return fmt.Errorf("watchdog %s: not open", w.path())
	}
	tick, stop := w.clock().NewTicker(w.interval)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick:
			w.Tick(now)
		}
	}
}

// Tick is one turn of the pet loop at now, a time of Clock: it pets the
// device if the heartbeat is fresh then and reports whether it did.
func (w *Watchdog) Tick(now time.Time) bool {
	age := now.Sub(w.base) - time.Duration(w.beat.Load())
	fresh := age <= w.maxSilence()
	w.mu.Lock()
	defer w.mu.Unlock()
	if fresh != w.petting {
		w.petting = fresh
		w.logChange(fresh, age)
	}
	if !fresh {
		return false
	}
	if err := w.write(); err != nil {
		if err.Error() != w.lastErr {
			w.lastErr = err.Error()
			w.log().Error("watchdog: pet failed; the node resets if this goes on", "err", err)
		}
		return false
	}
	w.lastErr = ""
	return true
}

func (w *Watchdog) logChange(fresh bool, age time.Duration) {
	if fresh {
		w.log().Warn(fmt.Sprintf("watchdog: PID 1's heartbeat is back after %v; petting again", age.Round(time.Millisecond)))
		return
	}
	left := "its timeout"
	if w.timeout > 0 {
		left = w.timeout.String()
	}
	w.log().Error(fmt.Sprintf("watchdog: PID 1's heartbeat is %v old (more than %v): PID 1 is hung; no longer petting, the hardware resets the node within %s",
		age.Round(time.Millisecond), w.maxSilence().Round(time.Millisecond), left))
}

// write is one pet: any byte but 'V' (which would allow a magic close)
// restarts the device's count, as WDIOC_KEEPALIVE does.
func (w *Watchdog) write() error {
	if _, err := w.f.Write([]byte{0}); err != nil {
		return fmt.Errorf("pet watchdog %s: %w", w.path(), err)
	}
	return nil
}

func (w *Watchdog) maxSilence() time.Duration {
	if w.MaxSilence > 0 {
		return w.MaxSilence
	}
	return 5 * w.interval / 2
}

func (w *Watchdog) path() string {
	if w.Path == "" {
		return DefaultPath
	}
	return w.Path
}

func (w *Watchdog) ioctls() Ioctls {
	if w.Ioctls.SetTimeout == nil || w.Ioctls.GetTimeout == nil {
		return SystemIoctls
	}
	return w.Ioctls
}

func (w *Watchdog) clock() Clock {
	if w.Clock == nil {
		return systemClock{}
	}
	return w.Clock
}

func (w *Watchdog) log() *slog.Logger {
	if w.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Log
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}
