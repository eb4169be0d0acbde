package nucleus

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
)

const (
	netA = "vn_alpha"
	netB = "vn_beta"
	wait = 3 * time.Second
)

var secrets = map[string][]byte{netA: []byte("alpha-secret-0123456789abcdef"), netB: []byte("beta-secret-0123456789abcdef")}

// The test nucleus's static key pair, and test devices 0..255: their
// private keys (fixed, derived from the id), public keys and ids by key.
var (
	testServerPriv = mustPriv("omniedge test nucleus")
	testServerKey  = PublicKeyOf(testServerPriv)
	testPrivs      [256]*ecdh.PrivateKey
	testKeys       [256]wgkey.Key
	testIDs        = map[wgkey.Key]byte{}
)

func init() {
	for i := range testPrivs {
		testPrivs[i] = mustPriv(fmt.Sprintf("omniedge test device %d", i))
		testKeys[i] = PublicKeyOf(testPrivs[i])
		testIDs[testKeys[i]] = byte(i)
	}
}

func mustPriv(seed string) *ecdh.PrivateKey {
	sum := sha256.Sum256([]byte(seed))
	k, err := NewPrivateKey(sum[:])
	if err != nil {
		panic(err)
	}
	return k
}

// testKey is the key of test device id, testPriv its private key,
// testID the id of a test device's key; testBinding its addresses, as the
// harness's edges announce them.
func testKey(id byte) wgkey.Key         { return testKeys[id] }
func testPriv(id byte) *ecdh.PrivateKey { return testPrivs[id] }
func testID(k wgkey.Key) byte           { return testIDs[k] }
func testOptions(o Options) Options     { o.PrivateKey = cmp.Or(o.PrivateKey, testServerPriv); return o }
func testClient(c ClientConfig) ClientConfig {
	if c.PrivateKey == nil {
		c.PrivateKey = testPriv(testID(c.PublicKey))
	}
	c.ServerKey = cmp.Or(c.ServerKey, testServerKey)
	return c
}

// testDeviceKey is the frame key of test device k's frames with the test
// nucleus in the network of secret: what only that device and the nucleus
// can compute.
func testDeviceKey(secret []byte, k wgkey.Key) []byte {
	shared, err := sharedSecret(testPriv(testID(k)), testServerKey)
	if err != nil {
		panic(err)
	}
	return DeviceFrameKey(shared, DeriveKey(secret), k, testServerKey)
}

func testBinding(id byte) Binding {
	return Binding{Key: testKey(id), IP4: netip.AddrFrom4([4]byte{100, 66, 0, id}),
		IP6: netip.MustParseAddr("fd10:66::" + string('0'+rune(id%10)))}
}

// testDir is the tests' Directory: secrets per network and the bindings
// of each (by default every test device 1..250 in netA and netB). It
// counts its calls and may answer slowly.
type testDir struct {
	mu       sync.Mutex
	secrets  map[string][]byte
	versions map[string]uint32
	members  map[string][]Binding
	delay    time.Duration
	calls    atomic.Int64
}

func newTestDir() *testDir {
	d := &testDir{secrets: map[string][]byte{}, versions: map[string]uint32{}, members: map[string][]Binding{}}
	for id, s := range secrets {
		d.secrets[id] = s
		d.versions[id] = 1
		for i := 1; i <= 250; i++ {
			d.members[id] = append(d.members[id], testBinding(byte(i)))
		}
	}
	return d
}

func (d *testDir) Network(_ context.Context, id string) (NetworkInfo, error) {
	d.calls.Add(1)
	time.Sleep(d.delay)
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.secrets[id]
	if !ok {
		return NetworkInfo{}, ErrUnknownNetwork
	}
	return NetworkInfo{Secret: s, SecretVersion: d.versions[id], Members: slices.Clone(d.members[id])}, nil
}

// unbind removes a device's binding; bind adds one.
func (d *testDir) unbind(network string, k wgkey.Key) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.members[network] = slices.DeleteFunc(d.members[network], func(b Binding) bool { return b.Key == k })
}

func (d *testDir) bind(network string, b Binding) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.members[network] = append(d.members[network], b)
}

// rotate gives a network a new secret.
func (d *testDir) rotate(network string, secret []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.secrets[network] = secret
	d.versions[network]++
}

