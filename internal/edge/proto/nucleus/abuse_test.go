package nucleus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// randomID is a network id of the real shape that names no network.
func randomID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return NetworkIDPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// udpPeer is a loopback socket whose datagrams go to handle.
type udpPeer struct {
	conn *net.UDPConn
	rx   atomic.Int64 // bytes received
}

func newUDPPeer(t *testing.T, ip net.IP, handle func(b []byte, from netip.AddrPort)) *udpPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p := &udpPeer{conn: conn}
	go func() {
		buf := make([]byte, MaxFrame+1)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p.rx.Add(int64(n))
			if handle != nil {
				handle(buf[:n], from)
			}
		}
	}()
	return p
}

func (p *udpPeer) addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// cookieOfServer asks the nucleus for the cookie of p's address, as any
// client at that address can.
func cookieOfServer(t *testing.T, at netip.AddrPort, conn *net.UDPConn) [CookieSize]byte {
	t.Helper()
	req := seal(DeriveKey([]byte("x")), TypeLeave, netA, time.Now(), make([]byte, 32+CookieSize))
	if _, err := conn.WriteToUDPAddrPort(req, at); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	buf := make([]byte, MaxFrame)
	n, _, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no COOKIE: %v", err)
	}
	h, err := parseHeader(buf[:n])
	if err != nil || h.typ != TypeCookie || !verify(req[len(req)-macSize:], buf[:n]) {
		t.Fatalf("not a COOKIE answering the request: %x", buf[:n])
	}
	m, ok := decodeCookie(h.body)
	if !ok {
		t.Fatal("bad COOKIE body")
	}
	return m.Cookie
}

