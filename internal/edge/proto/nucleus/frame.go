package nucleus

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"net/netip"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

// Protocol constants. See the package documentation for the layout.
const (
	// Version is the protocol version carried in every control frame.
	// Version 2 added the relay ids (peer entries, REGISTER_ACK) and the
	// 20-byte RELAY frame; version 3 the return-routability cookie (a
	// cookie field in every client request, the COOKIE answer) and REKEY;
	// version 4 the per-device and per-pair frame keys (proof that the
	// sender holds the private key of the device key it names).
	Version = 4

	// MaxFrame bounds every datagram the nucleus or a client reads or writes.
	MaxFrame = 2048
	// MaxRelayPayload bounds the opaque payload of a RELAY frame; a
	// WireGuard packet of a 1420-byte tunnel MTU is 1452 bytes.
	MaxRelayPayload = 1800
	// RelayOverhead is the size of a RELAY frame's header: a full-size
	// WireGuard packet of a 1420-byte tunnel MTU (1452 bytes) relayed
	// over IPv4 makes a 1500-byte datagram, so it is never fragmented.
	RelayOverhead = 20
	// relayTagSize is the length of the truncated MAC of a RELAY header.
	relayTagSize = 8
	// MaxNetworkID bounds the network id (NetworkIDPrefix and base64url).
	MaxNetworkID = 64
	// MaxLocalEndpoints bounds the local endpoints a device announces.
	MaxLocalEndpoints = 4
	// Window is the accepted distance between a frame's timestamp and the
	// receiver's clock; nonces are remembered for twice as long.
	Window = 60 * time.Second

	// KeyInfo is the HKDF-SHA256 info string of the network key.
	KeyInfo = "omniedge/nucleus/v1"
	// DeviceKeyInfo starts the HKDF-SHA256 info string of a device's
	// frame key (followed by the device's and the nucleus's public keys).
	DeviceKeyInfo = "omniedge/nucleus/v4/device"
	// PairKeyInfo starts the HKDF-SHA256 info string of the frame key of
	// two devices (followed by their public keys, the lower first).
	PairKeyInfo = "omniedge/nucleus/v4/pair"

	macSize   = sha256.Size
	nonceSize = 12
	// CookieSize is the length of a return-routability cookie.
	CookieSize = 16
	// maxControlFrame is the size control frames are packed to, so that
	// they cross any IPv6 path (1280) without fragmentation.
	maxControlFrame = 1200
)

// Frame types.
const (
	TypeRegister     byte = 1  // client → nucleus
	TypeRegisterAck  byte = 2  // nucleus → client, answers REGISTER and KEEPALIVE
	TypeKeepalive    byte = 3  // client → nucleus
	TypePeers        byte = 4  // nucleus → client, the full peer list (in parts)
	TypePeerUpdate   byte = 5  // nucleus → client, one join, leave or change
	TypePunchRequest byte = 6  // client → nucleus
	TypePunch        byte = 7  // nucleus → client: send to this peer now
	TypeRelay        byte = 8  // both ways: an opaque packet for a peer (its own frame layout, see IsRelay)
	TypeLeave        byte = 9  // client → nucleus
	TypeError        byte = 10 // nucleus → client
	TypePing         byte = 11 // edge → edge, straight to the peer's underlay address
	TypePong         byte = 12 // edge → edge, answers PING to its source address
	TypeCookie       byte = 13 // nucleus → client: repeat the request with this cookie
	TypeRekey        byte = 14 // nucleus → client: the network secret changed, fetch it
)

// PEER_UPDATE events.
const (
	EventJoin   byte = 1
	EventLeave  byte = 2
	EventUpdate byte = 3 // endpoint, local endpoints or addresses changed
)

// The client's requests (REGISTER, KEEPALIVE, PUNCH_REQUEST, LEAVE) end
// with a cookie: all zero until the nucleus handed one out.

