package dataplane

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/proto/nucleus"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

// PathConfig tunes how a peer's path is chosen; zero fields take the
// defaults.
type PathConfig struct {
	// DirectTimeout is how long a new peer may go without a PONG on the
	// direct path before it is relayed (5 s).
	DirectTimeout time.Duration
	// RetryEvery is how often a relayed peer tries the direct path again
	// (30 s).
	RetryEvery time.Duration
	// PingEvery is how often a direct peer is pinged (5 s).
	PingEvery time.Duration
	// DeadAfter is how long a direct path may stay silent (no PONG, no
	// handshake) before the peer is relayed (16 s).
	DeadAfter time.Duration
	// OpenerTTL is the TTL of the first PINGs after a PUNCH (2): enough to
	// leave this device's NAT, too little to reach the peer's.
	OpenerTTL int
	// OpenDelay separates those openers from the full PINGs (250 ms), so
	// that both NATs have a mapping before either PING arrives.
	OpenDelay time.Duration
}

func (c PathConfig) withDefaults() PathConfig {
	if c.DirectTimeout <= 0 {
		c.DirectTimeout = 5 * time.Second
	}
	if c.RetryEvery <= 0 {
		c.RetryEvery = 30 * time.Second
	}
	if c.PingEvery <= 0 {
		c.PingEvery = 5 * time.Second
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = 16 * time.Second
	}
	if c.OpenerTTL <= 0 || c.OpenerTTL > 255 {
		c.OpenerTTL = 2
	}
	if c.OpenDelay <= 0 {
		c.OpenDelay = 250 * time.Millisecond
	}
	return c
}

// probeEvery is how often a peer that is being tried direct asks for
// another PUNCH.
const probeEvery = time.Second

// probe is what the policy asks the session to send now.
type probe struct {
	peer  wgkey.Key
	punch bool             // ask the nucleus to PUNCH both sides
	ping  []netip.AddrPort // send a PING to each
}

// pathState is one peer's path: probing (neither relayed nor an
// endpoint yet), direct at endpoint, or relayed.
type pathState struct {
	peer      nucleus.Peer
	relayed   bool
	endpoint  netip.AddrPort // the confirmed direct endpoint
	since     time.Time      // when the current state began
	lastPong  time.Time
	lastProbe time.Time
	// reason says why a relayed peer is relayed; retried is when a
	// relayed peer last asked for a PUNCH (zero: its answer was judged).
	reason  string
	retried time.Time
	// published: the peer has had a path, so it is in the tunnel's peer
	// set. A new peer joins the set only once its path is chosen: a
	// WireGuard peer without an endpoint fails its first handshake and
	// waits 5 s before the next, while one added with an endpoint
	// handshakes at once.
	published bool
}

func (st *pathState) probing() bool { return !st.relayed && !st.endpoint.IsValid() }

// paths is the path policy of one network. A new peer is tried direct
// first: the device asks the nucleus for a PUNCH, both sides open their
// NAT mapping with low-TTL PINGs and then PING each other, and the first
// PONG makes the peer direct at the address it came from. WireGuard gets
// no endpoint while this runs, so that neither side's NAT sees the other
// side's packets before it has a mapping of its own (a Linux NAT records
// such a packet and maps its own host's first packet to another port).
// Without a PONG within DirectTimeout the peer is relayed; a direct peer
// silent for DeadAfter is relayed; a relayed peer tries again every
// RetryEvery. It is a plain state machine: the caller supplies the time
// and serialises the calls.
type paths struct {
	cfg    PathConfig
	peers  map[wgkey.Key]*pathState
	events []pathEvent // since the last drain
}

// pathEvent is a change of a peer's path worth a log line: it went
// direct, it was relayed, or it stays relayed for another reason.
type pathEvent struct {
	peer     wgkey.Key
	ip       netip.Addr
	relayed  bool
	kept     bool           // it was relayed already; the reason changed
	reason   string         // why relayed
	endpoint netip.AddrPort // direct: where
}

// drain returns the events since the last call.
func (ps *paths) drain() []pathEvent {
	ev := ps.events
	ps.events = nil
	return ev
}

func newPaths(cfg PathConfig) *paths {
	return &paths{cfg: cfg.withDefaults(), peers: map[wgkey.Key]*pathState{}}
}

