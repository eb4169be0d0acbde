package tunnel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// pkt is a WireGuard-looking datagram of n bytes (n ≥ 8) numbered i.
func pkt(i, n int) []byte {
	p := make([]byte, n, 65535)
	p[0] = 4
	binary.BigEndian.PutUint32(p[4:], uint32(i))
	for j := 8; j < n; j++ {
		p[j] = byte(i + j)
	}
	return p
}

func sizesOf(n int, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = pkt(i, size)
	}
	return out
}

// segments returns the datagrams of each message coalesce filled.
func segments(t *testing.T, msgs []ipv6.Message) [][]int {
	t.Helper()
	var out [][]int
	for _, m := range msgs {
		b := m.Buffers[0]
		size := gsoSizeOut(t, m.OOB)
		if size == 0 {
			out = append(out, []int{len(b)})
			continue
		}
		var segs []int
		for len(b) > 0 {
			n := min(size, len(b))
			segs = append(segs, n)
			b = b[n:]
		}
		out = append(out, segs)
	}
	return out
}

// gsoSizeOut reads the UDP_SEGMENT size of an outgoing control message.
func gsoSizeOut(t *testing.T, oob []byte) int {
	t.Helper()
	if len(oob) == 0 {
		return 0
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 || msgs[0].Header.Level != unix.SOL_UDP || msgs[0].Header.Type != unix.UDP_SEGMENT {
		t.Fatalf("bad control message %x: %v", oob, err)
	}
	return int(binary.NativeEndian.Uint16(msgs[0].Data))
}

func TestCoalesce(t *testing.T) {
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	mixed := func(sizes ...int) [][]byte {
		out := make([][]byte, len(sizes))
		for i, n := range sizes {
			out[i] = pkt(i, n)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		bufs [][]byte
		gso  int
		max  int
		want string
	}{
		{"one", mixed(100), maxSegmentSize, maxPayload4, "[[100]]"},
		{"same size", mixed(100, 100, 100), maxSegmentSize, maxPayload4, "[[100 100 100]]"},
		{"no gso", mixed(100, 100, 100), 0, maxPayload4, "[[100] [100] [100]]"},
		{"segment limit", mixed(100, 100, 200, 200, 150, 150), 150, maxPayload4, "[[100 100] [200] [200] [150 150]]"},
		{"short tail ends a run", mixed(100, 100, 60, 100, 100), maxSegmentSize, maxPayload4, "[[100 100 60] [100 100]]"},
		{"longer starts a run", mixed(100, 200, 200), maxSegmentSize, maxPayload4, "[[100] [200 200]]"},
		{"64 cap", sizesOf(130, 100), maxSegmentSize, maxPayload4, "[" + runs(64, 100) + " " + runs(64, 100) + " [100 100]]"},
		{"max payload", sizesOf(50, 1400), maxSegmentSize, 1400 * 46, "[" + runs(46, 1400) + " " + runs(4, 1400) + "]"},
		{"ipv4 limit", sizesOf(64, 1452), maxSegmentSize, maxPayload4, "[" + runs(45, 1452) + " " + runs(19, 1452) + "]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := newMessages(len(tc.bufs))
			orig := make([][]byte, len(tc.bufs))
			for i, b := range tc.bufs {
				orig[i] = bytes.Clone(b)
			}
			n := coalesce(msgs, tc.bufs, addr, tc.gso, tc.max)
			if got := fmt.Sprint(segments(t, msgs[:n])); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			// The messages carry the datagrams in order, and bufs are
			// unchanged.
			var all, want []byte
			for _, m := range msgs[:n] {
				all = append(all, m.Buffers[0]...)
				if m.Addr != addr {
					t.Fatal("address not set")
				}
			}
			for i, b := range tc.bufs {
				want = append(want, b...)
				if !bytes.Equal(b, orig[i]) {
					t.Fatalf("buf %d changed", i)
				}
			}
			if !bytes.Equal(all, want) {
				t.Fatal("payload differs")
			}
		})
	}
}

func runs(n, size int) string {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return fmt.Sprint(s)
}

func TestCoalesceNoRoom(t *testing.T) {
	// A first buffer without spare capacity cannot take the next one.
	bufs := [][]byte{bytes.Repeat([]byte{4}, 100), pkt(1, 100)}
	msgs := newMessages(2)
	if n := coalesce(msgs, bufs, nil, maxSegmentSize, maxPayload4); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
}

// groOOB is the control message the kernel adds to a coalesced read.
func groOOB(size uint16) []byte {
	b := appendGSO(make([]byte, 0, oobCap), size)
	(*unix.Cmsghdr)(unsafe.Pointer(&b[0])).Type = unix.UDP_GRO
	return b
}

func TestSplit(t *testing.T) {
	const n = 128
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	msgs := newMessages(n)
	for i := range msgs {
		msgs[i].Buffers[0] = bufs[i]
	}
	from1 := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}
	from2 := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 2}
	// Two reads into the last two messages: 64 datagrams of 1000 bytes
	// with a 300-byte tail, then one lone datagram (no GRO message).
	var want [][]byte
	m := &msgs[n-2]
	for i := 0; i < 64; i++ {
		size := 1000
		if i == 63 {
			size = 300
		}
		p := pkt(i, size)
		want = append(want, p)
		m.N += copy(bufs[n-2][m.N:], p)
	}
	m.OOB = groOOB(1000)
	m.NN, m.Addr = len(m.OOB), from1
	lone := pkt(99, 77)
	want = append(want, lone)
	msgs[n-1].N = copy(bufs[n-1], lone)
	msgs[n-1].Addr, msgs[n-1].NN = from2, 0

	got := split(msgs, n-2, 2)
	if got != 65 {
		t.Fatalf("split into %d, want 65", got)
	}
	for i := 0; i < got; i++ {
		if !bytes.Equal(bufs[i][:msgs[i].N], want[i]) {
			t.Fatalf("datagram %d: %d bytes, want %d", i, msgs[i].N, len(want[i]))
		}
		wantFrom := from1
		if i == 64 {
			wantFrom = from2
		}
		if msgs[i].Addr != wantFrom {
			t.Fatalf("datagram %d from %v", i, msgs[i].Addr)
		}
	}
}