// A flood of 1,000 frames a second naming random network ids from one
// address — with that address's valid cookie, so every frame gets past
// the cookie check — does not delay the registration of devices of real
// networks the nucleus has not looked up yet by a second. Lookups run off
// the packet loop under a budget per source, unknown ids are remembered,
// malformed ids never reach the Directory.
func TestRandomIDFloodDoesNotDelayRegister(t *testing.T) {
	dir := newTestDir()
	dir.delay = 2 * time.Millisecond // a database round trip
	var legit []string
	for range 5 {
		id := randomID()
		dir.secrets[id], dir.versions[id] = []byte("secret of "+id), 1
		dir.members[id] = []Binding{testBinding(1)}
		legit = append(legit, id)
	}
	srv, err := NewServer(testOptions(Options{Directory: dir}))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	at := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ctx, pc) }()
	defer func() { cancel(); <-done }()

	flooder, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer flooder.Close()
	cookie := cookieOfServer(t, at, flooder)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	var sent atomic.Int64
	go func() {
		defer wg.Done()
		junk := DeriveKey([]byte("junk"))
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for j := range 10 { // 1,000 frames a second
				id := randomID()
				if j == 9 {
					id = "vn_" + string([]byte{0x7f, 'x'}) // not the shape of an id
				}
				body := append(registerMsg{Key: testKey(9)}.encode(), cookie[:]...)
				if _, err := flooder.WriteToUDPAddrPort(seal(junk, TypeRegister, id, time.Now(), body), at); err == nil {
					sent.Add(1)
				}
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // the flood is on
	for i, id := range legit {
		time.Sleep(300 * time.Millisecond) // spread over the flood
		registered := make(chan time.Time, 1)
		var c *Client
		// Devices at their own addresses (the budgets are per source).
		dev := newUDPPeer(t, net.IPv4(127, 0, 1, byte(i+1)), func(b []byte, from netip.AddrPort) { c.Handle(b, from) })
		b := testBinding(1)
		c, err = NewClient(testClient(ClientConfig{NetworkID: id, Secret: dir.secrets[id], PublicKey: b.Key, IP4: b.IP4, IP6: b.IP6, Server: at,
			Send: func(f []byte, to netip.AddrPort) error { _, err := dev.conn.WriteToUDPAddrPort(f, to); return err }}))
		if err != nil {
			t.Fatal(err)
		}
		c.OnPeers(func([]Peer) {
			select {
			case registered <- time.Now():
			default:
			}
		})
		start := time.Now()
		if err := c.Register(); err != nil {
			t.Fatal(err)
		}
		select {
		case at := <-registered:
			t.Logf("network %d registered after %v", i, at.Sub(start))
		case <-time.After(time.Second):
			t.Errorf("network %d: REGISTER not answered within 1 s during the flood", i)
		}
	}
	close(stop)
	wg.Wait()
	st := srv.Stats()
	t.Logf("flood: %d frames sent; %d lookups; dropped %v", sent.Load(), dir.calls.Load(), st.Dropped)
	if sent.Load() < 1500 {
		t.Fatalf("only %d flood frames sent", sent.Load())
	}
	// The flooding source got its budget (10 a second, bursts of 20), no
	// more; the malformed ids none.
	if n := dir.calls.Load(); n > 20+10*4+int64(len(legit)) {
		t.Errorf("%d Directory lookups during a %d-frame flood from one address", n, sent.Load())
	}
	if st.Dropped[DropThrottled] == 0 || st.Dropped[DropMalformed] == 0 {
		t.Errorf("dropped %v: want throttled and malformed frames", st.Dropped)
	}
}

// Unknown ids are remembered: many frames naming one cost one lookup; and
// a known network's key stays usable while its answer is refreshed in the
// background.
func TestNegativeCacheAndRefreshAhead(t *testing.T) {
	h := newHarness(t)
	stranger := h.edge("vn_nobody", []byte("x"), 4)
	if err := stranger.c.Register(); err != nil { // the COOKIE, the lookup
		t.Fatal(err)
	}
	testenv.Eventually(t, "unknown network drop", func() bool { return h.dropped(DropUnknownNetwork) == 1 })
	for range 20 {
		if err := stranger.c.Register(); err != nil {
			t.Fatal(err)
		}
		h.clk.Advance(time.Millisecond)
	}
	testenv.Eventually(t, "unknown network drops", func() bool { return h.dropped(DropUnknownNetwork) == 21 })
	a := h.edge(netA, secrets[netA], 1)
	a.register()
	if n := h.dir.calls.Load(); n != 2 {
		t.Fatalf("%d lookups, want one per network", n)
	}
	// Past half the TTL a slow Directory does not delay the answer.
	h.dir.mu.Lock()
	h.dir.delay = time.Second
	h.dir.mu.Unlock()
	h.clk.Advance(20 * time.Second)
	ack := a.c.Status().LastAck
	start := time.Now()
	a.keepalive()
	testenv.Eventually(t, "keepalive answered", func() bool { return a.c.Status().LastAck.After(ack) })
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("keepalive answered after %v: it waited for the refresh", d)
	}
	testenv.Eventually(t, "refreshed in the background", func() bool { return h.srv.Stats().Lookups == 3 })
}

