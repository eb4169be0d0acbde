package tunnel

import (
	"bytes"
	"crypto/subtle"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

// The first handshake with a new peer has one initiator.
//
// Two devices that add each other at the same moment (both chose the path
// on one PONG, or both gave up on the direct path at once) would both
// start a WireGuard handshake then. wireguard-go keeps one handshake state
// per peer and processes handshake messages on parallel workers: when the
// initiations cross, each side consumes the other's initiation, which
// replaces its own handshake state, so the response to its own initiation
// is dropped; and depending on how the workers interleave, a side can end
// with a session whose receive index it has already deleted, sending on
// it while every answer is dropped. The first packets then wait for
// wireguard-go to try again, 5 s later (handshake retransmit) or 15 s
// later (no answer to data).
//
// So for a peer that just got its first endpoint the Bind holds back the
// initiations the device sends it (told apart by their MAC1, which is
// keyed with the receiver's public key) and releases the last one when
// the device's role ends:
//
//   - The device with the lower public key leads: its initiation goes out
//     after firstLead, by when a peer that reacted to the same event has
//     added this device too (an initiation from a key it does not know
//     yet would be dropped).
//   - The device with the higher public key waits for it: its own
//     initiation goes out only after firstHold, for the case where none
//     comes (the peer kept a session from before this device restarted,
//     or the lead's messages were lost, or the lead added this device
//     much later).
//
// Once the device sends the peer a handshake response it has answered the
// peer's initiation, and its own initiation state is gone: nothing held
// is released, and until the role ends any initiation of its own to the
// peer is dropped (wireguard-go can create one concurrently with the
// answer, on another goroutine; sent, it would cross the handshake under
// way). A role is extended, by firstHoldMore up to firstHoldMax in all,
// while an initiation from the peer has arrived unanswered or (the
// higher key) while the socket still holds unread datagrams: on a loaded
// device wireguard-go may not have reached the peer's initiation yet.
// The lead's initiation is sent once, never repeated: copies arriving
// together would be consumed twice by parallel workers (its replay check
// is not atomic), leaving two sessions of which the initiator keeps the
// wrong one. Later handshakes (rekeying, retries) are wireguard-go's own:
// by then one side holds a session, and only a session's initiator
// rekeys it.
const (
	firstLead     = 100 * time.Millisecond
	firstHold     = time.Second
	firstHoldMore = 250 * time.Millisecond
	firstHoldMax  = time.Second
)

// WireGuard handshake messages: type (little-endian u32) and size.
const (
	msgInitiation  = 1
	sizeInitiation = 148
	msgResponse    = 2
	sizeResponse   = 92
	macSize        = 16 // MAC1 and MAC2, the last 32 bytes
)

// handshakeType is msgInitiation or msgResponse for those messages, and 0
// for any other datagram.
func handshakeType(p []byte) int {
	switch {
	case len(p) == sizeInitiation && p[0] == msgInitiation && p[1] == 0 && p[2] == 0 && p[3] == 0:
		return msgInitiation
	case len(p) == sizeResponse && p[0] == msgResponse && p[1] == 0 && p[2] == 0 && p[3] == 0:
		return msgResponse
	}
	return 0
}

// firstShake is the state of one new peer's first handshake.
type firstShake struct {
	mac1Key [blake2s.Size]byte // BLAKE2s("mac1----" || peer key)
	lead    bool
	end     *time.Timer // the end of the role
	// msg and to: the initiation held back; a newer one replaces it.
	msg []byte
	to  conn.Endpoint
	// answered: this device sent the peer a handshake response.
	answered bool
	// from is the peer's direct endpoint (zero when relayed); heard: an
	// initiation from the peer arrived (from there, or relayed from its
	// key); extra: how long the role was extended.
	from  netip.AddrPort
	heard bool
	extra time.Duration
}

// addressedTo reports whether the handshake message p was built for the
// peer of s: its MAC1 is keyed with the receiver's public key.
func (s *firstShake) addressedTo(p []byte) bool {
	h, err := blake2s.New128(s.mac1Key[:])
	if err != nil {
		return false
	}
	n := len(p) - 2*macSize
	h.Write(p[:n])
	var mac [blake2s.Size128]byte
	return subtle.ConstantTimeCompare(h.Sum(mac[:0]), p[n:n+macSize]) == 1
}

func mac1Key(peer wgkey.Key) [blake2s.Size]byte {
	h, _ := blake2s.New256(nil)
	h.Write([]byte("mac1----"))
	h.Write(peer[:])
	var k [blake2s.Size]byte
	h.Sum(k[:0])
	return k
}

// firstShakes are the peers whose first handshake is under way; n is
// len(m), read without the lock on the send and receive paths.
type firstShakes struct {
	n  atomic.Int32
	mu sync.Mutex
	m  map[wgkey.Key]*firstShake
}

// startFirst begins the first handshake with peer, reached directly at
// from (zero: through the relay); self is this device's public key. A
// role already under way for the peer starts over.
func (b *Bind) startFirst(self, peer wgkey.Key, from netip.AddrPort) {
	s := &firstShake{mac1Key: mac1Key(peer), lead: bytes.Compare(self[:], peer[:]) < 0, from: from}
	wait := firstHold
	if s.lead {
		wait = firstLead
	}
	f := &b.first
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[wgkey.Key]*firstShake{}
	}
	if old := f.m[peer]; old != nil {
		old.end.Stop()
	}
	f.m[peer] = s
	f.n.Store(int32(len(f.m)))
	s.end = time.AfterFunc(wait, func() { b.endFirst(peer, s) })
}