func targets(p nucleus.Peer) []netip.AddrPort {
	var out []netip.AddrPort
	for _, e := range append([]netip.AddrPort{p.Endpoint}, p.Local...) {
		if e.IsValid() && e.Port() != 0 && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// set installs the nucleus's peer set. New peers are tried direct (or
// relayed when they have no endpoint at all); a peer whose endpoints
// changed is tried direct again, at once when it was direct, at the next
// tick when it was relayed.
func (ps *paths) set(now time.Time, peers []nucleus.Peer) []probe {
	var out []probe
	seen := make(map[wgkey.Key]bool, len(peers))
	for _, p := range peers {
		seen[p.PublicKey] = true
		st := ps.peers[p.PublicKey]
		if st == nil {
			st = &pathState{peer: p}
			ps.peers[p.PublicKey] = st
			if ps.tryDirect(st, now) {
				out = append(out, probe{peer: p.PublicKey, punch: true})
			}
			continue
		}
		moved := st.peer.Endpoint != p.Endpoint || !slices.Equal(st.peer.Local, p.Local)
		st.peer = p
		switch {
		case !moved:
		case st.relayed:
			st.lastProbe = time.Time{}
		default:
			if ps.tryDirect(st, now) {
				out = append(out, probe{peer: p.PublicKey, punch: true})
			}
		}
	}
	for k := range ps.peers {
		if !seen[k] {
			delete(ps.peers, k)
		}
	}
	return out
}

// tryDirect starts probing, or relays a peer with nowhere to probe.
func (ps *paths) tryDirect(st *pathState, now time.Time) bool {
	st.since, st.lastProbe, st.endpoint = now, now, netip.AddrPort{}
	if len(targets(st.peer)) == 0 {
		ps.relay(st, now, "no endpoint known yet: the nucleus reports none for the peer")
		return false
	}
	st.relayed = false
	return true
}

// relay relays the peer for reason (an event when it was not relayed,
// or for another reason).
func (ps *paths) relay(st *pathState, now time.Time, reason string) {
	was := st.relayed
	st.relayed, st.endpoint, st.since, st.lastProbe, st.published = true, netip.AddrPort{}, now, now, true
	st.retried = time.Time{}
	ps.because(st, was, reason)
}

// because records why a relayed peer is relayed; a new reason is an
// event.
func (ps *paths) because(st *pathState, was bool, reason string) {
	if was && st.reason == reason {
		return
	}
	st.reason = reason
	ps.events = append(ps.events, pathEvent{peer: st.peer.PublicKey, ip: st.peer.IP4, relayed: true, kept: was, reason: reason})
}

// tick advances the policy to now; handshakes holds each peer's last
// WireGuard handshake. It reports whether any path changed and what to
// send.
func (ps *paths) tick(now time.Time, handshakes map[wgkey.Key]time.Time) (changed bool, out []probe) {
	for k, st := range ps.peers {
		switch {
		case st.relayed:
			if !st.retried.IsZero() && now.Sub(st.retried) >= ps.cfg.DirectTimeout {
				st.retried = time.Time{} // no PONG: the retry failed
				reason := fmt.Sprintf("direct probes still unanswered (tried again every %v)", ps.cfg.RetryEvery)
				if len(targets(st.peer)) == 0 {
					reason = "no endpoint known yet: the nucleus reports none for the peer"
				}
				ps.because(st, true, reason)
			}
			if now.Sub(st.lastProbe) >= ps.cfg.RetryEvery {
				st.lastProbe, st.retried = now, now
				out = append(out, probe{peer: k, punch: true})
			}
		case st.probing():
			if now.Sub(st.since) >= ps.cfg.DirectTimeout {
				ps.relay(st, now, fmt.Sprintf("direct probes to %s unanswered for %v", joinAddrs(targets(st.peer)), ps.cfg.DirectTimeout))
				changed = true
			} else if now.Sub(st.lastProbe) >= probeEvery {
				st.lastProbe = now
				out = append(out, probe{peer: k, punch: true})
			}
		default:
			evidence := st.since
			if st.lastPong.After(evidence) {
				evidence = st.lastPong
			}
			if hs := handshakes[k]; hs.After(evidence) {
				evidence = hs
			}
			if now.Sub(evidence) > ps.cfg.DeadAfter {
				ps.relay(st, now, fmt.Sprintf("direct path to %s lost: no PONG or handshake for %v", st.endpoint, ps.cfg.DeadAfter))
				changed = true
			} else if now.Sub(st.lastProbe) >= ps.cfg.PingEvery {
				st.lastProbe = now
				out = append(out, probe{peer: k, ping: []netip.AddrPort{st.endpoint}})
			}
		}
	}
	sortProbes(out)
	return changed, out
}

// pong records a PONG from peer at the address from: a peer being
// probed or relayed goes direct there. It reports whether the path
// changed.
func (ps *paths) pong(now time.Time, peer wgkey.Key, from netip.AddrPort) bool {
	st := ps.peers[peer]
	if st == nil || !from.IsValid() {
		return false
	}
	st.lastPong = now
	if st.relayed || st.probing() {
		st.relayed, st.endpoint, st.since, st.lastProbe, st.published = false, from, now, now, true
		st.reason, st.retried = "", time.Time{}
		ps.events = append(ps.events, pathEvent{peer: peer, ip: st.peer.IP4, endpoint: from})
		return true
	}
	return false
}

func joinAddrs(as []netip.AddrPort) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// daemonPeers is the peer set for the tunnel: direct peers at their
// endpoint, relayed ones at the relay, peers being probed again without
// an endpoint (the tunnel keeps the last one), new peers not at all until
// their path is chosen; sorted by key.
func (ps *paths) daemonPeers(relay netip.AddrPort) []daemon.Peer {
	out := make([]daemon.Peer, 0, len(ps.peers))
	for k, st := range ps.peers {
		if !st.published {
			continue
		}
		p := daemon.Peer{PublicKey: wgkey.Key(k), VirtualIP: st.peer.IP4, VirtualIPv6: st.peer.IP6,
			Endpoint: st.endpoint, Relayed: st.relayed}
		if st.relayed {
			p.Endpoint = relay
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b daemon.Peer) int { return bytes.Compare(a.PublicKey[:], b.PublicKey[:]) })
	return out
}

func sortProbes(ps []probe) {
	slices.SortFunc(ps, func(a, b probe) int { return bytes.Compare(a.peer[:], b.peer[:]) })
}