// splitCookie splits a request body into its message and the trailing
// cookie.
func splitCookie(body []byte) (msg []byte, cookie [CookieSize]byte, ok bool) {
	if len(body) < CookieSize {
		return nil, cookie, false
	}
	n := len(body) - CookieSize
	return body[:n], [CookieSize]byte(body[n:]), true
}

// minRequestMsg is the size of the shortest well-formed message (the
// body without its cookie) of a request type: a REGISTER without local
// endpoints, a KEEPALIVE, a PUNCH_REQUEST, a LEAVE. Every request at
// least that long is larger than the COOKIE answering it.
func minRequestMsg(typ byte) int {
	switch typ {
	case TypeRegister:
		return len(wgkey.Key{}) + 4 + 16 + 1
	case TypeKeepalive:
		return len(wgkey.Key{}) + 4
	case TypePunchRequest:
		return 2 * len(wgkey.Key{})
	default: // TypeLeave
		return len(wgkey.Key{})
	}
}

// isRequest reports whether typ is a client → nucleus request.
func isRequest(typ byte) bool {
	return typ == TypeRegister || typ == TypeKeepalive || typ == TypePunchRequest || typ == TypeLeave
}

// cookieMsg is COOKIE: the nonce of the request it answers and the cookie
// to repeat it with. Its MAC is keyed with the request's MAC, which only a
// receiver of the request knows.
type cookieMsg struct {
	Echo   [nonceSize]byte
	Cookie [CookieSize]byte
}

func (m cookieMsg) encode() []byte { return append(append([]byte(nil), m.Echo[:]...), m.Cookie[:]...) }

func decodeCookie(body []byte) (m cookieMsg, ok bool) {
	r := reader{b: body}
	copy(m.Echo[:], r.take(nonceSize))
	copy(m.Cookie[:], r.take(CookieSize))
	return m, r.done()
}

// sealCookie builds the COOKIE answering req, a request frame whose
// header h names the network and nonce.
func sealCookie(req []byte, h rawHeader, cookie [CookieSize]byte, now time.Time) []byte {
	var nonce [nonceSize]byte
	rand.Read(nonce[:])
	m := cookieMsg{Echo: [nonceSize]byte(h.nonce), Cookie: cookie}
	return sealRaw(req[len(req)-macSize:], TypeCookie, h.network, now.UnixMilli(), nonce, m.encode())
}

// rekeyMsg is REKEY: the version of the network's new secret.
type rekeyMsg struct{ Version uint32 }

func (m rekeyMsg) encode() []byte { return binary.BigEndian.AppendUint32(nil, m.Version) }

func decodeRekey(body []byte) (m rekeyMsg, ok bool) {
	r := reader{b: body}
	m.Version = r.u32()
	return m, r.done()
}

// ERROR codes.
const (
	ErrCodeNotRegistered byte = 1 // register again
	ErrCodeUnknownPeer   byte = 2 // the named peer is not registered
	ErrCodeNetworkFull   byte = 3
)

var errMalformed = errors.New("nucleus: malformed frame")

// Peer is one registered device of a network as the nucleus sees it.
type Peer struct {
	PublicKey wgkey.Key
	// RelayID names the peer in RELAY frames: the nucleus gives each
	// registration a random non-zero id, unique on that nucleus, that
	// stays while the peer stays registered.
	RelayID  uint32
	IP4      netip.Addr     // virtual IPv4; invalid when unset
	IP6      netip.Addr     // virtual IPv6; invalid when unset
	Endpoint netip.AddrPort // source address the nucleus observed
	Local    []netip.AddrPort
}

func (p Peer) equal(q Peer) bool {
	if p.PublicKey != q.PublicKey || p.RelayID != q.RelayID || p.IP4 != q.IP4 || p.IP6 != q.IP6 || p.Endpoint != q.Endpoint || len(p.Local) != len(q.Local) {
		return false
	}
	for i := range p.Local {
		if p.Local[i] != q.Local[i] {
			return false
		}
	}
	return true
}

