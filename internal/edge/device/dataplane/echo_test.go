package dataplane

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// ICMP echoes to this host's loopback addresses are answered by the
// kernel; an address nobody answers runs into the context's end.
func TestICMPEcho(t *testing.T) {
	ctx := context.Background()
	for _, a := range []string{"127.0.0.1", "::1"} {
		ip := netip.MustParseAddr(a)
		ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
		rtt, err := ICMP{}.Echo(ectx, ip, ip, 7)
		cancel()
		if err != nil && (errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "not permitted") ||
			strings.Contains(err.Error(), "cannot assign")) {
			t.Skipf("no ICMP socket here: %v", err)
		}
		if err != nil || rtt <= 0 || rtt > 2*time.Second {
			t.Fatalf("echo %s: %v %v", a, rtt, err)
		}
	}
	ectx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	// 127.0.0.1 to an address of TEST-NET-1: no reply (or no route).
	if _, err := (ICMP{}).Echo(ectx, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.1"), 1); err == nil {
		t.Fatal("an echo to 192.0.2.1 was answered")
	}
	if _, err := (ICMP{}).Echo(ctx, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"), 1); err == nil {
		t.Fatal("an echo across families was sent")
	}
}
