package nucleus

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

func TestSplitSegments(t *testing.T) {
	from := netip.MustParseAddrPort("192.0.2.1:4000")
	buf := make([]byte, 3*100+40)
	for i := range buf {
		buf[i] = byte(i / 100)
	}
	got := splitSegments(nil, buf, 100, from)
	if len(got) != 4 {
		t.Fatalf("%d segments, want 4", len(got))
	}
	for i, p := range got {
		want := 100
		if i == 3 {
			want = 40
		}
		if len(p.b) != want || p.from != from || p.b[0] != byte(i) || p.b[len(p.b)-1] != byte(i) {
			t.Errorf("segment %d: %d bytes %x..%x from %v", i, len(p.b), p.b[0], p.b[len(p.b)-1], p.from)
		}
		if cap(p.b) != len(p.b) {
			t.Errorf("segment %d can grow into the next one", i)
		}
	}
	// Exact multiple, no segmentation, a segment size beyond the read.
	if got := splitSegments(nil, buf[:300], 100, from); len(got) != 3 || len(got[2].b) != 100 {
		t.Errorf("exact multiple: %d segments", len(got))
	}
	for _, seg := range []int{0, 340, 1000} {
		if got := splitSegments(nil, buf, seg, from); len(got) != 1 || len(got[0].b) != len(buf) {
			t.Errorf("segment size %d: %d segments", seg, len(got))
		}
	}
	// Appends to what is there.
	if got := splitSegments(make([]packet, 2), buf, 100, from); len(got) != 6 {
		t.Errorf("appended %d, want 6", len(got))
	}
}

func TestPlanSends(t *testing.T) {
	a, b := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2")
	o := func(to netip.AddrPort, n int) outbound { return outbound{b: make([]byte, n), to: to} }
	many := make([]outbound, maxSegments+3)
	for i := range many {
		many[i] = o(a, 100)
	}
	big := make([]outbound, 50)
	for i := range big {
		big[i] = o(a, 1500)
	}
	for _, c := range []struct {
		name   string
		out    []outbound
		maxSeg int
		want   []sendGroup
	}{
		{"empty", nil, MaxFrame, nil},
		{"one", []outbound{o(a, 100)}, MaxFrame, []sendGroup{{0, 1, 0}}},
		{"same size, shorter last", []outbound{o(a, 100), o(a, 100), o(a, 60), o(a, 60)}, MaxFrame,
			[]sendGroup{{0, 3, 100}, {3, 4, 0}}},
		{"larger breaks", []outbound{o(a, 100), o(a, 200), o(a, 200)}, MaxFrame,
			[]sendGroup{{0, 1, 0}, {1, 3, 200}}},
		{"destination breaks", []outbound{o(a, 100), o(a, 100), o(b, 100), o(a, 100)}, MaxFrame,
			[]sendGroup{{0, 2, 100}, {2, 3, 0}, {3, 4, 0}}},
		{"no gso", []outbound{o(a, 100), o(a, 100)}, 0, []sendGroup{{0, 1, 0}, {1, 2, 0}}},
		{"above the refused size", []outbound{o(a, 1600), o(a, 1600), o(a, 100), o(a, 100)}, 1500,
			[]sendGroup{{0, 1, 0}, {1, 2, 0}, {2, 4, 100}}},
		{"segment count", many, MaxFrame, []sendGroup{{0, maxSegments, 100}, {maxSegments, maxSegments + 3, 100}}},
		{"byte budget", big, MaxFrame, []sendGroup{{0, maxSegmentBytes / 1500, 1500}, {maxSegmentBytes / 1500, 50, 1500}}},
	} {
		got := planSends(nil, c.out, c.maxSeg)
		if len(got) != len(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: %v, want %v", c.name, got, c.want)
				break
			}
		}
	}
}

// batchHarness drives handleBatch directly, without a socket.
type batchHarness struct {
	t      *testing.T
	srv    *Server
	clk    interface{ Now() time.Time }
	key    []byte
	st     batchState
	aAddr  netip.AddrPort
	bAddr  netip.AddrPort
	aKey   wgkey.Key
	bKey   wgkey.Key
	nonces byte
}

