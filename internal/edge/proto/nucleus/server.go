package nucleus

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/platform/clock"
)

// Options configure a Server. Zero fields take the documented defaults.
type Options struct {
	Directory Directory // required
	// PrivateKey is the nucleus's static X25519 key (required): devices
	// prove the key they name with a Diffie–Hellman against its public
	// key, which the control plane hands them in the join answer. Every
	// replica of one control plane has the same.
	PrivateKey *ecdh.PrivateKey
	Clock      clock.Clock           // nil: the system clock
	Log        *slog.Logger          // nil: discard
	Registry   prometheus.Registerer // nil: no Prometheus metrics

	// Keepalive is the interval clients are told to keep alive at (default
	// 20 s); a peer silent for three intervals is expired.
	Keepalive time.Duration
	// SweepEvery is how often silent peers are looked for (default 1 s).
	SweepEvery time.Duration
	// DirectoryTTL is how long a Directory answer is trusted (default
	// 30 s): a network in use is looked up again in the background once
	// its answer is half that old. An answer older than the TTL is not
	// used: the frame waits for the reload. Only while the Directory
	// fails does the last answer stay in use, up to ten times the TTL.
	// Unknown ids are remembered for a sixth of it.
	DirectoryTTL time.Duration
	// LookupTimeout bounds one Directory call (default 2 s).
	LookupTimeout time.Duration
	// LookupWorkers run Directory calls off the packet loop (default 4);
	// LookupQueue bounds the lookups waiting for them (default 256; as
	// many again for reloads of known networks).
	LookupWorkers int
	LookupQueue   int
	// SourceLookups bounds the lookups one source (an IPv4 address or an
	// IPv6 /64) may cause per second (default 10, bursts of twice that).
	SourceLookups int
	// SourceRegisters bounds the REGISTER and PUNCH_REQUEST frames, and
	// the KEEPALIVEs that move a peer (roaming), accepted from one source
	// per second (default 20, bursts of twice that).
	SourceRegisters int
	// PeerKeepalives bounds the KEEPALIVEs one registered peer may have
	// answered per second (default 2, bursts of five times that): a
	// client sends one every 1 to 20 s, so only a flood is refused
	// (dropped as throttled, unanswered).
	PeerKeepalives int
	// UnverifiedBytes bounds the bytes per second sent to one source that
	// has not proven it receives at its address (COOKIE answers; default
	// 4096, bursts of twice that).
	UnverifiedBytes int
	// MaxSources bounds the sources each per-source budget tracks
	// (default 65536).
	MaxSources int
	// CookieRotate is how often the cookie secret changes (default 2 min);
	// a cookie is valid for one to two of these.
	CookieRotate time.Duration
	// RekeyGrace is how long after a secret rotation frames signed with
	// the old key are still accepted from registered peers at their
	// registered address (default 60 s), while they fetch the new one.
	RekeyGrace time.Duration
	// MaxPeers bounds the peers of one network (default 1024).
	MaxPeers int
	// MaxNetworks bounds the networks held at once (default 65536).
	MaxNetworks int
	// ReplayEntries bounds each network's nonce cache (default 16384).
	ReplayEntries int
}

// Drop reasons, the keys of Stats.Dropped and the reason label of
// omni_nucleus_dropped_total.
const (
	DropNotSignal      = "not_signal"      // not a nucleus frame (e.g. a stray WireGuard packet)
	DropMalformed      = "malformed"       // bad header or body
	DropUnknownNetwork = "unknown_network" // the Directory knows no such network
	DropThrottled      = "throttled"       // a per-source or per-peer budget, or the lookup queue, is exhausted
	DropUnverified     = "unverified"      // no valid cookie, and no COOKIE sent (budget exhausted)
	DropAuth           = "auth"            // wrong MAC: not signed with the key of the device it names, or tampered
	DropStale          = "stale"           // timestamp outside the window
	DropReplay         = "replay"          // nonce seen before (or dated before the cache's floor)
	DropUnexpected     = "unexpected"      // a nucleus-to-client type sent to the nucleus
	DropNotMember      = "not_member"      // key not bound to the address, relay ids not registered, or not from the peer's address
	DropLimit          = "limit"           // too many networks
)

