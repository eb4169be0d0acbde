// Package dataplane joins the device's packet machinery (package tunnel)
// to the nucleus client and decides how packets travel: it implements the
// daemon's interfaces (daemon.TunnelFactory and daemon.SessionFactory),
// gives each network its port, interface, routing table and one UDP socket
// shared by WireGuard and the nucleus session, and chooses each peer's path
// (hole punching with PINGs, direct on the first PONG, relayed through the
// nucleus otherwise, retried later; each change logged with its reason).
// It also answers the daemon's diagnostics: nucleus probes for netcheck
// (daemon.NucleusProber) and ICMP echo through the tunnel for ping
// (ICMP, a daemon.Pinger). It owns no TUN or WireGuard device itself:
// those are package tunnel's.
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/omniedge/omni/internal/edge/device/daemon"
	"github.com/omniedge/omni/internal/edge/device/tunnel"
	"github.com/omniedge/omni/internal/edge/proto/nucleus"
	"github.com/omniedge/omni/internal/edge/proto/policy"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

// Port, routing table and rule priority of network N (interface omni<N>):
// each network gets its own so that two networks never collide.
const (
	BasePort     = 51820
	BaseTable    = tunnel.DefaultTable
	BasePriority = tunnel.DefaultRulePriority // two rules per network
)

// Options configure the data plane. The zero value is what `omni edge up`
// uses; the other fields serve tests.
type Options struct {
	Log   *slog.Logger // nil: discard
	Paths PathConfig
	// Tick is how often each session re-evaluates its paths (1 s).
	Tick time.Duration
	// Now is the clock of the path policy (time.Now).
	Now func() time.Time

	// TUN replaces the kernel TUN device (tests: tuntest.ChannelTUN).
	TUN func(cfg daemon.NetworkConfig) tun.Device
	// ListenAddr restricts the shared socket to one local address.
	ListenAddr netip.Addr
	// AnyPort binds the shared socket to a random port instead of
	// BasePort+N.
	AnyPort bool
	// DropFrom discards inbound datagrams (see tunnel.BindConfig).
	DropFrom func(from netip.AddrPort) bool
}

// New returns the factories the daemon needs.
func New(o Options) (daemon.TunnelFactory, daemon.SessionFactory) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o.newTunnel, o.newSession
}

// Tunnel is one network's WireGuard device with its relay address.
type Tunnel struct {
	dev   *tunnel.Device
	sig   *signaling
	relay netip.AddrPort
	local bool           // the socket is restricted to ListenAddr
	snat  bool           // masquerade on the subnet routes served
	sys   bool           // a kernel TUN (routes and forwarding are ours)
	pol   *policy.Atomic // the access policy enforced on arriving packets

	mu    sync.Mutex
	peers map[wgkey.Key]daemon.Peer
	// exit is the selected exit node; active once its routes are in
	// place. A selection naming a peer not known yet is applied when the
	// peer arrives, and again when it comes back after leaving.
	exit   netip.Addr
	active bool
}

// index is N of omni<N>.
func index(name string) int {
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	n, err := strconv.Atoi(name[i:])
	if err != nil || n > 1000 {
		return 0
	}
	return n
}

// resolve turns the join answer's nucleus "host:port" (port 51820 when
// missing) into an address.
func resolve(ctx context.Context, hostport string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = strings.Trim(hostport, "[]"), strconv.Itoa(BasePort)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("nucleus address %q: bad port", hostport)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve nucleus %q: %w", hostport, errors.Join(err, errors.New("no address")))
	}
	best := addrs[0]
	for _, a := range addrs {
		if a.Unmap().Is4() {
			best = a
			break
		}
	}
	return netip.AddrPortFrom(best.Unmap(), uint16(p)), nil
}

// Sizes behind the tunnel MTU: a full-size tunnel packet becomes a
// WireGuard datagram wgOverhead bytes longer and, relayed, a RELAY frame
// nucleus.RelayOverhead bytes longer again; with its UDP and IP headers
// that must fit an underlay link of underlayMTU bytes.
const (
	underlayMTU = 1500
	wgOverhead  = 32 // data message header (16) and authentication tag (16)
	udpHeader   = 8
)

