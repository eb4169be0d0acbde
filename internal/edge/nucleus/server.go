package nucleus

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omniedge/omni/internal/platform/clock"
)

// Secrets gives the nucleus a network's secret (the secret_key a join
// returns, as bytes). An error means "unknown network"; the answer is
// cached briefly either way.
type Secrets interface {
	NetworkSecret(ctx context.Context, networkID string) ([]byte, error)
}

// Members tells whether a virtual IPv4 address belongs to a current
// member of a network. With it, a device that left (and still holds the
// network's secret) cannot register again.
type Members interface {
	IsMember(ctx context.Context, networkID string, ip4 netip.Addr) (bool, error)
}

// Options configure a Server. Zero fields take the documented defaults.
type Options struct {
	Secrets  Secrets               // required
	Members  Members               // nil: every holder of the secret may register
	Clock    clock.Clock           // nil: the system clock
	Log      *slog.Logger          // nil: discard
	Registry prometheus.Registerer // nil: no Prometheus metrics

	// Keepalive is the interval clients are told to keep alive at (default
	// 20 s); a peer silent for three intervals is expired.
	Keepalive time.Duration
	// SweepEvery is how often silent peers are looked for (default 1 s).
	SweepEvery time.Duration
	// SecretTTL is how long a looked-up secret is cached (default 30 s);
	// a failed lookup is cached for a sixth of it.
	SecretTTL time.Duration
	// SecretLookups bounds the secret lookups per second (default 100);
	// frames of uncached networks beyond it are dropped.
	SecretLookups int
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
	DropUnknownNetwork = "unknown_network" // no secret for the network id
	DropThrottled      = "throttled"       // secret lookup budget exhausted
	DropAuth           = "auth"            // wrong MAC: wrong key or tampered
	DropStale          = "stale"           // timestamp outside the window
	DropReplay         = "replay"          // nonce seen before (or cache full)
	DropUnexpected     = "unexpected"      // a nucleus-to-client type sent to the nucleus
	DropNotMember      = "not_member"      // relay source or destination not registered, or a register from a non-member
	DropLimit          = "limit"           // too many networks
)

// Stats is a snapshot of the nucleus counters.
type Stats struct {
	Networks       int
	Peers          int
	Frames         uint64 // authenticated frames accepted
	RelayedPackets uint64
	RelayedBytes   uint64 // payload bytes
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
	o   Options
	clk clock.Clock
	log *slog.Logger
	m   *serverMetrics

	mu       sync.Mutex
	networks map[string]*network
	relayIDs map[uint32]relayRef // every registered peer by its relay id
	secrets  map[string]secretEntry
	lookups  struct {
		second int64
		n      int
	}
	frames         uint64
	relayedPackets uint64
	relayedBytes   uint64
	dropped        map[string]uint64

	lookupMu sync.Mutex // one secret lookup at a time

	pc atomic.Pointer[net.PacketConn] // the socket Serve answers on, for Evict
}

type network struct {
	id             string
	key            []byte // signaling key of the last authenticated frame
	peers          map[Key]*peerState
	version        uint32
	replay         *replayCache
	relayedPackets uint64
	relayedBytes   uint64
	// Prometheus counters of this network, looked up once.
	mPackets, mBytes prometheus.Counter
}

type peerState struct {
	Peer
	lastSeen time.Time
}

// relayRef is a registered peer as a RELAY frame names it.
type relayRef struct {
	n *network
	p *peerState
}

type secretEntry struct {
	key   []byte // nil: unknown network
	until time.Time
}

// outbound is a datagram to send once the lock is released.
type outbound struct {
	b  []byte
	to netip.AddrPort
}

// NewServer builds a Server.
func NewServer(o Options) (*Server, error) {
	if o.Secrets == nil {
		return nil, errors.New("nucleus: Options.Secrets is required")
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Keepalive, 20*time.Second)
	def(&o.SweepEvery, time.Second)
	def(&o.SecretTTL, 30*time.Second)
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt(&o.SecretLookups, 100)
	defInt(&o.MaxPeers, 1024)
	defInt(&o.MaxNetworks, 65536)
	defInt(&o.ReplayEntries, 16384)
	s := &Server{
		o: o, clk: o.Clock, log: o.Log,
		networks: map[string]*network{},
		relayIDs: map[uint32]relayRef{},
		secrets:  map[string]secretEntry{},
		dropped:  map[string]uint64{},
	}
	m, err := newServerMetrics(o.Registry, s)
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

// Serve answers on pc until ctx ends (then it closes pc and returns nil)
// or pc fails.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	s.pc.Store(&pc)
	go func() { defer wg.Done(); <-ctx.Done(); pc.Close() }()
	go func() { defer wg.Done(); s.sweepLoop(ctx, pc) }()
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

func (s *Server) send(pc net.PacketConn, o outbound) { sendOne(pc, o, s.log) }

func (s *Server) sweepLoop(ctx context.Context, pc net.PacketConn) {
	t := time.NewTicker(s.o.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, o := range s.sweep() {
				s.send(pc, o)
			}
		}
	}
}