// Stats is a snapshot of the nucleus counters.
type Stats struct {
	Networks       int
	Peers          int
	Frames         uint64 // authenticated frames accepted
	RelayedPackets uint64
	RelayedBytes   uint64 // payload bytes
	Cookies        uint64 // COOKIE answers sent
	Lookups        uint64 // Directory calls
	Dropped        map[string]uint64
	PerNetwork     map[string]NetworkStats
}

// NetworkStats are one network's counters.
type NetworkStats struct {
	Peers          int
	RelayedPackets uint64
	RelayedBytes   uint64
}

// Server is the nucleus: it registers peers, pushes peer-set changes,
// coordinates hole punching and relays packets, for any number of
// networks on one UDP socket.
type Server struct {
	o       Options
	priv    *ecdh.PrivateKey
	pub     wgkey.Key
	clk     clock.Clock
	log     *slog.Logger
	m       *serverMetrics
	cookies *cookieJar
	queue   chan string // lookups caused by frames
	urgent  chan string // reloads of known networks

	mu           sync.Mutex
	networks     map[string]*network
	relayIDs     map[uint32]relayRef // every registered peer by its relay id
	entries      map[string]*dirEntry
	parkedFrames int
	lookupBudget *budget
	regBudget    *budget
	unverified   *budget

	frames         uint64
	relayedPackets uint64
	relayedBytes   uint64
	cookiesSent    uint64
	lookups        uint64
	dropped        map[string]uint64

	pc atomic.Pointer[net.PacketConn] // the socket Serve answers on, for the workers and the sweep
}

type network struct {
	id      string
	key     []byte // network key of the Directory's answer
	prevKey []byte // the key before the last rotation, accepted until prevUntil
	// prevUntil ends the grace of prevKey.
	prevUntil      time.Time
	peers          map[wgkey.Key]*peerState
	version        uint32
	replay         *replayCache
	relayedPackets uint64
	relayedBytes   uint64
	// Prometheus counters of this network, looked up once.
	mPackets, mBytes prometheus.Counter
}

type peerState struct {
	Peer
	m        *member // its binding, with its frame keys
	lastSeen time.Time
	lastList time.Time // last full PEERS list sent because of a KEEPALIVE
	kaBudget bucket    // KEEPALIVEs (Options.PeerKeepalives); the zero value is full
	oldKey   bool      // speaks with the key before the last rotation
}

// relayRef is a registered peer as a RELAY frame names it.
type relayRef struct {
	n *network
	p *peerState
}

// outbound is a datagram to send once the lock is released.
type outbound struct {
	b  []byte
	to netip.AddrPort
}

