package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// Defaults of Config.
const (
	DefaultHeartbeat = 30 * time.Second
	DefaultMTU       = 1420
	// SyncEvery is how many heartbeats pass between two listings of the
	// account's networks when the daemon follows all of them.
	SyncEvery = 2
	// leaveTimeout bounds saying goodbye to one nucleus at shutdown.
	leaveTimeout = 5 * time.Second
)

// Errors Run returns before doing anything else.
var (
	ErrNoDataPlane   = errors.New("no tunnel implementation is built into this binary: the edge data plane (WireGuard tunnel and nucleus client) is not wired in yet")
	ErrLoginRequired = errors.New("not logged in: pass --security-key, or run `omni edge login` first")
	ErrDeviceDeleted = errors.New("the control plane no longer knows this device (deleted?); start again to register it")
	// ErrKeyExpired is returned when the owner expired the device's key
	// and the login the daemon holds predates that: a new key needs a new
	// login (`omni edge login`, or a security key created since).
	ErrKeyExpired     = errors.New("the owner expired this device's key: log in again (omni edge login, or --security-key with a key created since) and start again")
	errCredentialsBad = errors.New("the control plane refused the credentials (revoked key or expired login)")
)

// Config is what `omni edge up` was asked to do.
type Config struct {
	Server      string // control-plane base URL
	SecurityKey string // empty: use the refresh token saved by a previous run or `omni edge login`
	Name        string // device name; empty: the hostname
	// Networks to join; empty: every network of the user, followed while
	// running (networks created later are joined, deleted ones torn down,
	// checked every SyncEvery heartbeats).
	Networks []string
	ExitNode bool // consent to serve as exit node
	// AdvertiseRoutes are the prefixes behind this device it offers to
	// route to (--advertise-routes); the network's owner approves them.
	AdvertiseRoutes []string
	// NoSNAT keeps the members' source addresses on the subnet routes
	// served (--snat-subnet-routes=false).
	NoSNAT   bool
	StateDir string // see DefaultStateDir

	Heartbeat time.Duration // default 30 s; each wait is ±10%
	MTU       int           // default 1420
	Platform  string        // default runtime.GOOS
}

// Deps are the daemon's collaborators. Tunnels and Nucleus are required.
type Deps struct {
	Tunnels TunnelFactory
	Nucleus SessionFactory
	Clock   Clock          // default RealClock
	Log     *slog.Logger   // default discards
	HTTP    *http.Client   // control-plane client; default 30 s timeout
	Rand    func() float64 // jitter source in [0,1); default math/rand/v2
	Names   Names          // serves the networks' DNS names; nil: none
	Pinger  Pinger         // answers `omni edge ping`; nil: ping is refused
}

type daemon struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	clock Clock
	rnd   func() float64
	st    *State
	api   *client.Client

	mu       sync.Mutex
	phase    string
	device   wire.Device
	lastBeat time.Time
	lastErr  string
	// keyExpires is when the device key expires first among its networks
	// (the last heartbeat's answer; zero: never).
	keyExpires time.Time
	nets       []*network
	// removed are the networks the device is no longer a member of (the
	// owner removed it): their tunnels are down and they are not joined
	// again while the daemon runs.
	removed map[string]bool
	stops   sync.WaitGroup // tear-downs of removed networks

	pings     chan struct{} // pings in flight (maxPings)
	netchecks chan struct{} // one netcheck at a time
}

