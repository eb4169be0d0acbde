package nucleus

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

// fanoutPeers is the size of the network the fan-out benchmark joins.
const fanoutPeers = 1000

// fanoutDevice is one simulated device: its key pair and binding.
type fanoutDevice struct {
	priv *ecdh.PrivateKey
	b    Binding
}

func fanoutDevices(b *testing.B, n int) []fanoutDevice {
	b.Helper()
	out := make([]fanoutDevice, n)
	for i := range out {
		priv, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = fanoutDevice{priv: priv, b: Binding{Key: PublicKeyOf(priv),
			IP4: netip.AddrFrom4([4]byte{100, 66, byte((i + 1) >> 8), byte(i + 1)}),
			IP6: netip.AddrFrom16([16]byte{0xfd, 0x10, 0, 0x66, 14: byte((i + 1) >> 8), 15: byte(i + 1)})}}
	}
	return out
}

// fanoutOptions lifts the per-source budgets: every simulated device sends
// from 127.0.0.1, which the nucleus counts as one source.
func fanoutOptions(dir Directory) Options {
	return testOptions(Options{Directory: dir, MaxPeers: 2 * fanoutPeers, SourceRegisters: 1 << 30, SourceLookups: 1 << 30,
		PeerKeepalives: 1 << 30, UnverifiedBytes: 1 << 30})
}

// fanoutClient is a device on its own loopback socket.
type fanoutClient struct {
	conn *net.UDPConn
	c    *Client
	// seen is when the peer set last changed as watched (see watch).
	mu      sync.Mutex
	watched wgkey.Key
	present bool
	at      time.Time
}

func newFanoutClient(b *testing.B, ctx context.Context, server netip.AddrPort, d fanoutDevice) *fanoutClient {
	b.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	_ = conn.SetReadBuffer(1 << 20)
	fc := &fanoutClient{conn: conn}
	fc.c, err = NewClient(ClientConfig{NetworkID: netA, Secret: secrets[netA], PrivateKey: d.priv, ServerKey: testServerKey,
		Server: server, IP4: d.b.IP4, IP6: d.b.IP6,
		Send: func(fb []byte, to netip.AddrPort) error { _, err := conn.WriteToUDPAddrPort(fb, to); return err }})
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		buf := make([]byte, MaxFrame)
		for ctx.Err() == nil {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			fc.c.Handle(buf[:n], from)
		}
	}()
	return fc
}

// watch starts recording when key k enters (or leaves) the peer set. The
// callback is set only now: during the set-up, 1,000 clients each
// handed the full set on every one of 1,000 joins would cost the test
// process, not the nucleus, most of the time.
func (fc *fanoutClient) watch(k wgkey.Key, present bool) {
	fc.mu.Lock()
	fc.watched, fc.present, fc.at = k, !present, time.Time{}
	fc.mu.Unlock()
	fc.c.OnPeers(func(ps []Peer) {
		has := slices.ContainsFunc(ps, func(p Peer) bool { return p.PublicKey == k })
		fc.mu.Lock()
		defer fc.mu.Unlock()
		if has != fc.present {
			fc.present, fc.at = has, time.Now()
		}
	})
}

// state reports whether the watched key is in the peer set and since when.
func (fc *fanoutClient) state() (bool, time.Time) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.present, fc.at
}

