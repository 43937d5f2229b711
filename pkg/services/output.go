package services

import (
	"bufio"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/release"
)

// MaxLineBytes bounds one line of a service's output, as kept and as
// shown; the rest of a longer line is dropped.
const MaxLineBytes = release.MaxServiceLine

const defaultOutputLines = release.MaxServiceOutput

// ring keeps the last lines of a service's output.
type ring struct {
	mu    sync.Mutex
	lines []string
	next  int // where the next line goes once lines is full
	size  int
}

func newRing(size int) *ring {
	return &ring{size: size, lines: make([]string, 0, size)}
}

func (r *ring) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lines) < r.size {
		r.lines = append(r.lines, line)
		return
	}
	r.lines[r.next] = line
	r.next = (r.next + 1) % r.size
}

// last returns the lines kept, oldest first.
func (r *ring) last() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.lines))
	out = append(out, r.lines[r.next:]...)
	return append(out, r.lines[:r.next]...)
}

// output is the stdout and stderr of one run: a pipe read line by line
// into the ring and onto the console. One pipe per run means the run's
// end is the pipe's end, so its last lines, an unterminated one
// included, are in the ring before its exit is reported.
type output struct {
	r, w   *os.File
	wClose sync.Once
	done   chan struct{}
}

// startOutput opens the pipe and reads it until every writer is gone.
// show is called with each sanitised line.
func startOutput(show func(line string)) (*output, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	o := &output{r: r, w: w, done: make(chan struct{})}
	go func() {
		defer close(o.done)
		readLines(r, show)
	}()
	return o, nil
}

// closeWriter drops this process's copy of the write end, once the
// child has its own (or will never run).
func (o *output) closeWriter() {
	o.wClose.Do(func() { o.w.Close() })
}

// drain waits up to grace for the reader to reach the end of the pipe,
// and reports whether it did. It does not when a process that left the
// group (a daemon) still holds the pipe.
func (o *output) drain(grace time.Duration) bool {
	o.closeWriter()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-o.done:
		return true
	case <-t.C:
		return false
	}
}

// close ends the reader even if some process still holds the pipe.
func (o *output) close() {
	o.closeWriter()
	o.r.Close()
	<-o.done
}

// readLines splits rd into lines of at most MaxLineBytes (a longer line
// is cut and the rest of it dropped), sanitised, and gives each to show.
func readLines(rd io.Reader, show func(string)) {
	br := bufio.NewReaderSize(rd, MaxLineBytes)
	skip := false // dropping the rest of a line that was too long
	for {
		b, err := br.ReadSlice('\n')
		full := errors.Is(err, bufio.ErrBufferFull)
		if len(b) > 0 && !skip {
			show(clean(b, full))
		}
		skip = full
		if err != nil && !full {
			return
		}
	}
}

// clean turns raw bytes into a line fit for the console: the line end
// removed, control characters and invalid UTF-8 replaced, a cut marked.
func clean(b []byte, cut bool) string {
	n := len(b)
	if n > 0 && b[n-1] == '\n' {
		n--
		if n > 0 && b[n-1] == '\r' {
			n--
		}
	}
	s := console.Sanitize(string(b[:n]), MaxLineBytes)
	if cut {
		s += "..."
	}
	return s
}
