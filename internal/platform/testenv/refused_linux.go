//go:build linux

package testenv

import (
	"fmt"
	"syscall"
	"testing"
)

// RefusedAddr returns a loopback host:port that refuses connections for
// the rest of the test: a TCP socket is bound to it and never listens, so
// the kernel answers every connection attempt with a reset, and no other
// test or process can take the port meanwhile (a listener closed to free
// its port gives no such promise: another test may bind it and answer).
func RefusedAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("testenv: socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("testenv: bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("testenv: getsockname: %v", err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
