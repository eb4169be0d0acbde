//go:build unix

package cli

import (
	"os"
	"strings"
	"syscall"
)

// Reexec replaces the process with a new start of the same binary and
// arguments (syscall.Exec of os.Args, same environment): what `omni
// serve` does after a restart asked for through the management API has
// drained. The binary is the one at the path the process was started
// from, so an upgrade installed in its place is what starts. Every file
// the process opened is closed on exec (Go opens them close-on-exec).
func Reexec() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	exe = strings.TrimSuffix(exe, " (deleted)") // replaced on disk since the start
	return syscall.Exec(exe, os.Args, os.Environ())
}