// maxMTU is the largest tunnel MTU whose full-size packets, relayed
// through the nucleus at relay, cross a 1500-byte underlay unfragmented:
// 1420 when the nucleus is reached over IPv4, 1400 over IPv6 (its header
// is 20 bytes longer). Both legs of the relay use that family: every
// member reaches the nucleus at the address the join response gives.
// Direct packets carry no relay header and fit either way.
func maxMTU(relay netip.Addr) int {
	ipHeader := 20
	if relay.Unmap().Is6() {
		ipHeader = 40
	}
	return underlayMTU - ipHeader - udpHeader - nucleus.RelayOverhead - wgOverhead
}

func (o Options) newTunnel(ctx context.Context, cfg daemon.NetworkConfig) (daemon.Tunnel, error) {
	relay, err := resolve(ctx, cfg.Nucleus)
	if err != nil {
		return nil, err
	}
	if limit := maxMTU(relay.Addr()); cfg.MTU <= 0 || cfg.MTU > limit {
		if cfg.MTU > limit {
			o.Log.Info("tunnel MTU lowered so that relayed packets are not fragmented", "interface", cfg.Interface,
				"mtu", limit, "configured", cfg.MTU, "nucleus", relay)
		}
		cfg.MTU = limit
	}
	n := index(cfg.Interface)
	sig := &signaling{}
	tc := tunnel.Config{
		Name: cfg.Interface, MTU: cfg.MTU, PrivateKey: wgkey.Key(cfg.PrivateKey),
		NetworkSecret: []byte(cfg.SecretKey), Addr4: cfg.VirtualIP, Addr6: cfg.VirtualIPv6,
		Signaling: sig, Relay: relay, ListenAddr: o.ListenAddr, DropFrom: o.DropFrom,
		Table: BaseTable + n, RulePriority: BasePriority + 2*n, Logger: o.Log,
	}
	if !o.AnyPort {
		tc.ListenPort = uint16(BasePort + n)
	}
	if o.TUN != nil {
		tc.TUN = o.TUN(cfg)
	}
	pol := policy.NewAtomic(policy.NewConntrack(policy.MaxFlows, time.Now))
	tc.Filter = atomicFilter{pol}
	dev, err := tunnel.New(tc)
	if err != nil && tc.ListenPort != 0 && tc.TUN == nil && inUse(err) {
		// The port is taken (a nucleus on this host, another edge): any
		// port works, the nucleus tells peers the one it observes.
		o.Log.Warn("UDP port in use; using a random one", "port", tc.ListenPort, "interface", cfg.Interface)
		tc.ListenPort = 0
		dev, err = tunnel.New(tc)
	}
	if err != nil {
		return nil, err
	}
	if cfg.ServeExit && tc.TUN == nil {
		if err := dev.ServeExit(true); err != nil {
			dev.Close()
			return nil, err
		}
	}
	return &Tunnel{dev: dev, sig: sig, relay: relay, local: o.ListenAddr.IsValid(), peers: map[wgkey.Key]daemon.Peer{},
		snat: cfg.SNATRoutes, sys: tc.TUN == nil, pol: pol}, nil
}

func inUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// Device is the underlying WireGuard device.
func (t *Tunnel) Device() *tunnel.Device { return t.dev }

