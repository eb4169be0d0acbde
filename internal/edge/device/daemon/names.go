package daemon

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/proto/policy"
	"github.com/omniedge/omni/internal/edge/proto/wgkey"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// Names serves the networks' DNS names on this device and points the
// host's resolver at them (the CLI wires package names in). Its methods
// may be called from several goroutines.
type Names interface {
	// Set serves zone with recs on addr (the network's tunnel address)
	// and sends the host's queries for zone there through iface.
	// Called again with every change of the zone.
	Set(ctx context.Context, iface string, addr netip.Addr, zone string, recs []NameRecord) error
	// Remove stops serving a network's zone (the network went down).
	Remove(ctx context.Context, iface string, addr netip.Addr, zone string) error
}

// NameRecord is one member's name and addresses.
type NameRecord struct {
	Name       string // fully qualified, no trailing dot
	IPv4, IPv6 netip.Addr
}

// mapWait is how long one long poll of the network map is held by the
// control plane: below the API client's 30 s timeout.
const mapWait = 25 * time.Second

// followMap keeps the network's map applied on the device, following
// every change the control plane reports (a long poll), until ctx ends:
// the members' names (served through Deps.Names), the subnet routes each
// peer carries (its allowed IPs and host routes) and those this device
// carries (forwarded by its tunnel). On the way out it stops serving the
// names.
func (n *network) followMap(ctx context.Context, d *daemon) {
	addr := n.cfg.VirtualIP.Addr()
	var tag, zone string
	defer func() {
		if zone == "" || d.deps.Names == nil {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := d.deps.Names.Remove(rctx, n.cfg.Interface, addr, zone); err != nil {
			n.log.Warn("removing the network's names failed", "err", err)
		}
	}()
	for attempt := 0; ctx.Err() == nil; {
		m, next, changed, err := d.api.Map(ctx, n.cfg.NetworkID, tag, mapWait)
		if err == nil && changed {
			n.setRecords(m.Zone, nameRecords(m))
			n.applyRoutes(m)
			n.applyPolicy(m)
			n.checkBindings(m)
			if d.deps.Names != nil {
				if zone != "" && zone != m.Zone {
					if err := d.deps.Names.Remove(ctx, n.cfg.Interface, addr, zone); err != nil {
						n.log.Warn("removing the network's old zone failed", "zone", zone, "err", err)
					}
				}
				if err = d.deps.Names.Set(ctx, n.cfg.Interface, addr, m.Zone, nameRecords(m)); err == nil && zone != m.Zone {
					n.log.Info("serving the network's names", "zone", m.Zone, "names", len(m.Peers))
				}
			}
			if err == nil {
				zone, tag = m.Zone, next
				n.mu.Lock()
				n.zone, n.names = m.Zone, len(m.Peers)
				n.mu.Unlock()
			}
		}
		if err == nil {
			attempt = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if notMember(err) {
			return // the network is going away (the heartbeat's sync takes it down)
		}
		// Real time, like bindEvery: it only spaces control-plane calls.
		wait := client.Backoff(attempt, 0, d.rnd)
		attempt++
		n.log.Warn("following the network map failed", "err", err, "retry_in", wait)
		if !sleepReal(ctx, wait) {
			return
		}
	}
}

// checkBindings compares the members' keys in a map with the bindings
// peers are checked against and, when they differ (a key expired, was
// expired by the owner, or changed), has the member list fetched again:
// the map reaches the daemon within about a second of the change, with
// whatever nucleus the network uses (a user-hosted one learns of an
// expiry only at its next poll), and loadBindings then drops the peer.
func (n *network) checkBindings(m wire.NetMap) {
	want := make(map[netip.Addr]wgkey.Key, len(m.Peers))
	for _, p := range m.Peers {
		ip, err := netip.ParseAddr(p.VirtualIP)
		if err != nil || p.KeyExpired {
			continue
		}
		if k, err := wgkey.ParseBase64(p.PublicKey); err == nil {
			want[ip] = k
		}
	}
	n.mu.Lock()
	same := maps.Equal(want, n.bindings)
	n.mu.Unlock()
	if !same {
		n.kickBindings()
	}
}

// applyRoutes takes the subnet routes of a map: each peer's become its
// allowed IPs (the peer set is applied again), this device's are served.
func (n *network) applyRoutes(m wire.NetMap) {
	byKey := map[wgkey.Key][]netip.Prefix{}
	var own []netip.Prefix
	for _, p := range m.Peers {
		var rs []netip.Prefix
		for _, r := range p.Routes {
			if pr, err := netip.ParsePrefix(r); err == nil && !pr.Overlaps(n.cfg.VirtualIP.Masked()) &&
				(!n.cfg.VirtualIPv6.IsValid() || !pr.Overlaps(n.cfg.VirtualIPv6.Masked())) {
				rs = append(rs, pr.Masked())
			}
		}
		if p.DeviceID == n.cfg.DeviceID {
			own = rs
			continue
		}
		if k, err := wgkey.ParseBase64(p.PublicKey); err == nil && len(rs) > 0 {
			byKey[k] = rs
		}
	}
	n.mu.Lock()
	changed := !maps.EqualFunc(byKey, n.routes, slices.Equal)
	n.routes = byKey
	serve := !slices.Equal(own, n.served)
	n.served = own
	peers := n.lastPeers
	n.mu.Unlock()
	if serve {
		if err := n.tun.ServeRoutes(own); err != nil {
			n.log.Error("cannot serve the subnet routes", "routes", own, "err", err)
		} else if len(own) > 0 {
			n.log.Info("serving subnet routes", "routes", own, "snat", n.cfg.SNATRoutes)
		}
	}
	if changed {
		n.setPeers(peers)
	}
}

// applyPolicy compiles the network's access policy for this device (the
// rules whose destination is one of its addresses or the routes it
// serves) and hands it to the tunnel. It runs on every change of the map:
// a policy names members, whose addresses the map gives. A policy that
// does not compile here (the control plane validated it) keeps the
// previous one.
func (n *network) applyPolicy(m wire.NetMap) {
	var f *policy.Filter
	if len(m.Policy) > 0 && string(m.Policy) != "null" {
		pol, err := policy.Parse(m.Policy)
		if err != nil {
			n.log.Error("the network's access policy does not parse; keeping the previous one", "version", m.PolicyVersion, "err", err)
			return
		}
		members := make([]policy.Member, 0, len(m.Peers))
		var self policy.Member
		for _, p := range m.Peers {
			label, _, _ := strings.Cut(p.Name, ".")
			mem := policy.Member{ID: p.DeviceID, Label: label, Tags: p.Tags}
			mem.Addr4, _ = netip.ParseAddr(p.VirtualIP)
			mem.Addr6, _ = netip.ParseAddr(p.VirtualIPv6)
			if p.DeviceID == n.cfg.DeviceID {
				self = mem
			}
			members = append(members, mem)
		}
		if !self.Addr4.IsValid() {
			self.Addr4, self.Addr6 = n.cfg.VirtualIP.Addr(), n.cfg.VirtualIPv6.Addr()
		}
		n.mu.Lock()
		routes := slices.Clone(n.served)
		n.mu.Unlock()
		if n.cfg.ServeExit {
			routes = append(routes, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
		}
		if f, err = pol.Compile(policy.NewDirectory(members), self, routes); err != nil {
			n.log.Error("the network's access policy does not compile; keeping the previous one", "version", m.PolicyVersion, "err", err)
			return
		}
	}
	if err := n.tun.SetFilter(f); err != nil {
		n.log.Error("cannot apply the access policy", "err", err)
		return
	}
	n.mu.Lock()
	changed := n.policyVersion != m.PolicyVersion
	n.policyVersion = m.PolicyVersion
	n.mu.Unlock()
	if changed {
		n.log.Info("access policy applied", "version", m.PolicyVersion, "allow_all", f == nil)
	}
}

// setRecords keeps the zone's records for status and ping (peer address
// → name), whether or not serving them worked.
func (n *network) setRecords(zone string, recs []NameRecord) {
	by := make(map[netip.Addr]NameRecord, 2*len(recs))
	for _, r := range recs {
		if r.IPv4.IsValid() {
			by[r.IPv4] = r
		}
		if r.IPv6.IsValid() {
			by[r.IPv6] = r
		}
	}
	n.mu.Lock()
	n.records, n.byAddr, n.recZone = recs, by, zone
	n.mu.Unlock()
}

// nameOf returns the record of the member at addr (IPv4 or IPv6).
func (n *network) nameOf(addr netip.Addr) (NameRecord, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	r, ok := n.byAddr[addr]
	return r, ok
}

// peerName is the sessions' SessionHooks.PeerName: the member's full
// name, "" when unknown.
func (n *network) peerName(addr netip.Addr) string {
	r, _ := n.nameOf(addr)
	return r.Name
}

// shortName is a member's name without its zone ("robot" of
// "robot.home.omni.internal"); the first label when the zone is unknown.
func shortName(name, zone string) string {
	if zone != "" {
		if s, ok := strings.CutSuffix(name, "."+zone); ok && s != "" {
			return s
		}
	}
	s, _, _ := strings.Cut(name, ".")
	return s
}

func nameRecords(m wire.NetMap) []NameRecord {
	out := make([]NameRecord, 0, len(m.Peers))
	for _, r := range m.Peers {
		rec := NameRecord{Name: r.Name}
		rec.IPv4, _ = netip.ParseAddr(r.VirtualIP)
		rec.IPv6, _ = netip.ParseAddr(r.VirtualIPv6)
		out = append(out, rec)
	}
	return out
}
