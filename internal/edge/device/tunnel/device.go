package tunnel

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/omniedge/omni/internal/edge/proto/wgkey"
)

// Defaults of a [Config].
const (
	DefaultName  = "omni0"
	DefaultMTU   = 1420
	DefaultTable = 51820 // policy routing table and fwmark of exit-node routing
	// DefaultRulePriority is the priority of the "suppress_prefixlength 0"
	// rule; the "not fwmark" rule takes the next one.
	DefaultRulePriority = 5210
	// KeepaliveInterval is every peer's persistent keepalive, in seconds.
	KeepaliveInterval = 25
)

// Config describes one network's tunnel on this device.
type Config struct {
	// Name of the TUN interface (DefaultName when empty). Each joined
	// network needs its own.
	Name string
	// MTU of the TUN interface (DefaultMTU when zero).
	MTU int
	// PrivateKey is the device's X25519 key.
	PrivateKey wgkey.Key
	// NetworkSecret is the network's secret; every peer gets
	// PresharedKey(NetworkSecret).
	NetworkSecret []byte
	// ListenPort is the UDP port of the shared socket (0: any).
	ListenPort uint16
	// Addr4 and Addr6 are the device's virtual addresses with the network's
	// mask and prefix, e.g. 100.100.0.2/24 and fd00:1::2/64.
	Addr4, Addr6 netip.Prefix
	// Signaling and Relay are passed to the Bind (see BindConfig).
	Signaling Signaling
	Relay     netip.AddrPort
	// ListenAddr restricts the socket to one local address (tests).
	ListenAddr netip.Addr
	// DropFrom is passed to the Bind (see BindConfig; tests only).
	DropFrom func(from netip.AddrPort) bool
	// Table is the routing table and fwmark used when routing through an
	// exit node (DefaultTable when zero); RulePriority the priority of its
	// rules (DefaultRulePriority when zero). Devices for different networks
	// need different tables.
	Table        int
	RulePriority int
	// TUN, when set, replaces the kernel TUN device (tests use
	// tuntest.ChannelTUN); interface addresses, exit serving and exit
	// routing are then not available.
	TUN tun.Device
	// Filter, when set, decides what arriving packets reach the host
	// (filter.go): the network's access policy.
	Filter PacketFilter
	// Logger receives wireguard-go's errors (and debug lines at debug
	// level). Nil discards them.
	Logger *slog.Logger
}

// Peer is another device of the network.
type Peer struct {
	PublicKey wgkey.Key
	// Endpoint is the peer's direct UDP address, if known.
	Endpoint netip.AddrPort
	// Relayed sends the peer's packets through the relay instead of
	// Endpoint. Received packets switch the path either way (roaming).
	Relayed bool
	// Addr4 and Addr6 are its virtual addresses (routed as /32 and /128).
	Addr4, Addr6 netip.Addr
	// AllowedIPs are further prefixes routed to it.
	AllowedIPs []netip.Prefix
}

// PeerStatus is what wireguard-go reports about a peer.
type PeerStatus struct {
	PublicKey     wgkey.Key
	Endpoint      string // "ip:port", a relay endpoint, or empty
	Relayed       bool
	LastHandshake time.Time // zero when never
	RxBytes       uint64
	TxBytes       uint64
	AllowedIPs    []netip.Prefix
}

// Status is the state of a Device.
type Status struct {
	Name        string
	PublicKey   wgkey.Key
	ListenPort  uint16
	Peers       []PeerStatus
	Exit        wgkey.Key // peer used as exit node; zero when none
	ServingExit bool
	Bind        BindStats
}

// ErrNoKernelTUN is returned by operations that need the kernel interface
// when the Device runs on an injected TUN.
var ErrNoKernelTUN = errors.New("tunnel: not available without a kernel TUN device")