// NewServer builds a Server.
func NewServer(o Options) (*Server, error) {
	if o.Directory == nil {
		return nil, errors.New("nucleus: Options.Directory is required")
	}
	if o.PrivateKey == nil || o.PrivateKey.Curve() != ecdh.X25519() {
		return nil, errors.New("nucleus: Options.PrivateKey (an X25519 key) is required")
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Keepalive, 20*time.Second)
	def(&o.SweepEvery, time.Second)
	def(&o.DirectoryTTL, 30*time.Second)
	def(&o.LookupTimeout, 2*time.Second)
	def(&o.CookieRotate, 2*time.Minute)
	def(&o.RekeyGrace, time.Minute)
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt(&o.LookupWorkers, 4)
	defInt(&o.LookupQueue, 256)
	defInt(&o.SourceLookups, 10)
	defInt(&o.SourceRegisters, 20)
	defInt(&o.UnverifiedBytes, 4096)
	defInt(&o.PeerKeepalives, 2)
	defInt(&o.MaxSources, 65536)
	defInt(&o.MaxPeers, 1024)
	defInt(&o.MaxNetworks, 65536)
	defInt(&o.ReplayEntries, 16384)
	now := o.Clock.Now()
	s := &Server{
		o: o, clk: o.Clock, log: o.Log, priv: o.PrivateKey, pub: PublicKeyOf(o.PrivateKey),
		cookies:      newCookieJar(now, o.CookieRotate),
		queue:        make(chan string, o.LookupQueue),
		urgent:       make(chan string, o.LookupQueue),
		networks:     map[string]*network{},
		relayIDs:     map[uint32]relayRef{},
		entries:      map[string]*dirEntry{},
		lookupBudget: newBudget(float64(o.SourceLookups), 2*float64(o.SourceLookups), o.MaxSources),
		regBudget:    newBudget(float64(o.SourceRegisters), 2*float64(o.SourceRegisters), o.MaxSources),
		unverified:   newBudget(float64(o.UnverifiedBytes), 2*float64(o.UnverifiedBytes), o.MaxSources),
		dropped:      map[string]uint64{},
	}
	m, err := newServerMetrics(o.Registry, s)
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

// PublicKey is the nucleus's static public key, which devices need to
// speak to it (the join answer's server public_key).
func (s *Server) PublicKey() wgkey.Key { return s.pub }

// Serve answers on pc until ctx ends (then it closes pc and returns nil)
// or pc fails.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	s.pc.Store(&pc)
	wg.Add(2 + s.o.LookupWorkers)
	go func() { defer wg.Done(); <-ctx.Done(); pc.Close() }()
	go func() { defer wg.Done(); s.sweepLoop(ctx) }()
	for range s.o.LookupWorkers {
		go func() { defer wg.Done(); s.worker(ctx) }()
	}
	defer wg.Wait()

	bc := newBatchConn(pc, s.log)
	var st batchState
	for {
		pkts, err := bc.read(st.pkts[:0])
		st.pkts = pkts
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("nucleus: %w", err)
		}
		bc.write(s.handleBatch(ctx, &st, pkts))
	}
}

// sendAll writes datagrams on the socket Serve answers on (from the
// workers, the sweep and Invalidate; the packet loop batches its own).
func (s *Server) sendAll(out []outbound) {
	pc := s.pc.Load()
	if pc == nil {
		return
	}
	for _, o := range out {
		sendOne(*pc, o, s.log)
	}
}

func (s *Server) sweepLoop(ctx context.Context) {
	t := time.NewTicker(s.o.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sendAll(s.sweep())
		}
	}
}

// sweep expires silent peers (pushing their leave), ends rekey graces,
// forgets old answers and idle budgets, and rotates the cookie secret.
func (s *Server) sweep() []outbound {
	now := s.clk.Now()
	s.cookies.rotate(now)
	limit := 3 * s.o.Keepalive
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []outbound
	for id, n := range s.networks {
		for k, p := range n.peers {
			if now.Sub(p.lastSeen) > limit {
				s.log.Debug("nucleus peer expired", "network", id, "peer", k.String())
				out = append(out, s.removePeer(n, k, now)...)
			}
		}
		if n.prevKey != nil && !now.Before(n.prevUntil) {
			n.prevKey = nil
			for _, p := range n.peers {
				p.oldKey = false
			}
		}
		n.replay.purge(now)
		if len(n.peers) == 0 && n.replay.len() == 0 {
			delete(s.networks, id)
		}
	}
	for id, e := range s.entries {
		switch {
		case e.queued:
		case e.dirty:
			e.dirty = false
			s.enqueueLocked(id, e, true)
		case !e.known && !s.negative(e, now) && now.Sub(e.used) > s.o.DirectoryTTL,
			e.known && s.networks[id] == nil && now.Sub(e.used) > s.staleLimit():
			delete(s.entries, id)
		}
	}
	for _, b := range []*budget{s.lookupBudget, s.regBudget, s.unverified} {
		b.purge(now)
	}
	return out
}

