package nucleus

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/platform/clock"
)

// ClientConfig configures a Client for one network.
type ClientConfig struct {
	NetworkID string
	Secret    []byte // the network's secret_key from the join response, as bytes
	// PrivateKey is this device's WireGuard (X25519) private key: its
	// frames prove that it holds it. It never leaves the device.
	PrivateKey *ecdh.PrivateKey
	PublicKey  wgkey.Key // this device's WireGuard public key (zero: PrivateKey's)
	// ServerKey is the nucleus's public key (the join answer's server
	// public_key). Frames to and from the nucleus are keyed with the
	// Diffie–Hellman of the two keys; a wrong one registers nowhere.
	ServerKey wgkey.Key
	IP4, IP6  netip.Addr
	Local     []netip.AddrPort // local endpoints worth trying from the same LAN
	Server    netip.AddrPort   // the nucleus
	// Send writes one datagram on the socket the edge shares between
	// WireGuard and signaling. It must be safe for concurrent use.
	Send  func(b []byte, to netip.AddrPort) error
	Clock clock.Clock  // nil: the system clock
	Log   *slog.Logger // nil: discard
	// Keepalive overrides the interval the nucleus advertises (default
	// 20 s until the nucleus says otherwise).
	Keepalive time.Duration
	// RekeyGrace is how long after SetSecret frames signed with the
	// previous secret are still accepted (default 60 s): peers switch a
	// moment apart.
	RekeyGrace time.Duration
}

// ClientStatus is what a Client knows about its registration.
type ClientStatus struct {
	Registered bool
	Observed   netip.AddrPort // this device's address as the nucleus sees it
	LastAck    time.Time
	Version    uint32 // peer-list version held
	Dropped    uint64 // inbound frames rejected
	// RTT is the round trip of the last KEEPALIVE the nucleus answered
	// (zero: none measured yet); RTTAt is when it was measured.
	RTT   time.Duration
	RTTAt time.Time
	// Local are the local endpoints announced to the nucleus.
	Local []netip.AddrPort
}

// Client speaks the nucleus protocol for one network of an edge. It owns
// no socket: inbound signaling frames are given to Handle (control) and
// UnwrapRelay (relay), outbound ones go through ClientConfig.Send. All
// methods are safe for concurrent use; callbacks run on the goroutine
// that called Handle and must not block.
type Client struct {
	cfg  ClientConfig
	keys atomic.Pointer[keyState]
	dev  *dhKeys // this device's frame keys with the nucleus
	clk  clock.Clock
	log  *slog.Logger

	mu         sync.Mutex
	local      []netip.AddrPort
	registered bool
	left       bool
	observed   netip.AddrPort
	lastAck    time.Time
	interval   time.Duration // advertised by the nucleus
	version    uint32
	peers      map[wgkey.Key]Peer
	// list is peers sorted by key, or nil until peerList builds it. It
	// is never changed in place (a change makes a new one), so OnPeers
	// callbacks share it.
	list     []Peer
	pairs    map[wgkey.Key]*dhKeys // frame keys of PING and PONG, per peer (made on first use)
	pending  pendingPeers
	replay   *replayCache
	dropped  uint64
	onPeers  func([]Peer)
	onPunch  func(Peer)
	onPong   func(peer wgkey.Key, from netip.AddrPort)
	onRekey  func(version uint32)
	kick     chan struct{}
	cookie   [CookieSize]byte // the nucleus's last cookie for this device's address
	sent     [8]sentRequest   // the last requests, for COOKIE answers
	sentNext int
	// kaSent is when the last KEEPALIVE not answered yet was sent (zero:
	// none); its REGISTER_ACK measures rtt. acked is closed and replaced
	// on every REGISTER_ACK (Probe waits on it).
	kaSent time.Time
	rtt    time.Duration
	rttAt  time.Time
	acked  chan struct{}

	relayID atomic.Uint32
	relays  atomic.Pointer[relayTable]
}