// A holder of a network's secret spoofing a victim's address cannot make
// the nucleus send the victim more than it sent itself: requests from an
// address that has not proven it receives there are answered with a
// COOKIE (smaller than the request) and nothing else, within a byte
// budget per address. The test forges the source address with a raw
// socket and counts what reaches the victim's socket.
func TestAmplificationBound(t *testing.T) {
	sp := newRawSpoofer(t)
	dir := newTestDir()
	h := newHarnessWith(t, dir, func(o *Options) { o.SourceRegisters = 1000 }) // 41 devices on one loopback address
	// The attacker's own frame key.
	key := testDeviceKey(secrets[netA], testKey(100))
	var members []*edge
	for i := byte(1); i <= 40; i++ {
		e := h.edge(netA, secrets[netA], i)
		e.register()
		members = append(members, e)
	}
	attacker := h.edge(netA, secrets[netA], 100) // a member, registered at its own address
	attacker.register()
	victim := newUDPPeer(t, net.IPv4(127, 0, 0, 2), nil)
	va := victim.addr()
	realCookie := h.srv.cookies.make(attacker.addr())

	type attack struct {
		name   string
		frames func(i int) []byte
	}
	nonce := func(i int, tag byte) [nonceSize]byte { return [nonceSize]byte{tag, byte(i), byte(i >> 8)} }
	withCookie := func(body []byte, c [CookieSize]byte) []byte { return append(bytes.Clone(body), c[:]...) }
	b100 := testBinding(100)
	attacks := []attack{
		{"REGISTER", func(i int) []byte {
			return sealNonce(key, TypeRegister, netA, h.clk.Now().UnixMilli(), nonce(i, 1),
				withCookie(registerMsg{Key: b100.Key, IP4: b100.IP4, IP6: b100.IP6}.encode(), [CookieSize]byte{}))
		}},
		{"REGISTER with the attacker's own cookie", func(i int) []byte {
			return sealNonce(key, TypeRegister, netA, h.clk.Now().UnixMilli(), nonce(i, 2),
				withCookie(registerMsg{Key: b100.Key, IP4: b100.IP4, IP6: b100.IP6}.encode(), realCookie))
		}},
		{"KEEPALIVE roaming a member to the victim", func(i int) []byte {
			return sealNonce(key, TypeKeepalive, netA, h.clk.Now().UnixMilli(), nonce(i, 3),
				withCookie(keepaliveMsg{Key: members[i%len(members)].key}.encode(), realCookie))
		}},
		{"PUNCH_REQUEST", func(i int) []byte {
			return sealNonce(key, TypePunchRequest, netA, h.clk.Now().UnixMilli(), nonce(i, 4),
				withCookie(pairMsg{From: members[i%len(members)].key, To: attacker.key}.encode(), realCookie))
		}},
		{"LEAVE", func(i int) []byte {
			return sealNonce(key, TypeLeave, netA, h.clk.Now().UnixMilli(), nonce(i, 5),
				withCookie(members[i%len(members)].key[:], realCookie))
		}},
	}
	worst := 0.0
	for _, a := range attacks {
		before := victim.rx.Load()
		in := 0
		for i := range 20 {
			f := a.frames(i)
			sp.send(t, va, h.at, f)
			in += len(f)
		}
		// The nucleus answers within a few milliseconds; wait until the
		// frames were handled (counted in a way or another).
		time.Sleep(200 * time.Millisecond)
		out := victim.rx.Load() - before
		ratio := float64(out) / float64(in)
		worst = max(worst, ratio)
		t.Logf("%-40s in %5d B, to the victim %5d B: ratio %.2f", a.name, in, out, ratio)
		if ratio > 1 {
			t.Errorf("%s: the victim received %.2f times what the attacker sent", a.name, ratio)
		}
	}
	t.Logf("worst bytes-out/bytes-in ratio to an unverified address: %.2f", worst)
	// The roaming attempts moved nobody to the victim, and no member left.
	for _, p := range h.srv.Peers(netA) {
		if p.Endpoint == va {
			t.Errorf("a member was moved to the victim's address: %+v", p)
		}
	}
	if n := len(h.srv.Peers(netA)); n != 41 {
		t.Errorf("%d peers after the attacks, want 41", n)
	}
	// A PUNCH_REQUEST from the attacker's own address naming a member
	// reaches that member at its own (verified) address, not the victim.
	before := victim.rx.Load()
	if err := attacker.c.Punch(members[0].key); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-members[0].punches:
		if p.PublicKey != attacker.key {
			t.Errorf("punch %+v", p)
		}
	case <-time.After(wait):
		t.Fatal("no PUNCH")
	}
	if victim.rx.Load() != before {
		t.Error("the victim received a PUNCH")
	}

	// The bytes sent to one unverified address are capped: a burst of
	// spoofed requests gets COOKIEs worth twice the per-second budget, then
	// nothing until the budget refills (the fake clock does not move).
	before = victim.rx.Load()
	for i := range 300 {
		sp.send(t, va, h.at, attacks[0].frames(1000+i))
	}
	testenv.Eventually(t, "unverified drops", func() bool { return h.dropped(DropUnverified) > 0 })
	time.Sleep(100 * time.Millisecond)
	if got := victim.rx.Load() - before; got > 2*4096 {
		t.Errorf("%d bytes sent to an unverified address in a burst, budget %d", got, 2*4096)
	}
}

