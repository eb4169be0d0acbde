package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/device/tunnel"
	"github.com/omniedge/omni/internal/edge/proto/nucleus"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

// registerTimeout bounds Register; the daemon retries after a back-off.
const registerTimeout = 10 * time.Second

type pongEvent struct {
	peer wgkey.Key
	from netip.AddrPort
}

// session is one network's membership at its nucleus plus the path
// policy of its peers. Inbound frames only record events and wake the
// loop in Run, which owns the policy and configures the tunnel.
type session struct {
	o       Options
	log     *slog.Logger
	c       *nucleus.Client
	bind    *tunnel.Bind
	cfg     PathConfig // with defaults
	tun     daemon.Tunnel
	relay   netip.AddrPort
	onPeers func([]daemon.Peer)
	onRekey func()
	name    func(netip.Addr) string // the member's DNS name, for logs; may be nil
	paths   *paths                  // owned by Run's goroutine

	mu       sync.Mutex
	pending  []nucleus.Peer
	newPeers bool
	pongs    []pongEvent
	kick     chan struct{}
}

func (o Options) newSession(cfg daemon.NetworkConfig, tun daemon.Tunnel, hooks daemon.SessionHooks) (daemon.Session, error) {
	t, ok := tun.(*Tunnel)
	if !ok {
		return nil, errors.New("dataplane: the session needs this package's tunnel")
	}
	bind := t.dev.Bind()
	var local []netip.AddrPort
	if !t.local {
		local = localEndpoints(bind.LocalPort())
	}
	priv, err := nucleus.NewPrivateKey(cfg.PrivateKey[:])
	if err != nil {
		return nil, fmt.Errorf("dataplane: device key: %w", err)
	}
	ccfg := nucleus.ClientConfig{
		NetworkID: cfg.NetworkID, Secret: []byte(cfg.SecretKey), PrivateKey: priv, PublicKey: wgkey.Key(cfg.PublicKey),
		ServerKey: wgkey.Key(cfg.NucleusKey),
		IP4:       cfg.VirtualIP.Addr(), Local: local, Server: t.relay, Send: bind.SendTo,
		Log: o.Log.With("network", cfg.NetworkID),
	}
	if cfg.VirtualIPv6.IsValid() {
		ccfg.IP6 = cfg.VirtualIPv6.Addr()
	}
	c, err := nucleus.NewClient(ccfg)
	if err != nil {
		return nil, err
	}
	s := &session{o: o, log: ccfg.Log, c: c, bind: bind, cfg: o.Paths.withDefaults(), tun: tun, relay: t.relay,
		onPeers: hooks.OnPeers, onRekey: hooks.OnRekey, name: hooks.PeerName, paths: newPaths(o.Paths),
		kick: make(chan struct{}, 1)}
	c.OnPeers(s.gotPeers)
	c.OnPunch(s.gotPunch)
	c.OnPong(s.gotPong)
	c.OnRekey(s.gotRekey)
	t.sig.c.Store(c)
	return s, nil
}

// localEndpoints are this host's global addresses (tunnels excluded) at
// the shared socket's port, for peers on the same LAN.
func localEndpoints(port uint16) []netip.AddrPort {
	ifs, err := net.Interfaces()
	if err != nil || port == 0 {
		return nil
	}
	var v4, v6 []netip.AddrPort
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || strings.HasPrefix(ifc.Name, "omni") {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			pn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(pn.IP)
			if !ok || !ip.IsGlobalUnicast() {
				continue
			}
			if ip = ip.Unmap(); ip.Is4() {
				v4 = append(v4, netip.AddrPortFrom(ip, port))
			} else {
				v6 = append(v6, netip.AddrPortFrom(ip, port))
			}
		}
	}
	out := append(v4, v6...)
	if len(out) > nucleus.MaxLocalEndpoints {
		out = out[:nucleus.MaxLocalEndpoints]
	}
	return out
}

func (s *session) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// gotPeers, gotPunch and gotPong run on the socket's reader: no blocking.
func (s *session) gotPeers(ps []nucleus.Peer) {
	s.mu.Lock()
	s.pending, s.newPeers = ps, true
	s.mu.Unlock()
	s.wake()
}

// gotPunch opens this device's NAT towards the peer with low-TTL PINGs
// now and sends full PINGs after OpenDelay, when the peer, told at the
// same moment, has opened its own.
//
// A device the nucleus sees at one of its own addresses has no NAT to
// open; a low-TTL packet from it could even reach the peer's NAT, one hop
// further away than usual. It sends no openers and its PINGs only after
// twice OpenDelay, once the peer's PINGs have opened the peer's NAT.
func (s *session) gotPunch(p nucleus.Peer) {
	to := targets(p)
	delay := 2 * s.cfg.OpenDelay
	if s.behindNAT() {
		delay = s.cfg.OpenDelay
		for _, a := range to {
			f := s.c.PingFrame(p.PublicKey)
			if f == nil {
				break // not a peer (yet): nothing to key a PING with
			}
			if err := s.bind.SendToTTL(f, a, s.cfg.OpenerTTL); err != nil {
				s.log.Debug("opener failed", "to", a, "err", err)
			}
		}
	}
	time.AfterFunc(delay, func() {
		for _, a := range to {
			if err := s.c.Ping(p.PublicKey, a); err != nil {
				s.log.Debug("ping failed", "to", a, "err", err)
			}
		}
	})
}

// gotRekey passes the nucleus's REKEY on: the daemon fetches the new
// secret and calls SetSecret.
func (s *session) gotRekey(version uint32) {
	s.log.Info("the nucleus announced a new network secret", "version", version)
	if s.onRekey != nil {
		s.onRekey()
	}
}

