package nucleus

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/platform/clock"
)

// benchPeer is a device of the relay benchmark: a loopback socket and a
// Client whose signaling goes straight to the socket.
type benchPeer struct {
	conn *net.UDPConn
	c    *Client
	key  wgkey.Key
}

func newBenchPeer(b *testing.B, server netip.AddrPort, id byte) *benchPeer {
	b.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	p := &benchPeer{conn: conn, key: testKey(id)}
	p.c, err = NewClient(ClientConfig{
		NetworkID: netA, Secret: secrets[netA], PrivateKey: testPriv(id), ServerKey: testServerKey, Server: server,
		IP4: testBinding(id).IP4, IP6: testBinding(id).IP6,
		Send: func(fb []byte, to netip.AddrPort) error {
			_, err := conn.WriteToUDPAddrPort(fb, to)
			return err
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkRelay relays WireGuard-sized packets from A to B through a
// nucleus on loopback, with at most a window of frames in flight, and
// reports relayed frames per second. Allocations count the whole process
// (nucleus, sender and receiver) per relayed frame.
func BenchmarkRelay(b *testing.B) {
	for _, size := range []int{1452, 128} {
		b.Run(map[int]string{1452: "full", 128: "small"}[size], func(b *testing.B) { benchRelay(b, size) })
	}
}

func benchRelay(b *testing.B, size int) {
	srv, err := NewServer(testOptions(Options{Directory: newTestDir()}))
	if err != nil {
		b.Fatal(err)
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	_ = pc.SetReadBuffer(4 << 20)
	_ = pc.SetWriteBuffer(4 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, pc) }()
	defer func() { cancel(); <-done }()
	at := pc.LocalAddr().(*net.UDPAddr).AddrPort()

	a, bb := newBenchPeer(b, at, 1), newBenchPeer(b, at, 2)
	for _, p := range []*benchPeer{a, bb} {
		go func() { // the COOKIE, then the acknowledgement and the peer list
			buf := make([]byte, MaxFrame)
			for range 3 {
				_ = p.conn.SetReadDeadline(time.Now().Add(time.Second))
				n, from, err := p.conn.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				p.c.Handle(buf[:n], from)
			}
			_ = p.conn.SetReadDeadline(time.Time{})
		}()
		if err := p.c.Register(); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(srv.Peers(netA)) < 2 {
		if time.Now().After(deadline) {
			b.Fatal("peers did not register")
		}
		time.Sleep(time.Millisecond)
	}
	learn(a.c, relayIDOf(b, srv, netA, a.key), map[wgkey.Key]uint32{bb.key: relayIDOf(b, srv, netA, bb.key)})

	// The receiver counts relayed frames; control frames (acks, peer
	// lists) are skipped.
	var got atomic.Int64
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan struct{})
	go func() {
		defer close(rdone)
		rc := ipv4.NewPacketConn(bb.conn)
		ms := make([]ipv4.Message, 64)
		for i := range ms {
			ms[i].Buffers = [][]byte{make([]byte, MaxFrame+1)}
		}
		for rctx.Err() == nil {
			_ = bb.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := rc.ReadBatch(ms, 0)
			if err != nil {
				continue
			}
			k := 0
			for _, m := range ms[:n] {
				if IsRelay(m.Buffers[0][:m.N]) {
					k++
				}
			}
			got.Add(int64(k))
		}
	}()
	defer func() { rcancel(); <-rdone }()

	frame := a.c.WrapRelay(bb.key, make([]byte, size))
	const window = 512
	const burst = 32
	wc := ipv4.NewPacketConn(a.conn)
	ms := make([]ipv4.Message, burst)
	for i := range ms {
		ms[i] = ipv4.Message{Buffers: [][]byte{frame}, Addr: net.UDPAddrFromAddrPort(at)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var sent, lost int64
	lastProgress, lastGot := time.Now(), int64(0)
	for sent < int64(b.N) {
		g := got.Load()
		if g != lastGot {
			lastGot, lastProgress = g, time.Now()
		}
		inflight := sent - g - lost
		if inflight+burst > window {
			if time.Since(lastProgress) > 100*time.Millisecond { // dropped on the way
				lost += inflight
				lastProgress = time.Now()
			}
			time.Sleep(20 * time.Microsecond)
			continue
		}
		k := min(int64(burst), int64(b.N)-sent)
		n, err := wc.WriteBatch(ms[:k], 0)
		if err != nil {
			b.Fatal(err)
		}
		sent += int64(n)
	}
	for got.Load()+lost < sent && time.Since(lastProgress) < 200*time.Millisecond {
		if g := got.Load(); g != lastGot {
			lastGot, lastProgress = g, time.Now()
		}
		time.Sleep(50 * time.Microsecond)
	}
	el := time.Since(start)
	b.StopTimer()
	g := got.Load()
	b.ReportMetric(float64(g)/el.Seconds(), "frames/s")
	b.ReportMetric(float64(sent-g)/float64(sent)*100, "%lost")
}

// BenchmarkHandleRelay measures the nucleus's own work per relayed frame
// (authentication, routing, counters), without sockets, in batches of 64.
func BenchmarkHandleRelay(b *testing.B) {
	srv, err := NewServer(testOptions(Options{Directory: newTestDir()}))
	if err != nil {
		b.Fatal(err)
	}
	key := DeriveKey(secrets[netA])
	aKey, bKey := testKey(1), testKey(2)
	aAddr, bAddr := netip.MustParseAddrPort("192.0.2.1:1111"), netip.MustParseAddrPort("198.51.100.2:2222")
	var st batchState
	ctx := context.Background()
	srv.load(ctx, netA)
	for i, r := range []struct {
		k    wgkey.Key
		from netip.AddrPort
	}{{aKey, aAddr}, {bKey, bAddr}} {
		f := registerFrame(srv, netA, time.Now(), [nonceSize]byte{byte(i + 1)}, r.k, r.from)
		srv.handleBatch(ctx, &st, []packet{{b: f, from: r.from}})
	}
	aID, bID := relayIDOf(b, srv, netA, aKey), relayIDOf(b, srv, netA, bKey)
	pkts := make([]packet, 64)
	for i := range pkts {
		pkts[i] = packet{b: relayFrameFor(key, aID, bID, time.Now(), make([]byte, 1452)), from: aAddr}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(pkts) {
		if out := srv.handleBatch(ctx, &st, pkts[:min(len(pkts), b.N-i)]); len(out) == 0 {
			b.Fatal("nothing relayed")
		}
	}
}

// BenchmarkHandleRequest measures the nucleus's work per KEEPALIVE and
// per REGISTER of a registered device (authentication, replay and
// membership checks, the answers), without sockets; the frames are built
// outside the timed part.
func BenchmarkHandleRequest(b *testing.B) {
	for _, typ := range []byte{TypeKeepalive, TypeRegister} {
		b.Run(map[byte]string{TypeKeepalive: "keepalive", TypeRegister: "register"}[typ], func(b *testing.B) { benchRequest(b, typ) })
	}
}

func benchRequest(b *testing.B, typ byte) {
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	srv, err := NewServer(testOptions(Options{Directory: newTestDir(), Clock: clk, SourceRegisters: 1 << 30, PeerKeepalives: 1 << 30}))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	srv.load(ctx, netA)
	aKey, bKey := testKey(1), testKey(2)
	aAddr, bAddr := netip.MustParseAddrPort("192.0.2.1:1111"), netip.MustParseAddrPort("198.51.100.2:2222")
	var st batchState
	for i, r := range []struct {
		k    wgkey.Key
		from netip.AddrPort
	}{{aKey, aAddr}, {bKey, bAddr}} {
		f := registerFrame(srv, netA, clk.Now(), [nonceSize]byte{byte(i + 1)}, r.k, r.from)
		srv.handleBatch(ctx, &st, []packet{{b: f, from: r.from}})
	}
	if len(srv.Peers(netA)) != 2 {
		b.Fatal("peers did not register")
	}
	srv.mu.Lock()
	version := srv.networks[netA].version
	srv.mu.Unlock()
	body := keepaliveMsg{Key: aKey, Version: version}.encode()
	if typ == TypeRegister {
		bnd := testBinding(1)
		body = registerMsg{Key: aKey, IP4: bnd.IP4, IP6: bnd.IP6}.encode()
	}
	cookie := srv.cookies.make(aAddr)
	body = append(body, cookie[:]...)
	key := testDeviceKey(secrets[netA], aKey)
	frames := make([][]byte, 4096)
	pkts := make([]packet, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%len(frames) == 0 {
			b.StopTimer()
			srv.load(ctx, netA) // the fake clock runs a second per thousand frames: keep the answer fresh
			for j := range frames {
				clk.Advance(time.Millisecond)
				var nonce [nonceSize]byte
				rand.Read(nonce[:])
				frames[j] = sealNonce(key, typ, netA, clk.Now().UnixMilli(), nonce, body)
			}
			b.StartTimer()
		}
		pkts[0] = packet{b: frames[i%len(frames)], from: aAddr}
		if out := srv.handleBatch(ctx, &st, pkts); len(out) == 0 {
			b.Fatal("not answered")
		}
	}
}