// Replay cache: when full, the oldest nonce is forgotten (and frames
// dated at or before it refused); fresh frames keep being accepted.
func TestReplayCacheEvictsOldest(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := newReplayCache(4)
	ts := func(i int) int64 { return now.Add(time.Duration(i-10) * time.Millisecond).UnixMilli() }
	for i := 1; i <= 4; i++ {
		if !r.add([nonceSize]byte{byte(i)}, ts(i), now) {
			t.Fatalf("nonce %d refused", i)
		}
	}
	if !r.add([nonceSize]byte{5}, ts(5), now) {
		t.Fatal("a fresh nonce was refused when the cache was full")
	}
	if r.len() != 4 {
		t.Errorf("cache holds %d, want 4", r.len())
	}
	if r.add([nonceSize]byte{5}, ts(5), now) {
		t.Error("a remembered nonce was accepted again")
	}
	if r.add([nonceSize]byte{1}, ts(1), now) {
		t.Error("the forgotten nonce was accepted again")
	}
	for i := 6; i <= 20; i++ {
		if !r.add([nonceSize]byte{byte(i)}, ts(i), now) {
			t.Fatalf("fresh nonce %d refused", i)
		}
	}
	// A nonce of a frame dated in the future raises the floor only to its
	// arrival, so in-time frames still pass after it is forgotten.
	r = newReplayCache(2)
	r.add([nonceSize]byte{1}, now.Add(50*time.Second).UnixMilli(), now)
	r.add([nonceSize]byte{2}, now.UnixMilli(), now)
	r.add([nonceSize]byte{3}, now.UnixMilli()+1, now)
	if !r.add([nonceSize]byte{4}, now.UnixMilli()+2, now) {
		t.Error("an in-time frame was refused after a future-dated one was forgotten")
	}
}

// A member that fills its network's nonce cache does not lock the others
// out: their frames are still accepted.
func TestFullReplayCacheKeepsAccepting(t *testing.T) {
	// (A's 200 keepalives come faster than a client's: lift the per-peer budget.)
	h := newHarnessWith(t, newTestDir(), func(o *Options) { o.ReplayEntries, o.PeerKeepalives = 64, 1000 })
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	a.register()
	b.register()
	for range 200 {
		h.clk.Advance(time.Millisecond)
		a.keepalive()
	}
	testenv.Eventually(t, "A's keepalives handled", func() bool { return h.srv.Stats().Frames >= 202 })
	ack := b.c.Status().LastAck
	h.clk.Advance(time.Millisecond)
	b.keepalive()
	testenv.Eventually(t, "B's keepalive answered", func() bool { return b.c.Status().LastAck.After(ack) })
}