func newBatchHarness(t *testing.T) *batchHarness {
	h := newHarness(t) // for its clock and server; its socket is not used here
	bh := &batchHarness{t: t, srv: h.srv, clk: h.clk, key: DeriveKey(secrets[netA]),
		aAddr: netip.MustParseAddrPort("192.0.2.1:1111"), bAddr: netip.MustParseAddrPort("198.51.100.2:2222")}
	bh.aKey, bh.bKey = testKey(1), testKey(2)
	bh.srv.load(context.Background(), netA)
	for _, r := range []struct {
		k    wgkey.Key
		from netip.AddrPort
	}{{bh.aKey, bh.aAddr}, {bh.bKey, bh.bAddr}} {
		bh.nonces++
		f := registerFrame(bh.srv, netA, bh.clk.Now(), [nonceSize]byte{0xbb, bh.nonces}, r.k, r.from)
		bh.srv.handleBatch(context.Background(), &bh.st, []packet{{b: f, from: r.from}})
	}
	if len(bh.srv.Peers(netA)) != 2 {
		t.Fatalf("peers %v", bh.srv.Peers(netA))
	}
	return bh
}

// registerFrame is the REGISTER of test device k (with its bound
// addresses, signed with its frame key) from the address from, with that
// address's cookie.
func registerFrame(srv *Server, network string, at time.Time, nonce [nonceSize]byte, k wgkey.Key, from netip.AddrPort) []byte {
	b := testBinding(testID(k))
	c := srv.cookies.make(from)
	body := append(registerMsg{Key: k, IP4: b.IP4, IP6: b.IP6}.encode(), c[:]...)
	return sealNonce(testDeviceKey(secrets[network], k), TypeRegister, network, at.UnixMilli(), nonce, body)
}

// relayIDOf is the relay id srv gave peer k of network.
func relayIDOf(t testing.TB, srv *Server, network string, k wgkey.Key) uint32 {
	t.Helper()
	for _, p := range srv.Peers(network) {
		if p.PublicKey == k {
			return p.RelayID
		}
	}
	t.Fatalf("%v not registered in %s", k, network)
	return 0
}

// id is the relay id the nucleus gave a peer of network.
func (bh *batchHarness) id(network string, k wgkey.Key) uint32 {
	return relayIDOf(bh.t, bh.srv, network, k)
}

// relayFrameFor builds a RELAY frame tagged with key.
func relayFrameFor(key []byte, src, dst uint32, at time.Time, payload []byte) []byte {
	var m macer
	m.use(key)
	return appendRelayFrame(nil, &m, relayHeader{ts: relayTime(at), src: src, dst: dst}, payload)
}

func (bh *batchHarness) relay(from, to wgkey.Key, i int) []byte {
	payload := binary.BigEndian.AppendUint32([]byte("wg"), uint32(i))
	return relayFrameFor(bh.key, bh.id(netA, from), bh.id(netA, to), bh.clk.Now(), payload)
}

// learn gives a client the relay ids a REGISTER_ACK and the peer list
// would have given it.
func learn(c *Client, own uint32, peers map[wgkey.Key]uint32) {
	c.relayID.Store(own)
	c.mu.Lock()
	for k, id := range peers {
		c.peers[k] = Peer{PublicKey: k, RelayID: id}
	}
	c.list = nil
	c.publishRelaysLocked()
	c.mu.Unlock()
}