// sweep expires silent peers and pushes their leave.
func (s *Server) sweep() []outbound {
	now := s.clk.Now()
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
		n.replay.purge(now)
		if len(n.peers) == 0 && n.replay.len() == 0 {
			delete(s.networks, id)
		}
	}
	for id, e := range s.secrets {
		if !now.Before(e.until) {
			delete(s.secrets, id)
		}
	}
	return out
}

func (s *Server) drop(reason string) {
	s.mu.Lock()
	s.dropped[reason]++
	s.mu.Unlock()
	s.m.drop(reason)
}

// key returns a network's signaling key, from the cache or the Secrets.
func (s *Server) key(ctx context.Context, id string) ([]byte, string) {
	now := s.clk.Now()
	s.mu.Lock()
	e, ok := s.secrets[id]
	if ok && now.Before(e.until) {
		s.mu.Unlock()
		if e.key == nil {
			return nil, DropUnknownNetwork
		}
		return e.key, ""
	}
	if sec := now.Unix(); sec != s.lookups.second {
		s.lookups.second, s.lookups.n = sec, 0
	}
	if s.lookups.n >= s.o.SecretLookups {
		s.mu.Unlock()
		return nil, DropThrottled
	}
	s.lookups.n++
	s.mu.Unlock()

	s.lookupMu.Lock()
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	secret, err := s.o.Secrets.NetworkSecret(lctx, id)
	cancel()
	s.lookupMu.Unlock()
	e = secretEntry{until: now.Add(s.o.SecretTTL)}
	if err != nil || len(secret) == 0 {
		s.log.Debug("nucleus: no secret for network", "network", id, "err", err)
		e.until = now.Add(s.o.SecretTTL / 6)
	} else {
		e.key = DeriveKey(secret)
	}
	s.mu.Lock()
	if len(s.secrets) < 4*s.o.MaxNetworks {
		s.secrets[id] = e
	}
	s.mu.Unlock()
	if e.key == nil {
		return nil, DropUnknownNetwork
	}
	return e.key, ""
}

// handle processes one control datagram (RELAY frames go through
// handleBatch) and returns what to send.
func (s *Server) handle(ctx context.Context, b []byte, from netip.AddrPort) []outbound {
	if !IsSignal(b) {
		s.drop(DropNotSignal)
		return nil
	}
	h, err := parseHeader(b)
	if err != nil {
		s.drop(DropMalformed)
		return nil
	}
	key, reason := s.key(ctx, h.network)
	if key == nil {
		s.drop(reason)
		return nil
	}
	if !verify(key, b) {
		s.drop(DropAuth)
		return nil
	}
	now := s.clk.Now()
	if !fresh(h.ts, now) {
		s.drop(DropStale)
		return nil
	}
	switch h.typ {
	case TypeRegister, TypeKeepalive, TypePunchRequest, TypeLeave: // RELAY: see handleBatch
	default:
		s.drop(DropUnexpected)
		return nil
	}
	if h.typ == TypeRegister && s.o.Members != nil {
		m, ok := decodeRegister(h.body)
		if !ok {
			s.drop(DropMalformed)
			return nil
		}
		if member, err := s.o.Members.IsMember(ctx, h.network, m.IP4); err != nil || !member {
			if err != nil {
				s.log.Warn("nucleus membership check failed", "network", h.network, "err", err)
			}
			s.drop(DropNotMember)
			return nil
		}
	}

	s.mu.Lock()
	n := s.networks[h.network]
	if n == nil {
		if len(s.networks) >= s.o.MaxNetworks {
			s.mu.Unlock()
			s.drop(DropLimit)
			return nil
		}
		n = &network{id: h.network, peers: map[Key]*peerState{}, replay: newReplayCache(s.o.ReplayEntries)}
		s.networks[h.network] = n
	}
	n.key = key
	if !n.replay.add(h.nonce, now) {
		s.mu.Unlock()
		s.drop(DropReplay)
		return nil
	}
	var out []outbound
	reason = ""
	switch h.typ {
	case TypeRegister:
		out, reason = s.register(n, key, h.body, from, now)
	case TypeKeepalive:
		out, reason = s.keepalive(n, key, h.body, from, now)
	case TypePunchRequest:
		out, reason = s.punch(n, key, h.body, from, now)
	case TypeLeave:
		k, ok := decodeLeave(h.body)
		if !ok {
			reason = DropMalformed
		} else if n.peers[k] != nil {
			out = s.removePeer(n, k, now)
		}
	}
	if reason == "" {
		s.frames++
	}
	s.mu.Unlock()
	if reason != "" {
		s.drop(reason)
	} else {
		s.m.frame(h.typ)
	}
	return out
}

func (s *Server) reply(key []byte, n *network, typ byte, body []byte, to netip.AddrPort, now time.Time) outbound {
	return outbound{b: seal(key, typ, n.id, now, body), to: to}
}

