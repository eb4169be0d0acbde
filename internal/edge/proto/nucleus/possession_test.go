package nucleus

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// Three members of netA, each at its own loopback address (its own
// source for the per-source budgets): A the victim, B an observer, M the
// attacker. M holds everything a member holds — the network secret and
// its own device key — and nothing else.
func threeMembers(t *testing.T) (h *harness, a, b, m *edge) {
	t.Helper()
	h = newHarness(t)
	a = h.edgeAt(netA, secrets[netA], 1, net.IPv4(127, 0, 0, 1))
	b = h.edgeAt(netA, secrets[netA], 2, net.IPv4(127, 0, 0, 2))
	m = h.edgeAt(netA, secrets[netA], 3, net.IPv4(127, 0, 0, 3))
	a.register()
	b.register()
	if ps := m.register(); len(ps) != 2 {
		t.Fatalf("M got peers %v", ps)
	}
	a.waitPeers("B and M", func(ps []Peer) bool { return len(ps) == 2 })
	b.waitPeers("A and M", func(ps []Peer) bool { return len(ps) == 2 })
	return h, a, b, m
}

// settle waits until everything e's socket sent before now has been
// handled by the nucleus, and everything the nucleus sent e before that
// has been handled by e: a KEEPALIVE's answer follows, on the same path,
// whatever came before it.
func (e *edge) settle() {
	e.t.Helper()
	ack := e.c.Status().LastAck
	e.h.clk.Advance(time.Millisecond)
	e.keepalive()
	testenv.Eventually(e.t, "the keepalive's answer", func() bool { return e.c.Status().LastAck.After(ack) })
}

// drain empties an edge's peer-set deliveries and returns them.
func (e *edge) drain() [][]Peer {
	var got [][]Peer
	for {
		select {
		case ps := <-e.peers:
			got = append(got, ps)
		default:
			return got
		}
	}
}

// A current member cannot move another member's observed endpoint: a
// REGISTER naming the victim's key (with the victim's own bound
// addresses) and a KEEPALIVE naming it, sent from the attacker's own
// address with its valid cookie and signed with every key the attacker
// holds, are refused; the victim stays where it is and the others hear
// nothing of it.
func TestMemberCannotMoveAnotherMember(t *testing.T) {
	h, a, b, m := threeMembers(t)
	b.drain()
	bindA := testBinding(1)
	keys := memberKeys(m)
	auth := h.dropped(DropAuth)
	for i, key := range keys {
		h.clk.Advance(time.Millisecond)
		m.raw(h.request(key, TypeRegister, netA, h.clk.Now(), [nonceSize]byte{0x3a, byte(i), 1},
			registerMsg{Key: a.key, IP4: bindA.IP4, IP6: bindA.IP6}.encode(), m.addr()))
		m.raw(h.request(key, TypeKeepalive, netA, h.clk.Now(), [nonceSize]byte{0x3a, byte(i), 2},
			keepaliveMsg{Key: a.key}.encode(), m.addr()))
	}
	m.settle() // every forged request was handled
	b.settle() // every update the nucleus pushed B was received
	if p := find(h.srv.Peers(netA), a.key); p == nil || p.Endpoint != a.addr() {
		t.Fatalf("A's endpoint at the nucleus: %+v, want %v (the attacker is at %v)", p, a.addr(), m.addr())
	}
	for _, ps := range b.drain() {
		if p := find(ps, a.key); p == nil || p.Endpoint != a.addr() {
			t.Fatalf("B was told A is at %+v (the attacker is at %v)", p, m.addr())
		}
	}
	if got := h.dropped(DropAuth) - auth; got != uint64(2*len(keys)) {
		t.Errorf("%d forged requests refused as not authentic, want %d", got, 2*len(keys))
	}
}

