package control

import (
	"context"
	"encoding/base64"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/platform/auth"
)

// NetworkEvents carries "this network changed" — its secret, its members,
// their device keys or their names — from the Service to the nucleus of every replica,
// which reloads the network at once (evicting devices that left, telling
// the others about a new secret). Implementations deliver to this
// process's subscribers too.
type NetworkEvents interface {
	Publish(ctx context.Context, networkID string) error
}

// networkChanged tells the nuclei about changed networks, after the
// change is stored. A failure is logged: the nuclei still reload within
// their directory TTL.
func (s *Service) networkChanged(ids ...string) {
	for _, id := range ids {
		s.NetworkNotice(id)
	}
	if s.events == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, id := range ids {
		if err := s.events.Publish(ctx, id); err != nil {
			s.log.Warn("announcing a network change failed", "network", id, "err", err)
		}
	}
}

// NucleusNetwork is what a nucleus needs of one network: the secret its
// signaling key derives from, the secret's version, and every member's
// addresses with its device key, but for the members whose key expired
// (Network.KeyExpiry, ExpireDeviceKey): those are bound to no key.
type NucleusNetwork struct {
	Secret        []byte
	SecretVersion int64
	Members       []BoundMember
}

// BoundMember is a member's addresses and its device's public key.
type BoundMember struct {
	DeviceID  string
	IP4, IP6  netip.Addr
	PublicKey string // standard base64; "" when the device registered none
}

// NucleusNetwork answers the nucleus's question about a network
// (KindNotFound when there is none).
func (s *Service) NucleusNetwork(ctx context.Context, networkID string) (NucleusNetwork, error) {
	n, err := s.store.NetworkByID(ctx, networkID)
	if errors.Is(err, ErrNotFound) {
		return NucleusNetwork{}, errorf(KindNotFound, "virtual network %s not found", networkID)
	}
	if err != nil {
		return NucleusNetwork{}, err
	}
	secret, err := s.openSecret(n)
	if err != nil {
		return NucleusNetwork{}, err
	}
	ms, err := s.boundMembers(ctx, n)
	if err != nil {
		return NucleusNetwork{}, err
	}
	return NucleusNetwork{Secret: secret, SecretVersion: n.SecretVersion, Members: ms}, nil
}

func (s *Service) boundMembers(ctx context.Context, n Network) ([]BoundMember, error) {
	ks, err := s.store.MemberKeys(ctx, n.ID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := make([]BoundMember, 0, len(ks))
	for _, k := range ks {
		if keyExpired(KeyExpiresAt(k.KeySetAt, k.KeyExpiredAt, n.KeyExpiry), now) {
			continue // not bound: the nucleus refuses (and evicts) it
		}
		out = append(out, BoundMember{DeviceID: k.DeviceID, IP4: ipam.Addr4(n.Range, k.Host), IP6: ipam.Addr6(n.Range6, k.Host), PublicKey: k.PublicKey})
	}
	return out, nil
}

// openSecret decrypts a network's mesh secret.
func (s *Service) openSecret(n Network) ([]byte, error) {
	secret, err := s.sealer.Open(n.SecretSealed, []byte(n.ID))
	if err != nil {
		return nil, errors.New("edge: network secret cannot be decrypted: wrong master key?")
	}
	return secret, nil
}

// newSecret returns a fresh mesh secret for a network, sealed.
func (s *Service) newSecret(networkID string) string {
	secret := base64.RawURLEncoding.EncodeToString(auth.RandomBytes(secretBytes))
	return s.sealer.Seal([]byte(secret), []byte(networkID))
}

// ParsePublicKey checks a device's WireGuard public key: standard base64
// of 32 bytes (44 characters), not all zero. It returns the key as given.
func ParsePublicKey(key string) (string, error) {
	key = strings.TrimSpace(key)
	b, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(key) != 44 || len(b) != 32 {
		return "", errorf(KindInvalid, "public_key must be a WireGuard public key: 32 bytes in standard base64 (44 characters)")
	}
	if [32]byte(b) == ([32]byte{}) {
		return "", errorf(KindInvalid, "public_key must not be all zero")
	}
	return key, nil
}

// ServedNetwork is what a user-hosted nucleus needs of one network it
// serves: the secret its signaling key derives from, its version, and the
// current members with their device keys (but for those whose key
// expired, as in NucleusNetwork).
type ServedNetwork struct {
	ID, Name      string
	Secret        string
	SecretVersion int64
	Members       []BoundMember
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
		ms, err := s.boundMembers(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, ServedNetwork{ID: n.ID, Name: n.Name, Secret: string(secret), SecretVersion: n.SecretVersion, Members: ms})
	}
	return out, nil
}
