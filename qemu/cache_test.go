package qemu

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/zeroboot/zeroboot/pkg/chunkcache"
)

var reCacheStats = regexp.MustCompile(`chunk cache /dev/vda: (\d+) hits \(\d+ bytes\), (\d+) stored, (\d+) corrupt found, (\d+) entries`)

// TestChunkCache boots three times with a virtual disk as the chunk cache:
// the first boot formats it and stores every chunk, the second fetches
// none, and after one byte of a cached chunk is changed the third finds
// it, fetches that chunk alone and repairs the entry.
func TestChunkCache(t *testing.T) {
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	g := newGrid(t)
	g.publish(core0Tree(t), 1)
	g.serve()
	disk := filepath.Join(g.dir, "cache.img")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	initrd := g.initramfs(kver)
	cmdline := "zeroboot.cache=/dev/vda"
	boot := func(name string) (hits, stored, corrupt, entries int) {
		vm := &VM{Kernel: kernel, Initrd: initrd, UUID: "5a1c0b0e-0000-4000-8000-0000000000c1",
			Append: fmt.Sprintf("zeroboot.registry=%s zeroboot.farm=demo %s", g.registry(), cmdline),
			Extra:  []string{"-drive", "file=" + disk + ",if=virtio,format=raw,cache=writethrough"}}
		runVM(t, g, vm, name+".log")
		line, err := vm.WaitFor(ctx, reCacheStats)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := vm.WaitFor(ctx, reReady); err != nil {
			t.Fatal(err)
		}
		vm.Stop()
		n := reCacheStats.FindStringSubmatch(line)
		var v [4]int
		for i := range v {
			v[i], _ = strconv.Atoi(n[i+1])
		}
		t.Logf("%s: %s", name, line)
		if cmdline == "" && vm.Count(regexp.MustCompile(`chunk cache /dev/vda \(from the farm's setting\)`)) == 0 {
			t.Errorf("%s boot: the farm's cache setting was not used", name)
		}
		return v[0], v[1], v[2], v[3]
	}

	hits, stored, corrupt, entries := boot("first")
	if hits != 0 || stored == 0 || corrupt != 0 || entries != stored {
		t.Fatalf("first boot: %d hits, %d stored, %d corrupt, %d entries; want all stored", hits, stored, corrupt, entries)
	}
	all := stored
	// From here on the farm names the cache, not the command line.
	g.run("farm", "set", "demo", "--channel", "stable", "--cache", "/dev/vda", "--data", g.data, "--server", g.url(""))
	cmdline = ""
	if hits, stored, corrupt, _ = boot("second"); hits != all || stored != 0 || corrupt != 0 {
		t.Fatalf("second boot: %d hits, %d stored, %d corrupt; want %d hits and nothing fetched", hits, stored, corrupt, all)
	}
	flipFirstRecord(t, disk)
	if hits, stored, corrupt, _ = boot("third"); hits != all-1 || stored != 1 || corrupt != 1 {
		t.Fatalf("third boot: %d hits, %d stored, %d corrupt; want the changed chunk found and fetched again", hits, stored, corrupt)
	}
	if hits, stored, corrupt, _ = boot("fourth"); hits != all || stored != 0 || corrupt != 0 {
		t.Fatalf("fourth boot: %d hits, %d stored, %d corrupt; want the repaired cache whole", hits, stored, corrupt)
	}
}

// flipFirstRecord changes one byte of the content of the first record, as a
// failing disk or someone with the machine would.
func flipFirstRecord(t *testing.T, disk string) {
	t.Helper()
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr := make([]byte, 8)
	if _, err := f.ReadAt(hdr, chunkcache.BlockSize); err != nil || string(hdr[:4]) != "ZBCR" {
		t.Fatalf("no record at %d: %q %v", chunkcache.BlockSize, hdr, err)
	}
	size := binary.LittleEndian.Uint32(hdr[4:])
	at := int64(chunkcache.BlockSize) + 96 + int64(size/2)
	b := make([]byte, 1)
	f.ReadAt(b, at)
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}