func (s *Server) drop(reason string) {
	s.mu.Lock()
	s.dropped[reason]++
	s.mu.Unlock()
	s.m.drop(reason)
}

// cookieFrameSize is the size of a COOKIE of a network id of n bytes.
func cookieFrameSize(n int) int { return 6 + n + 8 + nonceSize + nonceSize + CookieSize + macSize }

// answerCookie answers a request without a valid cookie for its source
// with a COOKIE (smaller than any request long enough to reach it: see
// minRequestMsg), within the per-source budget of bytes sent to addresses
// that have not proven they receive.
func (s *Server) answerCookie(b []byte, h rawHeader, from netip.AddrPort, now time.Time) []outbound {
	s.mu.Lock()
	ok := s.unverified.take(sourceOf(from), float64(cookieFrameSize(len(h.network))), now)
	if ok {
		s.cookiesSent++
	}
	s.mu.Unlock()
	if !ok {
		s.drop(DropUnverified)
		return nil
	}
	s.m.frame(TypeCookie)
	return []outbound{{b: sealCookie(b, h, s.cookies.make(from), now), to: from}}
}

// handle processes one control datagram (RELAY frames go through
// handleBatch) and returns what to send. Everything that may cost a
// lookup, or make the nucleus send more than it received, comes after
// the cookie check: a request whose cookie is not valid for its source
// address is answered with a COOKIE alone.
func (s *Server) handle(ctx context.Context, b []byte, from netip.AddrPort) []outbound {
	if !IsSignal(b) {
		s.drop(DropNotSignal)
		return nil
	}
	h, ok := splitFrame(b)
	if !ok {
		s.drop(DropMalformed)
		return nil
	}
	if !isRequest(h.typ) {
		s.drop(DropUnexpected)
		return nil
	}
	msg, cookie, ok := splitCookie(h.body)
	// A request shorter than the shortest well-formed one of its type is
	// dropped before it may earn a COOKIE: a COOKIE is never larger than
	// the request it answers.
	if !ok || len(msg) < minRequestMsg(h.typ) {
		s.drop(DropMalformed)
		return nil
	}
	now := s.clk.Now()
	if !s.cookies.valid(cookie, from) {
		return s.answerCookie(b, h, from, now)
	}
	sender := wgkey.Key(msg[:len(wgkey.Key{})]) // every request starts with the sender's key
	id := string(h.network)
	s.mu.Lock()
	e := s.entries[id]
	switch {
	case s.usable(e, now):
		s.refreshAhead(id, e, now)
	case s.negative(e, now):
		s.mu.Unlock()
		s.drop(DropUnknownNetwork)
		return nil
	default:
		reason := s.lookup(id, e, b, from, now)
		s.mu.Unlock()
		if reason != "" {
			s.drop(reason)
		}
		return nil
	}
	netKey, prevNet := e.key, []byte(nil)
	if n := s.networks[id]; n != nil && n.prevKey != nil && now.Before(n.prevUntil) {
		prevNet = n.prevKey
	}
	var keys *dhKeys
	switch m := e.byKey[sender]; {
	case m != nil:
		keys = m.keys
	case h.typ != TypeRegister:
		s.mu.Unlock()
		s.drop(DropNotMember)
		return nil
	case !s.lookupBudget.take(sourceOf(from), 1, now):
		// A REGISTER of a key not bound (yet) is authenticated with a
		// Diffie–Hellman of its own before it may ask for a reload:
		// within the source's lookup budget.
		s.mu.Unlock()
		s.drop(DropThrottled)
		return nil
	default:
		keys = deviceKeys(s.priv, s.pub, sender, true)
	}
	s.mu.Unlock()

	// The frame must be signed with the key of the device it names, which
	// only that device (holding the private key) and the nucleus compute.
	old := false
	key := keys.key(netKey)
	if !verify(key, b) {
		if prevNet == nil {
			s.drop(DropAuth)
			return nil
		}
		if key = keys.key(prevNet); !verify(key, b) {
			s.drop(DropAuth)
			return nil
		}
		old = true
	}
	if !fresh(h.ts, now) {
		s.drop(DropStale)
		return nil
	}
	s.mu.Lock()
	out, reason := s.request(id, h, msg, b, key, old, from, now)
	if reason == "" {
		s.frames++
	}
	s.mu.Unlock()
	if reason != "" {
		if reason != reasonParked {
			s.drop(reason)
		}
		return nil
	}
	s.m.frame(h.typ)
	return out
}

