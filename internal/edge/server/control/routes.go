package control

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Subnet routes. A device advertises prefixes of the networks behind it
// (`omni edge up --advertise-routes`); the network's owner approves them
// per membership; a route is enabled where both hold. Peers send traffic
// for enabled routes through that member, which forwards it (and, by
// default, masquerades it) onto its LAN.
//
// Overlaps: a route inside the network's own IPv4 or IPv6 range is refused
// (400) when advertised or approved, and never enabled. Two members
// enabling the same prefix: the member with the lower virtual address
// carries it (the other is a standby that takes over when the first
// leaves or loses it). Different prefixes that overlap are all carried;
// the most specific one wins, as in any routing table.

// MaxRoutes caps the routes a device advertises and an owner approves.
const MaxRoutes = 64

// StoredRoutes are a member's routes as stored: comma-separated prefixes.
type StoredRoutes struct {
	Advertised, Approved string
}

// RouteState is a member's routes.
type RouteState struct {
	Advertised []netip.Prefix
	Approved   []netip.Prefix
	Enabled    []netip.Prefix // approved and advertised, not inside the network's ranges
	Primary    []netip.Prefix // the enabled routes this member carries (see the overlap rule)
}

// ParseRoutes reads prefixes a user gives: each canonical (masked), no
// default route (that is an exit node), no loopback, link-local,
// multicast or unspecified prefix; at most MaxRoutes, duplicates dropped.
func ParseRoutes(in []string) ([]netip.Prefix, error) {
	if len(in) > MaxRoutes {
		return nil, errorf(KindInvalid, "at most %d routes", MaxRoutes)
	}
	out := make([]netip.Prefix, 0, len(in))
	for _, s := range in {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, errorf(KindInvalid, "route %q is not a prefix such as 10.1.0.0/24 or fd00:1::/64", s)
		}
		p = p.Masked()
		a := p.Addr()
		switch {
		case p.Bits() == 0:
			return nil, errorf(KindInvalid, "route %s is a default route: make the device an exit node instead", p)
		case a.Is4In6():
			return nil, errorf(KindInvalid, "route %s: write IPv4 routes as IPv4", s)
		case a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() || a.IsInterfaceLocalMulticast():
			return nil, errorf(KindInvalid, "route %s is not routable", p)
		}
		out = append(out, p)
	}
	sortPrefixes(out)
	return slices.Compact(out), nil
}

func sortPrefixes(ps []netip.Prefix) {
	sort.Slice(ps, func(i, j int) bool {
		if c := ps[i].Addr().Compare(ps[j].Addr()); c != 0 {
			return c < 0
		}
		return ps[i].Bits() < ps[j].Bits()
	})
}

