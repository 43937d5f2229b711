package qemu

import (
	"archive/tar"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkComponentsStep boots a node whose one component is an OS-like
// tree (Core-0 plus ZEROBOOT_BENCH_MB, default 200, MB of this machine's
// /usr) and reads the components step off the boot timeline: once with the
// tree built unpacked (a version-1 flist, one request per file) and once
// packed (the default), in the same run, on QEMU's user network.
//
//	ZEROBOOT_E2E=required go test -run '^$' -bench ComponentsStep -benchtime 1x ./qemu
func BenchmarkComponentsStep(b *testing.B) {
	needVM(b)
	mb := 200
	if s := os.Getenv("ZEROBOOT_BENCH_MB"); s != "" {
		var err error
		if mb, err = strconv.Atoi(s); err != nil || mb <= 0 {
			b.Fatalf("ZEROBOOT_BENCH_MB=%q: want a positive number of MB", s)
		}
	}
	g := newGrid(b)
	tree := filepath.Join(g.dir, "tree.tar")
	size, err := writeUsrTar(tree, int64(mb)<<20)
	if err != nil {
		b.Fatal(err)
	}
	g.serve()
	for i, v := range []struct{ name, packLimit string }{{"unpacked", "0"}, {"packed", "65536"}} {
		out := strings.Fields(g.run("flist", "build", "--data", g.data, "--pack-limit", v.packLimit, tree))
		id := out[len(out)-1]
		g.publishFlist(g.key, "24h", id, i+1, "--heartbeat", "2s")
		secs := componentsStep(b, g, i+1)
		b.Logf("figure: components step, %.0f MB %s (%s): %.2f s, %.0f MB/s",
			float64(size)/1e6, v.name, requests(g, id), secs, float64(size)/1e6/secs)
		b.ReportMetric(secs, v.name+"_s")
		b.ReportMetric(float64(size)/1e6/secs, v.name+"_MB/s")
	}
}

// reComponentsRow is the components step's row of the boot timeline:
// start, end and duration in milliseconds.
var reComponentsRow = regexp.MustCompile(`^\s*components\s+[0-9.]+\s+[0-9.]+\s+([0-9.]+)\s+ok`)

// componentsStep boots a fresh VM to ready and returns its components
// step in seconds.
func componentsStep(b *testing.B, g *grid, n int) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	vm := &VM{UUID: fmt.Sprintf("5a1c0b0e-0000-4000-8000-0000000b%04d", n), Memory: "2048M",
		Append: "zeroboot.registry=" + g.registry() + " zeroboot.farm=demo"}
	startVM(b, g, vm)
	if _, err := vm.WaitFor(ctx, reReady); err != nil {
		b.Fatal(err)
	}
	defer vm.Stop()
	for _, l := range vm.Lines() {
		if m := reComponentsRow.FindStringSubmatch(l); m != nil {
			ms, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				b.Fatal(err)
			}
			return ms / 1000
		}
	}
	b.Fatalf("no components step in the boot timeline:\n%s", vm.Tail(60))
	return 0
}

// requests is what `zgrid flist inspect` says a fresh extraction fetches.
func requests(g *grid, id string) string {
	for _, l := range strings.Split(g.run("flist", "inspect", "--data", g.data, id), "\n") {
		if f, ok := strings.CutPrefix(l, "requests:"); ok {
			return strings.TrimSpace(f)
		}
	}
	return "requests unknown"
}

// writeUsrTar writes a tar of Core-0 at bin/core0 and a sample of /usr's
// regular files and symlinks, about limit bytes of content,
// taken across the whole of /usr (a prefix of the walk would be mostly
// large binaries); it returns the content bytes.
func writeUsrTar(path string, limit int64) (int64, error) {
	all, err := usrBytes()
	if err != nil {
		return 0, err
	}
	keep := func(p string) bool {
		h := fnv.New64a()
		h.Write([]byte(p))
		return float64(h.Sum64()%1_000_000) < 1e6*float64(limit)/float64(all)
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	total, err := addFile(tw, "bin/core0", bins.core0)
	if err != nil {
		return 0, err
	}
	err = filepath.WalkDir("/usr", func(p string, d fs.DirEntry, err error) error {
		if err != nil || total >= limit {
			if total >= limit {
				return fs.SkipAll
			}
			return nil // unreadable: not part of the sample
		}
		// Directories come from the files' paths (the flist builder makes
		// up missing parents), so the sample has no empty ones.
		if d.IsDir() || !keep(p) {
			return nil
		}
		n, err := addFile(tw, strings.TrimPrefix(p, "/"), p)
		total += n
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("tar of /usr: %w", err)
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	return total, f.Close()
}

// usrBytes is the size of /usr's regular files.
func usrBytes() (int64, error) {
	var n int64
	err := filepath.WalkDir("/usr", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	if n == 0 {
		return 0, fmt.Errorf("sample /usr: no files (%v)", err)
	}
	return n, nil
}

// addFile adds one path of the host as name; anything but a regular file,
// directory or symlink, and anything unreadable, is left out.
func addFile(tw *tar.Writer, name, p string) (int64, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return 0, nil
	}
	var link string
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		if link, err = os.Readlink(p); err != nil {
			return 0, nil
		}
	case !fi.Mode().IsRegular() && !fi.IsDir():
		return 0, nil
	}
	var r *os.File
	if fi.Mode().IsRegular() {
		if r, err = os.Open(p); err != nil {
			return 0, nil
		}
		defer r.Close()
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return 0, err
	}
	hdr.Name, hdr.Uname, hdr.Gname = name, "", ""
	hdr.Mode &^= 0o6000 // the release does not allow setuid files
	if err := tw.WriteHeader(hdr); err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, nil
	}
	return io.CopyN(tw, r, hdr.Size)
}
