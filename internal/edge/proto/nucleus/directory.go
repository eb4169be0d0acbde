package nucleus

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

// Directory answers the nucleus's one question about a network: its
// secret (the secret_key a join returns, as bytes, from which the
// signaling key derives), the secret's version, and which device key is
// bound to each member's virtual addresses. An error wrapping
// ErrUnknownNetwork means the id names no network served here; any other
// error is transient (the last answer stays in use).
type Directory interface {
	Network(ctx context.Context, networkID string) (NetworkInfo, error)
}

// ErrUnknownNetwork is what a Directory returns (or wraps) for an id that
// names no network it serves.
var ErrUnknownNetwork = errors.New("nucleus: unknown network")

// NetworkInfo is a Directory's answer.
type NetworkInfo struct {
	Secret []byte
	// SecretVersion counts the secret's rotations; REKEY notices carry it.
	SecretVersion uint32
	// Members are the current members with a bound device key; a member
	// without one is not admitted.
	Members []Binding
}

// Binding ties a member's virtual addresses to its device's key.
type Binding struct {
	Key      wgkey.Key
	IP4, IP6 netip.Addr // IP6 invalid when the network has none
}

// member is a binding of a Directory answer with the frame keys of its
// device (DH with the nucleus's key, computed on its first frame and kept
// across answers while the binding stays).
type member struct {
	Binding
	keys *dhKeys
}

// dirEntry is the cached Directory answer of one network id.
type dirEntry struct {
	known   bool
	key     []byte // network key; nil when unknown
	version uint32
	byKey   map[wgkey.Key]*member
	loaded  time.Time // when the answer arrived
	used    time.Time // last frame that needed it
	retry   time.Time // after a failed lookup: not before
	queued  bool      // a lookup is queued or running
	dirty   bool      // Invalidate came while queued, or the queue was full
	// failed: the last lookup failed (not ErrUnknownNetwork), so the
	// answer may be used past the TTL, up to staleLimit.
	failed bool
	// suspect: InvalidateAll came (notices may have been missed), so the
	// answer is used only once reloaded, unless the Directory fails.
	suspect bool
	parked  []parked // frames waiting for the answer
	// bindReload is when an unbound REGISTER last asked for a reload.
	bindReload time.Time
}

// parked is a frame kept while its network is looked up.
type parked struct {
	b    []byte
	from netip.AddrPort
}

// Bounds of the lookup machinery.
const (
	maxParkedPerNetwork = 8
	maxParked           = 1024 // frames held in all, at most MaxFrame bytes each
	// bindReloadAfter is how old an answer must be before a REGISTER of an
	// unbound key may ask for it again (a member that just joined).
	bindReloadAfter = time.Second
	// retryAfter spaces lookups that failed for another reason than
	// ErrUnknownNetwork.
	retryAfter = time.Second
)

// usable reports whether e may authenticate frames at now: a known
// network whose answer is younger than the TTL (refreshed ahead of that
// while in use) and not suspect. An older or suspect answer is reloaded
// before a frame may use it; only while the Directory fails does the
// last answer stay in use, until staleLimit after it arrived.
func (s *Server) usable(e *dirEntry, now time.Time) bool {
	if e == nil || !e.known {
		return false
	}
	age := now.Sub(e.loaded)
	if e.failed {
		return age < s.staleLimit()
	}
	return age < s.o.DirectoryTTL && !e.suspect
}

func (s *Server) staleLimit() time.Duration { return 10 * s.o.DirectoryTTL }

// negative reports whether e is a fresh "unknown network" answer.
func (s *Server) negative(e *dirEntry, now time.Time) bool {
	return e != nil && !e.known && !e.loaded.IsZero() && now.Sub(e.loaded) < s.o.DirectoryTTL/6
}

// refreshAhead queues a reload of a network in use whose answer is older
// than half the TTL. The caller holds s.mu.
func (s *Server) refreshAhead(id string, e *dirEntry, now time.Time) {
	e.used = now
	if now.Sub(e.loaded) >= s.o.DirectoryTTL/2 && !now.Before(e.retry) {
		s.enqueueLocked(id, e, true)
	}
}

