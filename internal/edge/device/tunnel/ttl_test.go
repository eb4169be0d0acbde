package tunnel

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// SendToTTL sets the TTL of one datagram, from an IPv4 socket and from a
// dual-stack one sending to an IPv4 address.
func TestSendToTTL(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("per-datagram TTL is set on Linux only")
	}
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	pc := ipv4.NewPacketConn(rc)
	if err := pc.SetControlMessage(ipv4.FlagTTL, true); err != nil {
		t.Fatal(err)
	}
	to := rc.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, listen := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), {}} {
		b := NewBind(BindConfig{ListenAddr: listen})
		if _, _, err := b.Open(0); err != nil {
			t.Fatal(err)
		}
		for _, ttl := range []int{2, 9} {
			if err := b.SendToTTL([]byte("opener"), to, ttl); err != nil {
				t.Fatalf("listen %v ttl %d: %v", listen, ttl, err)
			}
			rc.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			n, cm, _, err := pc.ReadFrom(buf)
			if err != nil || string(buf[:n]) != "opener" || cm == nil || cm.TTL != ttl {
				t.Fatalf("listen %v: got %q ttl %+v err %v, want ttl %d", listen, buf[:n], cm, err, ttl)
			}
		}
		b.Close()
	}
}