// Run runs the edge daemon until ctx ends or `omni edge down` asks it to
// stop; both are a clean stop (nil). On the way out it leaves the nucleus
// sessions and closes the tunnels; the identity, tokens and the network
// memberships stay, so the next start comes back with the same addresses.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	if deps.Tunnels == nil || deps.Nucleus == nil {
		return ErrNoDataPlane
	}
	if cfg.Server == "" {
		return errors.New("no control-plane URL (--server)")
	}
	cfg.Server = strings.TrimRight(cfg.Server, "/")
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.MTU <= 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.Platform == "" {
		cfg.Platform = runtime.GOOS
	}
	if cfg.Name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "omniedge-device"
		}
		cfg.Name = h
	}
	if deps.Clock == nil {
		deps.Clock = RealClock{}
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.HTTP == nil {
		deps.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if deps.Rand == nil {
		deps.Rand = rand.Float64
	}
	st, err := OpenState(cfg.StateDir, deps.Log)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	d := &daemon{cfg: cfg, deps: deps, log: deps.Log, clock: deps.Clock, rnd: deps.Rand, st: st,
		api: client.New(cfg.Server, deps.HTTP), phase: "starting", removed: map[string]bool{},
		pings: make(chan struct{}, maxPings), netchecks: make(chan struct{}, 1)}
	ctl, err := listenControl(st.Dir, d, stop)
	if err != nil {
		return err
	}
	defer ctl.Close()
	err = d.run(ctx)
	d.shutdown()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}

func (d *daemon) run(ctx context.Context) error {
	if err := d.login(ctx); err != nil {
		return err
	}
	id := d.st.Identity()
	dev, err := retry(ctx, d, "register device", func(ctx context.Context) (wire.Device, error) {
		routes := append([]string{}, d.cfg.AdvertiseRoutes...)
		return d.api.RegisterDevice(ctx, wire.RegisterDeviceRequest{Name: d.cfg.Name, HardwareUUID: id.HardwareUUID,
			Platform: d.cfg.Platform, PublicKey: id.PublicKey.String(), AdvertisedRoutes: &routes})
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.device = dev
	d.mu.Unlock()
	if err := d.st.Update(func(i *Identity) { i.DeviceID = dev.ID }); err != nil {
		return err
	}
	d.log.Info("device registered", "device", dev.ID, "name", dev.Name, "public_key", id.PublicKey.String())

	// --network names the networks to join: an explicit request, which
	// joins again a network the device was removed from. Following the
	// account joins only networks the device never followed.
	ids, explicit := d.cfg.Networks, len(d.cfg.Networks) > 0
	if !explicit {
		all, err := retry(ctx, d, "list networks", d.api.Networks)
		if err != nil {
			return err
		}
		for _, n := range all {
			ids = append(ids, n.ID)
		}
		if len(ids) == 0 {
			d.log.Warn("the account has no virtual network yet; nothing to join")
		}
	}
	i := 0
	for _, nid := range ids {
		jr, err := retry(ctx, d, "join network "+nid, func(ctx context.Context) (wire.JoinResponse, error) {
			return d.admit(ctx, nid, dev.ID, explicit)
		})
		if err != nil {
			if d.isRemoved(nid) {
				continue
			}
			return err
		}
		if err := d.startNetwork(ctx, i, id, jr); err != nil {
			return fmt.Errorf("network %s: %w", nid, err)
		}
		i++
	}
	d.setPhase("running")
	return d.heartbeats(ctx)
}

// admit returns the join answer of a network the daemon is to run. An
// explicit request (--network), or a network this device never followed,
// joins; a network it followed before is only read: when the device is no
// longer a member (the owner removed it), the network is marked removed
// and an error is returned.
func (d *daemon) admit(ctx context.Context, nid, devID string, explicit bool) (wire.JoinResponse, error) {
	if explicit || !slices.Contains(d.st.Identity().Followed, nid) {
		jr, err := d.api.Join(ctx, nid, devID)
		if err == nil {
			d.follow(nid)
		}
		return jr, err
	}
	jr, err := d.api.Membership(ctx, nid, devID)
	if notMember(err) {
		d.markRemoved(nid)
	}
	return jr, err
}

// notMember reports an answer saying the device is not (or no longer) a
// member of the network: 404 (removed, network deleted) or 403.
func notMember(err error) bool {
	st := client.StatusOf(err)
	return st == http.StatusNotFound || st == http.StatusForbidden
}

// follow records that the device joined the network.
func (d *daemon) follow(nid string) {
	if err := d.st.Update(func(i *Identity) {
		if !slices.Contains(i.Followed, nid) {
			i.Followed = append(slices.Clone(i.Followed), nid)
		}
	}); err != nil {
		d.log.Error("cannot save the followed networks", "err", err)
	}
}

// markRemoved records, once, that the device is no longer a member of
// the network; it reports whether this call recorded it.
func (d *daemon) markRemoved(nid string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.removed[nid] {
		return false
	}
	d.removed[nid] = true
	d.log.Warn("this device is no longer a member of the network (removed by its owner, or the network is gone); the network stays down until joined again explicitly (omni edge up --network)",
		"network", nid)
	return true
}

func (d *daemon) isRemoved(nid string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.removed[nid]
}

// dropRemoved takes down a running network the device was removed from,
// without joining it again. It may be called from the network's own
// goroutines: the tear-down runs on its own.
func (d *daemon) dropRemoved(n *network) {
	d.markRemoved(n.cfg.NetworkID)
	d.mu.Lock()
	if d.phase == "stopping" { // shutdown stops it
		d.mu.Unlock()
		return
	}
	before := len(d.nets)
	d.nets = slices.DeleteFunc(slices.Clone(d.nets), func(x *network) bool { return x == n })
	running := len(d.nets) != before
	if running {
		d.stops.Add(1)
	}
	d.mu.Unlock()
	if !running {
		return
	}
	n.cancel()
	go func() {
		defer d.stops.Done()
		n.stop()
		n.log.Info("network down: the device is no longer a member")
	}()
}

// login installs credentials: the security key when given (a fresh token
// family each start), else the refresh token saved for this server.
func (d *daemon) login(ctx context.Context) error {
	if d.cfg.SecurityKey != "" {
		_, err := retry(ctx, d, "login", func(ctx context.Context) (wire.TokenResponse, error) {
			return d.api.LoginSecurityKey(ctx, d.cfg.SecurityKey)
		})
		return err
	}
	id := d.st.Identity()
	if id.RefreshToken == "" || id.Server != d.cfg.Server {
		return ErrLoginRequired
	}
	d.api.SetTokens(id.Token, id.RefreshToken)
	_, err := retry(ctx, d, "refresh login", d.api.Refresh)
	if client.StatusOf(err) == http.StatusUnauthorized {
		_ = d.st.Update(func(i *Identity) { i.Token, i.RefreshToken = "", "" })
		return fmt.Errorf("%w (the saved login expired or was revoked)", ErrLoginRequired)
	}
	return err
}

// saveTokens persists the token pair whenever the client rotated it, so a
// restart does not present a spent refresh token.
func (d *daemon) saveTokens() {
	tok, rt := d.api.Tokens()
	if rt == "" {
		return
	}
	if err := d.st.Update(func(i *Identity) { i.Server, i.Token, i.RefreshToken = d.cfg.Server, tok, rt }); err != nil {
		d.log.Error("cannot save tokens", "err", err)
	}
}

// startAttempts bounds the retries of one start-up call (login, register,
// join): with the back-off cap, about an hour of trying.
const startAttempts = 20

// retry calls f until it succeeds, fails for good, startAttempts ran out,
// or ctx ends, backing off with jitter between attempts.
func retry[T any](ctx context.Context, d *daemon, what string, f func(context.Context) (T, error)) (T, error) {
	for attempt := 0; ; attempt++ {
		v, err := f(ctx)
		d.saveTokens()
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
		if !client.Retryable(err) || attempt+1 >= startAttempts {
			return v, fmt.Errorf("%s: %w", what, err)
		}
		wait := client.Backoff(attempt, client.RetryAfter(err), d.rnd)
		d.setErr(err)
		d.log.Warn("control plane call failed; retrying", "call", what, "err", err, "retry_in", wait)
		if !d.sleep(ctx, wait) {
			return v, ctx.Err()
		}
	}
}

func (d *daemon) sleep(ctx context.Context, dur time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-d.clock.After(dur):
		return true
	}
}

// sleepReal waits d of real time (the spacing of control-plane calls,
// which a test's fake clock does not drive) and reports false when ctx
// ended first.
func sleepReal(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// heartbeats reports the device alive every interval ±10% and applies
// the exit node selection of each answer, until ctx ends.
func (d *daemon) heartbeats(ctx context.Context) error {
	hw := d.st.Identity().HardwareUUID
	failures := 0
	for beat := 1; ; beat++ {
		resp, err := d.api.Heartbeat(ctx, hw, d.cfg.ExitNode)
		d.saveTokens()
		wait := client.Jittered(d.cfg.Heartbeat, d.rnd)
		switch {
		case err == nil:
			failures = 0
			d.mu.Lock()
			d.lastBeat, d.lastErr = d.clock.Now(), ""
			d.mu.Unlock()
			if err := d.followKey(ctx, resp); err != nil {
				return err
			}
			if len(d.cfg.Networks) == 0 && beat%SyncEvery == 0 {
				d.syncNetworks(ctx)
			}
			d.applyExits(resp.ExitNodes)
			d.applySecretVersions(resp.SecretVersions)
		case ctx.Err() != nil:
			return nil
		case client.StatusOf(err) == http.StatusUnauthorized:
			return fmt.Errorf("%w: %v", errCredentialsBad, err)
		case client.StatusOf(err) == http.StatusNotFound:
			return ErrDeviceDeleted
		case client.Retryable(err):
			wait = max(min(client.Backoff(failures, client.RetryAfter(err), d.rnd), d.cfg.Heartbeat), client.RetryAfter(err))
			failures++
			d.setErr(err)
			d.log.Warn("heartbeat failed", "err", err, "retry_in", wait)
		default:
			d.setErr(err)
			d.log.Error("heartbeat refused", "err", err)
		}
		if !d.sleep(ctx, wait) {
			return nil
		}
	}
}

func (d *daemon) setErr(err error) {
	d.mu.Lock()
	d.lastErr = err.Error()
	d.mu.Unlock()
}

func (d *daemon) setPhase(p string) {
	d.mu.Lock()
	d.phase = p
	d.mu.Unlock()
}

// applyExits hands each network's exit node selection to its tunnel. An
// address outside the network's range, or this device's own, is ignored.
func (d *daemon) applyExits(sel map[string]string) {
	d.mu.Lock()
	nets := d.nets
	d.mu.Unlock()
	for _, n := range nets {
		var want netip.Addr
		if s, ok := sel[n.cfg.NetworkID]; ok {
			a, err := netip.ParseAddr(s)
			switch {
			case err != nil || !n.range4.Contains(a) || a == n.cfg.VirtualIP.Addr():
				d.log.Warn("ignoring an exit node outside the network", "network", n.cfg.NetworkID, "exit", s)
			default:
				want = a
			}
		}
		n.mu.Lock()
		same := n.exit == want
		n.mu.Unlock()
		if same {
			continue
		}
		if err := n.tun.SetExit(want); err != nil {
			d.log.Error("cannot change exit node", "network", n.cfg.NetworkID, "exit", want, "err", err)
			continue
		}
		n.mu.Lock()
		n.exit = want
		n.mu.Unlock()
		// Pooled control-plane connections keep the source address of the
		// old routes, which the new path drops (an exit accepts only the
		// virtual addresses): the next request opens a fresh one.
		d.deps.HTTP.CloseIdleConnections()
		d.log.Info("exit node changed", "network", n.cfg.NetworkID, "exit", want)
	}
}

// applySecretVersions has every network whose secret the control plane
// rotated fetch the new one (the fallback when the nucleus's REKEY was
// missed). A running network the answer does not list (the device was
// removed from it) has its membership read as well, which takes it down.
func (d *daemon) applySecretVersions(versions map[string]int64) {
	d.mu.Lock()
	nets := d.nets
	d.mu.Unlock()
	for _, n := range nets {
		v, ok := versions[n.cfg.NetworkID]
		switch {
		case ok && v != n.secretVersion():
			n.log.Info("the network secret changed; fetching it", "version", v)
			n.kickRekey()
		case !ok:
			n.kickRekey()
		}
	}
}

// syncNetworks follows the account's networks: it joins the networks
// created since the last listing and tears down those that are gone. A
// failure is logged and left to the next listing.
func (d *daemon) syncNetworks(ctx context.Context) {
	all, err := d.api.Networks(ctx)
	d.saveTokens()
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("listing networks failed", "err", err)
		}
		return
	}
	listed := make(map[string]bool, len(all))
	for _, n := range all {
		listed[n.ID] = true
	}
	// Forget the followed networks that are gone.
	if err := d.st.Update(func(i *Identity) {
		i.Followed = slices.DeleteFunc(slices.Clone(i.Followed), func(id string) bool { return !listed[id] })
	}); err != nil {
		d.log.Error("cannot save the followed networks", "err", err)
	}
	d.mu.Lock()
	nets := d.nets
	dev := d.device
	d.mu.Unlock()
	joined := map[string]bool{}
	used := map[int]bool{}
	var gone []*network
	for _, n := range nets {
		joined[n.cfg.NetworkID] = true
		if listed[n.cfg.NetworkID] {
			used[n.index] = true
		} else {
			gone = append(gone, n)
		}
	}
	for _, n := range gone {
		d.mu.Lock()
		d.nets = slices.DeleteFunc(slices.Clone(d.nets), func(x *network) bool { return x == n })
		d.mu.Unlock()
		n.stop()
		n.log.Info("network removed from the account; tunnel closed")
	}
	id := d.st.Identity()
	for _, n := range all {
		if joined[n.ID] || d.isRemoved(n.ID) {
			continue
		}
		jr, err := d.admit(ctx, n.ID, dev.ID, false)
		d.saveTokens()
		if err != nil {
			if !d.isRemoved(n.ID) {
				d.log.Warn("joining a new network failed", "network", n.ID, "err", err)
			}
			continue
		}
		i := 0
		for used[i] {
			i++
		}
		if err := d.startNetwork(ctx, i, id, jr); err != nil {
			d.log.Error("starting a new network failed", "network", n.ID, "err", err)
			continue
		}
		used[i] = true
	}
}

// network is one joined network with its tunnel and nucleus session.
type network struct {
	index  int // N of the interface omniN
	cfg    NetworkConfig
	range4 netip.Prefix
	tun    Tunnel
	sess   Session
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{} // closed when serve and maintain ended
	once   sync.Once     // stop runs once

	rekeyKick chan struct{} // fetch the network secret again
	bindKick  chan struct{} // fetch the members' keys again

	setMu sync.Mutex // orders SetPeers calls

	mu         sync.Mutex
	exit       netip.Addr
	registered bool
	peers      int
	secret     string // the network secret in use and its version
	version    int64
	// bindings maps each member's virtual IPv4 to its device key, from
	// the control plane; a peer reported at an address bound to another
	// key (or to none) is refused. checked are the refused peers the last
	// fetch already judged, so that they do not cause another.
	bindings  map[netip.Addr]wgkey.Key
	checked   map[wgkey.Key]netip.Addr
	lastPeers []Peer
	zone      string // the DNS zone served, "" before the first answer
	names     int    // names in it
	// routes are the subnet routes each peer carries, by device key,
	// from the network map; served those this device carries.
	routes map[wgkey.Key][]netip.Prefix
	served []netip.Prefix
	// records are the members' names as the control plane last listed
	// them (served or not), byAddr the same by virtual IPv4 and IPv6, and
	// recZone their zone: status and ping name peers with them.
	policyVersion int64 // the access policy applied (0: none)
	records       []NameRecord
	byAddr        map[netip.Addr]NameRecord
	recZone       string
}

// bindEvery spaces the fetches of the members' keys (real time: it only
// bounds control-plane calls).
const bindEvery = 2 * time.Second

func networkConfig(i int, id Identity, jr wire.JoinResponse, cfg Config) (NetworkConfig, netip.Prefix, error) {
	nc := NetworkConfig{NetworkID: jr.NetworkID, Name: jr.Cluster, DeviceID: jr.DeviceID,
		Interface: fmt.Sprintf("omni%d", i), MTU: cfg.MTU, PrivateKey: id.PrivateKey, PublicKey: id.PublicKey,
		SecretKey: jr.SecretKey, SecretVersion: jr.SecretVersion, Nucleus: jr.Server.Host, ServeExit: cfg.ExitNode,
		SNATRoutes: !cfg.NoSNAT}
	if nc.Name == "" {
		nc.Name = jr.CommunityName
	}
	v4, err := netip.ParseAddr(jr.VirtualIP)
	if err != nil || !v4.Is4() {
		return nc, netip.Prefix{}, fmt.Errorf("join answered a bad virtual_ip %q", jr.VirtualIP)
	}
	mask := net.IPMask(net.ParseIP(jr.SubnetMask).To4())
	ones, bits := mask.Size()
	if bits != 32 {
		return nc, netip.Prefix{}, fmt.Errorf("join answered a bad subnet_mask %q", jr.SubnetMask)
	}
	nc.VirtualIP = netip.PrefixFrom(v4, ones)
	if jr.VirtualIPv6 != "" {
		v6, err := netip.ParseAddr(jr.VirtualIPv6)
		if err != nil || !v6.Is6() || jr.SubnetPrefixV6 <= 0 || jr.SubnetPrefixV6 > 128 {
			return nc, netip.Prefix{}, fmt.Errorf("join answered a bad virtual_ip_v6 %q/%d", jr.VirtualIPv6, jr.SubnetPrefixV6)
		}
		nc.VirtualIPv6 = netip.PrefixFrom(v6, jr.SubnetPrefixV6)
	}
	if nc.SecretKey == "" || nc.Nucleus == "" {
		return nc, netip.Prefix{}, errors.New("join answered no secret_key or nucleus host")
	}
	// No key, no signaling: there is no fallback to the network key alone
	// (a control plane or user-hosted nucleus too old to publish one must
	// be updated).
	if nc.NucleusKey, err = wgkey.ParseBase64(jr.Server.PublicKey); err != nil || nc.NucleusKey.IsZero() {
		return nc, netip.Prefix{}, fmt.Errorf("join answered no usable nucleus public_key %q: the nucleus (or the control plane) must be updated", jr.Server.PublicKey)
	}
	return nc, nc.VirtualIP.Masked(), nil
}

func (d *daemon) startNetwork(ctx context.Context, i int, id Identity, jr wire.JoinResponse) error {
	nc, r4, err := networkConfig(i, id, jr, d.cfg)
	if err != nil {
		return err
	}
	return d.launch(ctx, i, nc, r4)
}

// launch brings up one network's tunnel and nucleus session and the
// goroutines that keep them current.
func (d *daemon) launch(ctx context.Context, i int, nc NetworkConfig, r4 netip.Prefix) error {
	tun, err := d.deps.Tunnels(ctx, nc)
	if err != nil {
		return fmt.Errorf("create tunnel %s: %w", nc.Interface, err)
	}
	n := &network{index: i, cfg: nc, range4: r4, tun: tun, done: make(chan struct{}),
		log:    d.log.With("network", nc.NetworkID, "interface", nc.Interface),
		secret: nc.SecretKey, version: nc.SecretVersion,
		rekeyKick: make(chan struct{}, 1), bindKick: make(chan struct{}, 1)}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancel = cancel
	// The members' keys first, so that the first peer list is judged.
	if err := n.loadBindings(ctx, d); err != nil {
		n.log.Warn("fetching the members' keys failed; peers wait for them", "err", err)
	}
	sess, err := d.deps.Nucleus(nc, tun, SessionHooks{OnPeers: n.setPeers, OnRekey: n.kickRekey, PeerName: n.peerName})
	if err != nil {
		cancel()
		tun.Close()
		return fmt.Errorf("nucleus session: %w", err)
	}
	n.sess = sess
	d.mu.Lock()
	d.nets = append(d.nets, n)
	d.mu.Unlock()
	n.log.Info("network up", "virtual_ip", nc.VirtualIP, "virtual_ip_v6", nc.VirtualIPv6, "nucleus", nc.Nucleus)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); n.serve(sctx, d) }()
	go func() { defer wg.Done(); n.maintain(sctx, d) }()
	wg.Add(1)
	go func() { defer wg.Done(); n.followMap(sctx, d) }()
	go func() { wg.Wait(); close(n.done) }()
	return nil
}