// keyState is the network key and this device's frame key with the
// nucleus and, for a grace after SetSecret, the ones before; replaced,
// never changed, so the packet path reads it without a lock.
type keyState struct {
	key, prev    []byte // network keys: RELAY tags, and the frame keys derive from them
	dev, prevDev []byte // frame keys of the frames between this device and the nucleus
	prevUntil    time.Time
	macs         sync.Pool // *macer of key
	prevMacs     sync.Pool // *macer of prev
}

func newKeyState(key, dev, prev, prevDev []byte, prevUntil time.Time) *keyState {
	ks := &keyState{key: key, dev: dev, prev: prev, prevDev: prevDev, prevUntil: prevUntil}
	ks.macs.New = func() any { m := &macer{}; m.use(ks.key); return m }
	ks.prevMacs.New = func() any { m := &macer{}; m.use(ks.prev); return m }
	return ks
}

// prevValid reports whether the previous key is still accepted.
func (ks *keyState) prevValid(now time.Time) bool { return ks.prev != nil && now.Before(ks.prevUntil) }

// sentRequest is a request as sent, to repeat it with a new cookie.
type sentRequest struct {
	nonce   [nonceSize]byte
	mac     [macSize]byte
	typ     byte
	body    []byte // without the cookie
	retried bool
}

// relayTable maps peers to their relay ids and back; it is replaced, never
// changed, so the packet path reads it without a lock.
type relayTable struct {
	ids  map[wgkey.Key]uint32
	keys map[uint32]wgkey.Key
}

type pendingPeers struct {
	version uint32
	parts   [][]Peer // nil entries: not yet received
	got     int
}

