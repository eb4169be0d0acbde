package control

import (
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
)

// secretBytes is the size of a network's mesh secret.
const secretBytes = 32

// CreateNetwork creates a network owned by p. ipRange is optional (the
// first /24 inside 100.64.0.0/10 free among p's own networks is chosen);
// an explicit one must not overlap p's networks (other users' do not
// matter) and is at most a /MaxRangeBits. serverID optionally names one of
// p's user servers as the network's nucleus.
func (s *Service) CreateNetwork(ctx context.Context, p Principal, name, ipRange, serverID string) (Network, error) {
	name, err := cleanName("network", name, 128)
	if err != nil {
		return Network{}, err
	}
	u, err := s.User(ctx, p.UserID)
	if err != nil {
		return Network{}, err
	}
	n := Network{ID: newID("vn_"), OwnerID: p.UserID, Name: name, CreatedAt: s.now()}
	if strings.TrimSpace(ipRange) != "" {
		if n.Range, err = ipam.ParseRange(strings.TrimSpace(ipRange)); err != nil {
			return Network{}, errorf(KindInvalid, "ip_range: %v", err)
		}
		if n.Range.Bits() < s.opts.MaxRangeBits {
			return Network{}, errorf(KindInvalid, "ip_range %s is larger than allowed: at most a /%d", n.Range, s.opts.MaxRangeBits)
		}
	}
	if serverID != "" {
		if _, err := s.userServer(ctx, p, serverID); err != nil {
			return Network{}, err
		}
		n.ServerID = serverID
	}
	n.SecretSealed, n.SecretVersion = s.newSecret(n.ID), 1
	// The v6 prefix mirrors the v4 one: an explicit range's length, or the
	// default /24 that PickRange chooses.
	bits := ipam.DefaultBits
	if n.Range.IsValid() {
		bits = n.Range.Bits()
	}
	for attempt := 0; ; attempt++ {
		if n.Range6, err = ipam.NewULA(rand.Reader, bits); err != nil {
			return Network{}, err
		}
		out, err := s.store.CreateNetwork(ctx, n, s.planLimit(u.Plan).MaxNetworks, ipam.PickRange)
		switch {
		case err == nil:
			return out, nil
		case errors.Is(err, ErrLimit):
			return Network{}, errorf(KindLimit, "network limit of the %s plan reached (%d networks)", u.Plan, s.planLimit(u.Plan).MaxNetworks)
		case errors.Is(err, ErrOverlap):
			// Only the caller's own networks are checked, and none is named:
			// the message reveals nothing the caller does not own.
			return Network{}, errorf(KindInvalid, "ip_range %s overlaps one of your networks", n.Range)
		case errors.Is(err, ipam.ErrNoRange):
			return Network{}, errorf(KindLimit, "no free /24 left in 100.64.0.0/10; give an explicit ip_range")
		case errors.Is(err, ErrConflict) && attempt < 3:
			continue // ULA collision: draw another
		default:
			return Network{}, err
		}
	}
}

// network returns a network owned by p.
func (s *Service) network(ctx context.Context, p Principal, id string) (Network, error) {
	n, err := s.store.NetworkByID(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Network{}, errorf(KindNotFound, "virtual network %s not found", id)
	}
	if err != nil {
		return Network{}, err
	}
	if p.UserID != "" && n.OwnerID != p.UserID {
		return Network{}, errorf(KindForbidden, "virtual network %s belongs to another user", id)
	}
	return n, nil
}

// GetNetwork returns one of p's networks.
func (s *Service) GetNetwork(ctx context.Context, p Principal, id string) (Network, error) {
	return s.network(ctx, p, id)
}

// ListNetworks returns p's networks; with p zero (admin), all.
func (s *Service) ListNetworks(ctx context.Context, p Principal) ([]Network, error) {
	return s.store.ListNetworks(ctx, p.UserID)
}

// NetworkPatch changes a network; nil fields stay.
type NetworkPatch struct {
	Name     *string
	ServerID *string // "" selects the built-in nucleus
	DNSName  *string // the network's DNS label; "" derives it from the name
	// KeyExpiry is the members' key lifetime (0: keys never expire; else
	// between MinKeyExpiry and MaxKeyExpiry; see ParseKeyExpiry).
	KeyExpiry *time.Duration
}