type harness struct {
	t   *testing.T
	clk *clock.Fake
	srv *Server
	dir *testDir
	reg *prometheus.Registry
	at  netip.AddrPort
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, newTestDir(), nil) }

// newHarnessWith runs a nucleus on loopback over dir, with a fake clock;
// opts (when not nil) adjusts its options.
func newHarnessWith(t *testing.T, dir *testDir, opts func(*Options)) *harness {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	reg := prometheus.NewRegistry()
	o := Options{Directory: dir, Clock: clk, Registry: reg, Keepalive: 20 * time.Second, SweepEvery: 10 * time.Millisecond, PrivateKey: testServerPriv}
	if opts != nil {
		opts(&o)
	}
	srv, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, pc) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(wait):
			t.Error("Serve did not stop")
		}
	})
	return &harness{t: t, clk: clk, srv: srv, dir: dir, reg: reg, at: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
}

// request seals a request to the nucleus as a client at from would, with
// the cookie of that address.
func (h *harness) request(key []byte, typ byte, network string, ts time.Time, nonce [nonceSize]byte, body []byte, from netip.AddrPort) []byte {
	c := h.srv.cookies.make(from)
	return sealNonce(key, typ, network, ts.UnixMilli(), nonce, append(bytes.Clone(body), c[:]...))
}

type relayed struct {
	src wgkey.Key
	pkt []byte
}

// edge is a test device: its own loopback socket and a Client.
type edge struct {
	t       *testing.T
	h       *harness
	key     wgkey.Key
	c       *Client
	peers   chan []Peer
	punches chan Peer
	relays  chan relayed

	ip   net.IP // loopback address of its socket
	mu   sync.Mutex
	conn *net.UDPConn
	sent [][]byte
}

func (h *harness) edge(network string, secret []byte, id byte) *edge {
	h.t.Helper()
	return h.edgeAt(network, secret, id, net.IPv4(127, 0, 0, 1))
}

// edgeAt is edge with the socket on another loopback address (another
// source for the nucleus's per-source budgets).
func (h *harness) edgeAt(network string, secret []byte, id byte, ip net.IP) *edge {
	h.t.Helper()
	e := &edge{t: h.t, h: h, ip: ip, peers: make(chan []Peer, 64), punches: make(chan Peer, 8), relays: make(chan relayed, 256)}
	e.key = testKey(id)
	c, err := NewClient(ClientConfig{
		NetworkID: network, Secret: secret, PrivateKey: testPriv(id), ServerKey: testServerKey, Server: h.at, Clock: h.clk,
		IP4: netip.AddrFrom4([4]byte{100, 66, 0, id}), IP6: netip.MustParseAddr("fd10:66::" + string('0'+rune(id%10))),
		Local: []netip.AddrPort{netip.MustParseAddrPort("192.168.1.10:51820")},
		Send: func(b []byte, to netip.AddrPort) error {
			e.mu.Lock()
			conn := e.conn
			e.sent = append(e.sent, append([]byte(nil), b...))
			e.mu.Unlock()
			_, err := conn.WriteToUDPAddrPort(b, to)
			return err
		},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	c.OnPeers(func(ps []Peer) { e.peers <- ps })
	c.OnPunch(func(p Peer) { e.punches <- p })
	e.c = c
	e.bind() // after e.c is set: the reader uses it
	return e
}

// bind gives the edge a new socket (a new source port: roaming).
func (e *edge) bind() {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: e.ip})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	e.mu.Lock()
	old := e.conn
	e.conn = conn
	e.mu.Unlock()
	if old != nil {
		old.Close()
	}
	go func() {
		buf := make([]byte, MaxFrame+1)
		for i := 0; i < 1_000_000; i++ {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			b := buf[:n]
			switch {
			case IsRelay(b):
				if src, pkt, ok := e.c.UnwrapRelay(b); ok {
					e.relays <- relayed{src, append([]byte(nil), pkt...)}
				}
			case IsSignal(b):
				e.c.Handle(b, from)
			}
		}
	}()
}

func (e *edge) addr() netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// raw sends bytes from the edge's socket to the nucleus.
func (e *edge) raw(b []byte) {
	e.mu.Lock()
	conn := e.conn
	e.mu.Unlock()
	if _, err := conn.WriteToUDPAddrPort(b, e.h.at); err != nil {
		e.t.Fatal(err)
	}
}