// SetPeers implements daemon.Tunnel.
func (t *Tunnel) SetPeers(peers []daemon.Peer) error {
	tp := make([]tunnel.Peer, 0, len(peers))
	byKey := make(map[wgkey.Key]daemon.Peer, len(peers))
	for _, p := range peers {
		q := tunnel.Peer{PublicKey: wgkey.Key(p.PublicKey), Relayed: p.Relayed, Addr4: p.VirtualIP, Addr6: p.VirtualIPv6,
			AllowedIPs: p.Routes}
		if !p.Relayed {
			q.Endpoint = p.Endpoint
		}
		tp = append(tp, q)
		byKey[q.PublicKey] = p
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.dev.SetPeers(tp); err != nil {
		return err
	}
	t.peers = byKey
	if t.exit.IsValid() {
		present := t.hasPeerLocked(t.exit)
		if !present {
			t.active = false // the device dropped the exit routes
		} else if !t.active {
			if err := t.dev.UseExitAddr(t.exit); err != nil {
				return err
			}
			t.active = true
		}
	}
	return nil
}

func (t *Tunnel) hasPeerLocked(a netip.Addr) bool {
	for _, p := range t.peers {
		if p.VirtualIP == a || p.VirtualIPv6 == a {
			return true
		}
	}
	return false
}

// SetSecret implements daemon.Tunnel.
func (t *Tunnel) SetSecret(secret string) error { return t.dev.SetNetworkSecret([]byte(secret)) }

// ServeRoutes implements daemon.Tunnel. On an injected TUN (tests) there
// is no host to forward to: serving nothing succeeds, serving routes is
// an error.
func (t *Tunnel) ServeRoutes(routes []netip.Prefix) error {
	if !t.sys {
		if len(routes) == 0 {
			return nil
		}
		return tunnel.ErrNoKernelTUN
	}
	return t.dev.ServeRoutes(routes, t.snat)
}

// atomicFilter runs the current filter of a policy.Atomic.
type atomicFilter struct{ a *policy.Atomic }

func (f atomicFilter) Inbound(pkt []byte) bool { return f.a.Load().Inbound(pkt) }
func (f atomicFilter) Outbound(pkt []byte)     { f.a.Load().Outbound(pkt) }

// SetFilter implements daemon.Tunnel: f (nil: allow everything) decides
// from now on, with the flows tracked so far kept.
func (t *Tunnel) SetFilter(f *policy.Filter) error {
	if f == nil {
		f = policy.AllowAll()
	}
	t.pol.Store(f)
	return nil
}

// SetExit implements daemon.Tunnel. Selecting a peer that is not in the
// peer set yet succeeds; its routes are installed when it arrives.
func (t *Tunnel) SetExit(exit netip.Addr) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if exit.IsUnspecified() {
		exit = netip.Addr{}
	}
	if !exit.IsValid() || t.hasPeerLocked(exit) {
		if err := t.dev.UseExitAddr(exit); err != nil {
			return err
		}
	} else if t.active {
		if err := t.dev.UseExitAddr(netip.Addr{}); err != nil {
			return err
		}
	}
	t.exit, t.active = exit, exit.IsValid() && t.hasPeerLocked(exit)
	return nil
}

// Status implements daemon.Tunnel.
func (t *Tunnel) Status() daemon.TunnelStatus {
	out := daemon.TunnelStatus{Interface: t.dev.Name()}
	st, err := t.dev.Status()
	if err != nil {
		return out
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range st.Peers {
		known := t.peers[p.PublicKey]
		ps := daemon.PeerStatus{PublicKey: wgkey.Key(p.PublicKey), VirtualIP: known.VirtualIP,
			VirtualIPv6: known.VirtualIPv6, LastHandshake: p.LastHandshake, RxBytes: p.RxBytes, TxBytes: p.TxBytes,
			Path: daemon.PathNone}
		if p.Relayed {
			ps.Endpoint = t.relay
		} else if ap, err := netip.ParseAddrPort(p.Endpoint); err == nil {
			ps.Endpoint = ap
		}
		if ps.Endpoint.IsValid() && !p.LastHandshake.IsZero() {
			ps.Path = daemon.PathDirect
			if p.Relayed {
				ps.Path = daemon.PathRelayed
			}
		}
		out.Peers = append(out.Peers, ps)
	}
	return out
}

// Close implements daemon.Tunnel.
func (t *Tunnel) Close() error { return t.dev.Close() }

// signaling forwards the Bind's signaling to the nucleus client, which is
// created after the tunnel (it sends through the tunnel's socket).
type signaling struct {
	c atomic.Pointer[nucleus.Client]
}

func (s *signaling) IsSignal(b []byte) bool { return nucleus.IsSignal(b) }

func (s *signaling) Unwrap(b []byte) ([32]byte, []byte, bool) {
	c := s.c.Load()
	if c == nil || !nucleus.IsRelay(b) {
		return [32]byte{}, nil, false
	}
	src, pkt, ok := c.UnwrapRelay(b)
	return src, pkt, ok
}

func (s *signaling) Wrap(dst [32]byte, payload []byte) []byte {
	if c := s.c.Load(); c != nil {
		return c.WrapRelay(dst, payload)
	}
	return nil
}

// WrapTo implements tunnel.RelayAppender: the frame is built in place.
func (s *signaling) WrapTo(b []byte, dst [32]byte, payload []byte) []byte {
	if c := s.c.Load(); c != nil {
		return c.AppendRelay(b, dst, payload)
	}
	return b
}

var _ tunnel.RelayAppender = (*signaling)(nil)

func (s *signaling) Handle(b []byte, from netip.AddrPort) {
	if c := s.c.Load(); c != nil && !nucleus.IsRelay(b) {
		c.Handle(b, from)
	}
}