// IsSignal reports whether a datagram is a nucleus frame (control or
// RELAY) rather than a WireGuard packet. It only tests the prefix.
func IsSignal(b []byte) bool {
	return isControl(b) || IsRelay(b)
}

func isControl(b []byte) bool {
	return len(b) >= 5 && b[0] == 0xFF && b[1] == 'O' && b[2] == 'N'
}

// IsRelay reports whether a datagram is a RELAY frame (prefix and length
// test only).
func IsRelay(b []byte) bool { return len(b) >= RelayOverhead && b[0] == 0xFF && b[1] == 'R' }

// DeriveKey returns the network key of a network secret: the key of the
// RELAY header tags, and an input of every frame key.
func DeriveKey(secret []byte) []byte {
	k, err := hkdf.Key(sha256.New, secret, nil, KeyInfo, 32)
	if err != nil {
		panic(err) // only for lengths far beyond 32
	}
	return k
}

// NewPrivateKey returns the X25519 private key of 32 bytes (a nucleus's
// static key, a device's WireGuard key).
func NewPrivateKey(b []byte) (*ecdh.PrivateKey, error) {
	return ecdh.X25519().NewPrivateKey(b)
}

// PublicKeyOf returns the public key of an X25519 private key.
func PublicKeyOf(priv *ecdh.PrivateKey) wgkey.Key { return wgkey.Key(priv.PublicKey().Bytes()) }

// sharedSecret is the X25519 Diffie–Hellman of priv and pub; it fails for
// a public key of low order (the result would be all zero, known to
// anyone).
func sharedSecret(priv *ecdh.PrivateKey, pub wgkey.Key) ([]byte, error) {
	p, err := ecdh.X25519().NewPublicKey(pub[:])
	if err != nil {
		return nil, err
	}
	return priv.ECDH(p)
}

// frameKey derives a frame key from a Diffie–Hellman result and the
// network key: HKDF-SHA256(ikm = shared ‖ netKey, salt none, info =
// label ‖ a ‖ b), 32 bytes. Mixing in the network key ties every frame
// key to the current secret, so it rotates with it.
func frameKey(shared, netKey []byte, label string, a, b wgkey.Key) []byte {
	ikm := make([]byte, 0, len(shared)+len(netKey))
	ikm = append(append(ikm, shared...), netKey...)
	info := make([]byte, 0, len(label)+64)
	info = append(append(append(info, label...), a[:]...), b[:]...)
	k, err := hkdf.Key(sha256.New, ikm, nil, string(info), 32)
	if err != nil {
		panic(err) // only for lengths far beyond 32
	}
	return k
}

// DeviceFrameKey is the key of the control frames between a device and
// its nucleus: from DH(device, nucleus) — which the device computes with
// its private key and the nucleus's public key, the nucleus with its
// private key and the device's public key, and nobody else — and the
// network key; info DeviceKeyInfo ‖ device ‖ nucleus.
func DeviceFrameKey(shared, netKey []byte, device, nucleus wgkey.Key) []byte {
	return frameKey(shared, netKey, DeviceKeyInfo, device, nucleus)
}

// PairFrameKey is the key of the PING and PONG frames between two
// devices: from DH(a, b), which only a and b can compute, and the network
// key; info PairKeyInfo ‖ the lower key ‖ the higher key, so that both
// sides derive the same.
func PairFrameKey(shared, netKey []byte, a, b wgkey.Key) []byte {
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	return frameKey(shared, netKey, PairKeyInfo, a, b)
}

// header is the parsed clear part of a frame.
type header struct {
	typ     byte
	network string
	ts      int64 // Unix milliseconds
	nonce   [nonceSize]byte
	body    []byte // aliases the input
}

// NetworkIDPrefix starts every network id: the control plane names
// networks "vn_" and 16 characters of base64url.
const NetworkIDPrefix = "vn_"

// validNetworkID reports whether id has the shape of a network id: the
// prefix, then 1 to MaxNetworkID-3 characters of the base64url alphabet.
// Frames naming anything else are dropped before any lookup.
func validNetworkID(id string) bool { return validNetworkIDBytes([]byte(id)) }