// sentOfType returns the last frame of a type the client sent.
func (e *edge) sentOfType(typ byte) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.sent) - 1; i >= 0; i-- {
		if e.sent[i][4] == typ {
			return e.sent[i]
		}
	}
	e.t.Fatalf("no frame of type %d sent", typ)
	return nil
}

func (e *edge) keepalive() {
	e.t.Helper()
	if err := e.c.send(TypeKeepalive, keepaliveMsg{Key: e.key, Version: e.c.Status().Version}.encode()); err != nil {
		e.t.Fatal(err)
	}
}

// register registers and waits for the first full peer list.
func (e *edge) register() []Peer {
	e.t.Helper()
	if err := e.c.Register(); err != nil {
		e.t.Fatal(err)
	}
	return e.waitPeers("initial list", func([]Peer) bool { return true })
}

// waitPeers waits for a peer-set delivery that satisfies ok.
func (e *edge) waitPeers(what string, ok func([]Peer) bool) []Peer {
	e.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case ps := <-e.peers:
			if ok(ps) {
				return ps
			}
		case <-deadline:
			e.t.Fatalf("edge %d: timed out waiting for %s", testID(e.key), what)
			return nil
		}
	}
}

func has(k wgkey.Key) func([]Peer) bool {
	return func(ps []Peer) bool { return find(ps, k) != nil }
}

func lacks(k wgkey.Key) func([]Peer) bool {
	return func(ps []Peer) bool { return find(ps, k) == nil }
}

func find(ps []Peer, k wgkey.Key) *Peer {
	for i := range ps {
		if ps[i].PublicKey == k {
			return &ps[i]
		}
	}
	return nil
}

func (h *harness) dropped(reason string) uint64 { return h.srv.Stats().Dropped[reason] }

func (h *harness) metric(name string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func TestRegisterSendsListAndPushesJoin(t *testing.T) {
	h := newHarness(t)
	a, b, c := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2), h.edge(netA, secrets[netA], 3)
	if ps := a.register(); len(ps) != 0 {
		t.Fatalf("first member got peers %v", ps)
	}
	testenv.Eventually(t, "A registered", func() bool { return a.c.Status().Registered })
	if got := a.c.Status().Observed; got != a.addr() {
		t.Errorf("observed %v, want %v", got, a.addr())
	}

	ps := b.register()
	pa := find(ps, a.key)
	if len(ps) != 1 || pa == nil {
		t.Fatalf("newcomer B got %v, want A", ps)
	}
	if pa.Endpoint != a.addr() || pa.IP4 != netip.MustParseAddr("100.66.0.1") || pa.IP6 != netip.MustParseAddr("fd10:66::1") ||
		len(pa.Local) != 1 || pa.Local[0] != netip.MustParseAddrPort("192.168.1.10:51820") {
		t.Errorf("A as B sees it: %+v", *pa)
	}
	// A learns of B by push, without sending anything.
	got := a.waitPeers("B's join", has(b.key))
	if pb := find(got, b.key); pb.Endpoint != b.addr() || pb.IP4 != netip.MustParseAddr("100.66.0.2") {
		t.Errorf("B as A sees it: %+v", *pb)
	}

	c.register()
	a.waitPeers("C's join at A", has(c.key))
	b.waitPeers("C's join at B", has(c.key))
	if st := h.srv.Stats(); st.Peers != 3 || st.PerNetwork[netA].Peers != 3 {
		t.Errorf("stats %+v", st)
	}
	if v := h.metric("omni_nucleus_peers"); v != 3 {
		t.Errorf("omni_nucleus_peers = %v", v)
	}
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t)
	good := h.edge(netA, secrets[netA], 1)
	good.register()

	// A device with the wrong secret is ignored.
	bad := h.edge(netA, []byte("not-the-secret"), 2)
	if err := bad.c.Register(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "auth drop", func() bool { return h.dropped(DropAuth) == 1 })

	// A tampered frame (one bit of the body) is dropped too.
	reg := h.edge(netA, secrets[netA], 3)
	if err := reg.c.Register(); err != nil {
		t.Fatal(err)
	}
	reg.waitPeers("registration", func([]Peer) bool { return true })
	if err := reg.c.Leave(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "leave", func() bool { return len(h.srv.Peers(netA)) == 1 })
	frame := bytes.Clone(reg.sentOfType(TypeRegister))
	frame[len(frame)-macSize-CookieSize-3] ^= 1 // a local endpoint
	reg.raw(frame)
	testenv.Eventually(t, "tampered drop", func() bool { return h.dropped(DropAuth) == 2 })

	// Unknown networks, stray WireGuard packets and garbage.
	stranger := h.edge("vn_nobody", []byte("x"), 4)
	if err := stranger.c.Register(); err != nil {
		t.Fatal(err)
	}
	good.raw([]byte{1, 0, 0, 0, 9, 9, 9, 9})
	good.raw([]byte{0xFF, 'O', 'N', Version, TypeRegister, 200})
	testenv.Eventually(t, "other drops", func() bool {
		return h.dropped(DropUnknownNetwork) == 1 && h.dropped(DropNotSignal) == 1 && h.dropped(DropMalformed) == 1
	})

	if ps := h.srv.Peers(netA); len(ps) != 1 || ps[0].PublicKey != good.key {
		t.Errorf("peers %v, want only the good device", ps)
	}
	if bad.c.Status().Registered {
		t.Error("device with the wrong secret got registered")
	}
	if v := h.metric("omni_nucleus_dropped_total"); v != 5 {
		t.Errorf("omni_nucleus_dropped_total = %v, want 5", v)
	}
}