// broadcast sends a PEER_UPDATE about p to every other member.
func (s *Server) broadcast(n *network, event byte, p Peer, now time.Time) []outbound {
	body := updateMsg{Version: n.version, Event: event, Peer: p}.encode()
	out := make([]outbound, 0, len(n.peers))
	for k, q := range n.peers {
		if k != p.PublicKey {
			out = append(out, s.reply(n.key, n, TypePeerUpdate, body, q.Endpoint, now))
		}
	}
	return out
}

// peersOf returns n's peers but one, sorted by key.
func peersOf(n *network, except Key) []Peer {
	ps := make([]Peer, 0, len(n.peers))
	for k, p := range n.peers {
		if k != except {
			ps = append(ps, p.Peer)
		}
	}
	sort.Slice(ps, func(i, j int) bool { return string(ps[i].PublicKey[:]) < string(ps[j].PublicKey[:]) })
	return ps
}

func (s *Server) fullList(key []byte, n *network, to Key, addr netip.AddrPort, now time.Time) []outbound {
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

func (s *Server) register(n *network, key, body []byte, from netip.AddrPort, now time.Time) ([]outbound, string) {
	m, ok := decodeRegister(body)
	if !ok {
		return nil, DropMalformed
	}
	p := Peer{PublicKey: m.Key, IP4: m.IP4, IP6: m.IP6, Endpoint: from, Local: m.Local}
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
		ps := &peerState{Peer: p, lastSeen: now}
		n.peers[m.Key] = ps
		s.relayIDs[p.RelayID] = relayRef{n: n, p: ps}
		n.version++
		s.log.Debug("nucleus peer joined", "network", n.id, "peer", m.Key.String(), "endpoint", from.String())
		out = s.broadcast(n, EventJoin, p, now)
	case !old.equal(p):
		old.Peer, old.lastSeen = p, now
		n.version++
		out = s.broadcast(n, EventUpdate, p, now)
	default:
		old.lastSeen = now
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

func (s *Server) keepalive(n *network, key, body []byte, from netip.AddrPort, now time.Time) ([]outbound, string) {
	m, ok := decodeKeepalive(body)
	if !ok {
		return nil, DropMalformed
	}
	p := n.peers[m.Key]
	if p == nil {
		body := errorMsg{Code: ErrCodeNotRegistered, Text: "not registered"}.encode()
		return []outbound{s.reply(key, n, TypeError, body, from, now)}, ""
	}
	p.lastSeen = now
	var out []outbound
	if p.Endpoint != from { // roaming
		p.Endpoint = from
		n.version++
		out = s.broadcast(n, EventUpdate, p.Peer, now)
	}
	out = append(out, s.ack(key, n, p.RelayID, from, now))
	if m.Version != n.version {
		out = append(out, s.fullList(key, n, m.Key, from, now)...)
	}
	return out, ""
}

func (s *Server) punch(n *network, key, body []byte, from netip.AddrPort, now time.Time) ([]outbound, string) {
	m, ok := decodePair(body)
	if !ok {
		return nil, DropMalformed
	}
	src, dst := n.peers[m.From], n.peers[m.To]
	if src == nil {
		body := errorMsg{Code: ErrCodeNotRegistered, Text: "not registered"}.encode()
		return []outbound{s.reply(key, n, TypeError, body, from, now)}, ""
	}
	if dst == nil {
		body := errorMsg{Code: ErrCodeUnknownPeer, Text: "unknown peer " + m.To.String()}.encode()
		return []outbound{s.reply(key, n, TypeError, body, from, now)}, ""
	}
	src.lastSeen = now
	return []outbound{
		s.reply(key, n, TypePunch, appendPeer(nil, dst.Peer), src.Endpoint, now),
		s.reply(key, n, TypePunch, appendPeer(nil, src.Peer), dst.Endpoint, now),
	}, ""
}

// batchState is the reused memory of Serve's goroutine.
type batchState struct {
	mac    macer
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
// network's key and its timestamp is fresh.
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
			s.dropped[DropAuth]++
			refused[1]++
			continue
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

// Evict removes the peer holding ip4 in a network (a device that left it
// or was deleted) and pushes its leave to the others at once.
func (s *Server) Evict(networkID string, ip4 netip.Addr) {
	s.mu.Lock()
	var out []outbound
	if n := s.networks[networkID]; n != nil {
		for k, p := range n.peers {
			if p.IP4 == ip4 {
				out = append(out, s.removePeer(n, k, s.clk.Now())...)
			}
		}
	}
	s.mu.Unlock()
	pc := s.pc.Load()
	if pc == nil {
		return
	}
	for _, o := range out {
		s.send(*pc, o)
	}
}

// removePeer deletes a peer and pushes its leave. The caller holds s.mu.
func (s *Server) removePeer(n *network, k Key, now time.Time) []outbound {
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
	return peersOf(n, Key{})
}