// A member on the LAN that forges the nucleus's source address cannot
// speak for the nucleus to another member: PEERS, PEER_UPDATE, PUNCH,
// REKEY and ERROR signed with every key it holds, from the nucleus's
// address (a raw socket forges it), are dropped by the victim's client.
func TestForgedNucleusFramesDropped(t *testing.T) {
	sp := newRawSpoofer(t)
	h, a, b, m := threeMembers(t)
	rekeys := make(chan uint32, 8)
	a.c.OnRekey(func(v uint32) { rekeys <- v })
	a.drain()
	version := a.c.Status().Version
	bAtM := Peer{PublicKey: b.key, RelayID: relayIDOf(t, h.srv, netA, b.key), IP4: testBinding(2).IP4, IP6: testBinding(2).IP6, Endpoint: m.addr()}
	stranger := Peer{PublicKey: testKey(9), RelayID: 99, IP4: testBinding(9).IP4, Endpoint: m.addr()}
	var forged [][]byte
	for _, key := range memberKeys(m) {
		now := h.clk.Now()
		forged = append(forged,
			seal(key, TypePeerUpdate, netA, now, updateMsg{Version: version + 1, Event: EventUpdate, Peer: bAtM}.encode()),
			seal(key, TypePeerUpdate, netA, now, updateMsg{Version: version + 1, Event: EventJoin, Peer: stranger}.encode()),
			seal(key, TypePeerUpdate, netA, now, updateMsg{Version: version + 1, Event: EventLeave, Peer: Peer{PublicKey: b.key}}.encode()),
			seal(key, TypePeers, netA, now, peersMsg{Version: version + 7, Parts: 1, Peers: []Peer{bAtM}}.encode()),
			seal(key, TypePunch, netA, now, appendPeer(nil, bAtM)),
			seal(key, TypeRekey, netA, now, rekeyMsg{Version: 9}.encode()),
			seal(key, TypeError, netA, now, errorMsg{Code: ErrCodeNotRegistered, Text: "not registered"}.encode()),
		)
	}
	dropped := a.c.Status().Dropped
	for _, f := range forged {
		sp.send(t, h.at, a.addr(), f)
	}
	// Until every forged frame is dropped, or one of them took effect.
	testenv.Eventually(t, "A to handle the forged frames", func() bool {
		return a.c.Status().Dropped >= dropped+uint64(len(forged)) || len(a.peers) > 0 || len(a.punches) > 0 || len(rekeys) > 0
	})
	if p := find(a.c.Peers(), b.key); p == nil || p.Endpoint != b.addr() {
		t.Fatalf("A's view of B: %+v, want B at %v (the attacker is at %v)", p, b.addr(), m.addr())
	}
	if find(a.c.Peers(), stranger.PublicKey) != nil || len(a.c.Peers()) != 2 {
		t.Fatalf("A's peers changed: %v", a.c.Peers())
	}
	select {
	case p := <-a.punches:
		t.Fatalf("A took a forged PUNCH: %+v", p)
	case v := <-rekeys:
		t.Fatalf("A took a forged REKEY (version %d)", v)
	default:
	}
	if !a.c.Status().Registered {
		t.Fatal("A took a forged ERROR and dropped its registration")
	}
	if got := a.c.Status().Dropped - dropped; got != uint64(len(forged)) {
		t.Errorf("A dropped %d frames, want the %d forged ones", got, len(forged))
	}
}

// A member cannot forge a PONG (or PING) naming another member: the
// receiving client drops it, so it never switches that member to a
// direct path at the attacker's address, nor answers to it.
func TestForgedPingPongDropped(t *testing.T) {
	h, a, b, m := threeMembers(t)
	pongs := make(chan pongSeen, 8)
	a.c.OnPong(func(p wgkey.Key, from netip.AddrPort) { pongs <- pongSeen{p, from} })
	sent := len(a.sentAll())
	dropped := a.c.Status().Dropped
	var forged [][]byte
	for _, key := range memberKeys(m) {
		now := h.clk.Now()
		forged = append(forged,
			seal(key, TypePong, netA, now, pairMsg{From: b.key, To: a.key}.encode()),
			seal(key, TypePing, netA, now, pairMsg{From: b.key, To: a.key}.encode()))
	}
	for _, f := range forged {
		m.send(f, a.addr())
	}
	// Until every forged frame is dropped, or one of them took effect.
	testenv.Eventually(t, "A to handle the forged frames", func() bool {
		return a.c.Status().Dropped >= dropped+uint64(len(forged)) || len(pongs) > 0 || len(a.sentAll()) > sent
	})
	select {
	case p := <-pongs:
		t.Fatalf("A took a forged PONG naming B from %v", p.from)
	default:
	}
	for _, f := range a.sentAll()[sent:] {
		if f[4] == TypePong {
			t.Fatalf("A answered a forged PING naming B with a PONG")
		}
	}
	if got := a.c.Status().Dropped - dropped; got != uint64(len(forged)) {
		t.Errorf("A dropped %d frames, want the %d forged ones", got, len(forged))
	}
	// B's own PING is still answered, and its PONG taken.
	if err := a.c.Ping(b.key, b.addr()); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-pongs:
		if p.peer != b.key || p.from != b.addr() {
			t.Fatalf("pong %+v", p)
		}
	case <-time.After(wait):
		t.Fatal("B's real PONG did not arrive")
	}
}

// send sends bytes from the edge's socket to an address.
func (e *edge) send(b []byte, to netip.AddrPort) {
	e.mu.Lock()
	conn := e.conn
	e.mu.Unlock()
	if _, err := conn.WriteToUDPAddrPort(b, to); err != nil {
		e.t.Fatal(err)
	}
}

// sentAll returns a copy of what the edge's client sent.
func (e *edge) sentAll() [][]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([][]byte(nil), e.sent...)
}