func validNetworkIDBytes(id []byte) bool {
	if len(id) <= len(NetworkIDPrefix) || len(id) > MaxNetworkID || string(id[:len(NetworkIDPrefix)]) != NetworkIDPrefix {
		return false
	}
	for _, c := range id[len(NetworkIDPrefix):] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// rawHeader is the clear part of a frame as slices of it, without copies.
type rawHeader struct {
	typ     byte
	network []byte
	ts      int64 // Unix milliseconds
	nonce   []byte
	body    []byte
}

// splitFrame splits a frame without checking its MAC or copying.
func splitFrame(b []byte) (rawHeader, bool) {
	if len(b) > MaxFrame || len(b) < 6 || !isControl(b) || b[3] != Version {
		return rawHeader{}, false
	}
	n := int(b[5])
	if n == 0 || n > MaxNetworkID || len(b) < 6+n+8+nonceSize+macSize {
		return rawHeader{}, false
	}
	h := rawHeader{typ: b[4], network: b[6 : 6+n]}
	if !validNetworkIDBytes(h.network) {
		return rawHeader{}, false
	}
	off := 6 + n
	h.ts = int64(binary.BigEndian.Uint64(b[off:]))
	off += 8
	h.nonce = b[off : off+nonceSize]
	off += nonceSize
	h.body = b[off : len(b)-macSize]
	return h, true
}

// parseHeader splits a frame without checking its MAC.
func parseHeader(b []byte) (header, error) {
	r, ok := splitFrame(b)
	if !ok {
		return header{}, errMalformed
	}
	h := header{typ: r.typ, network: string(r.network), ts: r.ts, body: r.body}
	copy(h.nonce[:], r.nonce)
	return h, nil
}

// verify checks the MAC of a frame; an empty key verifies nothing.
func verify(key, b []byte) bool {
	if len(key) == 0 || len(b) < macSize {
		return false
	}
	m := hmac.New(sha256.New, key)
	m.Write(b[:len(b)-macSize])
	return hmac.Equal(m.Sum(nil), b[len(b)-macSize:])
}

// macer computes the MACs of one key with a reused HMAC state, so that a
// frame costs no allocation. Not safe for concurrent use.
type macer struct {
	key []byte
	h   hash.Hash
	sum [macSize]byte
}

// use switches to key (compared by identity first: keys come from a cache).
func (m *macer) use(key []byte) {
	if m.h != nil && len(key) == len(m.key) && (len(key) == 0 || &key[0] == &m.key[0] || bytes.Equal(key, m.key)) {
		return
	}
	m.key, m.h = key, hmac.New(sha256.New, key)
}

// tag is the truncated MAC of a RELAY header's first 12 bytes.
func (m *macer) tag(h []byte) [relayTagSize]byte {
	m.h.Reset()
	m.h.Write(h[:relayHeaderMACed])
	return [relayTagSize]byte(m.h.Sum(m.sum[:0]))
}

// checkTag reports whether a RELAY frame's tag is authentic.
func (m *macer) checkTag(b []byte) bool {
	t := m.tag(b)
	return hmac.Equal(t[:], b[relayHeaderMACed:RelayOverhead])
}

// fresh reports whether a timestamp lies within the window around now.
func fresh(ts int64, now time.Time) bool {
	d := now.UnixMilli() - ts
	return d <= Window.Milliseconds() && d >= -Window.Milliseconds()
}

// seal builds a frame with a fresh nonce.
func seal(key []byte, typ byte, network string, now time.Time, body []byte) []byte {
	var nonce [nonceSize]byte
	rand.Read(nonce[:])
	return sealNonce(key, typ, network, now.UnixMilli(), nonce, body)
}

func sealNonce(key []byte, typ byte, network string, ts int64, nonce [nonceSize]byte, body []byte) []byte {
	return sealRaw(key, typ, []byte(network), ts, nonce, body)
}

func sealRaw(key []byte, typ byte, network []byte, ts int64, nonce [nonceSize]byte, body []byte) []byte {
	b := make([]byte, 0, 6+len(network)+8+nonceSize+len(body)+macSize)
	b = append(b, 0xFF, 'O', 'N', Version, typ, byte(len(network)))
	b = append(b, network...)
	b = binary.BigEndian.AppendUint64(b, uint64(ts))
	b = append(b, nonce[:]...)
	b = append(b, body...)
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return m.Sum(b)
}

// overhead is the frame size around a body.
func overhead(network string) int { return 6 + len(network) + 8 + nonceSize + macSize }

// --- body encoding ---

func appendAddr4(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	return append(b, 0, 0, 0, 0)
}

func appendAddr6(b []byte, a netip.Addr) []byte {
	if a.Is6() {
		v := a.As16()
		return append(b, v[:]...)
	}
	return append(b, make([]byte, 16)...)
}

func appendEndpoint(b []byte, e netip.AddrPort) []byte {
	switch a := e.Addr(); {
	case !e.IsValid():
		return append(b, 0)
	case a.Is4():
		v := a.As4()
		b = append(append(b, 4), v[:]...)
	default:
		v := a.As16()
		b = append(append(b, 6), v[:]...)
	}
	return binary.BigEndian.AppendUint16(b, e.Port())
}

func appendEndpoints(b []byte, es []netip.AddrPort) []byte {
	if len(es) > MaxLocalEndpoints {
		es = es[:MaxLocalEndpoints]
	}
	b = append(b, byte(len(es)))
	for _, e := range es {
		b = appendEndpoint(b, e)
	}
	return b
}

func appendPeer(b []byte, p Peer) []byte {
	b = append(b, p.PublicKey[:]...)
	b = binary.BigEndian.AppendUint32(b, p.RelayID)
	b = appendAddr4(b, p.IP4)
	b = appendAddr6(b, p.IP6)
	b = appendEndpoint(b, p.Endpoint)
	return appendEndpoints(b, p.Local)
}

// reader decodes a body; any short read latches bad.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) key() (k wgkey.Key) {
	copy(k[:], r.take(32))
	return k
}