func TestHandleBatchRelays(t *testing.T) {
	bh := newBatchHarness(t)
	before := bh.srv.Stats()
	var pkts []packet
	var want [][]byte
	// C is registered in another network.
	cKey, cAddr := testKey(3), netip.MustParseAddrPort("203.0.113.3:3333")
	bh.srv.load(context.Background(), netB)
	reg := registerFrame(bh.srv, netB, bh.clk.Now(), [nonceSize]byte{0xcc}, cKey, cAddr)
	bh.srv.handleBatch(context.Background(), &bh.st, []packet{{b: reg, from: cAddr}})
	aID, bID, cID := bh.id(netA, bh.aKey), bh.id(netA, bh.bKey), bh.id(netB, cKey)
	before = bh.srv.Stats()
	unused := uint32(1)
	for unused == aID || unused == bID || unused == cID {
		unused++
	}
	for i := range 200 {
		f := bh.relay(bh.aKey, bh.bKey, i)
		pkts = append(pkts, packet{b: f, from: bh.aAddr})
		want = append(want, bytes.Clone(f))
		switch i {
		case 50: // tampered tag, tampered destination
			bad := bytes.Clone(f)
			bad[RelayOverhead-1] ^= 1
			bad2 := bytes.Clone(f)
			bad2[3] ^= 1 // the timestamp: still fresh, but not what was tagged
			pkts = append(pkts, packet{b: bad, from: bh.aAddr}, packet{b: bad2, from: bh.aAddr})
		case 80: // A's id from another address
			pkts = append(pkts, packet{b: bytes.Clone(f), from: netip.MustParseAddrPort("192.0.2.9:1111")})
		case 90: // stale
			pkts = append(pkts, packet{b: relayFrameFor(bh.key, aID, bID, bh.clk.Now().Add(-2*Window), []byte("old")), from: bh.aAddr})
		case 100: // tagged with another network's key, to a peer of another network, a malformed one, a WireGuard packet
			pkts = append(pkts,
				packet{b: relayFrameFor(DeriveKey(secrets[netB]), aID, bID, bh.clk.Now(), []byte("x")), from: bh.aAddr},
				packet{b: relayFrameFor(bh.key, aID, cID, bh.clk.Now(), []byte("x")), from: bh.aAddr},
				packet{b: relayFrameFor(bh.key, 0, bID, bh.clk.Now(), []byte("x")), from: bh.aAddr},
				packet{b: []byte{4, 0, 0, 0, 1, 2, 3}, from: bh.aAddr})
		case 150: // to an unregistered id, to itself
			pkts = append(pkts, packet{b: relayFrameFor(bh.key, aID, unused, bh.clk.Now(), []byte("x")), from: bh.aAddr},
				packet{b: relayFrameFor(bh.key, aID, aID, bh.clk.Now(), []byte("x")), from: bh.aAddr})
		}
	}
	out := bh.srv.handleBatch(context.Background(), &bh.st, pkts)
	if len(out) != 200 {
		t.Fatalf("%d frames out, want 200", len(out))
	}
	for i, o := range out {
		if o.to != bh.bAddr || !bytes.Equal(o.b, want[i]) {
			t.Fatalf("frame %d to %v differs", i, o.to)
		}
	}
	st := bh.srv.Stats()
	if d := st.RelayedPackets - before.RelayedPackets; d != 200 {
		t.Errorf("relayed %d, want 200", d)
	}
	if d := st.RelayedBytes - before.RelayedBytes; d != 200*6 {
		t.Errorf("relayed %d bytes, want %d", d, 200*6)
	}
	if d := st.Frames - before.Frames; d != 200 {
		t.Errorf("frames %d, want 200", d)
	}
	for reason, n := range map[string]uint64{DropAuth: 3, DropNotMember: 4, DropStale: 1, DropMalformed: 1, DropNotSignal: 1} {
		if st.Dropped[reason] != n {
			t.Errorf("dropped %s = %d, want %d", reason, st.Dropped[reason], n)
		}
	}
	// The frames the receiver gets unwrap as A's, for B.
	c, err := NewClient(testClient(ClientConfig{NetworkID: netA, Secret: secrets[netA], PublicKey: bh.bKey, Server: bh.aAddr, Clock: bh.srv.clk,
		Send: func([]byte, netip.AddrPort) error { return nil }}))
	if err != nil {
		t.Fatal(err)
	}
	learn(c, bID, map[wgkey.Key]uint32{bh.aKey: aID})
	src, pkt, ok := c.UnwrapRelay(out[7].b)
	if !ok || src != bh.aKey || !bytes.Equal(pkt, binary.BigEndian.AppendUint32([]byte("wg"), 7)) {
		t.Errorf("unwrap: %v %v %x", ok, src, pkt)
	}
}

func TestHandleBatchRelayNoAllocs(t *testing.T) {
	bh := newBatchHarness(t)
	pkts := make([]packet, 64)
	for i := range pkts {
		pkts[i] = packet{b: bh.relay(bh.aKey, bh.bKey, i), from: bh.aAddr}
	}
	ctx := context.Background()
	bh.srv.handleBatch(ctx, &bh.st, pkts)
	if n := testing.AllocsPerRun(20, func() { bh.srv.handleBatch(ctx, &bh.st, pkts) }); n > 0 {
		t.Errorf("%v allocations per batch of 64 relayed frames", n)
	}
}