// NewClient builds a Client; it sends nothing until Register or Run.
func NewClient(cfg ClientConfig) (*Client, error) {
	switch {
	case !validNetworkID(cfg.NetworkID):
		return nil, errors.New("nucleus: invalid network id")
	case len(cfg.Secret) == 0:
		return nil, errors.New("nucleus: empty network secret")
	case cfg.PrivateKey == nil || cfg.PrivateKey.Curve() != ecdh.X25519():
		return nil, errors.New("nucleus: the device's X25519 private key is required")
	case !cfg.PublicKey.IsZero() && cfg.PublicKey != PublicKeyOf(cfg.PrivateKey):
		return nil, errors.New("nucleus: the public key is not the private key's")
	case cfg.ServerKey.IsZero():
		return nil, errors.New("nucleus: the nucleus's public key is required")
	case !cfg.Server.IsValid():
		return nil, errors.New("nucleus: invalid server address")
	case cfg.Send == nil:
		return nil, errors.New("nucleus: nil Send")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.RekeyGrace <= 0 {
		cfg.RekeyGrace = time.Minute
	}
	cfg.Server = netip.AddrPortFrom(cfg.Server.Addr().Unmap(), cfg.Server.Port())
	cfg.PublicKey = PublicKeyOf(cfg.PrivateKey)
	c := &Client{
		cfg: cfg, clk: cfg.Clock, log: cfg.Log,
		dev:   deviceKeys(cfg.PrivateKey, cfg.PublicKey, cfg.ServerKey, false),
		local: clampLocal(cfg.Local), peers: map[wgkey.Key]Peer{}, pairs: map[wgkey.Key]*dhKeys{}, replay: newReplayCache(4096),
		kick: make(chan struct{}, 1), acked: make(chan struct{}),
	}
	key := DeriveKey(cfg.Secret)
	dev := c.dev.key(key)
	if dev == nil {
		return nil, errors.New("nucleus: the nucleus's public key is not a usable X25519 key")
	}
	c.keys.Store(newKeyState(key, dev, nil, nil, time.Time{}))
	c.relays.Store(&relayTable{})
	return c, nil
}

// SetSecret switches to a network's new secret (after a rotation): frames
// are signed with it from now on, and those signed with the previous one
// are still accepted for ClientConfig.RekeyGrace.
func (c *Client) SetSecret(secret []byte) error {
	if len(secret) == 0 {
		return errors.New("nucleus: empty network secret")
	}
	key := DeriveKey(secret)
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.keys.Load()
	if bytes.Equal(old.key, key) {
		return nil
	}
	c.keys.Store(newKeyState(key, c.dev.key(key), old.key, old.dev, c.clk.Now().Add(c.cfg.RekeyGrace)))
	return nil
}

// OnRekey sets the callback told that the network's secret changed (the
// nucleus's REKEY, carrying the new secret's version): fetch it from the
// control plane and call SetSecret.
func (c *Client) OnRekey(f func(version uint32)) { c.mu.Lock(); c.onRekey = f; c.mu.Unlock() }

// verifyFrame checks the MAC of a frame from the nucleus under this
// device's frame key or, during the grace, the previous one.
func (c *Client) verifyFrame(b []byte, now time.Time) bool {
	ks := c.keys.Load()
	return verify(ks.dev, b) || (ks.prevValid(now) && verify(ks.prevDev, b))
}

// verifyDirect checks a PING or PONG: it must name this device as its
// target and a current peer as its sender, and carry the MAC of the
// frame key of the two (current or, during the grace, previous).
func (c *Client) verifyDirect(h header, b []byte, now time.Time) bool {
	m, ok := decodePair(h.body)
	if !ok || m.To != c.cfg.PublicKey {
		return false
	}
	c.mu.Lock()
	pk := c.pairLocked(m.From)
	c.mu.Unlock()
	if pk == nil {
		return false
	}
	ks := c.keys.Load()
	return verify(pk.key(ks.key), b) || (ks.prevValid(now) && verify(pk.key(ks.prev), b))
}

// pairLocked returns the PING/PONG keys of a current peer (nil for any
// other key). The caller holds c.mu.
func (c *Client) pairLocked(peer wgkey.Key) *dhKeys {
	if _, ok := c.peers[peer]; !ok {
		return nil
	}
	pk := c.pairs[peer]
	if pk == nil {
		pk = pairKeys(c.cfg.PrivateKey, c.cfg.PublicKey, peer)
		c.pairs[peer] = pk
	}
	return pk
}

// pairFrame seals a PING or PONG to a current peer; nil for another key.
func (c *Client) pairFrame(typ byte, peer wgkey.Key, now time.Time) []byte {
	c.mu.Lock()
	pk := c.pairLocked(peer)
	c.mu.Unlock()
	if pk == nil {
		return nil
	}
	key := pk.key(c.keys.Load().key)
	if key == nil {
		return nil
	}
	return seal(key, typ, c.cfg.NetworkID, now, pairMsg{From: c.cfg.PublicKey, To: peer}.encode())
}

// prunePairsLocked forgets the PING/PONG keys of keys no longer peers.
// The caller holds c.mu.
func (c *Client) prunePairsLocked() {
	for k := range c.pairs {
		if _, ok := c.peers[k]; !ok {
			delete(c.pairs, k)
		}
	}
}

func clampLocal(es []netip.AddrPort) []netip.AddrPort {
	if len(es) > MaxLocalEndpoints {
		es = es[:MaxLocalEndpoints]
	}
	return slices.Clone(es)
}

// OnPeers sets the callback that receives the full peer set (this device
// excluded, sorted by key) after every change. The slice is shared with
// the client and later callbacks: the callback must not change it.
func (c *Client) OnPeers(f func([]Peer)) { c.mu.Lock(); c.onPeers = f; c.mu.Unlock() }

// OnPunch sets the callback told to send to a peer's endpoints now.
func (c *Client) OnPunch(f func(Peer)) { c.mu.Lock(); c.onPunch = f; c.mu.Unlock() }

// OnPong sets the callback told that peer answered a PING from the
// underlay address from: the direct path to it works both ways.
func (c *Client) OnPong(f func(peer wgkey.Key, from netip.AddrPort)) {
	c.mu.Lock()
	c.onPong = f
	c.mu.Unlock()
}

// errNotPeer is Ping's answer for a key that is not a current peer.
var errNotPeer = errors.New("nucleus: not a current peer")

// Ping sends a PING naming peer straight to the underlay address to (not
// through the nucleus). A peer that receives it answers PONG to the
// source address, which reaches OnPong. The peer must be in the peer
// list: PING and PONG are keyed with the Diffie–Hellman of the two
// devices' keys.
func (c *Client) Ping(peer wgkey.Key, to netip.AddrPort) error {
	f := c.PingFrame(peer)
	if f == nil {
		return errNotPeer
	}
	return c.cfg.Send(f, netip.AddrPortFrom(to.Addr().Unmap(), to.Port()))
}

// PingFrame returns a fresh PING naming peer, for a caller that sends it
// itself (for example with a low TTL); nil when peer is not a current
// peer.
func (c *Client) PingFrame(peer wgkey.Key) []byte {
	return c.pairFrame(TypePing, peer, c.clk.Now())
}

// Server returns the nucleus address.
func (c *Client) Server() netip.AddrPort { return c.cfg.Server }

// Status returns the registration state.
func (c *Client) Status() ClientStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ClientStatus{Registered: c.registered, Observed: c.observed, LastAck: c.lastAck, Version: c.version, Dropped: c.dropped,
		RTT: c.rtt, RTTAt: c.rttAt, Local: slices.Clone(c.local)}
}

