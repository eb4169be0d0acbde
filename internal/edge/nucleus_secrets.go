package edge

import (
	"context"
	"errors"
	"net/netip"

	"github.com/omniedge/omni/internal/edge/ipam"
)

// NetworkSecret returns a network's mesh secret (the secret_key a join
// returns) for the nucleus, which derives its signaling key from it.
func (s *Service) NetworkSecret(ctx context.Context, networkID string) ([]byte, error) {
	n, err := s.store.NetworkByID(ctx, networkID)
	if errors.Is(err, ErrNotFound) {
		return nil, errorf(KindNotFound, "virtual network %s not found", networkID)
	}
	if err != nil {
		return nil, err
	}
	return s.openSecret(n)
}

// openSecret decrypts a network's mesh secret.
func (s *Service) openSecret(n Network) ([]byte, error) {
	secret, err := s.sealer.Open(n.SecretSealed, []byte(n.ID))
	if err != nil {
		return nil, errors.New("edge: network secret cannot be decrypted: wrong master key?")
	}
	return secret, nil
}

// IsMember reports whether ip4 is the virtual address of a current member
// of a network, for the nucleus to refuse devices that left.
func (s *Service) IsMember(ctx context.Context, networkID string, ip4 netip.Addr) (bool, error) {
	n, err := s.store.NetworkByID(ctx, networkID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	ms, err := s.store.Members(ctx, networkID)
	if err != nil {
		return false, err
	}
	for _, m := range ms {
		if ipam.Addr4(n.Range, m.Host) == ip4 {
			return true, nil
		}
	}
	return false, nil
}

// OnMemberLeft registers f, called with a network and the virtual IPv4 of
// a device that left it or was deleted, after the change is stored (the
// built-in nucleus evicts the device at once).
func (s *Service) OnMemberLeft(f func(networkID string, ip4 netip.Addr)) { s.memberLeft.Store(&f) }

// leftAddrs returns the virtual IPv4 addresses of memberships, for
// OnMemberLeft once they are removed.
func (s *Service) leftAddrs(ctx context.Context, ms []Membership) map[string]netip.Addr {
	out := map[string]netip.Addr{}
	if s.memberLeft.Load() == nil {
		return out
	}
	for _, m := range ms {
		n, err := s.store.NetworkByID(ctx, m.NetworkID)
		if err != nil {
			continue
		}
		out[m.NetworkID] = ipam.Addr4(n.Range, m.Host)
	}
	return out
}

func (s *Service) notifyLeft(addrs map[string]netip.Addr) {
	f := s.memberLeft.Load()
	if f == nil {
		return
	}
	for id, ip := range addrs {
		(*f)(id, ip)
	}
}

// ServedNetwork is what a user-hosted nucleus needs of one network it
// serves: the secret its signaling key derives from and the virtual
// addresses of the current members.
type ServedNetwork struct {
	ID, Name string
	Secret   string
	Members  []ServedMember
}

// ServedMember is one member of a ServedNetwork.
type ServedMember struct {
	DeviceID string
	IP4, IP6 netip.Addr
}

// ServedNetworks lists p's networks that use p's user server serverID as
// their nucleus, with secrets and members. Only the owner of the server
// (who is also the owner of every network that may point to it) sees
// them; the secrets are the same ones a join hands to each device.
func (s *Service) ServedNetworks(ctx context.Context, p Principal, serverID string) ([]ServedNetwork, error) {
	if _, err := s.userServer(ctx, p, serverID); err != nil {
		return nil, err
	}
	ns, err := s.store.ListNetworks(ctx, p.UserID)
	if err != nil {
		return nil, err
	}
	out := []ServedNetwork{}
	for _, n := range ns {
		if n.ServerID != serverID {
			continue
		}
		secret, err := s.openSecret(n)
		if err != nil {
			return nil, err
		}
		ms, err := s.store.Members(ctx, n.ID)
		if err != nil {
			return nil, err
		}
		sn := ServedNetwork{ID: n.ID, Name: n.Name, Secret: string(secret), Members: make([]ServedMember, len(ms))}
		for i, m := range ms {
			sn.Members[i] = ServedMember{DeviceID: m.DeviceID, IP4: ipam.Addr4(n.Range, m.Host), IP6: ipam.Addr6(n.Range6, m.Host)}
		}
		out = append(out, sn)
	}
	return out, nil
}
