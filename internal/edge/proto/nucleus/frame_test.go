package nucleus

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/platform/clock"
)

func TestIsSignalNeverMatchesWireGuard(t *testing.T) {
	for typ := byte(1); typ <= 4; typ++ {
		wg := append([]byte{typ, 0, 0, 0}, make([]byte, 144)...)
		if IsSignal(wg) || IsRelay(wg) {
			t.Errorf("WireGuard message type %d taken for a signal", typ)
		}
	}
	var m macer
	m.use(DeriveKey([]byte("s")))
	f := appendRelayFrame(nil, &m, relayHeader{ts: 1, src: 2, dst: 3}, []byte("p"))
	if !IsSignal(f) || !IsRelay(f) || len(f) != RelayOverhead+1 {
		t.Error("relay frame not recognised")
	}
	if IsSignal(f[:4]) || IsRelay(f[:RelayOverhead-1]) {
		t.Error("short prefix taken for a signal")
	}
	if c := seal(DeriveKey([]byte("s")), TypePing, "vn_x", time.Now(), nil); !IsSignal(c) || IsRelay(c) {
		t.Error("control frame taken for a relay frame")
	}
}

func TestFrameRoundTripAndMAC(t *testing.T) {
	key := DeriveKey([]byte("secret"))
	now := time.Unix(1_700_000_000, 123_000_000)
	p := Peer{
		PublicKey: wgkey.Key{9, 8, 7}, IP4: netip.MustParseAddr("100.66.0.9"), IP6: netip.MustParseAddr("fd10:66::9"),
		Endpoint: netip.MustParseAddrPort("[2001:db8::1]:41641"),
		Local:    []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:51820"), netip.MustParseAddrPort("[fe80::1]:51820")},
	}
	body := updateMsg{Version: 7, Event: EventUpdate, Peer: p}.encode()
	f := seal(key, TypePeerUpdate, "vn_round", now, body)
	h, err := parseHeader(f)
	if err != nil || h.typ != TypePeerUpdate || h.network != "vn_round" || h.ts != now.UnixMilli() || !bytes.Equal(h.body, body) {
		t.Fatalf("header %+v, %v", h, err)
	}
	if !verify(key, f) || verify(DeriveKey([]byte("other")), f) {
		t.Fatal("MAC check wrong")
	}
	m, ok := decodeUpdate(h.body)
	if !ok || m.Version != 7 || m.Event != EventUpdate || !m.Peer.equal(p) {
		t.Fatalf("decoded %+v %v", m, ok)
	}
	for i := range f {
		g := bytes.Clone(f)
		g[i] ^= 0x40
		if _, err := parseHeader(g); err == nil && verify(key, g) {
			t.Fatalf("flipping byte %d kept the frame valid", i)
		}
	}
	if _, ok := decodeUpdate(append(bytes.Clone(body), 0)); ok {
		t.Error("trailing byte accepted")
	}
	if _, ok := decodeUpdate(body[:len(body)-1]); ok {
		t.Error("short body accepted")
	}
	if !fresh(now.Add(-Window).UnixMilli(), now) || fresh(now.Add(Window+time.Millisecond).UnixMilli(), now) {
		t.Error("window edges wrong")
	}
}

func TestPeersSplitIntoPartsAndReassembled(t *testing.T) {
	var peers []Peer
	for i := 0; i < 60; i++ {
		p := Peer{PublicKey: wgkey.Key{byte(i + 1), 1}, IP4: netip.AddrFrom4([4]byte{100, 66, 0, byte(i + 1)}),
			IP6: netip.MustParseAddr("fd10:66::1"), Endpoint: netip.MustParseAddrPort("[2001:db8::7]:40000")}
		for j := 0; j < MaxLocalEndpoints; j++ {
			p.Local = append(p.Local, netip.MustParseAddrPort("[2001:db8::8]:51820"))
		}
		peers = append(peers, p)
	}
	const network = "vn_0123456789012345678901234567890123456789012345678901234567890"
	self := testKey(200)
	key := testDeviceKey([]byte("s"), self)
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	bodies := packPeers(network, 42, peers)
	if len(bodies) < 3 {
		t.Fatalf("%d parts, want several", len(bodies))
	}
	server := netip.MustParseAddrPort("127.0.0.1:51820")
	c, err := NewClient(testClient(ClientConfig{NetworkID: network, Secret: []byte("s"), PublicKey: self, Server: server, Clock: clk,
		Send: func([]byte, netip.AddrPort) error { return nil }}))
	if err != nil {
		t.Fatal(err)
	}
	var got [][]Peer
	c.OnPeers(func(ps []Peer) { got = append(got, ps) })
	// Deliver out of order, with a duplicate part under a new nonce.
	order := append([]int{len(bodies) - 1, 0, 0}, func() []int {
		var r []int
		for i := 1; i < len(bodies)-1; i++ {
			r = append(r, i)
		}
		return r
	}()...)
	for _, i := range order {
		f := seal(key, TypePeers, network, clk.Now(), bodies[i])
		if len(f) > maxControlFrame {
			t.Fatalf("part %d is %d bytes", i, len(f))
		}
		c.Handle(f, server)
	}
	if len(got) != 1 || len(got[0]) != len(peers) {
		t.Fatalf("deliveries %d, first of %d peers", len(got), len(got[0]))
	}
	if c.Status().Version != 42 {
		t.Errorf("version %d", c.Status().Version)
	}
	// An empty network is one empty part.
	if b := packPeers(network, 1, nil); len(b) != 1 {
		t.Errorf("empty list in %d parts", len(b))
	}
}