// REGISTER floods from one holder of the secret are limited per source;
// another source still registers.
func TestRegisterFloodLimitedPerSource(t *testing.T) {
	h := newHarnessWith(t, newTestDir(), func(o *Options) { o.SourceRegisters = 5 })
	x := h.edge(netA, secrets[netA], 1)
	x.register()
	key := testDeviceKey(secrets[netA], x.key)
	b := testBinding(1)
	for i := range 100 {
		x.raw(h.request(key, TypeRegister, netA, h.clk.Now(), [nonceSize]byte{0xee, byte(i)},
			registerMsg{Key: b.Key, IP4: b.IP4, IP6: b.IP6}.encode(), x.addr()))
	}
	testenv.Eventually(t, "throttled registers", func() bool { return h.dropped(DropThrottled)+h.srv.Stats().Frames >= 101 })
	if n := h.srv.Stats().Frames; n > 10 {
		t.Errorf("%d REGISTERs from one source accepted without time passing, budget 10", n)
	}
	y := h.edgeAt(netA, secrets[netA], 2, net.IPv4(127, 0, 0, 2))
	y.register()
	x.waitPeers("Y's join", has(y.key))
	// A peer that roams (its KEEPALIVE from a new address, here X's
	// source) is pushed to every member, so it spends the budget of its
	// new source.
	throttled := h.dropped(DropThrottled)
	x.raw(h.request(testDeviceKey(secrets[netA], y.key), TypeKeepalive, netA, h.clk.Now(), [nonceSize]byte{0xef}, keepaliveMsg{Key: y.key}.encode(), x.addr()))
	testenv.Eventually(t, "roaming throttled", func() bool { return h.dropped(DropThrottled) == throttled+1 })
	if p := find(h.srv.Peers(netA), y.key); p == nil || p.Endpoint != y.addr() {
		t.Fatalf("Y moved: %+v", p)
	}
}

// The membership check is a cached map lookup: a hundred REGISTERs and
// KEEPALIVEs of ten devices cost one Directory call.
func TestMembershipCheckCached(t *testing.T) {
	h := newHarnessWith(t, newTestDir(), func(o *Options) { o.SourceRegisters = 1000 }) // 10 devices on one loopback address
	for i := byte(1); i <= 10; i++ {
		e := h.edge(netA, secrets[netA], i)
		for range 5 {
			e.register()
			e.keepalive()
		}
	}
	if n := h.dir.calls.Load(); n != 1 {
		t.Fatalf("%d Directory calls for 100 requests of one network", n)
	}
}

// One virtual IP belongs to one device key: a holder of the secret cannot
// register another member's address with its own key, nor an address
// with an unbound key, nor leave or punch for another member (neither
// with its own keys, nor with that member's from another address).
func TestBindingRefusesOtherKey(t *testing.T) {
	h := newHarness(t)
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	a.register()
	b.register()
	a.waitPeers("B", has(b.key))

	c := h.edge(netA, secrets[netA], 3) // bound to 100.66.0.3
	c.c.cfg.IP4 = testBinding(2).IP4    // claims B's address
	if err := c.c.Register(); err != nil {
		t.Fatal(err)
	}
	stranger := h.edge(netA, secrets[netA], 251) // no binding at all
	if err := stranger.c.Register(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "refused registrations", func() bool { return h.dropped(DropNotMember) >= 2 })

	// LEAVE and PUNCH_REQUEST naming B, from C's address: signed with
	// the keys C holds, and with B's own key (as if B's frames were sent
	// from elsewhere).
	auth := h.dropped(DropAuth)
	for i, key := range append(memberKeys(c), testDeviceKey(secrets[netA], b.key)) {
		c.raw(h.request(key, TypeLeave, netA, h.clk.Now(), [nonceSize]byte{0xaa, 1, byte(i)}, b.key[:], c.addr()))
		c.raw(h.request(key, TypePunchRequest, netA, h.clk.Now(), [nonceSize]byte{0xaa, 2, byte(i)}, pairMsg{From: b.key, To: a.key}.encode(), c.addr()))
	}
	testenv.Eventually(t, "refused leave and punch", func() bool {
		return h.dropped(DropAuth) >= auth+uint64(2*len(memberKeys(c))) && h.dropped(DropNotMember) >= 4
	})
	ps := h.srv.Peers(netA)
	if len(ps) != 2 || find(ps, b.key) == nil || find(ps, a.key) == nil {
		t.Fatalf("peers %v, want A and B only", ps)
	}
	if p := find(ps, b.key); p.IP4 != testBinding(2).IP4 || p.Endpoint != b.addr() {
		t.Errorf("B changed: %+v", *p)
	}
	select {
	case p := <-a.punches:
		t.Errorf("A got a PUNCH asked in B's name: %+v", p)
	default:
	}
}