func (s *session) gotPong(peer wgkey.Key, from netip.AddrPort) {
	s.mu.Lock()
	if len(s.pongs) < 256 {
		s.pongs = append(s.pongs, pongEvent{peer, from})
	}
	s.mu.Unlock()
	s.wake()
}

// behindNAT reports whether the nucleus sees this device at an address
// that is not its own (unknown counts as behind a NAT).
func (s *session) behindNAT() bool {
	obs := s.c.Status().Observed.Addr().Unmap()
	return !obs.IsValid() || !slices.Contains(s.hostAddrs(), obs)
}

// hostAddrs are the addresses the shared socket may send from: the
// ListenAddr it is restricted to, or every address of the host.
func (s *session) hostAddrs() []netip.Addr {
	if s.o.ListenAddr.IsValid() {
		return []netip.Addr{s.o.ListenAddr.Unmap()}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if pn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(pn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// Netcheck probes: spaced so that the nucleus answers each (it answers a
// peer's KEEPALIVEs within a budget of 2 a second, bursts of 10), each
// given probeWait for its answer.
const (
	probeGap  = 200 * time.Millisecond
	probeWait = time.Second
	maxProbes = 10
)

// ProbeNucleus implements daemon.NucleusProber: count KEEPALIVEs whose
// acknowledgements measure the round trip and report the address the
// nucleus sees.
func (s *session) ProbeNucleus(ctx context.Context, count int) (daemon.NucleusProbe, error) {
	st := s.c.Status()
	p := daemon.NucleusProbe{Server: s.relay, Registered: st.Registered, LastRTT: st.RTT, Observed: st.Observed,
		LocalPort: s.bind.LocalPort(), HostAddrs: s.hostAddrs(), Local: st.Local}
	if !st.Registered {
		return p, errors.New("not registered with the nucleus: it has not answered (UDP to it blocked, or it is down)")
	}
	for i := range min(max(count, 1), maxProbes) {
		if i > 0 {
			t := time.NewTimer(probeGap)
			select {
			case <-ctx.Done():
				t.Stop()
				return p, nil
			case <-t.C:
			}
		}
		pctx, cancel := context.WithTimeout(ctx, probeWait)
		rtt, obs, err := s.c.Probe(pctx)
		cancel()
		if errors.Is(err, nucleus.ErrNotRegistered) || ctx.Err() != nil {
			break
		}
		p.Sent++
		if err == nil {
			p.RTTs, p.Observed = append(p.RTTs, rtt), obs
		}
	}
	return p, nil
}

// Register implements daemon.Session: it sends REGISTER (again every
// second) until the nucleus acknowledges, for at most registerTimeout.
func (s *session) Register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	poll := time.NewTicker(25 * time.Millisecond)
	defer poll.Stop()
	for attempt := 0; ; attempt++ {
		if err := s.c.Register(); err != nil {
			s.log.Debug("register send failed", "err", err)
		}
		for i := 0; i < 40; i++ {
			if s.c.Status().Registered {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("nucleus %s did not acknowledge: %w", s.relay, ctx.Err())
			case <-poll.C:
			}
		}
	}
}

// Run implements daemon.Session: the client keeps the registration alive
// while this loop applies peer sets, PONGs and the path timers.
func (s *session) Run(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.c.Run(ctx) }()
	t := time.NewTicker(s.o.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return <-done
		case <-s.kick:
		case <-t.C:
		}
		s.step()
	}
}

// step feeds the policy what happened since the last one, then sends the
// tunnel the new peer set (when it changed) and the probes.
func (s *session) step() {
	now := s.o.Now()
	s.mu.Lock()
	peers, fresh, pongs := s.pending, s.newPeers, s.pongs
	s.newPeers, s.pongs = false, nil
	s.mu.Unlock()

	changed := fresh
	var probes []probe
	if fresh {
		probes = s.paths.set(now, peers)
	}
	for _, p := range pongs {
		if s.paths.pong(now, p.peer, p.from) {
			changed = true
		}
	}
	hs := map[wgkey.Key]time.Time{}
	for _, p := range s.tun.Status().Peers {
		hs[wgkey.Key(p.PublicKey)] = p.LastHandshake
	}
	moved, more := s.paths.tick(now, hs)
	changed = changed || moved
	s.logEvents(s.paths.drain())
	if changed {
		s.onPeers(s.paths.daemonPeers(s.relay))
	}
	for _, p := range append(probes, more...) {
		if p.punch {
			if err := s.c.Punch(p.peer); err != nil {
				s.log.Debug("punch request failed", "err", err)
			}
		}
		for _, to := range p.ping {
			if err := s.c.Ping(p.peer, to); err != nil {
				s.log.Debug("ping failed", "to", to, "err", err)
			}
		}
	}
}

// logEvents logs each path change once, with the peer's name and
// address and, for a relayed peer, why.
func (s *session) logEvents(evs []pathEvent) {
	for _, e := range evs {
		args := []any{"peer", e.peer, "virtual_ip", e.ip}
		if s.name != nil {
			if n := s.name(e.ip); n != "" {
				args = append(args, "name", n)
			}
		}
		switch {
		case !e.relayed:
			s.log.Info("peer direct", append(args, "endpoint", e.endpoint)...)
		case e.kept:
			s.log.Info("peer stays relayed", append(args, "reason", e.reason, "relay", s.relay)...)
		default:
			s.log.Info("peer relayed", append(args, "reason", e.reason, "relay", s.relay)...)
		}
	}
}

// Leave implements daemon.Session.
func (s *session) Leave(context.Context) error { return s.c.Leave() }

// SetSecret implements daemon.Session.
func (s *session) SetSecret(secret string) error { return s.c.SetSecret([]byte(secret)) }
