// Command helper is started by handoff's chroot test: it prints what it
// sees so the test can check the chroot, the session and the environment.
package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	marker, err := os.ReadFile("/marker")
	if err != nil {
		fmt.Println("marker error:", err)
	}
	wd, _ := os.Getwd()
	sid, _, _ := syscall.RawSyscall(syscall.SYS_GETSID, 0, 0, 0)
	fmt.Printf("marker=%s\n", marker)
	fmt.Printf("wd=%s\n", wd)
	fmt.Printf("setsid=%v\n", int(sid) == os.Getpid())
	fmt.Printf("argv0=%s\n", os.Args[0])
	fmt.Printf("args=%q\n", os.Args[1:])
	for _, kv := range os.Environ() {
		fmt.Printf("env=%s\n", kv)
	}
}
