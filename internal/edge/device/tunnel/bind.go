package tunnel

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

// Signaling is what the nucleus client gives the [Bind] so that both
// protocols share one UDP socket. Its frames must never look like WireGuard
// packets (see [IsWireGuard]).
type Signaling interface {
	// IsSignal reports whether a received datagram belongs to the
	// signaling protocol (including relay frames) rather than WireGuard.
	IsSignal(b []byte) bool
	// Unwrap returns the WireGuard packet carried by a relay frame and the
	// public key of the peer that sent it; ok is false for any other
	// signaling frame. payload may alias b.
	Unwrap(b []byte) (srcKey [32]byte, payload []byte, ok bool)
	// Wrap returns a relay frame carrying the WireGuard packet payload to
	// the peer dstKey through the relay.
	Wrap(dstKey [32]byte, payload []byte) []byte
	// Handle receives every signaling frame that is not a relay frame. It
	// runs on the receive path: it must not block, and b is only valid
	// during the call.
	Handle(b []byte, from netip.AddrPort)
}

// RelayAppender is optionally implemented by a [Signaling] whose relay
// frames can be built in place: WrapTo appends the frame that Wrap would
// return to dst and returns the extended slice, or dst unchanged when the
// packet cannot be relayed. The bind then wraps a whole batch into one
// buffer without allocating per packet.
type RelayAppender interface {
	WrapTo(dst []byte, dstKey [32]byte, payload []byte) []byte
}

// IsWireGuard reports whether b starts like a WireGuard message: a
// little-endian message type 1–4 followed by three zero bytes.
func IsWireGuard(b []byte) bool {
	return len(b) >= 4 && b[0] >= 1 && b[0] <= 4 && b[1] == 0 && b[2] == 0 && b[3] == 0
}

// BindConfig configures a [Bind].
type BindConfig struct {
	// Signaling receives signaling frames and wraps relay traffic; nil
	// means every datagram is WireGuard and relay endpoints cannot be used.
	Signaling Signaling
	// Relay is where wrapped frames to relay endpoints are sent (the
	// nucleus); it can be changed later with SetRelay.
	Relay netip.AddrPort
	// ListenAddr restricts the socket to one local address (tests use
	// 127.0.0.1). Zero means a dual-stack socket on every address, or IPv4
	// only when the host has no IPv6.
	ListenAddr netip.Addr
	// DropFrom, when set, discards inbound datagrams from the addresses
	// for which it returns true before any other processing (tests use it
	// to cut the direct path between two devices).
	DropFrom func(from netip.AddrPort) bool
}

// BindStats counts relayed traffic through this bind.
type BindStats struct {
	RelayTxPackets, RelayTxBytes uint64
	RelayRxPackets, RelayRxBytes uint64
	SignalRxPackets              uint64
}

// Bind is a conn.Bind over a single UDP socket that carries both WireGuard
// and the nucleus signaling protocol. Inbound datagrams that the Signaling
// recognises are handed to it, relay frames are unwrapped and given to
// WireGuard as coming from the sender's relay endpoint, and everything
// else goes to WireGuard. Outbound packets to a relay endpoint are wrapped
// and sent to the relay.
type Bind struct {
	sig        Signaling
	listenAddr netip.Addr
	dropFrom   func(netip.AddrPort) bool

	relay atomic.Pointer[netip.AddrPort]

	mu    sync.Mutex
	udp   *net.UDPConn
	batch batchConn
	v4    bool // the socket is AF_INET (no IPv6 on this host or address)
	mark  uint32

	// The largest datagram that sends to a direct endpoint and to the
	// relay coalesce with UDP_SEGMENT; 0 turns GSO off. Both start at the
	// maximum when the kernel has UDP_SEGMENT, drop to 0 when a send shows
	// that the device cannot segment, and below a size the kernel refused
	// as larger than the path MTU (a relay frame of a full-size packet).
	gsoDirect, gsoRelay atomic.Int32

	endpoints sync.Map // netip.AddrPort -> *directEndpoint
	relays    sync.Map // wgkey.Key -> *relayEndpoint
	// pinned holds the direct endpoint of each peer the device was told
	// to reach directly. A relayed frame from such a peer is attributed
	// to that endpoint, so a frame still in flight when the path switched
	// to direct cannot make wireguard-go roam back to the relay: once
	// both sides have roamed there, each only ever hears the other
	// through the relay and the direct path would never come back. The
	// path is chosen from PING/PONG evidence (the direct endpoint answers
	// both ways), not from where the last packet came from.
	pinned sync.Map // wgkey.Key -> *directEndpoint

	first firstShakes

	relayTxP, relayTxB, relayRxP, relayRxB, sigRx atomic.Uint64
}