// ErrNotRegistered is Probe's answer while the nucleus has not
// acknowledged this device.
var ErrNotRegistered = errors.New("nucleus: not registered")

// Probe sends a KEEPALIVE now and waits, until ctx ends, for the
// nucleus's REGISTER_ACK: it returns the round trip and this device's
// address as the nucleus sees it. An answer is matched to the last
// KEEPALIVE sent (the acknowledgement names none), so callers space their
// probes: the nucleus answers a peer's KEEPALIVEs within a budget
// (Options.PeerKeepalives, a burst of ten) and drops the rest.
func (c *Client) Probe(ctx context.Context) (time.Duration, netip.AddrPort, error) {
	c.mu.Lock()
	if !c.registered {
		c.mu.Unlock()
		return 0, netip.AddrPort{}, ErrNotRegistered
	}
	version, acked, sent := c.version, c.acked, c.clk.Now()
	c.kaSent = sent
	c.mu.Unlock()
	if err := c.send(TypeKeepalive, keepaliveMsg{Key: c.cfg.PublicKey, Version: version}.encode()); err != nil {
		return 0, netip.AddrPort{}, err
	}
	select {
	case <-ctx.Done():
		return 0, netip.AddrPort{}, ctx.Err()
	case <-acked:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rtt := c.rtt
	if c.rttAt.Before(sent) { // the answer measured nothing (a REGISTER came between)
		rtt = c.clk.Now().Sub(sent)
	}
	return max(rtt, 0), c.observed, nil
}

// Peers returns the current peer set, sorted by key.
func (c *Client) Peers() []Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.peerList())
}

// peerList returns c.peers sorted by key: c.list, built when a full list
// was installed and kept sorted by the changes since (see listChanged).
// The caller holds c.mu and must not change the slice.
func (c *Client) peerList() []Peer {
	if c.list == nil {
		// The keys are sorted, not the peers: a key holds no pointer, so
		// the sort moves 32 bytes an element without write barriers.
		keys := make([]wgkey.Key, 0, len(c.peers))
		for k := range c.peers {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareKeys)
		c.list = make([]Peer, len(keys))
		for i, k := range keys {
			c.list[i] = c.peers[k]
		}
	}
	return c.list
}

func compareKeys(a, b wgkey.Key) int { return bytes.Compare(a[:], b[:]) }