// A device configured with a nucleus key other than its nucleus's real
// one cannot register: its frames fail the nucleus's check (there is no
// fallback to the network key alone), and the client refuses to start
// without a usable nucleus key at all.
func TestWrongNucleusKeyCannotRegister(t *testing.T) {
	h := newHarness(t)
	a := h.edge(netA, secrets[netA], 1)
	a.register()
	var c *Client
	sock := newUDPPeer(t, net.IPv4(127, 0, 0, 2), func(b []byte, from netip.AddrPort) { c.Handle(b, from) })
	send := func(b []byte, to netip.AddrPort) error { _, err := sock.conn.WriteToUDPAddrPort(b, to); return err }
	c, err := NewClient(ClientConfig{NetworkID: netA, Secret: secrets[netA], PrivateKey: testPriv(2), ServerKey: testKey(200),
		IP4: testBinding(2).IP4, Server: h.at, Clock: h.clk, Send: send})
	if err != nil {
		t.Fatal(err)
	}
	auth := h.dropped(DropAuth)
	if err := c.Register(); err != nil { // answered with a COOKIE, repeated with it
		t.Fatal(err)
	}
	testenv.Eventually(t, "the REGISTER refused", func() bool { return h.dropped(DropAuth) > auth })
	if c.Status().Registered || find(h.srv.Peers(netA), testKey(2)) != nil {
		t.Fatal("a device with the wrong nucleus key registered")
	}
	select {
	case ps := <-a.peers:
		t.Fatalf("A was told of peers %v", ps)
	default:
	}

	base := ClientConfig{NetworkID: netA, Secret: secrets[netA], PrivateKey: testPriv(2), Server: h.at, Send: send}
	for name, mod := range map[string]func(*ClientConfig){
		"no nucleus key":        func(c *ClientConfig) {},
		"low-order nucleus key": func(c *ClientConfig) { c.ServerKey = wgkey.Key{1} }, // u = 1: a point of order 4
		"no private key":        func(c *ClientConfig) { c.ServerKey, c.PrivateKey = testServerKey, nil },
		"another public key":    func(c *ClientConfig) { c.ServerKey, c.PublicKey = testServerKey, testKey(3) },
	} {
		cfg := base
		mod(&cfg)
		if _, err := NewClient(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The Diffie–Hellman of a device's key with the nucleus's is computed
// once per binding and kept across reloads of its network, and across a
// rotation of the secret (the frame key derived from it follows the new
// network key).
func TestDeviceKeysKeptAcrossReloads(t *testing.T) {
	h := newHarness(t)
	a := h.edge(netA, secrets[netA], 1)
	a.register()
	keysOf := func() *dhKeys {
		h.srv.mu.Lock()
		defer h.srv.mu.Unlock()
		return h.srv.entries[netA].byKey[a.key].keys
	}
	before := keysOf()
	lookups := h.srv.Stats().Lookups
	h.srv.Invalidate(netA)
	testenv.Eventually(t, "the reload", func() bool { return h.srv.Stats().Lookups > lookups })
	if keysOf() != before {
		t.Fatal("a reload dropped the binding's Diffie–Hellman")
	}
	newSecret := []byte("alpha-secret-rotated-0123456789")
	h.dir.rotate(netA, newSecret)
	lookups = h.srv.Stats().Lookups
	h.srv.Invalidate(netA)
	testenv.Eventually(t, "the reload", func() bool { return h.srv.Stats().Lookups > lookups })
	if keysOf() != before {
		t.Fatal("a rotation dropped the binding's Diffie–Hellman")
	}
	if err := a.c.SetSecret(newSecret); err != nil {
		t.Fatal(err)
	}
	a.settle() // a KEEPALIVE under the new frame key is answered
	if k := before.key(DeriveKey(newSecret)); !bytes.Equal(k, testDeviceKey(newSecret, a.key)) {
		t.Fatal("the frame key does not follow the new network key")
	}
}

// A REGISTER naming a key that is not bound costs the nucleus a
// Diffie–Hellman before it may ask for a reload, so such REGISTERs are
// budgeted per source: a flood of them from one address is throttled
// after the source's lookup budget.
func TestUnboundRegistersBudgeted(t *testing.T) {
	h := newHarness(t)
	x := h.edge(netA, secrets[netA], 1)
	x.register()
	throttled := h.dropped(DropThrottled)
	const n = 100
	for i := range n {
		var k wgkey.Key
		k[0], k[1] = 0xee, byte(i)
		x.raw(h.request(DeriveKey(secrets[netA]), TypeRegister, netA, h.clk.Now(), [nonceSize]byte{0xee, byte(i)},
			registerMsg{Key: k, IP4: testBinding(1).IP4}.encode(), x.addr()))
	}
	x.settle()
	got := h.dropped(DropThrottled) - throttled
	if got < n-2*10 {
		t.Fatalf("%d of %d REGISTERs of unbound keys throttled; the lookup budget allows a burst of %d", got, n, 2*10)
	}
	t.Logf("%d of %d throttled, %d refused as not authentic", got, n, h.dropped(DropAuth))
}

// memberKeys are the frame keys member m holds: the network key, its own
// device key, and its pair key with each other test device of threeMembers.
func memberKeys(m *edge) [][]byte {
	keys := [][]byte{DeriveKey(secrets[netA]), testDeviceKey(secrets[netA], m.key)}
	for _, id := range []byte{1, 2, 3, 4} {
		if k := testKey(id); k != m.key {
			keys = append(keys, pairKeys(testPriv(testID(m.key)), m.key, k).key(DeriveKey(secrets[netA])))
		}
	}
	return keys
}