func TestReplayAndStaleFramesDropped(t *testing.T) {
	h := newHarness(t)
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	a.register()
	b.register()
	a.waitPeers("B", has(b.key))
	regA := a.sentOfType(TypeRegister)
	if err := a.c.Leave(); err != nil {
		t.Fatal(err)
	}
	b.waitPeers("A's leave", lacks(a.key))

	// Replaying A's REGISTER does not bring A back.
	a.raw(regA)
	testenv.Eventually(t, "replay drop", func() bool { return h.dropped(DropReplay) == 1 })
	if len(h.srv.Peers(netA)) != 1 {
		t.Fatalf("replayed REGISTER re-added A: %v", h.srv.Peers(netA))
	}

	key := testDeviceKey(secrets[netA], a.key)
	body := registerMsg{Key: a.key, IP4: netip.MustParseAddr("100.66.0.1")}.encode()
	now := h.clk.Now()
	a.raw(h.request(key, TypeRegister, netA, now.Add(-61*time.Second), [nonceSize]byte{1}, body, a.addr()))
	a.raw(h.request(key, TypeRegister, netA, now.Add(61*time.Second), [nonceSize]byte{2}, body, a.addr()))
	testenv.Eventually(t, "stale drops", func() bool { return h.dropped(DropStale) == 2 })
	if len(h.srv.Peers(netA)) != 1 {
		t.Fatal("stale REGISTER accepted")
	}
	// Just inside the window is fine.
	a.raw(h.request(key, TypeRegister, netA, now.Add(-59*time.Second), [nonceSize]byte{3}, body, a.addr()))
	b.waitPeers("A back", has(a.key))

	// The client drops replays too: a nucleus frame seen twice counts once.
	key = testDeviceKey(secrets[netA], b.key)
	ack := seal(key, TypeRegisterAck, netA, now, ackMsg{Observed: b.addr(), Keepalive: 20000}.encode())
	b.c.Handle(ack, h.at)
	before := b.c.Status().Dropped
	b.c.Handle(ack, h.at)
	if b.c.Status().Dropped != before+1 {
		t.Error("client accepted a replayed frame")
	}
	// And frames not from the nucleus.
	b.c.Handle(seal(key, TypeRegisterAck, netA, now, ackMsg{}.encode()), a.addr())
	if b.c.Status().Dropped != before+2 {
		t.Error("client accepted a frame from another address")
	}
}

