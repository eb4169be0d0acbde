package daemon

import (
	"context"
	"net/netip"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/policy"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

// NetworkConfig is everything a tunnel and a nucleus session need to serve
// one joined network. It carries the network secret: never log it.
type NetworkConfig struct {
	NetworkID string
	Name      string // the network's name (join response "cluster")
	DeviceID  string
	// Interface is the TUN name to create, omni<N> in join order.
	Interface string
	MTU       int // 1420

	PrivateKey wgkey.Key // this device's X25519 key; never leaves the device
	PublicKey  wgkey.Key

	// VirtualIP and VirtualIPv6 are this device's addresses with the
	// network's prefix length (100.66.1.5/24, fd…::5/120); the routes of
	// the network follow from them.
	VirtualIP   netip.Prefix
	VirtualIPv6 netip.Prefix // invalid when the network has no IPv6 range

	SecretKey string // the network secret (join response secret_key)
	// SecretVersion is SecretKey's version; the secret rotates whenever a
	// member leaves or is removed.
	SecretVersion int64
	Nucleus       string // host:port of the network's nucleus
	// NucleusKey is the nucleus's static public key (join answer server
	// public_key): the device's signaling is keyed with the
	// Diffie–Hellman of its own key and this one.
	NucleusKey wgkey.Key

	// ServeExit is the device's consent to act as exit node (--exit-node):
	// the tunnel may forward and masquerade the network's ranges. Traffic
	// only arrives when the network admin enabled the device as well.
	ServeExit bool
	// SNATRoutes masquerades the network's addresses on the subnet routes
	// this device serves (the default); off keeps the members' source
	// addresses (the LAN then needs a route back through this device).
	SNATRoutes bool
}

// Peer is another member of a network as the nucleus reports it.
type Peer struct {
	PublicKey   wgkey.Key
	VirtualIP   netip.Addr
	VirtualIPv6 netip.Addr     // invalid when unknown
	Endpoint    netip.AddrPort // best known underlay endpoint; invalid when none yet
	Relayed     bool           // Endpoint is a relay, not the peer itself
	// Routes are the subnet routes the peer carries (from the network
	// map): traffic for them goes through it.
	Routes []netip.Prefix
}

// Path names how packets reach a peer.
type Path string

// Paths reported by Tunnel.Status.
const (
	PathDirect  Path = "direct"
	PathRelayed Path = "relayed"
	PathNone    Path = "none" // no endpoint or no handshake yet
)

// PeerStatus is the data-plane view of one peer.
type PeerStatus struct {
	PublicKey     wgkey.Key
	VirtualIP     netip.Addr
	VirtualIPv6   netip.Addr
	Endpoint      netip.AddrPort
	Path          Path
	LastHandshake time.Time // zero: never
	RxBytes       uint64
	TxBytes       uint64
}

// TunnelStatus is the data-plane view of one network.
type TunnelStatus struct {
	Interface string
	Peers     []PeerStatus
}

// Tunnel is one network's data plane: a TUN device with both virtual
// addresses and a WireGuard device on it. Its methods may be called from
// several goroutines.
type Tunnel interface {
	// SetPeers replaces the peer set (add, update endpoints, remove the
	// missing ones). Every peer uses the preshared key derived from the
	// network secret.
	SetPeers(peers []Peer) error
	// SetSecret switches every peer to the preshared key of the
	// network's new secret, keeping current sessions.
	SetSecret(secret string) error
	// SetExit routes all internet traffic (0.0.0.0/0 and ::/0) through the
	// peer with this virtual IPv4; the zero Addr restores normal routing.
	SetExit(exit netip.Addr) error
	// ServeRoutes forwards what arrives through the tunnel for routes
	// (the subnet routes this device carries; none: nothing) onto the
	// host's other interfaces.
	ServeRoutes(routes []netip.Prefix) error
	// SetFilter enforces the network's access policy on arriving packets
	// from now on (nil: everything passes), keeping the flows tracked.
	SetFilter(f *policy.Filter) error
	// Status reports interface name and per-peer counters.
	Status() TunnelStatus
	// Close removes the interface, its routes and rules.
	Close() error
}

// TunnelFactory creates the tunnel of one joined network.
type TunnelFactory func(ctx context.Context, cfg NetworkConfig) (Tunnel, error)

// Session is this device's membership at a network's nucleus.
type Session interface {
	// Register announces the device (public key, virtual IPs, local
	// endpoints) and returns once the nucleus acknowledged it.
	Register(ctx context.Context) error
	// Run keeps the registration alive and reports the peer set through
	// the callback given to the factory, at once on every change, until
	// ctx ends (nil) or the session fails (the daemon registers again
	// after a back-off).
	Run(ctx context.Context) error
	// Leave tells the nucleus the device is going away.
	Leave(ctx context.Context) error
	// SetSecret switches to the network's new secret (frames signed with
	// the old one are still accepted for a grace period).
	SetSecret(secret string) error
}

// SessionHooks are the callbacks of a session; they run on the session's
// goroutines and must not block.
type SessionHooks struct {
	// OnPeers receives the complete current peer set.
	OnPeers func([]Peer)
	// OnRekey is told that the network's secret changed: the daemon
	// fetches the new one and calls SetSecret on the session and tunnel.
	OnRekey func()
	// PeerName returns the DNS name of the member at a virtual address
	// ("" when unknown), for the session's logs.
	PeerName func(netip.Addr) string
}

// NucleusProber is implemented by a Session that can measure its
// nucleus (`omni edge netcheck`).
type NucleusProber interface {
	// ProbeNucleus sends count probes to the nucleus, spaced so that it
	// answers each, and reports what it measured until ctx ends. An error
	// means nothing could be measured.
	ProbeNucleus(ctx context.Context, count int) (NucleusProbe, error)
}

// NucleusProbe is what a session measured of its nucleus.
type NucleusProbe struct {
	Server     netip.AddrPort // the nucleus's address the session uses
	Registered bool
	Sent       int             // probes sent
	RTTs       []time.Duration // round trips of the probes answered
	// LastRTT is the round trip of the session's last keepalive
	// (zero: none measured).
	LastRTT time.Duration
	// Observed is this device's address and port as the nucleus sees
	// them (invalid: never answered).
	Observed netip.AddrPort
	// LocalPort is the UDP port of the network's socket, HostAddrs the
	// addresses of this host the socket may send from: the NAT verdict
	// compares Observed with them.
	LocalPort uint16
	HostAddrs []netip.Addr
	// Local are the local endpoints announced to peers (same LAN).
	Local []netip.AddrPort
}

// Pinger sends ICMP echo requests through the tunnel (`omni edge ping`).
type Pinger interface {
	// Echo sends one echo request from src (this device's virtual
	// address) to dst (a peer's, of the same family) and returns the
	// round trip of its reply; it gives up when ctx ends.
	Echo(ctx context.Context, src, dst netip.Addr, seq int) (time.Duration, error)
}

// SessionFactory creates the nucleus session of one network. tun is the
// network's tunnel, so an implementation that shares the WireGuard UDP
// socket can reach it.
type SessionFactory func(cfg NetworkConfig, tun Tunnel, hooks SessionHooks) (Session, error)

// Clock is the daemon's time source; every wait goes through After.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// RealClock is the system clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// After is time.After.
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