// reasonParked is request's answer for a frame kept for a reload.
const reasonParked = "parked"

// request handles an authenticated, fresh request signed with key, the
// frame key of the device it names (under the previous network key when
// old). The caller holds s.mu.
func (s *Server) request(id string, h rawHeader, msg, b, key []byte, old bool, from netip.AddrPort, now time.Time) ([]outbound, string) {
	e := s.entries[id]
	if !s.usable(e, now) {
		return nil, DropUnknownNetwork
	}
	n := s.networks[id]
	if n == nil {
		if len(s.networks) >= s.o.MaxNetworks {
			return nil, DropLimit
		}
		n = &network{id: id, key: e.key, peers: map[wgkey.Key]*peerState{}, replay: newReplayCache(s.o.ReplayEntries)}
		s.networks[id] = n
	}
	switch h.typ {
	case TypeRegister:
		m, ok := decodeRegister(msg)
		if !ok {
			return nil, DropMalformed
		}
		if old {
			return nil, DropAuth // no new registration under the old secret
		}
		bnd, bound := e.byKey[m.Key]
		if !bound || bnd.IP4 != m.IP4 || (m.IP6.IsValid() && bnd.IP6.IsValid() && m.IP6 != bnd.IP6) {
			// (The key is authentic: the device holds its private key.)
			// A device that joined (or changed its key) since the last
			// answer: look again, at most once a second per network.
			if now.Sub(e.loaded) >= bindReloadAfter && now.Sub(e.bindReload) >= bindReloadAfter && !e.queued &&
				s.lookupBudget.take(sourceOf(from), 1, now) && s.enqueueLocked(id, e, false) {
				e.bindReload = now
				if !s.park(e, b, from) {
					return nil, DropThrottled // the reload runs; this frame is lost
				}
				return nil, reasonParked
			}
			return nil, DropNotMember
		}
		if !n.replay.add([nonceSize]byte(h.nonce), h.ts, now) {
			return nil, DropReplay
		}
		if !s.regBudget.take(sourceOf(from), 1, now) {
			return nil, DropThrottled
		}
		return s.register(n, key, m, bnd, from, now)
	case TypeKeepalive:
		m, ok := decodeKeepalive(msg)
		if !ok {
			return nil, DropMalformed
		}
		if _, bound := e.byKey[m.Key]; !bound {
			return nil, DropNotMember
		}
		if !n.replay.add([nonceSize]byte(h.nonce), h.ts, now) {
			return nil, DropReplay
		}
		return s.keepalive(n, key, old, m, from, now)
	case TypePunchRequest:
		m, ok := decodePair(msg)
		if !ok {
			return nil, DropMalformed
		}
		if !n.replay.add([nonceSize]byte(h.nonce), h.ts, now) {
			return nil, DropReplay
		}
		if !s.regBudget.take(sourceOf(from), 1, now) {
			return nil, DropThrottled
		}
		return s.punch(n, e, key, m, from, now)
	default: // TypeLeave
		k, ok := decodeLeave(msg)
		if !ok {
			return nil, DropMalformed
		}
		if !n.replay.add([nonceSize]byte(h.nonce), h.ts, now) {
			return nil, DropReplay
		}
		p := n.peers[k]
		if p == nil {
			return nil, ""
		}
		if p.Endpoint != from {
			return nil, DropNotMember
		}
		return s.removePeer(n, k, now), ""
	}
}

