package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/zeroboot/zeroboot/pkg/console"
	"github.com/zeroboot/zeroboot/pkg/digest"
	"github.com/zeroboot/zeroboot/pkg/fetch"
	"github.com/zeroboot/zeroboot/pkg/flist"
	"github.com/zeroboot/zeroboot/pkg/registry"
	"github.com/zeroboot/zeroboot/pkg/store"
)

// flistSource is where ls, inspect, diff and extract read flists and
// chunks: a local data directory's store or store mirrors over HTTP(S).
type flistSource struct {
	stores listFlag
	ca     string
	data   string
}

func (s *flistSource) register(fs *flag.FlagSet) {
	fs.Var(&s.stores, "store", "store base URL, http:// or https:// (repeatable: mirrors tried in order)")
	fs.StringVar(&s.ca, "ca", "", "PEM CA that https stores' certificates must chain to (default: the system's roots)")
	fs.StringVar(&s.data, "data", "", "read from this zgrid data directory's store instead of --store")
}

// reader is what the subcommands need from a store.
type reader interface {
	flist.ChunkSource
	FlistBytes(ctx context.Context, id digest.Digest) ([]byte, error)
}

func (s *flistSource) open() (reader, error) {
	switch {
	case s.data != "" && len(s.stores) > 0:
		return nil, errors.New("give --data or --store, not both")
	case s.data != "":
		return &store.Dir{Root: filepath.Join(s.data, storeDir)}, nil
	case len(s.stores) == 0:
		return nil, errors.New("no store: give --store URL (or --data DIR)")
	}
	for _, u := range s.stores {
		if err := checkStoreURL(u); err != nil {
			return nil, err
		}
	}
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	return &fetch.HTTP{URLs: s.stores, Client: c, Log: func(msg string, args ...any) {
		fmt.Fprintln(os.Stderr, append([]any{msg}, args...)...)
	}}, nil
}

func checkStoreURL(u string) error {
	if rest, ok := strings.CutPrefix(u, "http://"); ok && rest != "" {
		return nil
	}
	if rest, ok := strings.CutPrefix(u, "https://"); ok && rest != "" {
		return nil
	}
	return fmt.Errorf("--store %q: not an http:// or https:// URL", u)
}

// client is the node's own client (TLS 1.3, CA pinned) with --ca, and
// otherwise one that trusts the system's roots, as an operator's mirror
// usually has a public certificate; fetch.HTTP makes either fit a store.
func (s *flistSource) client() (*http.Client, error) {
	if s.ca != "" {
		pem, err := os.ReadFile(s.ca)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		c, err := registry.NewHTTPClient(pem, nil)
		if err != nil {
			return nil, fmt.Errorf("--ca %s: %w", s.ca, err)
		}
		return c, nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	return &http.Client{Transport: tr}, nil
}

func (s *flistSource) flist(ctx context.Context, r reader, arg string) (*flist.Flist, error) {
	id, err := digest.Parse(arg)
	if err != nil {
		return nil, fmt.Errorf("flist %q: %w", arg, err)
	}
	b, err := r.FlistBytes(ctx, id)
	if err != nil {
		return nil, err
	}
	f, err := flist.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("flist %s: %w", id, err)
	}
	return f, nil
}