// Device is one network's WireGuard device.
type Device struct {
	cfg  Config
	psk  [32]byte
	bind *Bind
	wg   *device.Device
	sys  bool // kernel TUN: interface, routes and firewall are ours

	mu      sync.Mutex
	peers   map[wgkey.Key]Peer
	applied map[wgkey.Key]appliedPeer
	exit    wgkey.Key
	routing bool // exit routing rules installed
	serving bool // exit serving rules installed
	closed  bool
	kroutes map[netip.Prefix]bool // kernel routes of the peers' subnet routes (subnet.go)
	routed  []netip.Prefix        // subnet routes served (ServeRoutes)
	snat    bool
}

type appliedPeer struct {
	endpoint string
	allowed  []string
}

// New creates the TUN interface, configures its addresses, brings it up
// and starts WireGuard on it with no peers. Leftovers of a previous run on
// the same interface name and table (exit rules, routes) are removed first.
func New(cfg Config) (*Device, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.Table == 0 {
		cfg.Table = DefaultTable
	}
	if cfg.RulePriority == 0 {
		cfg.RulePriority = DefaultRulePriority
	}
	if cfg.PrivateKey.IsZero() {
		return nil, errors.New("tunnel: no private key")
	}
	d := &Device{
		cfg:     cfg,
		psk:     PresharedKey(cfg.NetworkSecret),
		peers:   map[wgkey.Key]Peer{},
		applied: map[wgkey.Key]appliedPeer{},
	}
	tdev := cfg.TUN
	if tdev == nil {
		d.sys = true
		cleanupLeftovers(cfg.Name, cfg.Table, cfg.RulePriority)
		t, err := tun.CreateTUN(cfg.Name, cfg.MTU)
		if err != nil {
			return nil, fmt.Errorf("tunnel: create %s: %w", cfg.Name, err)
		}
		if err := configureLink(cfg.Name, cfg.MTU, cfg.Addr4, cfg.Addr6); err != nil {
			t.Close()
			return nil, fmt.Errorf("tunnel: configure %s: %w", cfg.Name, err)
		}
		// Nothing from the tunnel is forwarded until the device serves
		// routes or the exit (subnet.go). Without nftables the host's own
		// forwarding settings apply (only serving needs it).
		if err := d.applyForwardLocked(); err != nil && cfg.Logger != nil {
			cfg.Logger.Warn("no forward rules for the tunnel (is nftables installed?): the host's forwarding settings apply to what arrives through it",
				"interface", cfg.Name, "err", err)
		}
		tdev = t
	}
	if cfg.Filter != nil {
		tdev = &filteredTUN{Device: tdev, f: cfg.Filter}
	}
	d.bind = NewBind(BindConfig{Signaling: cfg.Signaling, Relay: cfg.Relay, ListenAddr: cfg.ListenAddr, DropFrom: cfg.DropFrom})
	d.wg = device.NewDevice(tdev, d.bind, wgLogger(cfg.Logger, cfg.Name))
	conf := fmt.Sprintf("private_key=%s\nlisten_port=%d\n", cfg.PrivateKey.Hex(), cfg.ListenPort)
	if err := d.wg.IpcSet(conf); err != nil {
		d.wg.Close()
		return nil, fmt.Errorf("tunnel: configure wireguard: %w", err)
	}
	if err := d.wg.Up(); err != nil {
		d.wg.Close()
		return nil, fmt.Errorf("tunnel: start wireguard: %w", err)
	}
	return d, nil
}

func wgLogger(l *slog.Logger, name string) *device.Logger {
	if l == nil {
		return &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf}
	}
	l = l.With("component", "tunnel", "interface", name)
	return &device.Logger{
		Verbosef: func(format string, args ...any) { l.Debug(fmt.Sprintf(format, args...)) },
		Errorf:   func(format string, args ...any) { l.Warn(fmt.Sprintf(format, args...)) },
	}
}

// Bind is the device's shared UDP socket; the nucleus client sends its
// signaling through Bind().SendTo.
func (d *Device) Bind() *Bind { return d.bind }