func (n *network) secretVersion() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.version
}

// kickRekey asks maintain to fetch the network secret (the session's
// REKEY hook; must not block).
func (n *network) kickRekey() {
	select {
	case n.rekeyKick <- struct{}{}:
	default:
	}
}

func (n *network) kickBindings() {
	select {
	case n.bindKick <- struct{}{}:
	default:
	}
}

// maintain fetches the network secret after a rotation and the members'
// keys when a peer is not bound to its address, until ctx ends.
func (n *network) maintain(ctx context.Context, d *daemon) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.rekeyKick:
			n.rekey(ctx, d)
		case <-n.bindKick:
			if wait := bindEvery - time.Since(last); wait > 0 && !sleepReal(ctx, wait) {
				return
			}
			last = time.Now()
			if err := n.loadBindings(ctx, d); err != nil {
				if ctx.Err() == nil {
					n.log.Warn("fetching the members' keys failed", "err", err)
				}
				continue
			}
			n.mu.Lock()
			peers := n.lastPeers
			n.mu.Unlock()
			n.setPeers(peers)
		}
	}
}

// rekey reads the device's membership (never a join: a device the owner
// removed must stay out) and, when the secret changed, switches the
// tunnel's preshared keys and the session's signaling key to it. Current
// WireGuard sessions carry on; the next handshake uses the new key. When
// the device is no longer a member the network is taken down. Another
// failure waits for the next REKEY or heartbeat.
func (n *network) rekey(ctx context.Context, d *daemon) {
	jr, err := d.api.Membership(ctx, n.cfg.NetworkID, n.cfg.DeviceID)
	d.saveTokens()
	if notMember(err) {
		d.dropRemoved(n)
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			n.log.Warn("fetching the network secret failed", "err", err)
		}
		return
	}
	n.mu.Lock()
	same := jr.SecretKey == n.secret
	n.mu.Unlock()
	if jr.SecretKey == "" || same {
		n.mu.Lock()
		n.version = max(n.version, jr.SecretVersion)
		n.mu.Unlock()
		return
	}
	if err := n.tun.SetSecret(jr.SecretKey); err != nil {
		n.log.Error("cannot switch the tunnel to the new network secret", "err", err)
		return
	}
	if err := n.sess.SetSecret(jr.SecretKey); err != nil {
		n.log.Error("cannot switch the nucleus session to the new network secret", "err", err)
		return
	}
	n.mu.Lock()
	n.secret, n.version = jr.SecretKey, jr.SecretVersion
	n.mu.Unlock()
	n.log.Info("network secret rotated", "version", jr.SecretVersion)
}