func TestSplitOverflowDrops(t *testing.T) {
	// One message of 5 datagrams read into the last of 3 buffers: only 3
	// fit, the rest are dropped rather than overwriting anything.
	msgs := newMessages(3)
	bufs := make([][]byte, 3)
	for i := range bufs {
		bufs[i] = make([]byte, 1000)
		msgs[i].Buffers[0] = bufs[i]
	}
	m := &msgs[2]
	for i := 0; i < 5; i++ {
		m.N += copy(bufs[2][m.N:], pkt(i, 100))
	}
	m.OOB = groOOB(100)
	m.NN = len(m.OOB)
	if got := split(msgs, 2, 1); got != 3 {
		t.Fatalf("split into %d, want 3", got)
	}
	for i := 0; i < 3; i++ {
		if !bytes.Equal(bufs[i][:msgs[i].N], pkt(i, 100)) {
			t.Fatalf("datagram %d wrong", i)
		}
	}
}

// refusingConn fails every UDP_SEGMENT message whose segment size is
// above limit with err (EIO: a device without checksum offload; EINVAL:
// segments beyond the path MTU), and records what it sent.
type refusingConn struct {
	err   error
	limit int
	sent  [][]byte
}

func (c *refusingConn) ReadBatch([]ipv6.Message, int) (int, error) { return 0, nil }
func (c *refusingConn) WriteBatch(ms []ipv6.Message, _ int) (int, error) {
	for i, m := range ms {
		size := segmentSize(m.OOB)
		if size > c.limit {
			if i == 0 {
				return 0, os.NewSyscallError("sendmmsg", c.err.(unix.Errno))
			}
			return i, nil
		}
		if size == 0 {
			size = len(m.Buffers[0])
		}
		for b := m.Buffers[0]; len(b) > 0; b = b[min(size, len(b)):] {
			c.sent = append(c.sent, bytes.Clone(b[:min(size, len(b))]))
		}
		if i == 1 {
			return 2, nil // a short write
		}
	}
	return len(ms), nil
}