// Name is the interface name.
func (d *Device) Name() string { return d.cfg.Name }

// PublicKey is the device's public key.
func (d *Device) PublicKey() wgkey.Key { return d.cfg.PrivateKey.PublicKey() }

// SetNetworkSecret switches every peer to the preshared key of the
// network's new secret (after a rotation). Current sessions are kept; the
// next handshake with each peer uses the new key, so both sides must
// switch before their next handshake.
func (d *Device) SetNetworkSecret(secret []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	psk := PresharedKey(secret)
	if psk == d.psk {
		return nil
	}
	d.psk = psk
	var b strings.Builder
	for k := range d.applied {
		fmt.Fprintf(&b, "public_key=%s\nupdate_only=true\npreshared_key=%x\n", k.Hex(), psk)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := d.wg.IpcSet(b.String()); err != nil {
		return fmt.Errorf("tunnel: set preshared keys: %w", err)
	}
	return nil
}

// SetRelay changes where relayed packets are sent.
func (d *Device) SetRelay(addr netip.AddrPort) { d.bind.SetRelay(addr) }

// SetPeers makes peers the device's peer set: peers no longer present are
// removed, new ones added, and changed endpoints or addresses updated in
// place (sessions of unchanged peers survive). If the exit peer is gone,
// exit routing is removed.
func (d *Device) SetPeers(peers []Peer) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	want := make(map[wgkey.Key]Peer, len(peers))
	for _, p := range peers {
		if p.PublicKey.IsZero() || p.PublicKey == d.PublicKey() {
			continue
		}
		want[p.PublicKey] = p
	}
	var dropExit error
	if !d.exit.IsZero() {
		if _, ok := want[d.exit]; !ok {
			dropExit = d.clearExitLocked()
		}
	}
	d.peers = want
	if err := d.applyLocked(); err != nil {
		return err
	}
	return dropExit
}

var errClosed = errors.New("tunnel: device closed")

// applyLocked sends wireguard-go the difference between d.peers and what it
// was last given.
func (d *Device) applyLocked() error {
	var b strings.Builder
	for k := range d.applied {
		if _, ok := d.peers[k]; !ok {
			fmt.Fprintf(&b, "public_key=%s\nremove=true\n", k.Hex())
		}
	}
	next := make(map[wgkey.Key]appliedPeer, len(d.peers))
	for k, p := range d.peers {
		ap := appliedPeer{endpoint: d.endpointOf(p), allowed: d.allowedOf(p)}
		old, exists := d.applied[k]
		next[k] = ap
		if exists && old.endpoint == ap.endpoint && slices.Equal(old.allowed, ap.allowed) {
			continue
		}
		fmt.Fprintf(&b, "public_key=%s\n", k.Hex())
		if !exists {
			fmt.Fprintf(&b, "preshared_key=%x\npersistent_keepalive_interval=%d\n", d.psk, KeepaliveInterval)
		}
		if ap.endpoint != "" && ap.endpoint != old.endpoint {
			fmt.Fprintf(&b, "endpoint=%s\n", ap.endpoint)
		} else if exists {
			ap.endpoint = old.endpoint
			next[k] = ap
		}
		if !exists || !slices.Equal(old.allowed, ap.allowed) {
			b.WriteString("replace_allowed_ips=true\n")
			for _, a := range ap.allowed {
				fmt.Fprintf(&b, "allowed_ip=%s\n", a)
			}
		}
	}
	// The first handshake roles are in place before wireguard-go, given
	// the endpoint, starts the handshake.
	for k := range d.applied {
		if _, ok := next[k]; !ok {
			d.bind.stopFirst(k)
		}
	}
	for k, ap := range next {
		if old, exists := d.applied[k]; ap.endpoint != "" && (!exists || old.endpoint == "") {
			var direct netip.AddrPort
			if p := d.peers[k]; !p.Relayed {
				direct = netip.AddrPortFrom(p.Endpoint.Addr().Unmap(), p.Endpoint.Port())
			}
			d.bind.startFirst(d.PublicKey(), k, direct)
		}
	}
	if b.Len() > 0 {
		if err := d.wg.IpcSet(b.String()); err != nil {
			return fmt.Errorf("tunnel: configure peers: %w", err)
		}
	}
	for k := range d.applied {
		if _, ok := next[k]; !ok {
			d.bind.pin(k, netip.AddrPort{})
		}
	}
	for k, p := range d.peers {
		if p.Relayed {
			d.bind.pin(k, netip.AddrPort{})
		} else {
			d.bind.pin(k, p.Endpoint)
		}
	}
	d.applied = next
	return d.syncRoutesLocked()
}