// loadBindings fetches the members' virtual addresses and device keys;
// a member whose key expired in the network is bound to none.
func (n *network) loadBindings(ctx context.Context, d *daemon) error {
	ms, err := d.api.Members(ctx, n.cfg.NetworkID)
	d.saveTokens()
	if err != nil {
		return err
	}
	b := make(map[netip.Addr]wgkey.Key, len(ms))
	for _, m := range ms {
		ip, err := netip.ParseAddr(m.VirtualIP)
		if err != nil || m.KeyExpired {
			continue // an expired key: nobody is accepted at this address
		}
		k, err := wgkey.ParseBase64(m.PublicKey)
		if err != nil {
			continue // no key: nobody is accepted at this address
		}
		b[ip] = k
	}
	n.mu.Lock()
	n.bindings, n.checked = b, map[wgkey.Key]netip.Addr{}
	for _, p := range n.lastPeers {
		if k, ok := b[p.VirtualIP]; !ok || k != p.PublicKey {
			n.checked[p.PublicKey] = p.VirtualIP
		}
	}
	n.mu.Unlock()
	return nil
}

// setPeers is the session's peer callback: it drops this device, peers
// without an address of the network and peers whose address is bound to
// another device key (or to none), then configures the tunnel. A refused
// peer the last fetch of the members' keys did not judge yet has them
// fetched again (a member that just joined), and so are they when a peer
// went away (a member that left, was removed, or whose key expired: its
// address must not stay bound to the old key).
func (n *network) setPeers(peers []Peer) {
	n.mu.Lock()
	prev := n.lastPeers
	n.lastPeers = peers
	bindings, checked, routes := n.bindings, n.checked, n.routes
	n.mu.Unlock()
	keep := make([]Peer, 0, len(peers))
	again := gone(prev, peers)
	for _, p := range peers {
		if p.PublicKey == n.cfg.PublicKey || p.PublicKey.IsZero() || !n.range4.Contains(p.VirtualIP) ||
			p.VirtualIP == n.cfg.VirtualIP.Addr() {
			continue
		}
		if k, ok := bindings[p.VirtualIP]; !ok || k != p.PublicKey {
			if ip, seen := checked[p.PublicKey]; !seen || ip != p.VirtualIP {
				again = true
			} else if ok {
				n.log.Warn("refusing a peer: its address is bound to another device key", "peer", p.PublicKey, "virtual_ip", p.VirtualIP)
			}
			continue
		}
		if p.VirtualIPv6.IsValid() && (!n.cfg.VirtualIPv6.IsValid() || !n.cfg.VirtualIPv6.Masked().Contains(p.VirtualIPv6)) {
			p.VirtualIPv6 = netip.Addr{}
		}
		p.Routes = routes[p.PublicKey]
		keep = append(keep, p)
	}
	if again {
		n.kickBindings()
	}
	n.setMu.Lock()
	defer n.setMu.Unlock()
	if err := n.tun.SetPeers(keep); err != nil {
		n.log.Error("cannot configure peers", "err", err)
		return
	}
	n.mu.Lock()
	n.peers = len(keep)
	n.mu.Unlock()
}

