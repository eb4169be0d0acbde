//go:build !linux

package testenv

import (
	"net"
	"testing"
)

// RefusedAddr returns a loopback host:port that refused connections when
// it was chosen: a listener's port, closed. Elsewhere than Linux nothing
// holds the port, so another process may take it meanwhile.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