func (d *Device) endpointOf(p Peer) string {
	if p.Relayed {
		return RelayEndpoint(p.PublicKey)
	}
	if p.Endpoint.IsValid() {
		return netip.AddrPortFrom(p.Endpoint.Addr().Unmap(), p.Endpoint.Port()).String()
	}
	return ""
}

func (d *Device) allowedOf(p Peer) []string {
	var out []string
	if p.Addr4.IsValid() {
		out = append(out, netip.PrefixFrom(p.Addr4.Unmap(), 32).String())
	}
	if p.Addr6.IsValid() {
		out = append(out, netip.PrefixFrom(p.Addr6, 128).String())
	}
	for _, a := range p.AllowedIPs {
		out = append(out, a.Masked().String())
	}
	if p.PublicKey == d.exit {
		out = append(out, "0.0.0.0/0", "::/0")
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Status reports every peer as wireguard-go sees it.
func (d *Device) Status() (Status, error) {
	raw, err := d.wg.IpcGet()
	if err != nil {
		return Status{}, fmt.Errorf("tunnel: read status: %w", err)
	}
	st, err := parseStatus(raw)
	if err != nil {
		return Status{}, err
	}
	st.Name = d.cfg.Name
	st.PublicKey = d.PublicKey()
	st.Bind = d.bind.Stats()
	d.mu.Lock()
	st.Exit, st.ServingExit = d.exit, d.serving
	d.mu.Unlock()
	return st, nil
}

func parseStatus(raw string) (Status, error) {
	var st Status
	var cur *PeerStatus
	var sec, nsec int64
	flush := func() {
		if cur != nil {
			if sec != 0 || nsec != 0 {
				cur.LastHandshake = time.Unix(sec, nsec)
			}
			st.Peers = append(st.Peers, *cur)
		}
		sec, nsec = 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(raw))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		var err error
		switch key {
		case "listen_port":
			var p uint64
			p, err = strconv.ParseUint(val, 10, 16)
			st.ListenPort = uint16(p)
		case "public_key":
			flush()
			cur = &PeerStatus{}
			cur.PublicKey, err = wgkey.Parse(val)
		}
		if cur != nil {
			switch key {
			case "endpoint":
				cur.Endpoint = val
				cur.Relayed = strings.HasPrefix(val, relayPrefix)
			case "last_handshake_time_sec":
				sec, err = strconv.ParseInt(val, 10, 64)
			case "last_handshake_time_nsec":
				nsec, err = strconv.ParseInt(val, 10, 64)
			case "rx_bytes":
				cur.RxBytes, err = strconv.ParseUint(val, 10, 64)
			case "tx_bytes":
				cur.TxBytes, err = strconv.ParseUint(val, 10, 64)
			case "allowed_ip":
				var p netip.Prefix
				p, err = netip.ParsePrefix(val)
				cur.AllowedIPs = append(cur.AllowedIPs, p)
			}
		}
		if err != nil {
			return Status{}, fmt.Errorf("tunnel: status line %q: %w", sc.Text(), err)
		}
	}
	flush()
	slices.SortFunc(st.Peers, func(a, b PeerStatus) int { return strings.Compare(a.PublicKey.Hex(), b.PublicKey.Hex()) })
	return st, nil
}

// UseExit routes all traffic through the peer exit (which must be in the
// peer set): the peer gets 0.0.0.0/0 and ::/0, the shared socket is
// marked with the table's fwmark and, like wg-quick, "not fwmark → table",
// "default dev <tun> in table" and "main suppress_prefixlength 0" rules keep
// the underlay (nucleus and peer endpoints) off the tunnel. A zero key
// clears the selection and restores the routes.
func (d *Device) UseExit(exit wgkey.Key) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	if exit.IsZero() {
		return d.clearExitLocked()
	}
	if _, ok := d.peers[exit]; !ok {
		return fmt.Errorf("tunnel: exit %s is not a peer", exit)
	}
	if !d.sys {
		return ErrNoKernelTUN
	}
	if err := d.wg.IpcSet(fmt.Sprintf("fwmark=%d\n", d.cfg.Table)); err != nil {
		return fmt.Errorf("tunnel: set fwmark: %w", err)
	}
	d.exit = exit
	if err := d.applyLocked(); err != nil {
		return err
	}
	if !d.routing {
		if err := routeExit(d.cfg.Name, d.cfg.Table, d.cfg.RulePriority); err != nil {
			unrouteExit(d.cfg.Table, d.cfg.RulePriority)
			return fmt.Errorf("tunnel: exit routing: %w", err)
		}
		d.routing = true
	}
	return nil
}