// FuzzFrame feeds arbitrary datagrams to the parsers, to the client and to
// the server, both raw and sealed with the right key (so that the body
// decoders behind the MAC are reached: the client's frame key for what
// the nucleus sends it, the frame key of the device a request names for
// the nucleus). Nothing may panic; a body that decodes must encode back
// to the same bytes.
func FuzzFrame(f *testing.F) {
	key := DeriveKey(secrets[netA])
	self := testKey(2)
	clientKey := testDeviceKey(secrets[netA], self)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := Peer{PublicKey: testKey(1), IP4: netip.MustParseAddr("100.66.0.1"), Endpoint: netip.MustParseAddrPort("1.2.3.4:5"),
		Local: []netip.AddrPort{netip.MustParseAddrPort("[::1]:7")}}
	for _, b := range [][]byte{
		registerMsg{Key: testKey(1), IP4: p.IP4, Local: p.Local}.encode(),
		ackMsg{Observed: p.Endpoint, Keepalive: 1, Version: 2, RelayID: 3}.encode(),
		keepaliveMsg{Key: testKey(1), Version: 3}.encode(),
		packPeers(netA, 4, []Peer{p, p})[0],
		updateMsg{Version: 5, Event: EventJoin, Peer: p}.encode(),
		pairMsg{From: testKey(1), To: self}.encode(),
		appendPeer(nil, p),
		errorMsg{Code: 1, Text: "x"}.encode(),
		cookieMsg{Echo: [nonceSize]byte{1}, Cookie: [CookieSize]byte{2}}.encode(),
		rekeyMsg{Version: 7}.encode(),
	} {
		f.Add(b)
		f.Add(seal(key, TypeRegister, netA, now, b))
	}
	var rm macer
	rm.use(key)
	f.Add(appendRelayFrame(nil, &rm, relayHeader{ts: relayTime(now), src: 1, dst: 2}, []byte{1, 0, 0, 0}))
	server := netip.MustParseAddrPort("127.0.0.1:51820")
	from := netip.MustParseAddrPort("127.0.0.1:40000")
	f.Fuzz(func(t *testing.T, data []byte) {
		// Fresh state per input keeps every run small and independent.
		clk := clock.NewFake(now)
		srv, err := NewServer(testOptions(Options{Directory: newTestDir(), Clock: clk}))
		if err != nil {
			t.Fatal(err)
		}
		srv.load(context.Background(), netA)
		cookie := srv.cookies.make(from)
		cl, err := NewClient(testClient(ClientConfig{NetworkID: netA, Secret: secrets[netA], PublicKey: self, Server: server, Clock: clk,
			Send: func([]byte, netip.AddrPort) error { return nil }}))
		if err != nil {
			t.Fatal(err)
		}
		// Raw datagram.
		var st batchState
		srv.handleBatch(context.Background(), &st, []packet{{b: data, from: from}})
		cl.Handle(data, server)
		cl.UnwrapRelay(data)
		// The same bytes as the body of an authentic frame of every type.
		if len(data) <= MaxFrame-overhead(netA) {
			for t := TypeRegister; t <= TypeRekey; t++ {
				fr := seal(clientKey, t, netA, clk.Now(), data)
				srv.handle(context.Background(), fr, from)
				cl.Handle(fr, server)
				cl.UnwrapRelay(fr)
			}
		}
		// With the cookie of its source, a request reaches the handlers
		// behind the cookie check.
		if len(data) <= MaxFrame-overhead(netA)-CookieSize {
			sender := key
			if len(data) >= 32 {
				if _, ok := testIDs[wgkey.Key(data[:32])]; ok {
					sender = testDeviceKey(secrets[netA], wgkey.Key(data[:32]))
				}
			}
			for _, t := range []byte{TypeRegister, TypeKeepalive, TypePunchRequest, TypeLeave} {
				srv.handle(context.Background(), seal(sender, t, netA, clk.Now(), append(bytes.Clone(data), cookie[:]...)), from)
			}
		}
		if m, ok := decodeRegister(data); ok && !bytes.Equal(m.encode(), data) {
			t.Errorf("register re-encodes differently")
		}
		if m, ok := decodeAck(data); ok && !bytes.Equal(m.encode(), data) {
			t.Errorf("ack re-encodes differently")
		}
		if m, ok := decodeKeepalive(data); ok && !bytes.Equal(m.encode(), data) {
			t.Errorf("keepalive re-encodes differently")
		}
		if m, ok := decodePeers(data); ok && !bytes.Equal(m.encode(), data) {
			t.Errorf("peers re-encodes differently")
		}
		if m, ok := decodeUpdate(data); ok && !bytes.Equal(m.encode(), data) {
			t.Errorf("update re-encodes differently")
		}
		if m, ok := decodePunch(data); ok && !bytes.Equal(appendPeer(nil, m), data) {
			t.Errorf("punch re-encodes differently")
		}
		if m, ok := decodeError(data); ok && !bytes.Equal(m.encode(), data) {
			t.Errorf("error re-encodes differently")
		}
		if m, ok := decodeCookie(data); ok && !bytes.Equal(m.encode(), data) {
			t.Errorf("cookie re-encodes differently")
		}
		if m, ok := decodeRekey(data); ok && !bytes.Equal(m.encode(), data) {
			t.Errorf("rekey re-encodes differently")
		}
	})
}