// batchConn is the part of ipv4.PacketConn and ipv6.PacketConn the bind uses
// (recvmmsg/sendmmsg).
type batchConn interface {
	ReadBatch(ms []ipv6.Message, flags int) (int, error)
	WriteBatch(ms []ipv6.Message, flags int) (int, error)
}

var _ conn.Bind = (*Bind)(nil)

// NewBind returns a closed Bind; wireguard-go opens it.
func NewBind(cfg BindConfig) *Bind {
	b := &Bind{sig: cfg.Signaling, listenAddr: cfg.ListenAddr, dropFrom: cfg.DropFrom}
	if cfg.Relay.IsValid() {
		b.SetRelay(cfg.Relay)
	}
	return b
}

// SetRelay sets where frames for relay endpoints are sent.
func (b *Bind) SetRelay(addr netip.AddrPort) {
	a := netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	b.relay.Store(&a)
}

// Stats returns the relay and signaling counters.
func (b *Bind) Stats() BindStats {
	return BindStats{
		RelayTxPackets: b.relayTxP.Load(), RelayTxBytes: b.relayTxB.Load(),
		RelayRxPackets: b.relayRxP.Load(), RelayRxBytes: b.relayRxB.Load(),
		SignalRxPackets: b.sigRx.Load(),
	}
}

// LocalPort is the port the socket is bound to, or 0 when closed.
func (b *Bind) LocalPort() uint16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.udp == nil {
		return 0
	}
	return uint16(b.udp.LocalAddr().(*net.UDPAddr).Port)
}

// ErrBindClosed is returned by SendTo while the socket is not open.
var ErrBindClosed = errors.New("tunnel: bind is closed")

// SendTo sends one datagram (a signaling frame) from the shared socket.
func (b *Bind) SendTo(p []byte, to netip.AddrPort) error {
	b.mu.Lock()
	udp, v4 := b.udp, b.v4
	b.mu.Unlock()
	if udp == nil {
		return ErrBindClosed
	}
	to = fixAddr(to, v4)
	_, err := udp.WriteToUDPAddrPort(p, to)
	return err
}

// SendToTTL is SendTo with the datagram's IPv4 TTL (IPv6 hop limit) set
// to ttl (1–255) on Linux; elsewhere it is SendTo. A low TTL opens this
// device's NAT mapping towards a peer without the packet reaching the
// peer's NAT, which would otherwise record it and map the peer's own
// first packet to another port.
func (b *Bind) SendToTTL(p []byte, to netip.AddrPort, ttl int) error {
	b.mu.Lock()
	udp, v4 := b.udp, b.v4
	b.mu.Unlock()
	if udp == nil {
		return ErrBindClosed
	}
	to = fixAddr(to, v4)
	_, _, err := udp.WriteMsgUDPAddrPort(p, ttlOOB(!to.Addr().Unmap().Is4(), ttl), to)
	return err
}