func (r *reader) addr4() netip.Addr {
	v := r.take(4)
	if v == nil || [4]byte(v) == [4]byte{} {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(v))
}

func (r *reader) addr6() netip.Addr {
	v := r.take(16)
	if v == nil || [16]byte(v) == [16]byte{} {
		return netip.Addr{}
	}
	return netip.AddrFrom16([16]byte(v))
}

func (r *reader) endpoint() netip.AddrPort {
	var a netip.Addr
	switch r.u8() {
	case 0:
		return netip.AddrPort{}
	case 4:
		v := r.take(4)
		if v == nil {
			return netip.AddrPort{}
		}
		a = netip.AddrFrom4([4]byte(v))
	case 6:
		v := r.take(16)
		if v == nil {
			return netip.AddrPort{}
		}
		a = netip.AddrFrom16([16]byte(v))
	default:
		r.bad = true
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, r.u16())
}

func (r *reader) endpoints() []netip.AddrPort {
	n := int(r.u8())
	if n > MaxLocalEndpoints {
		r.bad = true
		return nil
	}
	var es []netip.AddrPort
	for i := 0; i < n && !r.bad; i++ {
		e := r.endpoint()
		if !e.IsValid() {
			r.bad = true
		}
		es = append(es, e)
	}
	return es
}

func (r *reader) peer() Peer {
	return Peer{PublicKey: r.key(), RelayID: r.u32(), IP4: r.addr4(), IP6: r.addr6(), Endpoint: r.endpoint(), Local: r.endpoints()}
}

// done reports whether the body was read fully and well.
func (r *reader) done() bool { return !r.bad && len(r.b) == 0 }

// --- messages ---