func joinRoutes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func splitRoutes(s string) []netip.Prefix {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// insideNetwork reports the first route that overlaps the network's own
// ranges.
func insideNetwork(n Network, routes []netip.Prefix) (netip.Prefix, bool) {
	for _, r := range routes {
		for _, own := range []netip.Prefix{n.Range, n.Range6} {
			if own.IsValid() && r.Overlaps(own) {
				return r, true
			}
		}
	}
	return netip.Prefix{}, false
}

// AdvertiseRoutes records the routes one of p's devices offers. A route
// that overlaps the range of a network the device is in is refused.
func (s *Service) AdvertiseRoutes(ctx context.Context, p Principal, deviceID string, routes []string) ([]netip.Prefix, error) {
	if _, err := s.device(ctx, p, deviceID); err != nil {
		return nil, err
	}
	ps, err := ParseRoutes(routes)
	if err != nil {
		return nil, err
	}
	ms, err := s.store.DeviceMemberships(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.NetworkID
		n, err := s.store.NetworkByID(ctx, m.NetworkID)
		if err != nil {
			return nil, err
		}
		if r, bad := insideNetwork(n, ps); bad {
			return nil, errorf(KindInvalid, "route %s overlaps the range of network %s (%s, %s): a network's own addresses are routed by the mesh", r, n.ID, n.Range, n.Range6)
		}
	}
	prev, err := s.store.AdvertisedRoutes(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	if joined := joinRoutes(ps); joined != prev {
		if err := s.store.SetAdvertisedRoutes(ctx, deviceID, joined); err != nil {
			return nil, err
		}
		s.networkChanged(ids...)
	}
	return ps, nil
}

// MemberRoutes answers a member's routes.
func (s *Service) MemberRoutes(ctx context.Context, p Principal, networkID, deviceID string) (RouteState, error) {
	n, err := s.network(ctx, p, networkID)
	if err != nil {
		return RouteState{}, err
	}
	all, err := s.networkRoutes(ctx, n)
	if err != nil {
		return RouteState{}, err
	}
	if _, err := s.store.Membership(ctx, networkID, deviceID); err != nil {
		return RouteState{}, notMember(err, networkID, deviceID)
	}
	return all[deviceID], nil
}

// NetworkRoutes answers every member's routes in one of p's networks (the
// members that advertise or were approved none are absent).
func (s *Service) NetworkRoutes(ctx context.Context, p Principal, networkID string) (map[string]RouteState, error) {
	n, err := s.network(ctx, p, networkID)
	if err != nil {
		return nil, err
	}
	return s.networkRoutes(ctx, n)
}

// ApproveRoutes sets the routes the owner approves for a member (they may
// be approved before the device advertises them). A route overlapping the
// network's ranges is refused.
func (s *Service) ApproveRoutes(ctx context.Context, p Principal, networkID, deviceID string, routes []string) (RouteState, error) {
	n, err := s.network(ctx, p, networkID)
	if err != nil {
		return RouteState{}, err
	}
	ps, err := ParseRoutes(routes)
	if err != nil {
		return RouteState{}, err
	}
	if r, bad := insideNetwork(n, ps); bad {
		return RouteState{}, errorf(KindInvalid, "route %s overlaps the network's own range (%s, %s)", r, n.Range, n.Range6)
	}
	if err := s.store.SetApprovedRoutes(ctx, networkID, deviceID, joinRoutes(ps)); err != nil {
		return RouteState{}, notMember(err, networkID, deviceID)
	}
	s.networkChanged(networkID)
	return s.MemberRoutes(ctx, p, networkID, deviceID)
}

// networkRoutes computes every member's routes in a network, the primary
// carrier of each enabled prefix included.
func (s *Service) networkRoutes(ctx context.Context, n Network) (map[string]RouteState, error) {
	stored, err := s.store.NetworkRoutes(ctx, n.ID)
	if err != nil {
		return nil, err
	}
	out := make(map[string]RouteState, len(stored))
	if len(stored) == 0 {
		return out, nil
	}
	ms, err := s.store.Members(ctx, n.ID)
	if err != nil {
		return nil, err
	}
	host := make(map[string]uint32, len(ms))
	for _, m := range ms {
		host[m.DeviceID] = m.Host
	}
	carrier := map[netip.Prefix]string{}
	for id, st := range stored {
		rs := RouteState{Advertised: splitRoutes(st.Advertised), Approved: splitRoutes(st.Approved)}
		for _, r := range rs.Approved {
			if _, bad := insideNetwork(n, []netip.Prefix{r}); !bad && slices.Contains(rs.Advertised, r) {
				rs.Enabled = append(rs.Enabled, r)
				if c, ok := carrier[r]; !ok || host[id] < host[c] {
					carrier[r] = id
				}
			}
		}
		out[id] = rs
	}
	for r, id := range carrier {
		rs := out[id]
		rs.Primary = append(rs.Primary, r)
		out[id] = rs
	}
	for id, rs := range out {
		sortPrefixes(rs.Primary)
		out[id] = rs
	}
	return out, nil
}

// notMember turns a missing membership into KindNotFound.
func notMember(err error, networkID, deviceID string) error {
	if errors.Is(err, ErrNotFound) {
		return errorf(KindNotFound, "device %s is not a member of virtual network %s", deviceID, networkID)
	}
	return err
}
