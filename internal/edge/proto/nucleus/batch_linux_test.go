//go:build linux

package nucleus

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/omniedge/omni/internal/platform/testenv"
)

func listenLoopback(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestGROSegmentCmsg(t *testing.T) {
	oob := appendSegmentCmsg(nil, 1234)
	h, data, _, err := unix.ParseOneSocketControlMessage(oob)
	if err != nil || h.Level != unix.SOL_UDP || h.Type != unix.UDP_SEGMENT || len(data) < 2 {
		t.Fatalf("segment cmsg %+v %x %v", h, data, err)
	}
	// A UDP_GRO cmsg has the same layout; another cmsg before it is skipped.
	gro := appendSegmentCmsg(nil, 1234)
	(*unix.Cmsghdr)(unsafePointer(gro)).Type = unix.UDP_GRO
	other := appendSegmentCmsg(nil, 99)
	(*unix.Cmsghdr)(unsafePointer(other)).Level = unix.SOL_IP
	if got := groSegment(append(other, gro...)); got != 1234 {
		t.Errorf("groSegment = %d, want 1234", got)
	}
	if got := groSegment(other); got != 0 {
		t.Errorf("groSegment without UDP_GRO = %d", got)
	}
	if got := groSegment(nil); got != 0 {
		t.Errorf("groSegment(nil) = %d", got)
	}
}

// TestGSOWriteGROReadRoundTrip sends a train of same-size frames (and a
// shorter last one) through mmsgConn.write, which coalesces them with
// UDP_SEGMENT, to an mmsgConn that reads with UDP_GRO: every frame
// arrives intact and in order, whether the kernel kept the train
// together or not.
func TestGSOWriteGROReadRoundTrip(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rx, tx := listenLoopback(t), listenLoopback(t)
	r, w := newMmsgConn(rx, log).(*mmsgConn), newMmsgConn(tx, log).(*mmsgConn)
	t.Logf("gro %v, gso up to %d", r.gro, w.maxSeg)
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	var out []outbound
	for i := range 20 {
		n := 300
		if i == 19 {
			n = 120
		}
		out = append(out, outbound{b: bytes.Repeat([]byte{byte(i)}, n), to: to})
	}
	w.write(out)
	var got []packet
	reads := 0
	_ = rx.SetReadDeadline(time.Now().Add(3 * time.Second))
	for len(got) < len(out) {
		var err error
		if got, err = r.read(got); err != nil {
			t.Fatalf("after %d frames: %v", len(got), err)
		}
		reads++
	}
	t.Logf("%d frames in %d reads", len(got), reads)
	if r.gro && w.maxSeg > 0 && reads == len(out) {
		t.Error("GSO and GRO on, yet every frame came in its own read")
	}
	for i, p := range got {
		if !bytes.Equal(p.b, out[i].b) || p.from != tx.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Fatalf("frame %d: %d bytes of %x from %v", i, len(p.b), p.b[:1], p.from)
		}
	}
	if len(got) != len(out) {
		t.Fatalf("%d frames, want %d", len(got), len(out))
	}
}

func TestGSORefusedLowersLimit(t *testing.T) {
	c := &mmsgConn{log: slog.New(slog.NewTextHandler(io.Discard, nil)), maxSeg: MaxFrame}
	wrap := func(e error) error { return &net.OpError{Op: "write", Err: os.NewSyscallError("sendmmsg", e)} }
	if c.gsoRefused(wrap(unix.ECONNREFUSED), 1500) || c.maxSeg != MaxFrame {
		t.Fatal("an unrelated error changed the GSO limit")
	}
	if !c.gsoRefused(wrap(unix.EINVAL), 1590) || c.maxSeg != 1589 {
		t.Fatalf("EINVAL: limit %d", c.maxSeg)
	}
	if !c.gsoRefused(wrap(unix.EMSGSIZE), 1400) || c.maxSeg != 1399 {
		t.Fatalf("EMSGSIZE: limit %d", c.maxSeg)
	}
	if !c.gsoRefused(wrap(unix.EINVAL), 300) || c.maxSeg != 0 {
		t.Fatalf("EINVAL for small segments: limit %d", c.maxSeg)
	}
	c.maxSeg = MaxFrame
	if !c.gsoRefused(fmt.Errorf("x: %w", wrap(unix.EIO)), 200) || c.maxSeg != 0 {
		t.Fatalf("EIO: limit %d", c.maxSeg)
	}
}