// gone reports whether a key of prev is not in peers.
func gone(prev, peers []Peer) bool {
	if len(prev) == 0 {
		return false
	}
	now := make(map[wgkey.Key]bool, len(peers))
	for _, p := range peers {
		now[p.PublicKey] = true
	}
	for _, p := range prev {
		if !now[p.PublicKey] {
			return true
		}
	}
	return false
}

// serve keeps the nucleus session registered until ctx ends.
func (n *network) serve(ctx context.Context, d *daemon) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := n.sess.Register(ctx)
		if err == nil {
			attempt = 0
			n.setRegistered(true)
			err = n.sess.Run(ctx)
			n.setRegistered(false)
		}
		if ctx.Err() != nil {
			return
		}
		wait := client.Backoff(attempt, 0, d.rnd)
		n.log.Warn("nucleus session failed; registering again", "err", err, "retry_in", wait)
		if !d.sleep(ctx, wait) {
			return
		}
	}
}

func (n *network) setRegistered(v bool) {
	n.mu.Lock()
	n.registered = v
	n.mu.Unlock()
}

// shutdown leaves every nucleus and closes every tunnel.
func (d *daemon) shutdown() {
	d.mu.Lock()
	d.phase = "stopping"
	nets := d.nets
	d.mu.Unlock()
	for _, n := range nets {
		n.cancel()
	}
	for _, n := range nets {
		n.stop()
		n.log.Info("network down")
	}
	d.mu.Lock()
	d.nets = nil
	d.mu.Unlock()
	d.stops.Wait()
}

// stop ends the network's session, says goodbye to its nucleus and closes
// its tunnel.
func (n *network) stop() {
	n.once.Do(n.stopOnce)
}

func (n *network) stopOnce() {
	n.cancel()
	<-n.done
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	if err := n.sess.Leave(ctx); err != nil {
		n.log.Warn("leaving the nucleus failed", "err", err)
	}
	cancel()
	if err := n.tun.Close(); err != nil {
		n.log.Warn("closing the tunnel failed", "err", err)
	}
}
