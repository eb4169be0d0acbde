package control

import (
	"context"
	"slices"
	"strings"

	"github.com/omniedge/omni/internal/edge/proto/policy"
)

// MaxDeviceTags bounds how many tags a device carries.
const MaxDeviceTags = 16

// ParseTags checks and normalises a device's tags: each is "tag:" and a
// name of 1–64 of A–Z a–z 0–9 _ - (the policy grammar's; "server" is
// taken as "tag:server"), at most MaxDeviceTags, answered sorted and
// without repeats.
func ParseTags(tags []string) ([]string, error) {
	if len(tags) > MaxDeviceTags {
		return nil, errorf(KindInvalid, "%d tags: a device carries at most %d", len(tags), MaxDeviceTags)
	}
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		name := strings.TrimPrefix(strings.TrimSpace(t), "tag:")
		if !policy.ValidName(name) {
			return nil, errorf(KindInvalid, "tag %q: want tag:<name>, the name 1–64 letters, digits, _ or -", t)
		}
		out = append(out, "tag:"+name)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// SetDeviceTags replaces the tags of one of p's devices (nil or empty:
// none). Every network the device is in sees the change in its map, so
// policies naming the tags apply to the device within a map poll.
func (s *Service) SetDeviceTags(ctx context.Context, p Principal, id string, tags []string) (Device, error) {
	d, err := s.device(ctx, p, id)
	if err != nil {
		return Device{}, err
	}
	tags, err = ParseTags(tags)
	if err != nil {
		return Device{}, err
	}
	if slices.Equal(tags, d.Tags) || len(tags) == 0 && len(d.Tags) == 0 {
		return d, nil
	}
	if err := s.store.SetDeviceTags(ctx, id, tags); err != nil {
		return Device{}, err
	}
	d.Tags = tags
	if _, err := s.deviceChanged(ctx, id); err != nil {
		return Device{}, err
	}
	return d, nil
}

// deviceChanged announces (networkChanged) every network device id is a
// member of, and returns how many there are.
func (s *Service) deviceChanged(ctx context.Context, id string) (int, error) {
	ms, err := s.store.DeviceMemberships(ctx, id)
	if err != nil {
		return 0, err
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.NetworkID
	}
	s.networkChanged(ids...)
	return len(ids), nil
}