// UpdateNetwork renames a network, changes its server, DNS label or key
// lifetime. A new lifetime applies at once to every member's current key
// (its age counts from when the key was recorded): keys older than a
// shorter lifetime expire now, and the nuclei drop those members.
func (s *Service) UpdateNetwork(ctx context.Context, p Principal, id string, patch NetworkPatch) (Network, error) {
	n, err := s.network(ctx, p, id)
	if err != nil {
		return Network{}, err
	}
	if patch.Name != nil {
		if n.Name, err = cleanName("network", *patch.Name, 128); err != nil {
			return Network{}, err
		}
	}
	if patch.ServerID != nil {
		if *patch.ServerID != "" {
			if _, err := s.userServer(ctx, p, *patch.ServerID); err != nil {
				return Network{}, err
			}
		}
		n.ServerID = *patch.ServerID
	}
	if patch.DNSName != nil {
		l := strings.ToLower(strings.TrimSpace(*patch.DNSName))
		if l != "" {
			if err := validLabel("network", l); err != nil {
				return Network{}, err
			}
		}
		n.DNSName = l
	}
	lifetime := false
	if patch.KeyExpiry != nil {
		if err := checkKeyExpiry(*patch.KeyExpiry); err != nil {
			return Network{}, err
		}
		lifetime = n.KeyExpiry != *patch.KeyExpiry
		n.KeyExpiry = *patch.KeyExpiry
	}
	if err := s.store.UpdateNetwork(ctx, n); err != nil {
		return Network{}, err
	}
	s.invalidate() // heartbeats answer the lifetime
	if lifetime {
		s.networkChanged(n.ID)
	}
	if patch.Name != nil || patch.DNSName != nil {
		// Zones are unique per owner: a change can move another's label.
		if nets, err := s.store.ListNetworks(ctx, n.OwnerID); err == nil {
			ids := make([]string, len(nets))
			for i, o := range nets {
				ids[i] = o.ID
			}
			s.networkChanged(ids...)
		}
	}
	return n, nil
}

// DeleteNetwork deletes one of p's networks and all its memberships.
func (s *Service) DeleteNetwork(ctx context.Context, p Principal, id string) error {
	if _, err := s.network(ctx, p, id); err != nil {
		return err
	}
	if err := s.store.DeleteNetwork(ctx, id); err != nil {
		return err
	}
	s.invalidate()
	s.networkChanged(id)
	return nil
}

// Member is a membership with its device and addresses, and when the
// device's key expires in the network (zero: never) and whether it has:
// an expired member is not admitted by the nuclei.
type Member struct {
	Membership
	Device       DeviceStatus
	IP4          netip.Addr
	IP6          netip.Addr
	KeyExpiresAt time.Time
	KeyExpired   bool
}

// Members lists a network's members.
func (s *Service) Members(ctx context.Context, p Principal, networkID string) ([]Member, error) {
	n, err := s.network(ctx, p, networkID)
	if err != nil {
		return nil, err
	}
	ms, devs, err := s.store.MemberDevices(ctx, networkID)
	if err != nil {
		return nil, err
	}
	st, err := s.withPresence(ctx, devs)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := make([]Member, len(ms))
	for i, m := range ms {
		exp := KeyExpiresAt(st[i].KeySetAt, st[i].KeyExpiredAt, n.KeyExpiry)
		out[i] = Member{Membership: m, Device: st[i], IP4: ipam.Addr4(n.Range, m.Host), IP6: ipam.Addr6(n.Range6, m.Host),
			KeyExpiresAt: exp, KeyExpired: keyExpired(exp, now)}
	}
	return out, nil
}

// JoinResult is what a member needs to take part in a network.
type JoinResult struct {
	Network    Network // its SecretVersion is Secret's
	Membership Membership
	Secret     string
	IP4, IP6   netip.Addr
	Server     *UserServer // nil: the built-in nucleus
	Created    bool
}

// Join adds p's device to p's network, or returns its existing membership
// with the same addresses (and the network's current secret). A non-empty
// publicKey sets the device's WireGuard public key first (see
// RegisterDevice).
func (s *Service) Join(ctx context.Context, p Principal, networkID, deviceID, publicKey string) (JoinResult, error) {
	n, err := s.network(ctx, p, networkID)
	if err != nil {
		return JoinResult{}, err
	}
	d, err := s.device(ctx, p, deviceID)
	if err != nil {
		return JoinResult{}, err
	}
	if publicKey != "" {
		if publicKey, err = ParsePublicKey(publicKey); err != nil {
			return JoinResult{}, err
		}
		if publicKey != d.PublicKey {
			d.PublicKey = publicKey
			if _, _, err := s.setDevice(ctx, p, d); err != nil {
				return JoinResult{}, err
			}
		}
	}
	m, created, err := s.store.Join(ctx, networkID, deviceID, s.now(), func(used []uint32) (uint32, error) {
		return ipam.Allocate(n.Range, used)
	})
	if errors.Is(err, ipam.ErrExhausted) {
		return JoinResult{}, errorf(KindLimit, "virtual network %s (%s) has no free address left", n.ID, n.Range)
	}
	if err != nil {
		return JoinResult{}, err
	}
	if created {
		s.invalidate()
		s.networkChanged(networkID)
	}
	// Read the network again: a member that left meanwhile rotated the
	// secret.
	if n, err = s.store.NetworkByID(ctx, networkID); err != nil {
		return JoinResult{}, err
	}
	return s.joinResult(ctx, n, m, created)
}