// UseExitAddr is UseExit for the peer with this virtual address (IPv4 or
// IPv6); the zero Addr clears the selection.
func (d *Device) UseExitAddr(addr netip.Addr) error {
	if !addr.IsValid() || addr.IsUnspecified() {
		return d.UseExit(wgkey.Key{})
	}
	addr = addr.Unmap()
	d.mu.Lock()
	var exit wgkey.Key
	for k, p := range d.peers {
		if p.Addr4.Unmap() == addr || p.Addr6 == addr {
			exit = k
		}
	}
	d.mu.Unlock()
	if exit.IsZero() {
		return fmt.Errorf("tunnel: no peer has address %s", addr)
	}
	return d.UseExit(exit)
}

func (d *Device) clearExitLocked() error {
	if d.routing {
		unrouteExit(d.cfg.Table, d.cfg.RulePriority)
		d.routing = false
	}
	if d.exit.IsZero() {
		return nil
	}
	d.exit = wgkey.Key{}
	return d.applyLocked()
}

// ServeExit turns this device into an exit node for its network (on) or
// stops it (off): IPv4 and IPv6 forwarding are enabled and the network's
// ranges are masqueraded out of every interface but the tunnel, with
// forwarding between the tunnel and the rest accepted (nftables table
// "omniedge_<interface>"). Forwarding sysctls are left enabled when off.
func (d *Device) ServeExit(on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	if !d.sys {
		return ErrNoKernelTUN
	}
	if !on {
		if d.serving {
			d.serving = false
			return errors.Join(unserveExit(d.cfg.Name), d.applyForwardLocked())
		}
		return nil
	}
	if err := serveExit(d.cfg.Name, d.cfg.Addr4.Masked(), d.cfg.Addr6.Masked()); err != nil {
		return fmt.Errorf("tunnel: serve exit: %w", err)
	}
	d.serving = true
	return d.applyForwardLocked()
}

// Close stops WireGuard, removes the exit rules and routes and deletes the
// interface (with its addresses).
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	var errs []error
	if d.routing {
		unrouteExit(d.cfg.Table, d.cfg.RulePriority)
		d.routing = false
	}
	if d.serving {
		errs = append(errs, unserveExit(d.cfg.Name))
		d.serving = false
	}
	if d.sys {
		errs = append(errs, unserveRoutes(d.cfg.Name))
	}
	d.mu.Unlock()
	d.wg.Close() // closes the TUN, which deletes the interface, and the bind
	d.bind.stopAllFirst()
	return errors.Join(errs...)
}