// A new secret: the nucleus tells registered peers (REKEY, signed with the
// old key), accepts the old key from them at their address for the grace,
// and refuses it for everything else; a former member that kept the old
// secret can neither register, nor relay, nor speak for a member.
func TestSecretRotation(t *testing.T) {
	h := newHarness(t)
	a, b, c := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2), h.edge(netA, secrets[netA], 3)
	rekeys := make(chan uint32, 4)
	a.c.OnRekey(func(v uint32) { rekeys <- v })
	a.register()
	b.register()
	c.register()
	a.waitPeers("B and C", func(ps []Peer) bool { return len(ps) == 2 })
	cID := relayIDOf(t, h.srv, netA, c.key)
	aID := relayIDOf(t, h.srv, netA, a.key)

	// C leaves the network: unbound, and the secret rotates.
	newSecret := []byte("alpha-secret-rotated-0123456789")
	h.dir.unbind(netA, c.key)
	h.dir.rotate(netA, newSecret)
	h.srv.Invalidate(netA)
	select {
	case v := <-rekeys:
		if v != 2 {
			t.Errorf("REKEY version %d, want 2", v)
		}
	case <-time.After(wait):
		t.Fatal("no REKEY")
	}
	a.waitPeers("C evicted", lacks(c.key))

	// B has not switched yet: its KEEPALIVE under the old key, from its
	// address, is accepted during the grace; a roaming one is not.
	ack := b.c.Status().LastAck
	h.clk.Advance(time.Millisecond)
	b.keepalive()
	testenv.Eventually(t, "B's old-key keepalive answered", func() bool { return b.c.Status().LastAck.After(ack) })
	auth := h.dropped(DropAuth)
	// C, with the old secret: REGISTER, and a KEEPALIVE naming B.
	if err := c.c.Register(); err != nil {
		t.Fatal(err)
	}
	old := DeriveKey(secrets[netA])
	c.raw(h.request(testDeviceKey(secrets[netA], c.key), TypeKeepalive, netA, h.clk.Now(), [nonceSize]byte{0xcc, 1}, keepaliveMsg{Key: b.key}.encode(), c.addr()))
	testenv.Eventually(t, "C refused", func() bool { return h.dropped(DropAuth) >= auth+2 })
	if p := find(h.srv.Peers(netA), b.key); p == nil || p.Endpoint != b.addr() {
		t.Fatalf("B moved: %+v", p)
	}
	// C's relay frames, tagged with either key, are refused: its relay id
	// is gone.
	nm := h.dropped(DropNotMember)
	c.raw(relayFrameFor(old, cID, aID, h.clk.Now(), []byte("x")))
	c.raw(relayFrameFor(DeriveKey(newSecret), cID, aID, h.clk.Now(), []byte("x")))
	testenv.Eventually(t, "C's relays refused", func() bool { return h.dropped(DropNotMember) >= nm+2 })

	// A switches and keeps working; after the grace the old key is refused.
	if err := a.c.SetSecret(newSecret); err != nil {
		t.Fatal(err)
	}
	ack = a.c.Status().LastAck
	h.clk.Advance(time.Millisecond)
	a.keepalive()
	testenv.Eventually(t, "A's new-key keepalive answered", func() bool { return a.c.Status().LastAck.After(ack) })
	h.clk.Advance(61 * time.Second)
	testenv.Eventually(t, "grace over", func() bool {
		h.srv.mu.Lock()
		defer h.srv.mu.Unlock()
		return h.srv.networks[netA].prevKey == nil
	})
	auth = h.dropped(DropAuth)
	b.keepalive()
	testenv.Eventually(t, "B's old-key keepalive refused", func() bool { return h.dropped(DropAuth) > auth })
}