// stopFirst ends the first handshake with peer (removed from the device),
// dropping a held initiation.
func (b *Bind) stopFirst(peer wgkey.Key) {
	f := &b.first
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.m[peer]; s != nil {
		s.end.Stop()
		delete(f.m, peer)
		f.n.Store(int32(len(f.m)))
	}
}

// stopAllFirst ends every first handshake (the device closes).
func (b *Bind) stopAllFirst() {
	f := &b.first
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, s := range f.m {
		s.end.Stop()
		delete(f.m, k)
	}
	f.n.Store(0)
}

// endFirst ends s's role when its time is up, or extends it; a held
// initiation is sent when the role ends unanswered.
func (b *Bind) endFirst(peer wgkey.Key, s *firstShake) {
	unread := !s.lead && b.unread()
	f := &b.first
	f.mu.Lock()
	if f.m[peer] != s {
		f.mu.Unlock()
		return
	}
	if !s.answered && (s.heard || unread) && s.extra < firstHoldMax {
		s.extra += firstHoldMore
		s.end = time.AfterFunc(firstHoldMore, func() { b.endFirst(peer, s) })
		f.mu.Unlock()
		return
	}
	delete(f.m, peer)
	f.n.Store(int32(len(f.m)))
	msg, to := s.msg, s.to
	f.mu.Unlock()
	if msg != nil {
		_ = b.send([][]byte{msg}, to) // lost: wireguard-go retransmits
	}
}

// unread reports whether the socket holds datagrams not read yet.
func (b *Bind) unread() bool {
	b.mu.Lock()
	udp := b.udp
	b.mu.Unlock()
	return udp != nil && socketUnread(udp)
}

// filterFirst applies the first-handshake roles to the datagrams bufs
// being sent to ep: it returns them without the initiations held back
// (bufs itself when nothing is held).
func (b *Bind) filterFirst(bufs [][]byte, ep conn.Endpoint) [][]byte {
	var out [][]byte
	for i, p := range bufs {
		typ := handshakeType(p)
		if typ == 0 || !b.handleFirst(typ, p, ep) {
			if out != nil {
				out = append(out, p)
			}
			continue
		}
		if out == nil {
			out = append(make([][]byte, 0, len(bufs)), bufs[:i]...)
		}
	}
	if out == nil {
		return bufs
	}
	return out
}

// handleFirst applies the role of the peer that the handshake message p
// is addressed to, if any; it reports whether p is held back (or
// dropped).
func (b *Bind) handleFirst(typ int, p []byte, ep conn.Endpoint) bool {
	f := &b.first
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.m {
		if !s.addressedTo(p) {
			continue
		}
		if typ == msgResponse {
			// The peer leads this handshake, whatever the keys say.
			s.answered, s.msg, s.to = true, nil, nil
			return false
		}
		if !s.answered {
			s.msg, s.to = bytes.Clone(p), ep
		}
		return true
	}
	return false
}

// heardFirst notes a handshake initiation received from the peer with the
// key src (relayed) or from the address from (direct).
func (b *Bind) heardFirst(src wgkey.Key, relayed bool, from netip.AddrPort) {
	f := &b.first
	f.mu.Lock()
	defer f.mu.Unlock()
	if relayed {
		if s := f.m[src]; s != nil {
			s.heard = true
		}
		return
	}
	for _, s := range f.m {
		if s.from == from {
			s.heard = true
		}
	}
}