// listChanged replaces c.list after peer p was added or changed (or, when
// gone, removed): one copy of the list, no sort, so a change in a network
// of n peers costs O(n) rather than O(n log n). The caller holds c.mu.
func (c *Client) listChanged(p Peer, gone bool) {
	if c.list == nil {
		return // built on the next peerList
	}
	i, found := slices.BinarySearchFunc(c.list, p.PublicKey, func(q Peer, k wgkey.Key) int { return compareKeys(q.PublicKey, k) })
	switch {
	case gone && !found:
		return
	case gone:
		c.list = slices.Concat(c.list[:i:i], c.list[i+1:])
	case found:
		c.list = slices.Clone(c.list)
		c.list[i] = p
	default:
		c.list = slices.Concat(c.list[:i:i], []Peer{p}, c.list[i:])
	}
}

// send sends a request to the nucleus with the current cookie, and
// remembers it so that a COOKIE answer can have it repeated.
func (c *Client) send(typ byte, body []byte) error {
	return c.sendRequest(typ, body, false)
}

func (c *Client) sendRequest(typ byte, body []byte, retried bool) error {
	var nonce [nonceSize]byte
	rand.Read(nonce[:])
	c.mu.Lock()
	cookie := c.cookie
	c.mu.Unlock()
	f := sealNonce(c.keys.Load().dev, typ, c.cfg.NetworkID, c.clk.Now().UnixMilli(), nonce, append(bytes.Clone(body), cookie[:]...))
	c.mu.Lock()
	c.sent[c.sentNext] = sentRequest{nonce: nonce, mac: [macSize]byte(f[len(f)-macSize:]), typ: typ, body: body, retried: retried}
	c.sentNext = (c.sentNext + 1) % len(c.sent)
	c.mu.Unlock()
	return c.cfg.Send(f, c.cfg.Server)
}

// handleCookie takes a COOKIE from the nucleus: it must answer a request
// this client sent recently (its MAC is keyed with that request's), which
// is then repeated once with the new cookie.
func (c *Client) handleCookie(b []byte, h header, now time.Time) {
	m, ok := decodeCookie(h.body)
	c.mu.Lock()
	found := -1
	for i := range c.sent {
		if ok && c.sent[i].typ != 0 && c.sent[i].nonce == m.Echo {
			found = i
		}
	}
	if found < 0 || !verify(c.sent[found].mac[:], b) || !fresh(h.ts, now) || !c.replay.add(h.nonce, h.ts, now) {
		c.dropped++
		c.mu.Unlock()
		return
	}
	req := c.sent[found]
	c.sent[found] = sentRequest{} // answered
	c.cookie = m.Cookie
	c.mu.Unlock()
	if req.retried {
		return
	}
	if err := c.sendRequest(req.typ, req.body, true); err != nil {
		c.log.Debug("nucleus send failed", "err", err)
	}
}

// Register sends a REGISTER now; the nucleus answers with REGISTER_ACK and
// the peer list.
func (c *Client) Register() error {
	c.mu.Lock()
	c.left = false
	c.kaSent = time.Time{} // its answer is not a KEEPALIVE's
	m := registerMsg{Key: c.cfg.PublicKey, IP4: c.cfg.IP4, IP6: c.cfg.IP6, Local: c.local}
	c.mu.Unlock()
	return c.send(TypeRegister, m.encode())
}

// SetLocalEndpoints changes the announced local endpoints and registers
// again when they differ.
func (c *Client) SetLocalEndpoints(es []netip.AddrPort) error {
	es = clampLocal(es)
	c.mu.Lock()
	same := slices.Equal(es, c.local)
	c.local = es
	c.mu.Unlock()
	if same {
		return nil
	}
	return c.Register()
}

// Leave tells the nucleus this device leaves; Run stops keeping alive
// until Register is called again.
func (c *Client) Leave() error {
	c.mu.Lock()
	c.left, c.registered = true, false
	c.mu.Unlock()
	return c.send(TypeLeave, bytes.Clone(c.cfg.PublicKey[:]))
}