// enqueueLocked queues a lookup of id; urgent ones (reloads of known
// networks) go first. It reports whether the lookup is queued or running.
// The caller holds s.mu.
func (s *Server) enqueueLocked(id string, e *dirEntry, urgent bool) bool {
	if e.queued {
		return true
	}
	q := s.queue
	if urgent {
		q = s.urgent
	}
	select {
	case q <- id:
		e.queued = true
		return true
	default:
		if urgent {
			e.dirty = true // the sweep tries again
		}
		return false
	}
}

// park keeps a frame of a network being looked up, within the bounds.
// The caller holds s.mu.
func (s *Server) park(e *dirEntry, b []byte, from netip.AddrPort) bool {
	if len(e.parked) >= maxParkedPerNetwork || s.parkedFrames >= maxParked {
		return false
	}
	e.parked = append(e.parked, parked{b: bytes.Clone(b), from: from})
	s.parkedFrames++
	return true
}

// lookup admits a frame of a network without a usable answer (none yet,
// or one older than the TTL, or suspect): it is parked and a lookup
// queued (a reload of a known network goes first), charged to its
// source's budget. It returns
// the drop reason, or "" when parked. The caller holds s.mu.
func (s *Server) lookup(id string, e *dirEntry, b []byte, from netip.AddrPort, now time.Time) string {
	if e != nil && e.queued {
		if !s.park(e, b, from) {
			return DropThrottled
		}
		return ""
	}
	if e != nil && now.Before(e.retry) {
		return DropThrottled
	}
	if e == nil && len(s.entries) >= 4*s.o.MaxNetworks {
		return DropLimit
	}
	if !s.lookupBudget.take(sourceOf(from), 1, now) {
		return DropThrottled
	}
	fresh := e == nil
	if fresh {
		e = &dirEntry{used: now}
		s.entries[id] = e
	}
	e.used = now
	if !s.enqueueLocked(id, e, e.known) {
		if fresh {
			delete(s.entries, id)
		}
		return DropThrottled
	}
	if !s.park(e, b, from) {
		return DropThrottled // the lookup runs; this frame is lost
	}
	return ""
}

// worker runs lookups until ctx ends, reloads of known networks first.
func (s *Server) worker(ctx context.Context) {
	for {
		var id string
		select {
		case id = <-s.urgent:
		default:
			select {
			case <-ctx.Done():
				return
			case id = <-s.urgent:
			case id = <-s.queue:
			}
		}
		s.load(ctx, id)
	}
}

// load asks the Directory about a network, applies the answer (evicting
// peers that lost their binding, announcing a new secret) and handles the
// frames parked for it.
func (s *Server) load(ctx context.Context, id string) {
	lctx, cancel := context.WithTimeout(ctx, s.o.LookupTimeout)
	info, err := s.o.Directory.Network(lctx, id)
	cancel()
	now := s.clk.Now()
	s.mu.Lock()
	s.lookups++
	out, frames := s.applyLocked(id, info, err, now)
	s.mu.Unlock()
	for _, f := range frames {
		out = append(out, s.handle(ctx, f.b, f.from)...)
	}
	s.sendAll(out)
}

