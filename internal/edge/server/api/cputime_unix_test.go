//go:build unix

package api_test

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) the process has used: a
// benchmark's cost that a busy machine does not inflate the way it does
// wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