// Frames naming ids of the wrong shape never reach the Directory.
func TestMalformedIDsNeverLookedUp(t *testing.T) {
	h := newHarness(t)
	a := h.edge(netA, secrets[netA], 1)
	a.register()
	calls := h.dir.calls.Load()
	for _, id := range []string{"net_x", "vn_", "vn_a b", "vn_a.b", "VN_ab", "vn_" + string(bytes.Repeat([]byte("a"), 62))} {
		body := registerMsg{Key: a.key}.encode()
		c := h.srv.cookies.make(a.addr())
		f := sealRaw(DeriveKey([]byte("x")), TypeRegister, []byte(id), h.clk.Now().UnixMilli(), [nonceSize]byte{1}, append(body, c[:]...))
		a.raw(f)
	}
	testenv.Eventually(t, "malformed drops", func() bool { return h.dropped(DropMalformed) == 6 })
	if h.dir.calls.Load() != calls {
		t.Errorf("malformed ids were looked up")
	}
	if validNetworkID("vn_zJk3_-09AZaz") != true {
		t.Error("a real id shape refused")
	}
}

// A device that joined after the nucleus looked its network up is
// admitted: its REGISTER reloads the network (at most once a second).
func TestNewMemberAdmittedAfterReload(t *testing.T) {
	h := newHarness(t)
	a := h.edge(netA, secrets[netA], 1)
	a.register()
	late := h.edge(netA, secrets[netA], 252) // not bound yet
	if err := late.c.Register(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "refused", func() bool { return h.dropped(DropNotMember) == 1 })
	h.dir.bind(netA, Binding{Key: late.key, IP4: netip.AddrFrom4([4]byte{100, 66, 0, 252})})
	h.clk.Advance(time.Second)
	late.register()
	a.waitPeers("the new member", has(late.key))
	if n := h.dir.calls.Load(); n != 2 {
		t.Errorf("%d lookups, want the first and one reload", n)
	}
}