// registerMsg is REGISTER: the device's key, addresses and local endpoints.
type registerMsg struct {
	Key   wgkey.Key
	IP4   netip.Addr
	IP6   netip.Addr
	Local []netip.AddrPort
}

func (m registerMsg) encode() []byte {
	b := append([]byte(nil), m.Key[:]...)
	b = appendAddr4(b, m.IP4)
	b = appendAddr6(b, m.IP6)
	return appendEndpoints(b, m.Local)
}

func decodeRegister(body []byte) (m registerMsg, ok bool) {
	r := reader{b: body}
	m = registerMsg{Key: r.key(), IP4: r.addr4(), IP6: r.addr6(), Local: r.endpoints()}
	return m, r.done() && !m.Key.IsZero()
}

// ackMsg is REGISTER_ACK: observed address, keepalive interval, version,
// the device's relay id.
type ackMsg struct {
	Observed  netip.AddrPort
	Keepalive uint32 // milliseconds
	Version   uint32 // the network's peer-list version
	RelayID   uint32
}

func (m ackMsg) encode() []byte {
	b := appendEndpoint(nil, m.Observed)
	b = binary.BigEndian.AppendUint32(b, m.Keepalive)
	b = binary.BigEndian.AppendUint32(b, m.Version)
	return binary.BigEndian.AppendUint32(b, m.RelayID)
}

func decodeAck(body []byte) (m ackMsg, ok bool) {
	r := reader{b: body}
	m = ackMsg{Observed: r.endpoint(), Keepalive: r.u32(), Version: r.u32(), RelayID: r.u32()}
	return m, r.done()
}

// keepaliveMsg is KEEPALIVE: the sender's key and the peer-list version it holds.
type keepaliveMsg struct {
	Key     wgkey.Key
	Version uint32
}

func (m keepaliveMsg) encode() []byte {
	return binary.BigEndian.AppendUint32(append([]byte(nil), m.Key[:]...), m.Version)
}

func decodeKeepalive(body []byte) (m keepaliveMsg, ok bool) {
	r := reader{b: body}
	m = keepaliveMsg{Key: r.key(), Version: r.u32()}
	return m, r.done() && !m.Key.IsZero()
}

// peersMsg is one part of PEERS.
type peersMsg struct {
	Version     uint32
	Part, Parts uint16 // Part counts from 0
	Peers       []Peer
}

func (m peersMsg) encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, m.Version)
	b = binary.BigEndian.AppendUint16(b, m.Part)
	b = binary.BigEndian.AppendUint16(b, m.Parts)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Peers)))
	for _, p := range m.Peers {
		b = appendPeer(b, p)
	}
	return b
}

func decodePeers(body []byte) (m peersMsg, ok bool) {
	r := reader{b: body}
	m = peersMsg{Version: r.u32(), Part: r.u16(), Parts: r.u16()}
	n := int(r.u16())
	if n > len(body)/36 { // every entry holds at least a key and an id
		return m, false
	}
	for i := 0; i < n && !r.bad; i++ {
		m.Peers = append(m.Peers, r.peer())
	}
	return m, r.done() && m.Parts > 0 && m.Part < m.Parts
}

// updateMsg is PEER_UPDATE.
type updateMsg struct {
	Version uint32
	Event   byte
	Peer    Peer
}

func (m updateMsg) encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, m.Version)
	return appendPeer(append(b, m.Event), m.Peer)
}

func decodeUpdate(body []byte) (m updateMsg, ok bool) {
	r := reader{b: body}
	m = updateMsg{Version: r.u32(), Event: r.u8(), Peer: r.peer()}
	return m, r.done() && m.Event >= EventJoin && m.Event <= EventUpdate
}

// pairMsg is PUNCH_REQUEST (sender, target) and LEAVE (sender only).
type pairMsg struct{ From, To wgkey.Key }

func (m pairMsg) encode() []byte { return append(append([]byte(nil), m.From[:]...), m.To[:]...) }

