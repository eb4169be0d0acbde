package control

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
)

// DeviceStatus is a device with its live presence.
type DeviceStatus struct {
	Device
	Online bool
}

// maxHardwareUUID bounds hardware ids (UUIDs, machine ids, MAC-derived ids).
const maxHardwareUUID = 128

func cleanHardware(hw string) (string, error) {
	hw = strings.TrimSpace(hw)
	if hw == "" {
		return "", errorf(KindInvalid, "hardware_uuid is required")
	}
	if len(hw) > maxHardwareUUID {
		return "", errorf(KindInvalid, "hardware_uuid is longer than %d bytes", maxHardwareUUID)
	}
	for i := 0; i < len(hw); i++ {
		if hw[i] < 0x21 || hw[i] > 0x7e {
			return "", errorf(KindInvalid, "hardware_uuid must be printable ASCII without spaces")
		}
	}
	return hw, nil
}

// RegisterDevice registers a device of p, or returns the one it already
// registered with the same hardware UUID (also when at the plan limit). A
// non-empty publicKey, the device's WireGuard public key, is stored
// (unique among p's devices); the nucleus admits a member only under the
// key bound to its address, and a changed key reloads the device's
// networks there.
func (s *Service) RegisterDevice(ctx context.Context, p Principal, name, hardwareUUID, platform, publicKey string) (Device, bool, error) {
	hw, err := cleanHardware(hardwareUUID)
	if err != nil {
		return Device{}, false, err
	}
	if name == "" {
		name = hw
	}
	if name, err = cleanName("device", name, 128); err != nil {
		return Device{}, false, err
	}
	platform = strings.ToLower(strings.TrimSpace(platform))
	if len(platform) > 32 {
		return Device{}, false, errorf(KindInvalid, "platform is longer than 32 bytes")
	}
	if publicKey != "" {
		if publicKey, err = ParsePublicKey(publicKey); err != nil {
			return Device{}, false, err
		}
	}
	u, err := s.User(ctx, p.UserID)
	if err != nil {
		return Device{}, false, err
	}
	d := Device{ID: newID("dev_"), UserID: p.UserID, HardwareUUID: hw, Name: name, Platform: platform, CreatedAt: s.now(), PublicKey: publicKey}
	out, created, err := s.setDevice(ctx, p, d)
	if errors.Is(err, ErrLimit) {
		return Device{}, false, errorf(KindLimit, "device limit of the %s plan reached (%d devices)", u.Plan, s.planLimit(u.Plan).MaxDevices)
	}
	if err == nil && p.Family != "" {
		err = s.store.AddDeviceSession(ctx, out.ID, p.Family)
	}
	return out, created, err
}

// setDevice stores d (new, or the device with its hardware UUID) and
// tells the nuclei of its networks when its public key changed. A new key
// is recorded now (its lifetime counts from now); replacing a key its
// owner expired needs a login made since (replaceExpiredKey).
func (s *Service) setDevice(ctx context.Context, p Principal, d Device) (Device, bool, error) {
	var prev Device
	if d.PublicKey != "" {
		devs, err := s.store.ListDevices(ctx, p.UserID)
		if err != nil {
			return Device{}, false, err
		}
		for _, o := range devs {
			if o.HardwareUUID == d.HardwareUUID {
				prev = o
			} else if o.PublicKey == d.PublicKey {
				return Device{}, false, errorf(KindConflict, "public_key is already the key of your device %s", o.ID)
			}
		}
		if prev.ID != "" && prev.PublicKey != d.PublicKey && !prev.KeyExpiredAt.IsZero() {
			if err := s.replaceExpiredKey(ctx, p, prev.ID, prev.KeyExpiredAt); err != nil {
				return Device{}, false, err
			}
		}
		d.KeySetAt = s.now()
	}
	u, err := s.User(ctx, p.UserID)
	if err != nil {
		return Device{}, false, err
	}
	out, created, err := s.store.RegisterDevice(ctx, d, s.planLimit(u.Plan).MaxDevices)
	if errors.Is(err, ErrConflict) {
		return Device{}, false, errorf(KindConflict, "device %s: public_key or hardware_uuid changed concurrently; try again", d.HardwareUUID)
	}
	if err != nil {
		return Device{}, false, err
	}
	if !created && d.PublicKey != "" && prev.PublicKey != d.PublicKey {
		s.invalidate()
		if ms, err := s.store.DeviceMemberships(ctx, out.ID); err == nil {
			ids := make([]string, len(ms))
			for i, m := range ms {
				ids[i] = m.NetworkID
			}
			s.networkChanged(ids...)
		}
	}
	return out, created, nil
}