func TestGSORefused(t *testing.T) {
	to := netip.MustParseAddrPort("127.0.0.1:1")
	for _, tc := range []struct {
		name                 string
		err                  unix.Errno
		limit                int
		wantDirect, wantRely int32
	}{
		{"EIO turns GSO off", unix.EIO, 0, 0, 0},
		{"EINVAL lowers the segment limit", unix.EINVAL, 99, 99, maxSegmentSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBind(BindConfig{})
			b.gsoDirect.Store(maxSegmentSize)
			b.gsoRelay.Store(maxSegmentSize)
			// A coalesced run that is accepted (on EINVAL), one lone
			// datagram, then a refused run.
			var bufs [][]byte
			bufs = append(bufs, sizesOf(3, 90)...)
			bufs = append(bufs, pkt(3, 50))
			bufs = append(bufs, sizesOf(10, 100)...)
			orig := make([][]byte, len(bufs))
			for i, p := range bufs {
				orig[i] = bytes.Clone(p)
			}
			s := getSendState(len(bufs))
			defer putSendState(s)
			c := &refusingConn{err: tc.err, limit: tc.limit}
			if err := b.sendBatch(c, s, bufs, to, &b.gsoDirect); err != nil {
				t.Fatal(err)
			}
			if d, r := b.gsoDirect.Load(), b.gsoRelay.Load(); d != tc.wantDirect || r != tc.wantRely {
				t.Fatalf("limits direct %d relay %d, want %d %d", d, r, tc.wantDirect, tc.wantRely)
			}
			if len(c.sent) != len(bufs) {
				t.Fatalf("sent %d datagrams, want %d", len(c.sent), len(bufs))
			}
			for i := range orig {
				if !bytes.Equal(c.sent[i], orig[i]) {
					t.Fatalf("datagram %d differs", i)
				}
			}
			// Later sends do not try the refused size again.
			c.sent = nil
			if err := b.sendBatch(c, s, sizesOf(4, 100), to, &b.gsoDirect); err != nil || len(c.sent) != 4 {
				t.Fatalf("second send: %v, %d sent", err, len(c.sent))
			}
		})
	}
	t.Run("other errors are returned", func(t *testing.T) {
		b := NewBind(BindConfig{})
		b.gsoDirect.Store(maxSegmentSize)
		s := getSendState(4)
		defer putSendState(s)
		c := &refusingConn{err: unix.EPERM, limit: 0}
		if err := b.sendBatch(c, s, sizesOf(4, 100), to, &b.gsoDirect); !errors.Is(err, unix.EPERM) {
			t.Fatalf("got %v", err)
		}
	})
}

// appendSignaling is testSignaling with in-place relay frames.
type appendSignaling struct{ *testSignaling }

func (s appendSignaling) WrapTo(dst []byte, key [32]byte, payload []byte) []byte {
	dst = append(dst, 0xff, 'O', 'R')
	dst = append(dst, key[:]...)
	return append(dst, payload...)
}

