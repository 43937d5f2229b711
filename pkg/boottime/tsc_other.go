//go:build !amd64

package boottime

func rdtsc() uint64 { return 0 }

// haveTSC: only amd64 reads a counter that runs from reset.
const haveTSC = false
