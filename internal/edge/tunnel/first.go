package tunnel

import (
	"bytes"
	"crypto/subtle"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.zx2c4.com/wireguard/conn"
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
// So for a peer that just got its first endpoint the Bind looks at the
// handshake messages the device sends it (told apart by their MAC1, which
// is keyed with the receiver's public key):
//
//   - The device with the lower public key leads: its initiation goes out
//     at once and is sent again, unchanged, after each of firstRepeats.
//     The repeats reach a peer that added this device a moment later and
//     dropped the first copy as coming from an unknown key; a peer that
//     has consumed one copy drops the others as replays (the initiation's
//     timestamp is not newer), so they cannot start a second handshake.
//   - The device with the higher public key holds its own initiation back
//     for firstHold. When the lead's initiation arrives meanwhile, the
//     device answers it (its held initiation is then stale and dropped);
//     otherwise — the peer has an old session from before this device
//     restarted, or the lead's messages were lost — the held initiation
//     goes out when the hold ends.
//
// Sending a handshake response to the peer ends either role at once: the
// device has taken part in the peer's handshake, and its own initiation
// state is gone. Later handshakes (rekeying, retries) are wireguard-go's
// own: by then one side holds a session, and only a session's initiator
// rekeys it.

// firstHold is how long the higher key holds its first initiation. It
// covers the time between the two devices adding each other when both
// react to the same event (the nucleus's PUNCH reaches them at different
// moments, the PONGs travel, one side waits a NAT opening delay longer)
// plus a one-way trip.
const firstHold = time.Second

// firstRepeats are when the lower key sends its first initiation again,
// after the original; all within firstHold.
var firstRepeats = [...]time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond}

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
	end     *time.Timer // the end of the role (hold: sends msg)
	// msg and to: the held initiation (hold) or the one being repeated
	// (lead); a newer initiation replaces them.
	msg       []byte
	to        conn.Endpoint
	repeating bool
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

func mac1Key(peer Key) [blake2s.Size]byte {
	h, _ := blake2s.New256(nil)
	h.Write([]byte("mac1----"))
	h.Write(peer[:])
	var k [blake2s.Size]byte
	h.Sum(k[:0])
	return k
}

// firstShakes are the peers whose first handshake is under way; n is
// len(m), read without the lock on the send path.
type firstShakes struct {
	n  atomic.Int32
	mu sync.Mutex
	m  map[Key]*firstShake
}

// startFirst begins the first handshake with peer; self is this device's
// public key. A role already under way for the peer starts over.
func (b *Bind) startFirst(self, peer Key) {
	s := &firstShake{mac1Key: mac1Key(peer), lead: bytes.Compare(self[:], peer[:]) < 0}
	f := &b.first
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[Key]*firstShake{}
	}
	if old := f.m[peer]; old != nil {
		old.end.Stop()
	}
	f.m[peer] = s
	f.n.Store(int32(len(f.m)))
	s.end = time.AfterFunc(firstHold, func() { b.endHold(peer, s) })
}

// stopFirst ends the first handshake with peer (removed from the device),
// dropping a held initiation.
func (b *Bind) stopFirst(peer Key) {
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

// endHold ends s's role when its time is up; a held initiation is sent
// now.
func (b *Bind) endHold(peer Key, s *firstShake) {
	f := &b.first
	f.mu.Lock()
	if f.m[peer] != s {
		f.mu.Unlock()
		return
	}
	delete(f.m, peer)
	f.n.Store(int32(len(f.m)))
	msg, to := s.msg, s.to
	if s.lead {
		msg = nil // already sent
	}
	f.mu.Unlock()
	if msg != nil {
		_ = b.send([][]byte{msg}, to) // lost: wireguard-go retransmits
	}
}

// repeat sends the lead's initiation again (the i-th repeat) while its
// role lasts, and schedules the next.
func (b *Bind) repeat(peer Key, s *firstShake, i int) {
	f := &b.first
	f.mu.Lock()
	if f.m[peer] != s {
		f.mu.Unlock()
		return
	}
	msg, to := s.msg, s.to
	if i+1 < len(firstRepeats) {
		time.AfterFunc(firstRepeats[i+1]-firstRepeats[i], func() { b.repeat(peer, s, i+1) })
	}
	f.mu.Unlock()
	_ = b.send([][]byte{msg}, to)
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
// is addressed to, if any; it reports whether p is held back.
func (b *Bind) handleFirst(typ int, p []byte, ep conn.Endpoint) bool {
	f := &b.first
	f.mu.Lock()
	defer f.mu.Unlock()
	for peer, s := range f.m {
		if !s.addressedTo(p) {
			continue
		}
		if typ == msgResponse {
			// This device answers the peer's initiation: the peer leads
			// this handshake, whatever the keys say.
			s.end.Stop()
			delete(f.m, peer)
			f.n.Store(int32(len(f.m)))
			return false
		}
		s.msg, s.to = bytes.Clone(p), ep // a repeat may be sending the old one
		if !s.lead {
			return true
		}
		if !s.repeating {
			s.repeating = true
			time.AfterFunc(firstRepeats[0], func() { b.repeat(peer, s, 0) })
		}
		return false
	}
	return false
}