// The client takes a COOKIE only as the answer to a request it sent:
// one answering no request, or with a MAC not keyed by the request's, is
// dropped.
func TestClientRefusesForgedCookie(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	server := netip.MustParseAddrPort("127.0.0.1:51820")
	var sent [][]byte
	c, err := NewClient(testClient(ClientConfig{NetworkID: netA, Secret: secrets[netA], PublicKey: testKey(1), Server: server, Clock: clk,
		Send: func(b []byte, _ netip.AddrPort) error { sent = append(sent, bytes.Clone(b)); return nil }}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(); err != nil {
		t.Fatal(err)
	}
	req := sent[0]
	h, _ := splitFrame(req)
	cookie := [CookieSize]byte{7}
	// Keyed with something else than the request's MAC, or answering
	// another nonce.
	forged := sealRaw(DeriveKey(secrets[netA]), TypeCookie, []byte(netA), clk.Now().UnixMilli(), [nonceSize]byte{1},
		cookieMsg{Echo: [nonceSize]byte(h.nonce), Cookie: cookie}.encode())
	other := sealRaw(req[len(req)-macSize:], TypeCookie, []byte(netA), clk.Now().UnixMilli(), [nonceSize]byte{2},
		cookieMsg{Echo: [nonceSize]byte{9}, Cookie: cookie}.encode())
	c.Handle(forged, server)
	c.Handle(other, server)
	if c.Status().Dropped != 2 || len(sent) != 1 {
		t.Fatalf("dropped %d, sent %d: a forged COOKIE was taken", c.Status().Dropped, len(sent))
	}
	// The real one is taken and the request repeated with the cookie, once.
	real := sealCookie(req, h, cookie, clk.Now())
	c.Handle(real, server)
	if len(sent) != 2 {
		t.Fatalf("the request was not repeated (%d sent)", len(sent))
	}
	if _, got, _ := splitCookie(mustSplit(t, sent[1]).body); got != cookie {
		t.Fatalf("repeated with cookie %x", got)
	}
	h2 := mustSplit(t, sent[1])
	c.Handle(sealCookie(sent[1], h2, [CookieSize]byte{8}, clk.Now()), server)
	if len(sent) != 2 {
		t.Fatal("a repeated request was repeated again")
	}
}

func mustSplit(t *testing.T, b []byte) rawHeader {
	t.Helper()
	h, ok := splitFrame(b)
	if !ok {
		t.Fatal("bad frame")
	}
	return h
}

// A request from an address that has not proven it receives there earns
// at most a COOKIE, and a COOKIE is never larger than the request: for
// every request type, network id length and message length (truncated,
// empty, or without a cookie field), the bytes the nucleus answers are at
// most the bytes it received.
func TestCookieNeverLargerThanRequest(t *testing.T) {
	h := newHarness(t)
	key := testDeviceKey(secrets[netA], testKey(1))
	src := 0
	for _, typ := range []byte{TypeRegister, TypeKeepalive, TypePunchRequest, TypeLeave} {
		for _, id := range []string{"vn_x", netA, "vn_" + strings.Repeat("a", MaxNetworkID-3)} {
			for n := 0; n <= 2*len(wgkey.Key{})+CookieSize+8; n++ { // past the longest minimum (PUNCH_REQUEST)
				src++ // a fresh source each time: no budget hides an answer
				from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(src >> 8), byte(src)}), uint16(1000+src))
				f := sealNonce(key, typ, id, h.clk.Now().UnixMilli(), [nonceSize]byte{typ, byte(n), byte(src)}, make([]byte, n))
				out := 0
				for _, o := range h.srv.handle(t.Context(), f, from) {
					out += len(o.b)
				}
				if out > len(f) {
					t.Errorf("type %d, network id of %d bytes, body of %d bytes: %d bytes in, %d bytes out", typ, len(id), n, len(f), out)
				}
			}
		}
	}
	if st := h.srv.Stats(); st.Cookies == 0 {
		t.Fatal("no COOKIE was sent: the test exercised nothing")
	}
}

// A registered member flooding KEEPALIVEs (each of which is answered) is
// limited per peer: beyond a burst they are dropped unanswered, while
// keepalives at the client's pace (every 1 to 20 s) and the other members
// are unaffected.
func TestKeepaliveFloodLimitedPerPeer(t *testing.T) {
	h := newHarnessWith(t, newTestDir(), func(o *Options) { o.Keepalive = time.Hour })
	a, b := h.edge(netA, secrets[netA], 1), h.edge(netA, secrets[netA], 2)
	a.register()
	b.register()
	base := h.dropped(DropThrottled)
	for range 50 {
		a.keepalive()
	}
	testenv.Eventually(t, "the flood throttled", func() bool { return h.dropped(DropThrottled)-base == 40 })
	ack := b.c.Status().LastAck
	h.clk.Advance(time.Millisecond)
	b.keepalive()
	testenv.Eventually(t, "B answered during A's flood", func() bool { return b.c.Status().LastAck.After(ack) })

	// At the client's pace nothing is refused.
	base = h.dropped(DropThrottled)
	for _, every := range []time.Duration{time.Second, 20 * time.Second} {
		for range 30 {
			h.clk.Advance(every)
			ack := a.c.Status().LastAck
			a.keepalive()
			testenv.Eventually(t, "keepalive answered", func() bool { return a.c.Status().LastAck.After(ack) })
		}
	}
	if d := h.dropped(DropThrottled) - base; d != 0 {
		t.Fatalf("%d keepalives at 1/s and 1/20s were throttled", d)
	}
}
