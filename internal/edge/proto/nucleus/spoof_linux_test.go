//go:build linux

package nucleus

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"

	"github.com/omniedge/omni/internal/platform/testenv"
)

// rawSpoofer sends IPv4 UDP datagrams with a forged source address through
// a raw socket (root).
type rawSpoofer struct{ fd int }

func newRawSpoofer(t *testing.T) *rawSpoofer {
	t.Helper()
	testenv.Root(t)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		t.Fatalf("raw socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	return &rawSpoofer{fd: fd}
}

// send sends payload from src to dst (UDP checksum 0: none).
func (r *rawSpoofer) send(t *testing.T, src, dst netip.AddrPort, payload []byte) {
	t.Helper()
	pkt := make([]byte, 28+len(payload))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[8], pkt[9] = 64, syscall.IPPROTO_UDP
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(pkt[12:16], s4[:])
	copy(pkt[16:20], d4[:])
	binary.BigEndian.PutUint16(pkt[20:], src.Port())
	binary.BigEndian.PutUint16(pkt[22:], dst.Port())
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
	copy(pkt[28:], payload)
	if err := syscall.Sendto(r.fd, pkt, 0, &syscall.SockaddrInet4{Port: int(dst.Port()), Addr: d4}); err != nil {
		t.Fatalf("spoofed send: %v", err)
	}
}
