package control

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/proto/policy"
)

// Access policies. A network's policy (package policy: groups and accept
// rules over members, tags and prefixes) is stored as its owner wrote it,
// with a version bumped by every change. It is validated against the
// network's members when set — a document that does not parse or names
// an unknown member is refused with the place of the error and the stored
// one stays — and handed to the members' daemons in the network map,
// which enforce it on the receiving side.

// StoredPolicy is a network's policy as stored (Version 0: none).
type StoredPolicy struct {
	Version   int64
	Document  string
	UpdatedAt time.Time
}

// PolicyDecision is the answer of a dry run.
type PolicyDecision struct {
	Allowed  bool
	Src, Dst netip.Addr // the addresses the names resolved to
}

// policyDirectory lists a network's members for policy names: device id,
// DNS label and tags.
func (s *Service) policyDirectory(ctx context.Context, n Network) (policy.Directory, []policy.Member, error) {
	ms, devs, err := s.store.MemberDevices(ctx, n.ID)
	if err != nil {
		return nil, nil, err
	}
	ls := memberLabels(ms, devs)
	out := make([]policy.Member, len(ms))
	for i, m := range ms {
		out[i] = policy.Member{ID: m.DeviceID, Label: ls[i], Addr4: ipam.Addr4(n.Range, m.Host), Addr6: ipam.Addr6(n.Range6, m.Host),
			Tags: devs[i].Tags}
	}
	return policy.NewDirectory(out), out, nil
}

// Policy answers a network's policy.
func (s *Service) Policy(ctx context.Context, p Principal, networkID string) (StoredPolicy, error) {
	if _, err := s.network(ctx, p, networkID); err != nil {
		return StoredPolicy{}, err
	}
	return s.store.Policy(ctx, networkID)
}

// parsePolicy parses a document and, when strict, validates it against a
// network's members. The stored policy is not validated again: a member
// it names may have left, or a tag lost its last holder, since it was
// written, and daemons apply it with those names matching nothing.
func (s *Service) parsePolicy(ctx context.Context, n Network, doc []byte, strict bool) (*policy.Policy, policy.Directory, []policy.Member, error) {
	pol, err := policy.Parse(doc)
	if err != nil {
		return nil, nil, nil, policyError(err)
	}
	dir, members, err := s.policyDirectory(ctx, n)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := pol.Validate(dir); strict && err != nil {
		return nil, nil, nil, policyError(err)
	}
	return pol, dir, members, nil
}

func policyError(err error) error {
	var pe *policy.Error
	if errors.As(err, &pe) {
		return errorf(KindInvalid, "policy: %s", pe.Error())
	}
	return errorf(KindInvalid, "policy: %v", err)
}

// SetPolicy replaces a network's policy with doc, provided the stored
// version is ifVersion (-1: any). An invalid document changes nothing.
func (s *Service) SetPolicy(ctx context.Context, p Principal, networkID string, doc []byte, ifVersion int64) (StoredPolicy, error) {
	n, err := s.network(ctx, p, networkID)
	if err != nil {
		return StoredPolicy{}, err
	}
	if _, _, _, err := s.parsePolicy(ctx, n, doc, true); err != nil {
		return StoredPolicy{}, err
	}
	v, err := s.store.SetPolicy(ctx, networkID, string(doc), ifVersion, s.now())
	if errors.Is(err, ErrConflict) {
		return StoredPolicy{}, errorf(KindConflict, "the policy changed meanwhile (%v): read it again", err)
	}
	if err != nil {
		return StoredPolicy{}, err
	}
	s.networkChanged(networkID)
	return StoredPolicy{Version: v, Document: string(doc), UpdatedAt: s.now()}, nil
}

// CheckPolicy is a dry run: would doc (nil: the stored policy) let src
// reach dst on proto ("tcp", "udp", "icmp") and port? src and dst are
// member names (device id or DNS label) or addresses; dst may be an
// address on a subnet route a member carries.
func (s *Service) CheckPolicy(ctx context.Context, p Principal, networkID string, doc []byte, src, dst, proto string, port int) (PolicyDecision, error) {
	n, err := s.network(ctx, p, networkID)
	if err != nil {
		return PolicyDecision{}, err
	}
	strict := doc != nil
	if doc == nil {
		st, err := s.store.Policy(ctx, networkID)
		if err != nil {
			return PolicyDecision{}, err
		}
		doc = []byte(st.Document)
	}
	pol, dir, members, err := s.parsePolicy(ctx, n, doc, strict)
	if err != nil {
		return PolicyDecision{}, err
	}
	var pn uint8
	switch strings.ToLower(proto) {
	case "tcp":
		pn = policy.ProtoTCP
	case "udp":
		pn = policy.ProtoUDP
	case "icmp":
		pn = policy.ProtoICMP
	default:
		return PolicyDecision{}, errorf(KindInvalid, "proto %q: want tcp, udp or icmp", proto)
	}
	if port < 0 || port > 65535 {
		return PolicyDecision{}, errorf(KindInvalid, "port %d is not a port", port)
	}
	resolve := func(what, name string) (netip.Addr, policy.Member, bool, error) {
		if a, err := netip.ParseAddr(name); err == nil {
			for _, m := range members {
				if m.Addr4 == a || m.Addr6 == a {
					return a, m, true, nil
				}
			}
			return a, policy.Member{}, false, nil
		}
		m, ok := dir.Lookup(name)
		if !ok {
			return netip.Addr{}, m, false, errorf(KindInvalid, "%s %q is neither a member of the network nor an address", what, name)
		}
		return m.Addr4, m, true, nil
	}
	sa, _, _, err := resolve("src", src)
	if err != nil {
		return PolicyDecision{}, err
	}
	da, self, member, err := resolve("dst", dst)
	if err != nil {
		return PolicyDecision{}, err
	}
	routes, err := s.networkRoutes(ctx, n)
	if err != nil {
		return PolicyDecision{}, err
	}
	if !member { // an address on a subnet route: the member that carries it receives
		for id, rs := range routes {
			for _, r := range rs.Primary {
				if r.Contains(da) {
					if m, ok := dir.Lookup(id); ok {
						self, member = m, true
					}
				}
			}
		}
	}
	if !member {
		return PolicyDecision{Src: sa, Dst: da}, nil // no member receives it
	}
	f, err := pol.Compile(dir, self, routes[self.ID].Primary)
	if err != nil {
		return PolicyDecision{}, err
	}
	return PolicyDecision{Allowed: f.Allow(sa, da, pn, uint16(port)), Src: sa, Dst: da}, nil
}