// Punch asks the nucleus to tell this device and the peer to send to each
// other now; both receive a PUNCH (see OnPunch).
func (c *Client) Punch(peer wgkey.Key) error {
	return c.send(TypePunchRequest, pairMsg{From: c.cfg.PublicKey, To: peer}.encode())
}

// WrapRelay returns the RELAY frame that carries a WireGuard packet to the
// peer dst through the nucleus (send it to Server()); nil if the packet is
// larger than MaxRelayPayload or the relay ids are not known yet.
func (c *Client) WrapRelay(dst wgkey.Key, pkt []byte) []byte {
	f := c.AppendRelay(make([]byte, 0, RelayOverhead+len(pkt)), dst, pkt)
	if len(f) == 0 {
		return nil
	}
	return f
}

// AppendRelay appends to b the RELAY frame WrapRelay returns and returns
// the extended slice; with enough capacity in b (RelayOverhead more than
// the packet) it allocates nothing, so a caller can reuse its buffers. It
// returns b unchanged if the packet is larger than MaxRelayPayload or
// this device's or dst's relay id is not known yet (before the
// REGISTER_ACK and the peer list arrive).
func (c *Client) AppendRelay(b []byte, dst wgkey.Key, pkt []byte) []byte {
	own, to := c.relayID.Load(), c.relays.Load().ids[dst]
	if len(pkt) > MaxRelayPayload || own == 0 || to == 0 {
		return b
	}
	ks := c.keys.Load()
	m := ks.macs.Get().(*macer)
	b = appendRelayFrame(b, m, relayHeader{ts: relayTime(c.clk.Now()), src: own, dst: to}, pkt)
	ks.macs.Put(m)
	return b
}

// UnwrapRelay authenticates an inbound RELAY frame addressed to this
// device and returns its source peer and payload (aliasing b).
func (c *Client) UnwrapRelay(b []byte) (src wgkey.Key, pkt []byte, ok bool) {
	h, payload, good := splitRelay(b)
	now := c.clk.Now()
	if good && h.dst == c.relayID.Load() && freshRelay(h.ts, now) {
		src, good = c.relays.Load().keys[h.src]
	} else {
		good = false
	}
	if good {
		ks := c.keys.Load()
		m := ks.macs.Get().(*macer)
		good = m.checkTag(b)
		ks.macs.Put(m)
		if !good && ks.prevValid(now) {
			m := ks.prevMacs.Get().(*macer)
			good = m.checkTag(b)
			ks.prevMacs.Put(m)
		}
	}
	if !good {
		c.countDrop()
		return wgkey.Key{}, nil, false
	}
	return src, payload, true
}

// relayChangedLocked publishes a relay table in which peer k has relay id
// id (none when 0), copying the table only when that changes it: a delta
// costs a copy of the table only when it joins, leaves or moves a relay
// id. The caller holds c.mu.
func (c *Client) relayChangedLocked(k wgkey.Key, id uint32) {
	old := c.relays.Load()
	if cur, ok := old.ids[k]; ok == (id != 0) && cur == id {
		return
	}
	t := &relayTable{ids: maps.Clone(old.ids), keys: maps.Clone(old.keys)}
	if t.ids == nil {
		t.ids, t.keys = map[wgkey.Key]uint32{}, map[uint32]wgkey.Key{}
	}
	if cur, ok := t.ids[k]; ok {
		delete(t.keys, cur)
		delete(t.ids, k)
	}
	if id != 0 {
		t.ids[k], t.keys[id] = id, k
	}
	c.relays.Store(t)
}

// publishRelaysLocked rebuilds the relay table from c.peers. The caller
// holds c.mu.
func (c *Client) publishRelaysLocked() {
	t := &relayTable{ids: make(map[wgkey.Key]uint32, len(c.peers)), keys: make(map[uint32]wgkey.Key, len(c.peers))}
	for k, p := range c.peers {
		if p.RelayID != 0 {
			t.ids[k], t.keys[p.RelayID] = p.RelayID, k
		}
	}
	c.relays.Store(t)
}