func (s *Server) reply(key []byte, n *network, typ byte, body []byte, to netip.AddrPort, now time.Time) outbound {
	return outbound{b: seal(key, typ, n.id, now, body), to: to}
}

// keyFor is the frame key of a registered peer under the network key it
// holds: the previous one until it spoke with the new one, during the
// grace after a rotation.
func (s *Server) keyFor(n *network, p *peerState, now time.Time) []byte {
	if p.oldKey && n.prevKey != nil && now.Before(n.prevUntil) {
		return p.m.keys.key(n.prevKey)
	}
	return p.m.keys.key(n.key)
}

// broadcast sends a PEER_UPDATE about p to every other member.
func (s *Server) broadcast(n *network, event byte, p Peer, now time.Time) []outbound {
	body := updateMsg{Version: n.version, Event: event, Peer: p}.encode()
	out := make([]outbound, 0, len(n.peers))
	for k, q := range n.peers {
		if k != p.PublicKey {
			out = append(out, s.reply(s.keyFor(n, q, now), n, TypePeerUpdate, body, q.Endpoint, now))
		}
	}
	return out
}

// peersOf returns n's peers but one, sorted by key.
// The keys are sorted, not the peers (see Client.peerList).
func peersOf(n *network, except wgkey.Key) []Peer {
	keys := make([]wgkey.Key, 0, len(n.peers))
	for k := range n.peers {
		if k != except {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b wgkey.Key) int { return bytes.Compare(a[:], b[:]) })
	ps := make([]Peer, len(keys))
	for i, k := range keys {
		ps[i] = n.peers[k].Peer
	}
	return ps
}

func (s *Server) fullList(key []byte, n *network, to wgkey.Key, addr netip.AddrPort, now time.Time) []outbound {
	var out []outbound
	for _, body := range packPeers(n.id, n.version, peersOf(n, to)) {
		out = append(out, s.reply(key, n, TypePeers, body, addr, now))
	}
	return out
}

func (s *Server) ack(key []byte, n *network, relayID uint32, addr netip.AddrPort, now time.Time) outbound {
	body := ackMsg{Observed: addr, Keepalive: uint32(s.o.Keepalive.Milliseconds()), Version: n.version, RelayID: relayID}.encode()
	return s.reply(key, n, TypeRegisterAck, body, addr, now)
}

// register admits a device under the addresses bound to its key.
func (s *Server) register(n *network, key []byte, m registerMsg, b *member, from netip.AddrPort, now time.Time) ([]outbound, string) {
	p := Peer{PublicKey: m.Key, IP4: b.IP4, IP6: b.IP6, Endpoint: from, Local: m.Local}
	var out []outbound
	old := n.peers[m.Key]
	if old != nil {
		p.RelayID = old.RelayID
	}
	switch {
	case old == nil && len(n.peers) >= s.o.MaxPeers:
		body := errorMsg{Code: ErrCodeNetworkFull, Text: "network full"}.encode()
		return []outbound{s.reply(key, n, TypeError, body, from, now)}, ""
	case old == nil:
		p.RelayID = s.newRelayID()
		ps := &peerState{Peer: p, m: b, lastSeen: now}
		n.peers[m.Key] = ps
		s.relayIDs[p.RelayID] = relayRef{n: n, p: ps}
		n.version++
		s.log.Debug("nucleus peer joined", "network", n.id, "peer", m.Key.String(), "endpoint", from.String())
		out = s.broadcast(n, EventJoin, p, now)
	case !old.equal(p):
		old.Peer, old.m, old.lastSeen, old.oldKey = p, b, now, false
		n.version++
		out = s.broadcast(n, EventUpdate, p, now)
	default:
		old.m, old.lastSeen, old.oldKey = b, now, false
	}
	out = append(out, s.ack(key, n, p.RelayID, from, now))
	return append(out, s.fullList(key, n, m.Key, from, now)...), ""
}

