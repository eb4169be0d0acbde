//go:build !linux

package nucleus

import (
	"net/netip"
	"testing"
)

type rawSpoofer struct{}

func newRawSpoofer(t *testing.T) *rawSpoofer {
	t.Skip("forging source addresses needs a Linux raw socket")
	return nil
}

func (*rawSpoofer) send(*testing.T, netip.AddrPort, netip.AddrPort, []byte) {}