func TestAppendRelay(t *testing.T) {
	bh := newBatchHarness(t)
	mk := func(k wgkey.Key) *Client {
		c, err := NewClient(testClient(ClientConfig{NetworkID: netA, Secret: secrets[netA], PublicKey: k, Server: bh.aAddr, Clock: bh.srv.clk,
			Send: func([]byte, netip.AddrPort) error { return nil }}))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := mk(bh.aKey), mk(bh.bKey)
	aID, bID := bh.id(netA, bh.aKey), bh.id(netA, bh.bKey)
	pkt := []byte("a wireguard packet")
	buf := make([]byte, 3, 3+RelayOverhead+len(pkt))
	copy(buf, "pre")
	// Before the ids are known nothing can be relayed.
	if g := a.AppendRelay(buf, bh.bKey, pkt); len(g) != 3 || a.WrapRelay(bh.bKey, pkt) != nil {
		t.Fatal("relay frame built without relay ids")
	}
	learn(a, aID, map[wgkey.Key]uint32{bh.bKey: bID})
	learn(b, bID, map[wgkey.Key]uint32{bh.aKey: aID})
	f := a.AppendRelay(buf, bh.bKey, pkt)
	if string(f[:3]) != "pre" || &f[0] != &buf[0] || len(f) != 3+RelayOverhead+len(pkt) {
		t.Fatalf("AppendRelay did not append in place: %d bytes", len(f))
	}
	if src, got, ok := b.UnwrapRelay(f[3:]); !ok || src != bh.aKey || !bytes.Equal(got, pkt) {
		t.Fatalf("unwrap %v %v %q", ok, src, got)
	}
	// The nucleus forwards it.
	if out := bh.srv.handleBatch(context.Background(), &bh.st, []packet{{b: f[3:], from: bh.aAddr}}); len(out) != 1 || out[0].to != bh.bAddr {
		t.Fatalf("nucleus did not forward the frame: %v", out)
	}
	// Without room it still appends correctly; oversized or to an
	// unknown peer leaves b alone.
	if src, got, ok := b.UnwrapRelay(a.AppendRelay(nil, bh.bKey, pkt)); !ok || src != bh.aKey || !bytes.Equal(got, pkt) {
		t.Fatalf("unwrap %v %v %q", ok, src, got)
	}
	if g := a.AppendRelay(buf[:3], bh.bKey, make([]byte, MaxRelayPayload+1)); len(g) != 3 {
		t.Error("oversized payload appended")
	}
	if g := a.AppendRelay(buf[:3], wgkey.Key{7}, pkt); len(g) != 3 {
		t.Error("frame to a peer without a relay id appended")
	}
	// Only the addressee accepts it; a frame for someone else, from an
	// unknown id or with a bad tag is refused.
	if _, _, ok := a.UnwrapRelay(f[3:]); ok {
		t.Error("the sender accepted its own frame")
	}
	c := mk(testKey(3))
	learn(c, bID, map[wgkey.Key]uint32{})
	if _, _, ok := c.UnwrapRelay(f[3:]); ok {
		t.Error("frame from an unknown relay id accepted")
	}
	bad := bytes.Clone(f[3:])
	bad[3] ^= 1 // the timestamp: still fresh, but not what was tagged
	if _, _, ok := b.UnwrapRelay(bad); ok {
		t.Error("tampered header accepted")
	}
	if raceEnabled {
		return // sync.Pool drops items at random under the race detector
	}
	if n := testing.AllocsPerRun(100, func() { a.AppendRelay(buf[:0], bh.bKey, pkt) }); n > 0 {
		t.Errorf("AppendRelay: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { b.UnwrapRelay(f[3:]) }); n > 0 {
		t.Errorf("UnwrapRelay: %v allocations", n)
	}
}

// TestRelayBurst relays bursts of frames over sockets: all arrive intact
// and in order, a bad frame in the middle is dropped alone, and the
// counters are exact.
func TestRelayBurst(t *testing.T) {
	h := newHarness(t)
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	a.register()
	b.register()
	a.waitPeers("B", has(b.key))
	const total, burst = 200, 40
	for start := 0; start < total; start += burst {
		for i := start; i < start+burst; i++ {
			f := a.c.WrapRelay(b.key, binary.BigEndian.AppendUint32(nil, uint32(i)))
			a.raw(f)
			if i == 100 {
				bad := bytes.Clone(f)
				bad[RelayOverhead-1] ^= 1
				a.raw(bad)
			}
		}
		for i := start; i < start+burst; i++ {
			select {
			case r := <-b.relays:
				if r.src != a.key || len(r.pkt) != 4 || binary.BigEndian.Uint32(r.pkt) != uint32(i) {
					t.Fatalf("frame %d: got %x from %v", i, r.pkt, r.src)
				}
			case <-time.After(wait):
				t.Fatalf("frame %d not delivered", i)
			}
		}
	}
	st := h.srv.Stats()
	if st.RelayedPackets != total || st.RelayedBytes != 4*total || st.Dropped[DropAuth] != 1 {
		t.Errorf("relayed %d packets %d bytes, %d auth drops", st.RelayedPackets, st.RelayedBytes, st.Dropped[DropAuth])
	}
	if v := h.metric("omni_nucleus_relayed_packets_total"); v != total {
		t.Errorf("omni_nucleus_relayed_packets_total = %v", v)
	}
}