func fixAddr(ap netip.AddrPort, v4 bool) netip.AddrPort {
	if v4 {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return ap
}

// Open implements conn.Bind.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.udp != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	udp, v4, err := listen(b.listenAddr, port)
	if err != nil {
		return nil, 0, err
	}
	if b.mark != 0 {
		if err := setMark(udp, b.mark); err != nil {
			udp.Close()
			return nil, 0, err
		}
	}
	tx, rx := tuneSocket(udp)
	seg := int32(0)
	if tx {
		seg = maxSegmentSize
	}
	b.gsoDirect.Store(seg)
	b.gsoRelay.Store(seg)
	b.udp, b.v4 = udp, v4
	if v4 {
		b.batch = ipv4.NewPacketConn(udp)
	} else {
		b.batch = ipv6.NewPacketConn(udp)
	}
	actual := uint16(udp.LocalAddr().(*net.UDPAddr).Port)
	return []conn.ReceiveFunc{b.makeReceive(b.batch, rx)}, actual, nil
}

func listen(addr netip.Addr, port uint16) (*net.UDPConn, bool, error) {
	if addr.IsValid() {
		network := "udp6"
		if addr.Unmap().Is4() {
			network, addr = "udp4", addr.Unmap()
		}
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
		return c, network == "udp4", err
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6unspecified, Port: int(port)})
	if err == nil {
		return c, false, nil
	}
	if errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EPROTONOSUPPORT) {
		c, err4 := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero, Port: int(port)})
		return c, true, err4
	}
	return nil, false, err
}

// Close implements conn.Bind.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.udp == nil {
		return nil
	}
	err := b.udp.Close()
	b.udp, b.batch = nil, nil
	return err
}

// SetMark implements conn.Bind: the socket's packets carry fwmark mark, so
// that policy routing keeps them off the tunnel.
func (b *Bind) SetMark(mark uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mark = mark
	if b.udp == nil {
		return nil
	}
	return setMark(b.udp, mark)
}

// BatchSize implements conn.Bind.
func (b *Bind) BatchSize() int { return conn.IdealBatchSize }

// makeReceive returns the receive function over bc. With gro, it reads
// into the last len(packets)/maxSegments buffers and splits what the
// kernel coalesced over all of them; then each datagram is demultiplexed:
// signaling frames are handled, relay frames unwrapped, and only
// WireGuard packets are returned with a non-zero size.
func (b *Bind) makeReceive(bc batchConn, gro bool) conn.ReceiveFunc {
	msgs := newMessages(conn.IdealBatchSize)
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n := len(packets)
		if n > len(msgs) {
			msgs = newMessages(n)
		}
		first := 0
		if gro {
			first = n - max(1, n/maxSegments)
		}
		for i := 0; i < n; i++ {
			m := &msgs[i]
			m.Buffers[0] = packets[i]
			m.N, m.NN, m.Flags, m.Addr = 0, 0, 0, nil
			if gro {
				m.OOB = m.OOB[:cap(m.OOB)]
			} else {
				m.OOB = m.OOB[:0]
			}
		}
		got, err := bc.ReadBatch(msgs[first:n], 0)
		if err != nil {
			return 0, err
		}
		if gro {
			got = split(msgs[:n], first, got)
		}
		var (
			lastAddr net.Addr
			from     netip.AddrPort
			drop     bool
			direct   *directEndpoint
		)
		for i := 0; i < got; i++ {
			sizes[i] = 0
			m := &msgs[i]
			if m.Addr == nil {
				continue
			}
			if m.Addr != lastAddr {
				// Datagrams split from one read share its address.
				ua, ok := m.Addr.(*net.UDPAddr)
				if !ok {
					continue
				}
				lastAddr, direct = m.Addr, nil
				ap := ua.AddrPort()
				from = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
				drop = b.dropFrom != nil && b.dropFrom(from)
			}
			if drop {
				continue
			}
			p := packets[i][:m.N]
			if b.sig != nil && !IsWireGuard(p) && b.sig.IsSignal(p) {
				src, payload, ok := b.sig.Unwrap(p)
				if !ok {
					b.sigRx.Add(1)
					b.sig.Handle(p, from)
					continue
				}
				b.relayRxP.Add(1)
				b.relayRxB.Add(uint64(len(payload)))
				sizes[i] = copy(packets[i], payload)
				if b.first.n.Load() != 0 && handshakeType(payload) == msgInitiation {
					b.heardFirst(wgkey.Key(src), true, from)
				}
				if d, ok := b.pinned.Load(wgkey.Key(src)); ok {
					eps[i] = d.(*directEndpoint)
				} else {
					eps[i] = b.relayEndpoint(src)
				}
				continue
			}
			if direct == nil {
				direct = b.directEndpoint(from)
			}
			if b.first.n.Load() != 0 && handshakeType(p) == msgInitiation {
				b.heardFirst(wgkey.Key{}, false, from)
			}
			sizes[i] = m.N
			eps[i] = direct
		}
		return got, nil
	}
}