func TestExpiryPushesLeave(t *testing.T) {
	h := newHarness(t)
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	a.register()
	b.register()
	a.waitPeers("B", has(b.key))

	h.clk.Advance(40 * time.Second)
	ack := b.c.Status().LastAck
	b.keepalive()
	testenv.Eventually(t, "B's keepalive ack", func() bool { return b.c.Status().LastAck.After(ack) })
	if len(h.srv.Peers(netA)) != 2 {
		t.Fatal("a peer expired early")
	}
	h.clk.Advance(25 * time.Second) // A silent 65 s > 3 × 20 s; B 25 s
	b.waitPeers("A's expiry", lacks(a.key))
	if ps := h.srv.Peers(netA); len(ps) != 1 || ps[0].PublicKey != b.key {
		t.Errorf("peers after expiry: %v", ps)
	}
	// A's keepalive now gets "not registered".
	a.keepalive()
	testenv.Eventually(t, "A told to register", func() bool { return !a.c.Status().Registered })
}

func TestLeaveRemovesAtOnce(t *testing.T) {
	h := newHarness(t)
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	a.register()
	b.register()
	a.waitPeers("B", has(b.key))
	if err := b.c.Leave(); err != nil {
		t.Fatal(err)
	}
	if ps := a.waitPeers("B's leave", lacks(b.key)); len(ps) != 0 {
		t.Errorf("A still sees %v", ps)
	}
	if len(h.srv.Peers(netA)) != 1 {
		t.Errorf("server peers %v", h.srv.Peers(netA))
	}
}

func TestRoaming(t *testing.T) {
	h := newHarness(t)
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	a.register()
	b.register()
	a.waitPeers("B", has(b.key))
	old := a.addr()
	a.bind()
	if a.addr() == old {
		t.Fatal("rebinding kept the port")
	}
	a.keepalive()
	got := b.waitPeers("A's new endpoint", func(ps []Peer) bool { p := find(ps, a.key); return p != nil && p.Endpoint == a.addr() })
	if p := find(got, a.key); p.IP4 != netip.MustParseAddr("100.66.0.1") {
		t.Errorf("roamed peer lost its address: %+v", *p)
	}
	testenv.Eventually(t, "A's observed address", func() bool { return a.c.Status().Observed == a.addr() })
	// Relayed packets follow the new address.
	b.raw(b.c.WrapRelay(a.key, []byte("after roaming")))
	select {
	case r := <-a.relays:
		if string(r.pkt) != "after roaming" || r.src != b.key {
			t.Errorf("relayed %q from %v", r.pkt, r.src)
		}
	case <-time.After(wait):
		t.Fatal("relay did not reach the new address")
	}
}