func cmdFlistExtract(args []string) error {
	fs := newFlags("flist extract", "zgrid flist extract (--store URL [--store URL2]... [--ca FILE] | --data DIR) [--parallel N] [--allow-setuid] [--allow-devices] sha256:HEX DIR",
		`Fetch an flist by digest, verify every chunk, and write the tree into DIR
with the node's own code path (the packages PID 1 uses, the same checks and
the same policy: setuid files and device nodes only when allowed). Run as
root, owners are applied as a node applies them. Stores are tried in order
for every object. DIR may exist; an existing file in the way is an error.
Progress goes to stderr: live on a terminal, a line a second otherwise, and
a summary at the end.`,
		`  zgrid flist extract --store https://192.0.2.2:8443/store --ca grid/tls/ca.pem sha256:1f2e... ./rootfs
  zgrid flist extract --store http://mirror-a/zb --store http://mirror-b/zb sha256:1f2e... /mnt/root`)
	var s flistSource
	s.register(fs)
	parallel := fs.Int("parallel", flist.DefaultParallel, "chunks in flight")
	setuid := fs.Bool("allow-setuid", false, "create setuid and setgid files")
	devices := fs.Bool("allow-devices", false, "create device nodes")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the extraction to this file (go tool pprof)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErr(fs, "need sha256:HEX and DIR")
	}
	if *cpuprofile != "" {
		stopProfile, err := startCPUProfile(*cpuprofile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	r, err := s.open()
	if err != nil {
		return usageErr(fs, "%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	f, err := s.flist(ctx, r, pos[0])
	if err != nil {
		return err
	}
	x := &flist.Extractor{
		Source:   r,
		Parallel: *parallel,
		Policy:   flist.Policy{AllowSetuid: *setuid, AllowDevices: *devices},
		Chown:    os.Geteuid() == 0,
		Progress: extractProgress(os.Stderr, start),
	}
	if err := x.Extract(ctx, f, pos[1]); err != nil {
		return err
	}
	sum := flist.Summarize(f)
	el := time.Since(start)
	fmt.Fprintf(os.Stderr, "extracted %d entries, %.1f MB in %s (%.0f MB/s) to %s\n",
		sum.Entries, float64(sum.Bytes)/1e6, el.Round(time.Millisecond), float64(sum.Bytes)/1e6/el.Seconds(), pos[1])
	return nil
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile %s: %w", path, err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// extractProgress redraws one line on a terminal and prints a line a
// second otherwise, as a node's console does.
func extractProgress(w *os.File, start time.Time) func(done, total int64) {
	live := term.IsTerminal(int(w.Fd()))
	return flist.Throttled(time.Second, func(done, total int64) {
		line := fmt.Sprintf("%.1f/%.1f MB, %.0f MB/s", float64(done)/1e6, float64(total)/1e6, float64(done)/1e6/max(time.Since(start).Seconds(), 1e-3))
		if live {
			fmt.Fprintf(w, "\r%s", line)
			if done == total {
				fmt.Fprint(w, "\r\033[K")
			}
			return
		}
		fmt.Fprintln(w, line)
	})
}

func cmdFlistLs(args []string) error {
	fs := newFlags("flist ls", "zgrid flist ls (--store URL... [--ca FILE] | --data DIR) [-o table|json|yaml] sha256:HEX",
		`List an flist's entries, one per line: type, mode, owner, size, mtime,
path (and a symlink's target). The flist is verified against its digest.
-o json gives an array of entries with the same fields.`,
		`  zgrid flist ls --data ./grid sha256:1f2e...
  zgrid flist ls --store http://mirror-a/zb sha256:1f2e... | grep ' usr/bin/'
  zgrid flist ls --data ./grid -o json sha256:1f2e...`)
	out := registerOutput(fs)
	f, err := readFlist(fs, args, out)
	if err != nil {
		return err
	}
	if !out.table() {
		return out.print(lsEntries(f))
	}
	for i := range f.Entries {
		fmt.Println(lsLine(&f.Entries[i]))
	}
	return nil
}

// lsEntry is one entry of flist ls -o json: the columns of its line, the
// path and target exact (print escapes what a terminal would act on).
type lsEntry struct {
	Type   string    `json:"type"`
	Mode   string    `json:"mode"` // octal, as ls shows it
	UID    uint32    `json:"uid"`
	GID    uint32    `json:"gid"`
	Size   uint64    `json:"size"`
	MTime  time.Time `json:"mtime"`
	Path   string    `json:"path"`
	Target string    `json:"target,omitempty"` // symlinks and hard links
}

func lsEntries(f *flist.Flist) []lsEntry {
	out := make([]lsEntry, 0, len(f.Entries))
	for _, e := range f.Entries {
		out = append(out, lsEntry{Type: e.Type.String(), Mode: fmt.Sprintf("%04o", e.Mode), UID: e.UID, GID: e.GID,
			Size: e.Size, MTime: time.Unix(e.MTime, 0).UTC(), Path: e.Path, Target: e.Target})
	}
	return out
}

func lsLine(e *flist.Entry) string {
	line := fmt.Sprintf("%-8s %04o %d:%d %12d %s %s", e.Type, e.Mode, e.UID, e.GID, e.Size,
		time.Unix(e.MTime, 0).UTC().Format("2006-01-02T15:04:05Z"), quoted(e.Path))
	if e.Type == flist.TypeSymlink {
		line += " -> " + quoted(e.Target)
	}
	if e.Type == flist.TypeHardlink {
		line += " => " + quoted(e.Target)
	}
	return line
}

// quoted shows a path as it is unless console.Sanitize would change it (a
// byte a terminal acts on, a bidi override, invalid UTF-8): then Go-quoted,
// so the listing still names the real path.
func quoted(s string) string {
	if console.Sanitize(s, len(s)) != s || strings.ContainsAny(s, `"\`) {
		return strconv.Quote(s)
	}
	return s
}

func cmdFlistInspect(args []string) error {
	fs := newFlags("flist inspect", "zgrid flist inspect (--store URL... [--ca FILE] | --data DIR) [-o table|json|yaml] sha256:HEX",
		`Summarise an flist: entries by type, content bytes, chunk references,
distinct chunks and the compressed bytes a fresh extraction fetches at most,
and how many entries carry setuid or setgid bits (a release must allow them).`,
		`  zgrid flist inspect --data ./grid sha256:1f2e...
  zgrid flist inspect --data ./grid -o json sha256:1f2e...`)
	out := registerOutput(fs)
	f, err := readFlist(fs, args, out)
	if err != nil {
		return err
	}
	s := flist.Summarize(f)
	if !out.table() {
		return out.print(inspectViewOf(s))
	}
	fmt.Printf("format:         version %d, chunks named by %s\n", s.Version, s.Hash)
	fmt.Printf("entries:        %d\n", s.Entries)
	types := make([]flist.Type, 0, len(s.ByType))
	for t := range s.ByType {
		types = append(types, t)
	}
	sort.Slice(types, func(i, j int) bool { return types[i] < types[j] })
	for _, t := range types {
		fmt.Printf("  %-12s  %d\n", t.String()+":", s.ByType[t])
	}
	fmt.Printf("content:        %d bytes\n", s.Bytes)
	fmt.Printf("chunk refs:     %d (largest %d bytes)\n", s.Chunks, s.MaxChunk)
	fmt.Printf("packed files:   %d (sharing chunks with other small files)\n", s.Packed)
	fmt.Printf("distinct:       %d chunks, %d bytes compressed at most\n", s.Unique, s.Wire)
	fmt.Printf("requests:       %d chunk fetches for a fresh extraction\n", s.Fetches)
	fmt.Printf("setuid/setgid:  %d\n", s.Setuid)
	return nil
}

// inspectView is flist inspect -o json: flist.Summary, which has no JSON
// names of its own, with the entry types by name.
type inspectView struct {
	Version        uint16         `json:"version"`
	Hash           string         `json:"hash"`
	Entries        int            `json:"entries"`
	ByType         map[string]int `json:"by_type"`
	Bytes          uint64         `json:"bytes"`
	ChunkRefs      int            `json:"chunk_refs"`
	LargestChunk   uint32         `json:"largest_chunk"`
	Packed         int            `json:"packed"`
	DistinctChunks int            `json:"distinct_chunks"`
	WireBytes      uint64         `json:"wire_bytes"`
	Fetches        int            `json:"fetches"`
	Setuid         int            `json:"setuid"`
}

func inspectViewOf(s flist.Summary) inspectView {
	v := inspectView{Version: s.Version, Hash: s.Hash.String(), Entries: s.Entries, ByType: map[string]int{}, Bytes: s.Bytes,
		ChunkRefs: s.Chunks, LargestChunk: s.MaxChunk, Packed: s.Packed, DistinctChunks: s.Unique, WireBytes: s.Wire,
		Fetches: s.Fetches, Setuid: s.Setuid}
	for t, n := range s.ByType {
		v.ByType[t.String()] = n
	}
	return v
}

// readFlist parses fs, checks -o and fetches the one flist named.
func readFlist(fs *flag.FlagSet, args []string, out outputFlag) (*flist.Flist, error) {
	var s flistSource
	s.register(fs)
	arg, err := oneArg(fs, args, "sha256:HEX")
	if err != nil {
		return nil, err
	}
	if err := out.check(fs); err != nil {
		return nil, err
	}
	r, err := s.open()
	if err != nil {
		return nil, usageErr(fs, "%v", err)
	}
	return s.flist(context.Background(), r, arg)
}

func cmdFlistDiff(args []string) error {
	fs := newFlags("flist diff", "zgrid flist diff (--store URL... [--ca FILE] | --data DIR) sha256:A sha256:B",
		`List the paths added (+), removed (-) and modified (~, with the fields
that differ) from flist A to flist B. Exits 0 either way; no output means
the trees are the same. A small file packed elsewhere in B than in A is
compared by its bytes (both packs are fetched), so only real changes show.`,
		`  zgrid flist diff --data ./grid sha256:1f2e... sha256:9a8b...`)
	var s flistSource
	s.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageErr(fs, "need two flist digests")
	}
	r, err := s.open()
	if err != nil {
		return usageErr(fs, "%v", err)
	}
	var fl [2]*flist.Flist
	for i := range fl {
		if fl[i], err = s.flist(context.Background(), r, pos[i]); err != nil {
			return err
		}
	}
	changes, err := flist.ComparePacked(context.Background(), flist.Diff(fl[0], fl[1]), fl[0], fl[1], r)
	if err != nil {
		return err
	}
	for _, c := range changes {
		c.Path = quoted(c.Path)
		fmt.Println(c)
	}
	return nil
}
