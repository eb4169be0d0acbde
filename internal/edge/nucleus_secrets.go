package edge

import (
	"context"
	"errors"
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