// Send implements conn.Bind. Packets to a direct endpoint go out with
// sendmmsg, runs of same-size packets as one UDP_SEGMENT datagram each;
// packets to a relay endpoint are wrapped into relay frames and sent to
// the relay the same way. While a new peer's first handshake is under
// way, the handshake messages to it follow the roles described in
// first.go (one initiator).
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if b.first.n.Load() != 0 {
		if bufs = b.filterFirst(bufs, ep); len(bufs) == 0 {
			return nil
		}
	}
	return b.send(bufs, ep)
}

func (b *Bind) send(bufs [][]byte, ep conn.Endpoint) error {
	b.mu.Lock()
	udp, bc, v4 := b.udp, b.batch, b.v4
	b.mu.Unlock()
	if udp == nil {
		return net.ErrClosed
	}
	switch e := ep.(type) {
	case *relayEndpoint:
		relay := b.relay.Load()
		if relay == nil || b.sig == nil {
			return errors.New("tunnel: no relay configured")
		}
		s := getSendState(len(bufs))
		defer putSendState(s)
		appender, _ := b.sig.(RelayAppender)
		arena, ends := s.arena[:0], s.ends[:0]
		var payload uint64
		for _, p := range bufs {
			n := len(arena)
			if appender != nil {
				arena = appender.WrapTo(arena, e.key, p)
			} else {
				arena = append(arena, b.sig.Wrap(e.key, p)...)
			}
			if len(arena) == n {
				continue // not relayable (too large)
			}
			ends = append(ends, len(arena))
			payload += uint64(len(p))
		}
		// Slice the frames only now: appending may have moved the arena.
		frames, start := s.frames[:0], 0
		for _, end := range ends {
			frames = append(frames, arena[start:end])
			start = end
		}
		s.arena, s.ends, s.frames = arena, ends, frames
		if err := b.sendBatch(bc, s, frames, fixAddr(*relay, v4), &b.gsoRelay); err != nil {
			return err
		}
		b.relayTxP.Add(uint64(len(frames)))
		b.relayTxB.Add(payload)
		return nil
	case *directEndpoint:
		s := getSendState(len(bufs))
		defer putSendState(s)
		return b.sendBatch(bc, s, bufs, fixAddr(e.ap, v4), &b.gsoDirect)
	default:
		return conn.ErrWrongEndpointType
	}
}

