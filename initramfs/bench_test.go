package initramfs

import (
	"debug/elf"
	"io"
	"path/filepath"
	"testing"
)

// BenchmarkBuildInstalledKernel builds the default module set of the newest
// kernel installed on this machine, the figure that matters for `make demo`.
func BenchmarkBuildInstalledKernel(b *testing.B) {
	dirs, _ := filepath.Glob("/lib/modules/*/modules.dep")
	if len(dirs) == 0 {
		b.Skip("no kernel module tree under /lib/modules: install linux-image-amd64 to benchmark")
	}
	initP := filepath.Join(b.TempDir(), "init")
	writeELF(b, initP, elf.ET_EXEC, false)
	spec := Spec{Init: initP, KernelModules: filepath.Dir(dirs[len(dirs)-1])}
	var rep Report
	for b.Loop() {
		r, err := Build(spec, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		rep = r
	}
	b.ReportMetric(float64(rep.CompressedBytes), "zstd-bytes")
	b.ReportMetric(float64(rep.UncompressedBytes), "cpio-bytes")
	b.SetBytes(rep.UncompressedBytes)
}