// BenchmarkJoinFanout measures how long a join in a network of 1,000
// registered peers takes to reach every one of them through a nucleus on
// loopback (one socket per simulated device): per iteration a device
// registers, and the time until the last peer's client reported it is
// recorded; then it leaves. Reported: the slowest (fanout-ms) and the
// median peer (p50-ms) of the last join.
//
//	go test -run '^$' -bench JoinFanout -benchtime 5x ./internal/edge/proto/nucleus
func BenchmarkJoinFanout(b *testing.B) {
	devs := fanoutDevices(b, fanoutPeers+1)
	dir := newTestDir()
	dir.members[netA] = nil
	for _, d := range devs {
		dir.members[netA] = append(dir.members[netA], d.b)
	}
	srv, err := NewServer(fanoutOptions(dir))
	if err != nil {
		b.Fatal(err)
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	_ = pc.SetReadBuffer(8 << 20)
	_ = pc.SetWriteBuffer(8 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, pc) }()
	defer func() { cancel(); <-done }()
	at := pc.LocalAddr().(*net.UDPAddr).AddrPort()

	peers := make([]*fanoutClient, fanoutPeers)
	for i := range peers {
		peers[i] = newFanoutClient(b, ctx, at, devs[i])
		go func() { _ = peers[i].c.Run(ctx) }() // registers (again when lost) and keeps alive
		if i%100 == 99 {
			waitPeers(b, srv, peers[:i+1])
		}
	}
	waitPeers(b, srv, peers)
	joiner := newFanoutClient(b, ctx, at, devs[fanoutPeers])
	var last []time.Duration
	b.ResetTimer()
	for range b.N {
		for _, p := range peers {
			p.watch(joiner.c.cfg.PublicKey, true)
		}
		start := time.Now()
		if err := joiner.c.Register(); err != nil {
			b.Fatal(err)
		}
		last = waitAll(b, peers, start, true)
		b.StopTimer()
		for _, p := range peers {
			p.watch(joiner.c.cfg.PublicKey, false)
		}
		if err := joiner.c.Leave(); err != nil {
			b.Fatal(err)
		}
		waitAll(b, peers, time.Now(), false)
		b.StartTimer()
	}
	slices.Sort(last)
	b.ReportMetric(float64(last[len(last)-1].Microseconds())/1000, "fanout-ms")
	b.ReportMetric(float64(last[len(last)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(0, "ns/op")
}

// waitPeers waits until every client is registered (their session loops
// register again what a loaded loopback lost).
func waitPeers(b *testing.B, srv *Server, cs []*fanoutClient) {
	b.Helper()
	deadline := time.Now().Add(180 * time.Second)
	for ; ; time.Sleep(20 * time.Millisecond) {
		in := map[wgkey.Key]bool{}
		for _, p := range srv.Peers(netA) {
			in[p.PublicKey] = true
		}
		missing := 0
		for _, c := range cs {
			if !in[c.c.cfg.PublicKey] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d peers not registered; nucleus stats %+v", missing, len(cs), srv.Stats())
		}
	}
}

// waitAll waits (at most 10 s) until every peer reports the watched key
// present (or absent) and returns how long each took from start.
func waitAll(b *testing.B, peers []*fanoutClient, start time.Time, present bool) []time.Duration {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var took []time.Duration
		missing := 0
		for _, p := range peers {
			if has, at := p.state(); has == present && !at.IsZero() {
				took = append(took, at.Sub(start))
			} else {
				missing++
			}
		}
		if missing == 0 {
			return took
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d peers did not see the change within 10 s", missing, len(peers))
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkPeerMemory measures the nucleus's heap per registered peer: it
// registers 1,000 devices straight through the packet handler (no
// sockets, no clients in the process) and reports the heap grown per
// peer, and the work per KEEPALIVE of a registered peer is
// BenchmarkHandleRequest/keepalive.
//
//	go test -run '^$' -bench PeerMemory -benchtime 3x ./internal/edge/proto/nucleus
func BenchmarkPeerMemory(b *testing.B) {
	devs := fanoutDevices(b, fanoutPeers)
	dir := newTestDir()
	dir.members[netA] = nil
	for _, d := range devs {
		dir.members[netA] = append(dir.members[netA], d.b)
	}
	frames := make([][]byte, len(devs))
	froms := make([]netip.AddrPort, len(devs))
	var perPeer float64
	for range b.N {
		b.StopTimer()
		srv, err := NewServer(fanoutOptions(dir))
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		srv.load(ctx, netA)
		for i, d := range devs {
			froms[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 250)}), uint16(10000+i))
			var nonce [nonceSize]byte
			rand.Read(nonce[:])
			frames[i] = registerFrameWith(srv, d, time.Now(), nonce, froms[i])
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		var st batchState
		for i := range devs {
			srv.handleBatch(ctx, &st, []packet{{b: frames[i], from: froms[i]}})
		}
		b.StopTimer()
		if n := len(srv.Peers(netA)); n != len(devs) {
			b.Fatalf("%d of %d peers registered", n, len(devs))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perPeer = float64(after.HeapAlloc-before.HeapAlloc) / float64(len(devs))
		runtime.KeepAlive(srv)
		b.StartTimer()
	}
	b.ReportMetric(perPeer, "bytes/peer")
}

// registerFrameWith is registerFrame for a fanout device.
func registerFrameWith(srv *Server, d fanoutDevice, at time.Time, nonce [nonceSize]byte, from netip.AddrPort) []byte {
	c := srv.cookies.make(from)
	body := append(registerMsg{Key: d.b.Key, IP4: d.b.IP4, IP6: d.b.IP6}.encode(), c[:]...)
	shared, err := sharedSecret(d.priv, testServerKey)
	if err != nil {
		panic(err)
	}
	key := DeviceFrameKey(shared, DeriveKey(secrets[netA]), d.b.Key, testServerKey)
	return sealNonce(key, TypeRegister, netA, at.UnixMilli(), nonce, body)
}
