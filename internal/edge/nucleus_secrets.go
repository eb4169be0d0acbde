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