// newRelayID returns an unused non-zero relay id. The caller holds s.mu.
func (s *Server) newRelayID() uint32 {
	for {
		var b [4]byte
		rand.Read(b[:])
		id := binary.BigEndian.Uint32(b[:])
		if _, used := s.relayIDs[id]; id != 0 && !used {
			return id
		}
	}
}

// listEvery spaces the full lists a peer's KEEPALIVEs can ask for.
const listEvery = time.Second

func (s *Server) keepalive(n *network, key []byte, old bool, m keepaliveMsg, from netip.AddrPort, now time.Time) ([]outbound, string) {
	p := n.peers[m.Key]
	if p == nil {
		body := errorMsg{Code: ErrCodeNotRegistered, Text: "not registered"}.encode()
		return []outbound{s.reply(key, n, TypeError, body, from, now)}, ""
	}
	if !p.kaBudget.take(float64(s.o.PeerKeepalives), 5*float64(s.o.PeerKeepalives), 1, now) {
		return nil, DropThrottled
	}
	var out []outbound
	if p.Endpoint != from { // roaming: a change pushed to every member, budgeted like a REGISTER
		if old {
			return nil, DropAuth // the old secret cannot move a peer
		}
		if !s.regBudget.take(sourceOf(from), 1, now) {
			return nil, DropThrottled
		}
		p.Endpoint = from
		n.version++
		out = s.broadcast(n, EventUpdate, p.Peer, now)
	}
	p.lastSeen, p.oldKey = now, old
	out = append(out, s.ack(key, n, p.RelayID, from, now))
	if m.Version != n.version && now.Sub(p.lastList) >= listEvery {
		p.lastList = now
		out = append(out, s.fullList(key, n, m.Key, from, now)...)
	}
	return out, ""
}

func (s *Server) punch(n *network, e *dirEntry, key []byte, m pairMsg, from netip.AddrPort, now time.Time) ([]outbound, string) {
	src, dst := n.peers[m.From], n.peers[m.To]
	switch {
	case src == nil:
		if _, bound := e.byKey[m.From]; !bound {
			return nil, DropNotMember
		}
		body := errorMsg{Code: ErrCodeNotRegistered, Text: "not registered"}.encode()
		return []outbound{s.reply(key, n, TypeError, body, from, now)}, ""
	case src.Endpoint != from:
		return nil, DropNotMember
	case dst == nil:
		body := errorMsg{Code: ErrCodeUnknownPeer, Text: "unknown peer " + m.To.String()}.encode()
		return []outbound{s.reply(key, n, TypeError, body, from, now)}, ""
	}
	src.lastSeen = now
	return []outbound{
		s.reply(key, n, TypePunch, appendPeer(nil, dst.Peer), src.Endpoint, now),
		s.reply(s.keyFor(n, dst, now), n, TypePunch, appendPeer(nil, src.Peer), dst.Endpoint, now),
	}, ""
}

// batchState is the reused memory of Serve's goroutine.
type batchState struct {
	mac    macer // of the current key
	prev   macer // of the previous key, during a rekey grace
	pkts   []packet
	out    []outbound
	relays []relayFrame
}

// relayFrame is a well-formed RELAY frame waiting to be routed.
type relayFrame struct {
	b       []byte // the whole frame, forwarded as it is
	from    netip.AddrPort
	h       relayHeader
	payload int
}

// handleBatch processes the datagrams of one read and returns what to
// send (aliasing st and the datagrams, valid until the next batch).
// Control frames go through handle; RELAY frames are routed together
// under one lock.
func (s *Server) handleBatch(ctx context.Context, st *batchState, pkts []packet) []outbound {
	out, relays := st.out[:0], st.relays[:0]
	for _, p := range pkts {
		if !IsRelay(p.b) {
			out = append(out, s.handle(ctx, p.b, p.from)...)
			continue
		}
		h, payload, ok := splitRelay(p.b)
		if !ok {
			s.drop(DropMalformed)
			continue
		}
		relays = append(relays, relayFrame{b: p.b, from: p.from, h: h, payload: len(payload)})
	}
	if len(relays) > 0 {
		out = s.route(st, relays, out)
	}
	clear(relays) // drop references to the read buffers
	st.out, st.relays = out, relays[:0]
	return out
}