// sendBatch sends the datagrams bufs to one address, runs of one size
// up to *gso bytes coalesced with UDP_SEGMENT. Coalescing appends each
// run to its first buffer, beyond its length; bufs themselves are not
// changed. When the kernel refuses a coalesced message, the rest of the
// batch is sent again with GSO off (EIO: the device cannot segment) or
// limited to smaller datagrams (EINVAL: segments beyond the path MTU).
func (b *Bind) sendBatch(bc batchConn, s *sendState, bufs [][]byte, to netip.AddrPort, gso *atomic.Int32) error {
	setUDPAddr(&s.addr, to)
	maxPayload := maxPayload6
	if to.Addr().Unmap().Is4() {
		maxPayload = maxPayload4
	}
	for len(bufs) > 0 {
		n := coalesce(s.msgs, bufs, &s.addr, int(gso.Load()), maxPayload)
		sent, err := writeAll(bc, s.msgs[:n])
		if err == nil {
			return nil
		}
		size := segmentSize(s.msgs[sent].OOB)
		switch {
		case size == 0:
			return err // not a coalesced message
		case gsoRefused(err):
			b.gsoDirect.Store(0)
			b.gsoRelay.Store(0)
		case gsoTooLarge(err):
			if int32(size) <= gso.Load() {
				gso.Store(int32(size) - 1)
			}
		default:
			return err
		}
		done := 0
		for _, m := range s.msgs[:sent] {
			done += len(m.Buffers[0])
		}
		for done > 0 && len(bufs) > 0 {
			done -= len(bufs[0])
			bufs = bufs[1:]
		}
	}
	return nil
}

// relayPrefix marks a relay endpoint in the WireGuard configuration
// protocol: "relay:" followed by the peer's public key in hex.
const relayPrefix = "relay:"

// RelayEndpoint is the configuration-protocol endpoint string that routes a
// peer's packets through the relay.
func RelayEndpoint(peer wgkey.Key) string { return relayPrefix + peer.Hex() }

// ParseEndpoint implements conn.Bind: "host:port" or a relay endpoint.
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	if rest, ok := strings.CutPrefix(s, relayPrefix); ok {
		var k wgkey.Key
		if len(rest) != 64 {
			return nil, fmt.Errorf("tunnel: bad relay endpoint %q", s)
		}
		if _, err := hex.Decode(k[:], []byte(rest)); err != nil {
			return nil, fmt.Errorf("tunnel: bad relay endpoint %q", s)
		}
		return b.relayEndpoint(k), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return b.directEndpoint(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())), nil
}

// pin records how the device reaches peer k: directly at ap, or (ap
// invalid) through the relay or not at all.
func (b *Bind) pin(k wgkey.Key, ap netip.AddrPort) {
	if !ap.IsValid() {
		b.pinned.Delete(k)
		return
	}
	b.pinned.Store(k, b.directEndpoint(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())))
}

func (b *Bind) directEndpoint(ap netip.AddrPort) *directEndpoint {
	if e, ok := b.endpoints.Load(ap); ok {
		return e.(*directEndpoint)
	}
	e, _ := b.endpoints.LoadOrStore(ap, &directEndpoint{ap: ap})
	return e.(*directEndpoint)
}

func (b *Bind) relayEndpoint(k wgkey.Key) *relayEndpoint {
	if e, ok := b.relays.Load(k); ok {
		return e.(*relayEndpoint)
	}
	e, _ := b.relays.LoadOrStore(k, &relayEndpoint{key: k})
	return e.(*relayEndpoint)
}

// directEndpoint is a peer's UDP address.
type directEndpoint struct{ ap netip.AddrPort }

func (e *directEndpoint) ClearSrc()           {}
func (e *directEndpoint) SrcToString() string { return "" }
func (e *directEndpoint) DstToString() string { return e.ap.String() }
func (e *directEndpoint) DstToBytes() []byte {
	out, _ := e.ap.MarshalBinary()
	return out
}
func (e *directEndpoint) DstIP() netip.Addr { return e.ap.Addr() }
func (e *directEndpoint) SrcIP() netip.Addr { return netip.Addr{} }

// relayEndpoint reaches a peer, by its public key, through the relay.
type relayEndpoint struct{ key wgkey.Key }

func (e *relayEndpoint) ClearSrc()           {}
func (e *relayEndpoint) SrcToString() string { return "" }
func (e *relayEndpoint) DstToString() string { return RelayEndpoint(e.key) }
func (e *relayEndpoint) DstToBytes() []byte  { return append([]byte(relayPrefix), e.key[:]...) }
func (e *relayEndpoint) DstIP() netip.Addr   { return netip.Addr{} }
func (e *relayEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }
