package boottime

// rdtsc reads the time stamp counter, which x86 CPUs count from reset.
func rdtsc() uint64

const haveTSC = true