// applyLocked installs a Directory answer. The caller holds s.mu.
func (s *Server) applyLocked(id string, info NetworkInfo, err error, now time.Time) ([]outbound, []parked) {
	e := s.entries[id]
	if e == nil {
		e = &dirEntry{used: now}
		s.entries[id] = e
	}
	frames := e.parked
	e.parked = nil
	s.parkedFrames -= len(frames)
	e.queued = false
	if e.dirty {
		e.dirty = false
		defer s.enqueueLocked(id, e, true)
	}
	var out []outbound
	switch {
	case err == nil && len(info.Secret) > 0:
		key := DeriveKey(info.Secret)
		rotated := e.known && !bytes.Equal(e.key, key)
		if !rotated && e.key != nil {
			key = e.key // the same key: the derived frame keys stay valid
		}
		e.known, e.key, e.version, e.loaded, e.retry = true, key, info.SecretVersion, now, time.Time{}
		e.failed, e.suspect = false, false
		old := e.byKey
		e.byKey = make(map[wgkey.Key]*member, len(info.Members))
		for _, b := range info.Members {
			if b.Key.IsZero() || !b.IP4.Is4() {
				continue
			}
			m := &member{Binding: b}
			if o := old[b.Key]; o != nil {
				m.keys = o.keys // the Diffie–Hellman depends on the key alone
			} else {
				m.keys = deviceKeys(s.priv, s.pub, b.Key, true)
			}
			e.byKey[b.Key] = m
		}
		if n := s.networks[id]; n != nil {
			out = s.reconcile(n, e, rotated, now)
		}
	case err == nil || errors.Is(err, ErrUnknownNetwork):
		s.log.Debug("nucleus: unknown network", "network", id)
		*e = dirEntry{loaded: now, used: e.used}
		if n := s.networks[id]; n != nil {
			out = s.dropNetwork(n, now)
		}
	default:
		s.log.Warn("nucleus: network lookup failed", "network", id, "err", err)
		e.retry = now.Add(retryAfter)
		e.failed = true
		if !e.known {
			frames = nil // nothing to authenticate them with
		}
	}
	return out, frames
}

// reconcile applies a new answer to a network's peers: peers whose key is
// no longer bound to their address leave (pushed to the others), and on a
// new secret the others get REKEY, signed with the old key, and the old
// key stays accepted from them for RekeyGrace. The caller holds s.mu.
func (s *Server) reconcile(n *network, e *dirEntry, rotated bool, now time.Time) []outbound {
	var out []outbound
	for k, p := range n.peers {
		b, ok := e.byKey[k]
		if !ok || b.IP4 != p.IP4 {
			s.log.Info("nucleus peer evicted: no longer bound", "network", n.id, "peer", k.String())
			out = append(out, s.removePeer(n, k, now)...)
			continue
		}
		p.m = b
	}
	if !rotated {
		n.key = e.key
		return out
	}
	body := rekeyMsg{Version: e.version}.encode()
	for _, p := range n.peers {
		out = append(out, outbound{b: seal(s.keyFor(n, p, now), TypeRekey, n.id, now, body), to: p.Endpoint})
		p.oldKey = true
	}
	n.prevKey, n.prevUntil, n.key = n.key, now.Add(s.o.RekeyGrace), e.key
	s.log.Info("nucleus network secret changed", "network", n.id, "version", e.version, "peers", len(n.peers))
	return out
}

// dropNetwork forgets a network that is gone, pushing every peer's leave.
// The caller holds s.mu.
func (s *Server) dropNetwork(n *network, now time.Time) []outbound {
	var out []outbound
	for k := range n.peers {
		out = append(out, s.removePeer(n, k, now)...)
	}
	delete(s.networks, n.id)
	return out
}

// Invalidate reloads a network's answer at once (its secret rotated, or
// members or their keys changed): peers that lost their binding are
// evicted and their leave pushed, and on a new secret the others are told
// to fetch it. A network this nucleus holds nothing of is ignored; it is
// looked up when a frame names it.
func (s *Server) Invalidate(networkID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[networkID]
	if e == nil {
		return
	}
	if e.queued {
		e.dirty = true // the running lookup may have read the old answer
		return
	}
	e.retry = time.Time{}
	s.enqueueLocked(networkID, e, true)
}

// InvalidateAll reloads every network's answer: notices of changes may
// have been missed (the subscription that carries them was down). Until
// its reload arrives a network's answer is not used (unless the
// Directory fails); remembered unknown ids are forgotten.
func (s *Server) InvalidateAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.entries {
		if !e.known {
			if !e.queued {
				delete(s.entries, id)
			}
			continue
		}
		e.suspect = true
		if e.queued {
			e.dirty = true
			continue
		}
		e.retry = time.Time{}
		s.enqueueLocked(id, e, true)
	}
}