// device returns a device owned by p: KindNotFound or KindForbidden.
func (s *Service) device(ctx context.Context, p Principal, id string) (Device, error) {
	d, err := s.store.DeviceByID(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Device{}, errorf(KindNotFound, "device %s not found", id)
	}
	if err != nil {
		return Device{}, err
	}
	if d.UserID != p.UserID {
		return Device{}, errorf(KindForbidden, "device %s belongs to another user", id)
	}
	return d, nil
}

// withPresence merges live presence into stored devices.
func (s *Service) withPresence(ctx context.Context, devs []Device) ([]DeviceStatus, error) {
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.ID
	}
	seen, err := s.presence.Lookup(ctx, ids)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	out := make([]DeviceStatus, len(devs))
	for i, d := range devs {
		if p, ok := seen[d.ID]; ok && p.At.After(d.LastSeen) {
			d.LastSeen, d.ExitConsent = p.At, p.ExitConsent
		}
		out[i] = DeviceStatus{Device: d, Online: !d.LastSeen.IsZero() && now.Sub(d.LastSeen) < s.opts.OnlineWindow}
	}
	return out, nil
}

// ListDevices returns p's devices with presence; with p zero (admin), all.
func (s *Service) ListDevices(ctx context.Context, p Principal) ([]DeviceStatus, error) {
	devs, err := s.store.ListDevices(ctx, p.UserID)
	if err != nil {
		return nil, err
	}
	return s.withPresence(ctx, devs)
}

// DeviceNetwork is a membership of a device with its network's name and
// the device's addresses there.
type DeviceNetwork struct {
	Membership
	NetworkName string
	IP4, IP6    netip.Addr
}

// DeviceNetworks returns the memberships of p's devices (with p zero,
// every device's) keyed by device id, each device's in join order: two
// queries, however many networks and devices. Only p's own networks are
// listed (a device can join no other).
func (s *Service) DeviceNetworks(ctx context.Context, p Principal) (map[string][]DeviceNetwork, error) {
	nets, err := s.store.ListNetworks(ctx, p.UserID)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]Network, len(nets))
	for _, n := range nets {
		byID[n.ID] = n
	}
	ms, err := s.store.UserMemberships(ctx, p.UserID)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]DeviceNetwork)
	for _, m := range ms {
		n, ok := byID[m.NetworkID]
		if !ok {
			continue
		}
		out[m.DeviceID] = append(out[m.DeviceID], DeviceNetwork{Membership: m, NetworkName: n.Name,
			IP4: ipam.Addr4(n.Range, m.Host), IP6: ipam.Addr6(n.Range6, m.Host)})
	}
	return out, nil
}

// GetDevice returns one device of p with presence and memberships.
func (s *Service) GetDevice(ctx context.Context, p Principal, id string) (DeviceStatus, []Membership, error) {
	d, err := s.device(ctx, p, id)
	if err != nil {
		return DeviceStatus{}, nil, err
	}
	st, err := s.withPresence(ctx, []Device{d})
	if err != nil {
		return DeviceStatus{}, nil, err
	}
	ms, err := s.store.DeviceMemberships(ctx, id)
	return st[0], ms, err
}

// RenameDevice renames one of p's devices.
func (s *Service) RenameDevice(ctx context.Context, p Principal, id, name string) (Device, error) {
	d, err := s.device(ctx, p, id)
	if err != nil {
		return Device{}, err
	}
	if d.Name, err = cleanName("device", name, 128); err != nil {
		return Device{}, err
	}
	if err := s.store.RenameDevice(ctx, id, d.Name, d.DNSName); err != nil {
		return Device{}, err
	}
	// A derived DNS label follows the name: the networks' names change.
	if ms, err := s.store.DeviceMemberships(ctx, id); err == nil {
		ids := make([]string, len(ms))
		for i, m := range ms {
			ids[i] = m.NetworkID
		}
		s.networkChanged(ids...)
	}
	return d, nil
}

// DeleteDevice removes one of p's devices, its memberships and the exit
// selections that pointed at it, and revokes the login sessions the device
// used (a former holder's tokens stop working at once).
func (s *Service) DeleteDevice(ctx context.Context, p Principal, id string) error {
	if _, err := s.device(ctx, p, id); err != nil {
		return err
	}
	fams, err := s.store.DeviceSessions(ctx, id)
	if err != nil {
		return err
	}
	for _, f := range fams {
		if err := s.revokeFamily(ctx, f); err != nil {
			return err
		}
	}
	// Each network it leaves gets a new secret in the same transaction.
	var rotated []string
	if err := s.store.DeleteDevice(ctx, id, func(networkID string) string {
		rotated = append(rotated, networkID)
		return s.newSecret(networkID)
	}); err != nil {
		return err
	}
	s.invalidate()
	s.networkChanged(rotated...)
	return nil
}