func TestRelay(t *testing.T) {
	h := newHarness(t)
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	other := h.edge(netB, secrets[netB], 3)    // registered, other network
	outsider := h.edge(netA, secrets[netA], 4) // right secret, never registered
	a.register()
	b.register()
	other.register()
	a.waitPeers("B", has(b.key))

	pkt := []byte{4, 0, 0, 0, 'w', 'g', ' ', 'd', 'a', 't', 'a'}
	a.raw(a.c.WrapRelay(b.key, pkt))
	select {
	case r := <-b.relays:
		if r.src != a.key || !bytes.Equal(r.pkt, pkt) {
			t.Fatalf("B got %x from %v", r.pkt, r.src)
		}
	case <-time.After(wait):
		t.Fatal("relay A→B not delivered")
	}
	b.raw(b.c.WrapRelay(a.key, []byte("reply")))
	select {
	case r := <-a.relays:
		if r.src != b.key || string(r.pkt) != "reply" {
			t.Fatalf("A got %q from %v", r.pkt, r.src)
		}
	case <-time.After(wait):
		t.Fatal("relay B→A not delivered")
	}

	// Refused: from another network's member to B, from an unregistered
	// sender, to an unregistered destination.
	aID, bID, otherID := relayIDOf(t, h.srv, netA, a.key), relayIDOf(t, h.srv, netA, b.key), relayIDOf(t, h.srv, netB, other.key)
	unused := uint32(1)
	for unused == aID || unused == bID || unused == otherID {
		unused++
	}
	now := h.clk.Now()
	other.raw(relayFrameFor(DeriveKey(secrets[netB]), otherID, bID, now, []byte("cross-network")))
	outsider.raw(relayFrameFor(DeriveKey(secrets[netA]), unused, bID, now, []byte("outsider")))
	a.raw(relayFrameFor(DeriveKey(secrets[netA]), aID, unused, now, []byte("to nobody")))
	testenv.Eventually(t, "refused relays", func() bool { return h.dropped(DropNotMember) == 3 })
	select {
	case r := <-b.relays:
		t.Fatalf("B received a refused relay %q", r.pkt)
	case <-time.After(100 * time.Millisecond):
	}

	st := h.srv.Stats()
	if st.RelayedPackets != 2 || st.RelayedBytes != uint64(len(pkt)+len("reply")) {
		t.Errorf("totals %d packets %d bytes", st.RelayedPackets, st.RelayedBytes)
	}
	if n := st.PerNetwork[netA]; n.RelayedPackets != 2 || n.RelayedBytes != st.RelayedBytes {
		t.Errorf("per network %+v", n)
	}
	if n := st.PerNetwork[netB]; n.RelayedPackets != 0 {
		t.Errorf("other network relayed %+v", n)
	}
	if v := h.metric("omni_nucleus_relayed_packets_total"); v != 2 {
		t.Errorf("omni_nucleus_relayed_packets_total = %v", v)
	}
	if v := h.metric("omni_nucleus_relayed_bytes_total"); v != float64(st.RelayedBytes) {
		t.Errorf("omni_nucleus_relayed_bytes_total = %v", v)
	}

	// A relay frame for someone else, or of another network, does not unwrap.
	if _, _, ok := a.c.UnwrapRelay(a.c.WrapRelay(b.key, pkt)); ok {
		t.Error("A unwrapped a frame addressed to B")
	}
	if _, _, ok := b.c.UnwrapRelay(relayFrameFor(DeriveKey(secrets[netB]), aID, bID, now, pkt)); ok {
		t.Error("B unwrapped another network's frame")
	}
	if a.c.WrapRelay(b.key, make([]byte, MaxRelayPayload+1)) != nil {
		t.Error("oversized payload wrapped")
	}
}

func TestPunch(t *testing.T) {
	h := newHarness(t)
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	a.register()
	b.register()
	a.waitPeers("B", has(b.key))
	if err := a.c.Punch(b.key); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		e    *edge
		want *edge
	}{{a, b}, {b, a}} {
		select {
		case p := <-x.e.punches:
			if p.PublicKey != x.want.key || p.Endpoint != x.want.addr() {
				t.Errorf("edge %d told to punch %+v", testID(x.e.key), p)
			}
		case <-time.After(wait):
			t.Fatalf("edge %d got no PUNCH", testID(x.e.key))
		}
	}
}

func TestClientRunKeepsRegistration(t *testing.T) {
	h := newHarness(t)
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	b.register()
	a.c.cfg.Keepalive = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.c.Run(ctx) }()
	b.waitPeers("A via Run", has(a.key))

	// The nucleus loses A (as after a restart): A's next keepalive is
	// answered "not registered", Run registers again, B hears the join.
	for len(b.peers) > 0 {
		<-b.peers
	}
	h.srv.mu.Lock()
	delete(h.srv.networks[netA].peers, a.key)
	h.srv.mu.Unlock()
	b.waitPeers("A registered again", has(a.key))
	testenv.Eventually(t, "A registered", func() bool { return a.c.Status().Registered })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not stop")
	}
}

// A device that left is evicted at once when the Directory says so
// (its leave pushed to the others) and, still holding the secret, cannot
// register again.
func TestInvalidateEvictsAndRefusesUnbound(t *testing.T) {
	h := newHarness(t)
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	a.register()
	b.register()
	a.waitPeers("B", has(b.key))

	h.dir.unbind(netA, b.key)
	h.srv.Invalidate(netA)
	a.waitPeers("B evicted", lacks(b.key))
	if len(h.srv.Peers(netA)) != 1 {
		t.Fatalf("server peers after evict: %v", h.srv.Peers(netA))
	}
	// B tries to come back: refused, and A hears nothing of it.
	ack := b.c.Status().LastAck
	if err := b.c.Register(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the refused register counted", func() bool {
		return h.srv.Stats().Dropped[DropNotMember] >= 1
	})
	if len(h.srv.Peers(netA)) != 1 || b.c.Status().LastAck.After(ack) {
		t.Fatalf("a non-member registered: %v", h.srv.Peers(netA))
	}
}