func (c *Client) countDrop() {
	c.mu.Lock()
	c.dropped++
	c.mu.Unlock()
}

// Run registers and keeps the registration alive until ctx ends: a
// KEEPALIVE every interval, a new REGISTER (with backoff from 1 s) when
// the nucleus stops answering for three intervals or forgot this device.
func (c *Client) Run(ctx context.Context) error {
	if err := c.Register(); err != nil {
		c.log.Debug("nucleus register failed", "err", err)
	}
	backoff := time.Second
	t := time.NewTimer(min(backoff, c.keepalive()))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		case <-t.C:
		}
		c.mu.Lock()
		left, reg := c.left, c.registered
		interval := c.keepaliveLocked()
		if reg && c.clk.Now().Sub(c.lastAck) > 3*interval {
			c.registered, reg = false, false
			c.log.Info("nucleus stopped answering; registering again", "network", c.cfg.NetworkID)
		}
		version := c.version
		c.mu.Unlock()
		next := interval
		var err error
		switch {
		case left:
		case reg:
			backoff = time.Second
			c.mu.Lock()
			c.kaSent = c.clk.Now()
			c.mu.Unlock()
			err = c.send(TypeKeepalive, keepaliveMsg{Key: c.cfg.PublicKey, Version: version}.encode())
		default:
			err = c.Register()
			next = min(backoff, interval)
			backoff = min(2*backoff, interval)
		}
		if err != nil {
			c.log.Debug("nucleus send failed", "err", err)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

func (c *Client) keepalive() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keepaliveLocked()
}

func (c *Client) keepaliveLocked() time.Duration {
	switch {
	case c.cfg.Keepalive > 0:
		return c.cfg.Keepalive
	case c.interval > 0:
		return c.interval
	}
	return 20 * time.Second
}