// TestLoopbackBatch sends large batches through Send, direct and relayed,
// with a signaling frame in between, and checks that the receive function
// returns every WireGuard packet intact and in order, with UDP GSO and GRO
// on (loopback supports both).
func TestLoopbackBatch(t *testing.T) {
	for _, appender := range []bool{false, true} {
		t.Run(fmt.Sprint("appender=", appender), func(t *testing.T) {
			lo := netip.MustParseAddr("127.0.0.1")
			ts := newTestSignaling()
			var sig Signaling = ts
			if appender {
				sig = appendSignaling{ts}
			}
			rx := NewBind(BindConfig{Signaling: sig, ListenAddr: lo})
			fns, port, err := rx.Open(0)
			if err != nil {
				t.Fatal(err)
			}
			defer rx.Close()
			rxAddr := netip.AddrPortFrom(lo, port)
			tx := NewBind(BindConfig{Signaling: sig, ListenAddr: lo, Relay: rxAddr})
			if _, _, err := tx.Open(0); err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			if tx.gsoDirect.Load() != maxSegmentSize || tx.gsoRelay.Load() != maxSegmentSize {
				testenv.Unavailable(t, "no UDP_SEGMENT on this kernel")
			}
			var key wgkey.Key
			key[0] = 7
			direct, _ := tx.ParseEndpoint(rxAddr.String())
			relayed, _ := tx.ParseEndpoint(RelayEndpoint(key))

			var want [][]byte
			var wantRelayed []bool
			send := func(ep conn.Endpoint, bufs [][]byte) {
				t.Helper()
				for _, b := range bufs {
					want = append(want, bytes.Clone(b))
					wantRelayed = append(wantRelayed, ep == relayed)
				}
				if err := tx.Send(bufs, ep); err != nil {
					t.Fatal(err)
				}
			}
			n := 0
			batch := func(count, size, tail int) [][]byte {
				out := make([][]byte, count)
				for i := range out {
					s := size
					if i == count-1 {
						s = tail
					}
					out[i] = pkt(n, s)
					n++
				}
				return out
			}
			send(direct, batch(128, 1400, 1400))
			send(direct, batch(100, 1200, 333))
			if err := tx.SendTo([]byte("\xffOSG between"), rxAddr); err != nil {
				t.Fatal(err)
			}
			send(relayed, batch(128, 1300, 1300))
			send(direct, batch(3, 60, 60))
			send(relayed, batch(70, 900, 100))
			if tx.gsoDirect.Load() != maxSegmentSize || tx.gsoRelay.Load() != maxSegmentSize {
				t.Fatal("loopback refused GSO")
			}
			// Frames beyond a 1500-byte MTU (lo's MTU is 64 KiB, unless
			// the test runs in a namespace that lowers it) are fragmented.
			send(relayed, batch(40, 1600, 1600))
			t.Logf("relay GSO limit %d", tx.gsoRelay.Load())

			packets := make([][]byte, conn.IdealBatchSize)
			for i := range packets {
				packets[i] = make([]byte, 65535)
			}
			sizes := make([]int, len(packets))
			eps := make([]conn.Endpoint, len(packets))
			rx.udp.SetReadDeadline(time.Now().Add(10 * time.Second))
			var got [][]byte
			var gotRelayed []bool
			reads := 0
			for len(got) < len(want) {
				k, err := fns[0](packets, sizes, eps)
				if err != nil {
					t.Fatalf("after %d of %d packets: %v", len(got), len(want), err)
				}
				reads++
				for i := 0; i < k; i++ {
					if sizes[i] == 0 {
						continue
					}
					got = append(got, bytes.Clone(packets[i][:sizes[i]]))
					_, isRelay := eps[i].(*relayEndpoint)
					gotRelayed = append(gotRelayed, isRelay)
					if isRelay && eps[i].(*relayEndpoint).key != key {
						t.Fatalf("relay key %v", eps[i].(*relayEndpoint).key)
					}
					if !isRelay && eps[i].DstToString() != tx.udp.LocalAddr().String() {
						t.Fatalf("from %s", eps[i].DstToString())
					}
				}
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) || gotRelayed[i] != wantRelayed[i] {
					t.Fatalf("packet %d: got %d bytes (relayed %v), want %d bytes (relayed %v)",
						i, len(got[i]), gotRelayed[i], len(want[i]), wantRelayed[i])
				}
			}
			select {
			case s := <-ts.handled:
				if string(s.b) != "\xffOSG between" {
					t.Fatalf("handled %q", s.b)
				}
			default:
				t.Fatal("signaling frame not handled")
			}
			st := tx.Stats()
			if st.RelayTxPackets != 238 || st.RelayTxBytes != 128*1300+69*900+100+40*1600 {
				t.Fatalf("tx stats %+v", st)
			}
			st = rx.Stats()
			if st.RelayRxPackets != 238 || st.RelayRxBytes != 128*1300+69*900+100+40*1600 || st.SignalRxPackets != 1 {
				t.Fatalf("rx stats %+v", st)
			}
			t.Logf("%d packets in %d reads", len(got), reads)
		})
	}
}

// TestSendDoesNotAllocate checks that a batch costs no allocation, direct
// or relayed with a RelayAppender.
func TestSendDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are not stable under the race detector")
	}
	lo := netip.MustParseAddr("127.0.0.1")
	rx := NewBind(BindConfig{ListenAddr: lo})
	_, port, err := rx.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	to := netip.AddrPortFrom(lo, port)
	tx := NewBind(BindConfig{Signaling: appendSignaling{newTestSignaling()}, ListenAddr: lo, Relay: to})
	if _, _, err := tx.Open(0); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	direct, _ := tx.ParseEndpoint(to.String())
	relayed, _ := tx.ParseEndpoint(RelayEndpoint(wgkey.Key{1}))
	bufs := sizesOf(conn.IdealBatchSize, 1400)
	for _, ep := range []conn.Endpoint{direct, relayed} {
		if n := testing.AllocsPerRun(20, func() {
			if err := tx.Send(bufs, ep); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Send to %s: %v allocations per batch", ep.DstToString(), n)
		}
	}
}