// ExitNode is one entry of a heartbeat's exit_nodes.
type ExitNode struct {
	NetworkID string
	IP        netip.Addr
}

// HeartbeatResult is the answer to a heartbeat.
type HeartbeatResult struct {
	DeviceID  string
	LastSeen  time.Time
	ExitNodes []ExitNode
	// SecretVersions are the secret versions of the device's networks: a
	// device holding an older one fetches the secret again (join).
	SecretVersions []SecretVersion
	// KeySetAt is when the device's current key was recorded; KeyExpiries
	// lists, for each of its networks where that key expires, when (a
	// device renews its key before). KeyExpiredAt is when the owner
	// expired the key by hand (zero: not).
	KeySetAt     time.Time
	KeyExpiredAt time.Time
	KeyExpiries  []KeyExpiry
}

// KeyExpiry is when a device's key expires in one network.
type KeyExpiry struct {
	NetworkID string
	At        time.Time
}

// Heartbeat records that p's device with hardwareID is alive (and whether
// it consents to act as an exit node) and returns, per network, the
// virtual IP of the exit node it should route through: the selected exit
// device must consent in its own heartbeats, be enabled by the network
// admin, and be online. The hot path reads only memory.
func (s *Service) Heartbeat(ctx context.Context, p Principal, hardwareID string, exitConsent bool) (HeartbeatResult, error) {
	if hardwareID == "" {
		return HeartbeatResult{}, errorf(KindInvalid, "hardware_id is required")
	}
	e, err := s.deviceEntry(ctx, p.UserID, hardwareID, p.Family)
	if err != nil {
		return HeartbeatResult{}, err
	}
	if p.Family != "" && !e.knows(p.Family) {
		// Once per session and cache entry: deleting the device revokes
		// the sessions that acted for it.
		if err := s.store.AddDeviceSession(ctx, e.deviceID, p.Family); err != nil {
			return HeartbeatResult{}, err
		}
		e.remember(p.Family)
	}
	now := s.clock.Now().UTC().Truncate(time.Second)
	pres := Presence{DeviceID: e.deviceID, At: now, ExitConsent: exitConsent}
	if err := s.presence.Touch(ctx, pres); err != nil {
		return HeartbeatResult{}, err
	}
	s.dirty.add(pres)
	res := HeartbeatResult{DeviceID: e.deviceID, LastSeen: now, SecretVersions: e.versions,
		KeySetAt: e.keySetAt, KeyExpiredAt: e.keyExpiredAt, KeyExpiries: e.expiries}
	if len(e.routes) == 0 {
		return res, nil
	}
	ids := make([]string, 0, len(e.routes))
	for _, r := range e.routes {
		if r.ExitEnabled {
			ids = append(ids, r.ExitDeviceID)
		}
	}
	if len(ids) == 0 {
		return res, nil
	}
	seen, err := s.presence.Lookup(ctx, ids)
	if err != nil {
		return HeartbeatResult{}, err
	}
	for _, r := range e.routes {
		x, ok := seen[r.ExitDeviceID]
		if !r.ExitEnabled || !ok || !x.ExitConsent || now.Sub(x.At) >= s.opts.OnlineWindow {
			continue
		}
		res.ExitNodes = append(res.ExitNodes, ExitNode{NetworkID: r.NetworkID, IP: ipam.Addr4(r.Range, r.ExitHost)})
	}
	return res, nil
}

func (s *Service) deviceEntry(ctx context.Context, userID, hw, family string) (*devEntry, error) {
	key := userID + "\x00" + hw
	epoch := s.epoch.Load()
	if e, ok := s.cache.get(key, epoch); ok {
		return e, nil
	}
	// Two queries: the device, with whether this login session is
	// recorded for it (so a heartbeat after registration or a restart
	// writes nothing), and its memberships.
	d, recorded, err := s.store.DeviceBySession(ctx, userID, hw, family)
	if errors.Is(err, ErrNotFound) {
		return nil, errorf(KindNotFound, "no device with hardware id %q is registered; register it with POST /api/v2/devices", hw)
	}
	if err != nil {
		return nil, err
	}
	routes, versions, err := s.store.Memberships(ctx, d.ID)
	if err != nil {
		return nil, err
	}
	e := &devEntry{deviceID: d.ID, routes: routes, versions: versions, keySetAt: d.KeySetAt, keyExpiredAt: d.KeyExpiredAt}
	for _, v := range versions {
		if at := KeyExpiresAt(d.KeySetAt, d.KeyExpiredAt, v.KeyExpiry); !at.IsZero() {
			e.expiries = append(e.expiries, KeyExpiry{NetworkID: v.NetworkID, At: at})
		}
	}
	if recorded && family != "" {
		e.remember(family)
	}
	s.cache.put(key, e, epoch)
	return e, nil
}