// Handle processes an inbound control frame (not RELAY: see UnwrapRelay)
// that arrived from the address from. Frames that are not authentic,
// stale or replayed are dropped, and so are frames other than PING and
// PONG (which travel between edges) that do not come from the nucleus.
// A frame of the nucleus must carry this device's frame key (which only
// the nucleus and this device compute), a PING or PONG the key of this
// device and the peer it names.
func (c *Client) Handle(b []byte, from netip.AddrPort) {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	h, err := parseHeader(b)
	now := c.clk.Now()
	direct := err == nil && (h.typ == TypePing || h.typ == TypePong)
	if err == nil && h.typ == TypeCookie && from == c.cfg.Server && h.network == c.cfg.NetworkID {
		c.handleCookie(b, h, now)
		return
	}
	if err != nil || (from != c.cfg.Server && !direct) || h.network != c.cfg.NetworkID || h.typ == TypeRelay ||
		!fresh(h.ts, now) || (direct && !c.verifyDirect(h, b, now)) || (!direct && !c.verifyFrame(b, now)) {
		c.countDrop()
		return
	}
	c.mu.Lock()
	if !c.replay.add(h.nonce, h.ts, now) {
		c.dropped++
		c.mu.Unlock()
		return
	}
	var (
		notify  func([]Peer)
		list    []Peer
		punch   func(Peer)
		punchTo Peer
		resend  bool
		pongTo  wgkey.Key
		pong    func(wgkey.Key, netip.AddrPort)
		pongKey wgkey.Key
		rekey   func(uint32)
		rekeyTo uint32
		ok      = true
	)
	switch h.typ {
	case TypeRegisterAck:
		var m ackMsg
		if m, ok = decodeAck(h.body); ok && !c.left {
			c.registered, c.observed, c.lastAck = true, m.Observed, now
			if !c.kaSent.IsZero() {
				c.rtt, c.rttAt, c.kaSent = now.Sub(c.kaSent), now, time.Time{}
			}
			close(c.acked)
			c.acked = make(chan struct{})
			c.relayID.Store(m.RelayID)
			if m.Keepalive > 0 {
				c.interval = time.Duration(m.Keepalive) * time.Millisecond
			}
		}
	case TypePeers:
		var m peersMsg
		if m, ok = decodePeers(h.body); ok && c.addPart(m) {
			c.publishRelaysLocked()
			if notify = c.onPeers; notify != nil {
				list = c.peerList()
			}
		}
	case TypePeerUpdate:
		var m updateMsg
		if m, ok = decodeUpdate(h.body); ok && m.Peer.PublicKey != c.cfg.PublicKey {
			if m.Event == EventLeave {
				delete(c.peers, m.Peer.PublicKey)
				delete(c.pairs, m.Peer.PublicKey)
				c.relayChangedLocked(m.Peer.PublicKey, 0)
				c.listChanged(m.Peer, true)
			} else {
				c.peers[m.Peer.PublicKey] = m.Peer
				c.relayChangedLocked(m.Peer.PublicKey, m.Peer.RelayID)
				c.listChanged(m.Peer, false)
			}
			// A gap leaves the version behind, so the next keepalive
			// fetches the full list.
			if m.Version == c.version+1 {
				c.version = m.Version
			}
			if notify = c.onPeers; notify != nil {
				list = c.peerList()
			}
		}
	case TypePunch:
		if punchTo, ok = decodePunch(h.body); ok {
			punch = c.onPunch
		}
	case TypePing:
		var m pairMsg
		if m, ok = decodePair(h.body); ok && m.To == c.cfg.PublicKey {
			pongTo = m.From
		}
	case TypePong:
		var m pairMsg
		if m, ok = decodePair(h.body); ok && m.To == c.cfg.PublicKey {
			pong, pongKey = c.onPong, m.From
		}
	case TypeRekey:
		var m rekeyMsg
		if m, ok = decodeRekey(h.body); ok {
			rekey, rekeyTo = c.onRekey, m.Version
		}
	case TypeError:
		var m errorMsg
		if m, ok = decodeError(h.body); ok && m.Code == ErrCodeNotRegistered && !c.left {
			c.registered, resend = false, true
		}
		if ok {
			c.log.Debug("nucleus error", "code", m.Code, "text", m.Text)
		}
	default:
		ok = false
	}
	if !ok {
		c.dropped++
	}
	c.mu.Unlock()
	if notify != nil {
		notify(list)
	}
	if punch != nil {
		punch(punchTo)
	}
	if !pongTo.IsZero() {
		if f := c.pairFrame(TypePong, pongTo, now); f != nil {
			if err := c.cfg.Send(f, from); err != nil {
				c.log.Debug("pong failed", "err", err)
			}
		}
	}
	if pong != nil {
		pong(pongKey, from)
	}
	if rekey != nil {
		rekey(rekeyTo)
	}
	if resend {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// addPart stores one part of a PEERS list and reports whether a full list
// was installed. The caller holds c.mu.
func (c *Client) addPart(m peersMsg) bool {
	if c.pending.parts == nil || c.pending.version != m.Version || len(c.pending.parts) != int(m.Parts) {
		c.pending = pendingPeers{version: m.Version, parts: make([][]Peer, m.Parts)}
	}
	if c.pending.parts[m.Part] == nil {
		c.pending.got++
	}
	c.pending.parts[m.Part] = append([]Peer{}, m.Peers...)
	if c.pending.got < len(c.pending.parts) {
		return false
	}
	peers := make(map[wgkey.Key]Peer)
	for _, part := range c.pending.parts {
		for _, p := range part {
			if p.PublicKey != c.cfg.PublicKey {
				peers[p.PublicKey] = p
			}
		}
	}
	c.peers, c.list, c.version, c.pending = peers, nil, m.Version, pendingPeers{}
	c.prunePairsLocked()
	return true
}