// Membership returns the current join answer of p's device in p's
// network (addresses, the network's current secret and its version, the
// nucleus) without adding the device: a device that is not a member gets
// KindNotFound. A running device uses it to follow secret rotations, so
// that a removal by the owner sticks.
func (s *Service) Membership(ctx context.Context, p Principal, networkID, deviceID string) (JoinResult, error) {
	n, err := s.network(ctx, p, networkID)
	if err != nil {
		return JoinResult{}, err
	}
	if _, err := s.device(ctx, p, deviceID); err != nil {
		return JoinResult{}, err
	}
	m, err := s.store.Membership(ctx, networkID, deviceID)
	if errors.Is(err, ErrNotFound) {
		return JoinResult{}, errorf(KindNotFound, "device %s is not a member of virtual network %s", deviceID, networkID)
	}
	if err != nil {
		return JoinResult{}, err
	}
	return s.joinResult(ctx, n, m, false)
}

func (s *Service) joinResult(ctx context.Context, n Network, m Membership, created bool) (JoinResult, error) {
	secret, err := s.openSecret(n)
	if err != nil {
		return JoinResult{}, err
	}
	r := JoinResult{Network: n, Membership: m, Secret: string(secret), IP4: ipam.Addr4(n.Range, m.Host), IP6: ipam.Addr6(n.Range6, m.Host), Created: created}
	if n.ServerID != "" {
		srv, err := s.store.UserServer(ctx, n.ServerID)
		if err == nil {
			r.Server = &srv
		} else if !errors.Is(err, ErrNotFound) {
			return JoinResult{}, err
		}
	}
	return r, nil
}

// Leave removes p's device from p's network, freeing its addresses. The
// network's secret rotates in the same transaction, so a device that left
// (or was removed by the owner) and kept the secret can neither sign
// frames for the nucleus nor complete a WireGuard handshake with the
// members; they learn the new secret from the API.
func (s *Service) Leave(ctx context.Context, p Principal, networkID, deviceID string) error {
	if _, err := s.network(ctx, p, networkID); err != nil {
		return err
	}
	if _, err := s.device(ctx, p, deviceID); err != nil {
		return err
	}
	err := s.store.Leave(ctx, networkID, deviceID, s.newSecret(networkID))
	if errors.Is(err, ErrNotFound) {
		return errorf(KindNotFound, "device %s is not a member of virtual network %s", deviceID, networkID)
	}
	if err != nil {
		return err
	}
	s.invalidate()
	s.networkChanged(networkID)
	return nil
}

// MemberPatch changes a membership; nil fields stay.
type MemberPatch struct {
	IsExitNode *bool   // admin: allow this device to serve as exit node
	ExitNode   *string // the exit node this device uses; "" clears
}

// UpdateMember applies an exit-node change to a membership of p's network.
func (s *Service) UpdateMember(ctx context.Context, p Principal, networkID, deviceID string, patch MemberPatch) (Membership, error) {
	if patch.IsExitNode == nil && patch.ExitNode == nil {
		return Membership{}, errorf(KindInvalid, "nothing to change: give is_exit_node or exit_node")
	}
	if _, err := s.network(ctx, p, networkID); err != nil {
		return Membership{}, err
	}
	if _, err := s.device(ctx, p, deviceID); err != nil {
		return Membership{}, err
	}
	if _, err := s.store.Membership(ctx, networkID, deviceID); errors.Is(err, ErrNotFound) {
		return Membership{}, errorf(KindNotFound, "device %s is not a member of virtual network %s", deviceID, networkID)
	} else if err != nil {
		return Membership{}, err
	}
	if patch.IsExitNode != nil {
		if err := s.store.SetExitEnabled(ctx, networkID, deviceID, *patch.IsExitNode); err != nil {
			return Membership{}, err
		}
	}
	if patch.ExitNode != nil {
		exit := *patch.ExitNode
		if exit == deviceID {
			return Membership{}, errorf(KindInvalid, "a device cannot be its own exit node")
		}
		err := s.store.SelectExitNode(ctx, networkID, deviceID, exit)
		if errors.Is(err, ErrNotFound) {
			return Membership{}, errorf(KindInvalid, "exit_node %s is not a member of virtual network %s", exit, networkID)
		}
		if err != nil {
			return Membership{}, err
		}
	}
	s.invalidate()
	return s.store.Membership(ctx, networkID, deviceID)
}