// TestGSORefusedResends makes the kernel refuse UDP_SEGMENT (EINVAL, as
// for segments beyond the path MTU; here with SO_NO_CHECK): the refused
// train is sent again frame by frame, and the size is remembered.
func TestGSORefusedResends(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rx, tx := listenLoopback(t), listenLoopback(t)
	w := newMmsgConn(tx, log).(*mmsgConn)
	if w.maxSeg == 0 {
		testenv.Unavailable(t, "no UDP GSO")
	}
	rc, _ := tx.SyscallConn()
	_ = rc.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1); err != nil {
			testenv.Unavailable(t, "%v", err)
		}
	})
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	var out []outbound
	out = append(out, outbound{b: []byte("alone"), to: to})
	for i := range 5 {
		out = append(out, outbound{b: bytes.Repeat([]byte{byte(i)}, 1000), to: to})
	}
	w.write(out)
	if w.maxSeg != 999 {
		t.Errorf("GSO limit %d after a refused 1000-byte train, want 999", w.maxSeg)
	}
	buf := make([]byte, 2000)
	_ = rx.SetReadDeadline(time.Now().Add(3 * time.Second))
	for i, o := range out {
		n, err := rx.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], o.b) {
			t.Fatalf("datagram %d: %d bytes, %v", i, n, err)
		}
	}
}

func TestWriteWithoutGSO(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rx, tx := listenLoopback(t), listenLoopback(t)
	w := newMmsgConn(tx, log).(*mmsgConn)
	w.maxSeg = 0
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	out := []outbound{{b: []byte("one"), to: to}, {b: []byte("two"), to: to}, {b: []byte("three"), to: to}}
	w.write(out)
	buf := make([]byte, 100)
	_ = rx.SetReadDeadline(time.Now().Add(3 * time.Second))
	for _, o := range out {
		n, err := rx.Read(buf)
		if err != nil || string(buf[:n]) != string(o.b) {
			t.Fatalf("got %q %v, want %q", buf[:n], err, o.b)
		}
	}
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }

// TestDualStackSocket reads and writes IPv4 peers on an IPv6 wildcard
// socket (what `omni serve` listens on): addresses come unmapped and
// IPv4 destinations are reachable.
func TestDualStackSocket(t *testing.T) {
	ds, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	defer ds.Close()
	if ds.LocalAddr().(*net.UDPAddr).IP.To4() != nil {
		testenv.Unavailable(t, "no dual-stack socket")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := newMmsgConn(ds, log).(*mmsgConn)
	peer := listenLoopback(t)
	port := ds.LocalAddr().(*net.UDPAddr).Port
	if _, err := peer.WriteToUDP([]byte("hello"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err != nil {
		t.Fatal(err)
	}
	_ = ds.SetReadDeadline(time.Now().Add(3 * time.Second))
	got, err := c.read(nil)
	if err != nil || len(got) != 1 || string(got[0].b) != "hello" {
		t.Fatalf("read %v %v", got, err)
	}
	if want := peer.LocalAddr().(*net.UDPAddr).AddrPort(); got[0].from != want {
		t.Fatalf("from %v, want %v", got[0].from, want)
	}
	c.write([]outbound{{b: []byte("a"), to: got[0].from}, {b: []byte("b"), to: got[0].from}, {b: []byte("c"), to: got[0].from}})
	buf := make([]byte, 10)
	_ = peer.SetReadDeadline(time.Now().Add(3 * time.Second))
	for _, want := range []string{"a", "b", "c"} {
		n, err := peer.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q %v, want %q", buf[:n], err, want)
		}
	}
}

// TestGSOBeyondMTU sends a train of full-size relay frames (a 1452-byte
// WireGuard packet plus the RELAY overhead) on a path whose MTU is lower:
// the kernel refuses to coalesce them (it fragments plain datagrams, not
// GSO segments), so they go frame by frame, all of them, and the size is
// remembered.
func TestGSOBeyondMTU(t *testing.T) {
	rx, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	defer rx.Close()
	tx, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	defer tx.Close()
	rc, _ := tx.SyscallConn()
	_ = rc.Control(func(fd uintptr) {
		if err := unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU, 1280); err != nil {
			testenv.Unavailable(t, "%v", err)
		}
	})
	w := newMmsgConn(tx, slog.New(slog.NewTextHandler(io.Discard, nil))).(*mmsgConn)
	if w.maxSeg == 0 {
		testenv.Unavailable(t, "no UDP GSO")
	}
	size := 1452 + RelayOverhead + 40 // above the 1280-byte path MTU set below
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	var out []outbound
	for i := range 10 {
		out = append(out, outbound{b: bytes.Repeat([]byte{byte(i)}, size), to: to})
	}
	w.write(out)
	if w.maxSeg >= size {
		t.Errorf("GSO limit %d, want below %d", w.maxSeg, size)
	}
	buf := make([]byte, 4000)
	_ = rx.SetReadDeadline(time.Now().Add(3 * time.Second))
	for i := range out {
		n, err := rx.Read(buf)
		if err != nil || n != size || buf[0] != byte(i) {
			t.Fatalf("datagram %d: %d bytes, %v", i, n, err)
		}
	}
}