// route forwards RELAY frames, unchanged, to their destinations: only
// when both relay ids are registered in one network, the frame comes from
// the source's registered endpoint, its tag is authentic under that
// network's key (or, during a rekey grace, the previous one) and its
// timestamp is fresh.
func (s *Server) route(st *batchState, relays []relayFrame, out []outbound) []outbound {
	var refused [3]int // not member, auth, stale
	now := s.clk.Now()
	s.mu.Lock()
	for i := range relays {
		r := &relays[i]
		src, dst := s.relayIDs[r.h.src], s.relayIDs[r.h.dst]
		if src.p == nil || dst.p == nil || src.n != dst.n || r.h.src == r.h.dst || src.p.Endpoint != r.from {
			s.dropped[DropNotMember]++
			refused[0]++
			continue
		}
		n := src.n
		st.mac.use(n.key)
		if !st.mac.checkTag(r.b) {
			if n.prevKey == nil || !now.Before(n.prevUntil) {
				s.dropped[DropAuth]++
				refused[1]++
				continue
			}
			if st.prev.use(n.prevKey); !st.prev.checkTag(r.b) {
				s.dropped[DropAuth]++
				refused[1]++
				continue
			}
		}
		if !freshRelay(r.h.ts, now) {
			s.dropped[DropStale]++
			refused[2]++
			continue
		}
		n.relayedPackets++
		n.relayedBytes += uint64(r.payload)
		s.relayedPackets++
		s.relayedBytes += uint64(r.payload)
		s.frames++
		if s.m != nil {
			if n.mPackets == nil {
				n.mPackets, n.mBytes = s.m.relayCounters(n.id)
			}
			n.mPackets.Inc()
			n.mBytes.Add(float64(r.payload))
			s.m.relayFrames.Inc()
		}
		out = append(out, outbound{b: r.b, to: dst.p.Endpoint})
	}
	s.mu.Unlock()
	for i, reason := range [3]string{DropNotMember, DropAuth, DropStale} {
		for range refused[i] {
			s.m.drop(reason)
		}
	}
	return out
}

// removePeer deletes a peer and pushes its leave. The caller holds s.mu.
func (s *Server) removePeer(n *network, k wgkey.Key, now time.Time) []outbound {
	p := n.peers[k]
	if p == nil {
		return nil
	}
	delete(n.peers, k)
	delete(s.relayIDs, p.RelayID)
	n.version++
	s.log.Debug("nucleus peer left", "network", n.id, "peer", k.String())
	return s.broadcast(n, EventLeave, p.Peer, now)
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Networks: len(s.networks), Frames: s.frames,
		RelayedPackets: s.relayedPackets, RelayedBytes: s.relayedBytes,
		Cookies: s.cookiesSent, Lookups: s.lookups,
		Dropped:    make(map[string]uint64, len(s.dropped)),
		PerNetwork: make(map[string]NetworkStats, len(s.networks)),
	}
	for r, v := range s.dropped {
		st.Dropped[r] = v
	}
	for id, n := range s.networks {
		st.Peers += len(n.peers)
		st.PerNetwork[id] = NetworkStats{Peers: len(n.peers), RelayedPackets: n.relayedPackets, RelayedBytes: n.relayedBytes}
	}
	return st
}

// Peers returns a network's registered peers, sorted by key.
func (s *Server) Peers(networkID string) []Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.networks[networkID]
	if n == nil {
		return nil
	}
	return peersOf(n, wgkey.Key{})
}