func decodePair(body []byte) (m pairMsg, ok bool) {
	r := reader{b: body}
	m = pairMsg{From: r.key(), To: r.key()}
	return m, r.done() && !m.From.IsZero() && !m.To.IsZero()
}

func decodeLeave(body []byte) (k wgkey.Key, ok bool) {
	r := reader{b: body}
	k = r.key()
	return k, r.done() && !k.IsZero()
}

// punchMsg is PUNCH: the peer to send to now.
func decodePunch(body []byte) (p Peer, ok bool) {
	r := reader{b: body}
	p = r.peer()
	return p, r.done() && !p.PublicKey.IsZero()
}

// A RELAY frame is 0xFF 'R', a u16 timestamp (Unix seconds modulo
// 2^16), the source and destination relay ids (u32), the first 8 bytes
// of HMAC-SHA256(K, those 12 bytes), and the payload. The tag covers the
// header only: the payload is a WireGuard packet, which its receiver
// authenticates and checks for replay itself.
const relayHeaderMACed = 12

// relayHeader is the routing part of a RELAY frame.
type relayHeader struct {
	ts       uint16
	src, dst uint32
}

// appendRelayFrame appends a RELAY frame, tagged with m's key, to b.
func appendRelayFrame(b []byte, m *macer, h relayHeader, payload []byte) []byte {
	start := len(b)
	b = append(b, 0xFF, 'R')
	b = binary.BigEndian.AppendUint16(b, h.ts)
	b = binary.BigEndian.AppendUint32(b, h.src)
	b = binary.BigEndian.AppendUint32(b, h.dst)
	t := m.tag(b[start:])
	b = append(b, t[:]...)
	return append(b, payload...)
}

// splitRelay parses a RELAY frame without checking its tag.
func splitRelay(b []byte) (h relayHeader, payload []byte, ok bool) {
	if !IsRelay(b) || len(b)-RelayOverhead > MaxRelayPayload {
		return h, nil, false
	}
	h = relayHeader{
		ts:  binary.BigEndian.Uint16(b[2:]),
		src: binary.BigEndian.Uint32(b[4:]),
		dst: binary.BigEndian.Uint32(b[8:]),
	}
	return h, b[RelayOverhead:], h.src != 0 && h.dst != 0
}

// relayTime is a RELAY timestamp.
func relayTime(now time.Time) uint16 { return uint16(now.Unix()) }

// freshRelay reports whether a RELAY timestamp lies within the window
// around now (modulo 2^16 seconds, about 18 hours).
func freshRelay(ts uint16, now time.Time) bool {
	d := int64(int16(relayTime(now) - ts))
	w := int64(Window / time.Second)
	return d <= w && d >= -w
}

// errorMsg is ERROR: a code and a short text.
type errorMsg struct {
	Code byte
	Text string
}

func (m errorMsg) encode() []byte {
	t := m.Text
	if len(t) > 200 {
		t = t[:200]
	}
	return append(append([]byte{m.Code}, byte(len(t))), t...)
}

func decodeError(body []byte) (m errorMsg, ok bool) {
	r := reader{b: body}
	m.Code = r.u8()
	n := int(r.u8())
	m.Text = string(r.take(n))
	return m, r.done() && n <= 200
}

// packPeers splits a peer list into PEERS bodies that fit a control frame.
func packPeers(network string, version uint32, peers []Peer) [][]byte {
	budget := maxControlFrame - overhead(network) - 10
	var parts [][]Peer
	var cur []Peer
	size := 0
	for _, p := range peers {
		n := len(appendPeer(nil, p))
		if size+n > budget && len(cur) > 0 {
			parts, cur, size = append(parts, cur), nil, 0
		}
		cur = append(cur, p)
		size += n
	}
	parts = append(parts, cur) // an empty list is one empty part
	out := make([][]byte, len(parts))
	for i, ps := range parts {
		out[i] = peersMsg{Version: version, Part: uint16(i), Parts: uint16(len(parts)), Peers: ps}.encode()
	}
	return out
}
