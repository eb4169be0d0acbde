package control

import (
	"context"
	"net/netip"
	"time"
)

// Store is the persistence the Service needs. Implementations return
// ErrNotFound, ErrConflict, ErrLimit, ErrExhausted and ErrOverlap (wrapped
// or not) for those conditions. Every method that changes what a
// heartbeat answers (memberships, exit flags and selections, device keys
// and their expiry, network settings, device and network deletion) also
// advances the epoch.
type Store interface {
	CreateUser(ctx context.Context, u User) error
	UserByID(ctx context.Context, id string) (User, error)
	UserByEmail(ctx context.Context, email string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	SetUserPlan(ctx context.Context, id, plan string) error

	CreateSecurityKey(ctx context.Context, k SecurityKey) error
	SecurityKeyByHash(ctx context.Context, hash string) (SecurityKey, error)
	SecurityKeyByID(ctx context.Context, id string) (SecurityKey, error)
	ListSecurityKeys(ctx context.Context, userID string) ([]SecurityKey, error)
	RevokeSecurityKey(ctx context.Context, userID, id string, at time.Time) error
	TouchSecurityKey(ctx context.Context, id string, at time.Time) error

	CreateRefreshToken(ctx context.Context, t RefreshToken) error
	// UseRefreshToken marks the unused, unrevoked, unexpired token with
	// this hash as used and returns it. A token that exists but was used
	// or revoked is returned with ErrConflict (reuse); an unknown or
	// expired one with ErrNotFound.
	UseRefreshToken(ctx context.Context, hash string, at time.Time) (RefreshToken, error)
	// RevokeRefreshFamily revokes a family's tokens and its login session.
	RevokeRefreshFamily(ctx context.Context, familyID string, at time.Time) error
	// RevokedSessions returns the login sessions revoked after since, with
	// the time of their revocation.
	RevokedSessions(ctx context.Context, since time.Time) ([]RevokedSession, error)

	CreateLoginSession(ctx context.Context, ls LoginSession) error
	LoginSession(ctx context.Context, id string) (LoginSession, error)
	// TouchLoginSession records a refresh: last use and the new expiry.
	TouchLoginSession(ctx context.Context, id string, at, expires time.Time) error
	// ListLoginSessions returns a user's unrevoked, unexpired sessions.
	ListLoginSessions(ctx context.Context, userID string, now time.Time) ([]LoginSession, error)
	// KeySessions returns the ids of the unexpired login sessions a
	// security key started.
	KeySessions(ctx context.Context, keyID string, now time.Time) ([]string, error)
	// AddDeviceSession records that a login session acted for a device
	// (idempotent); DeviceSessions returns them.
	AddDeviceSession(ctx context.Context, deviceID, sessionID string) error
	DeviceSessions(ctx context.Context, deviceID string) ([]string, error)

	// RegisterDevice returns the user's device with d.HardwareUUID,
	// updating its name, platform and (when given) public key, or creates
	// d if the user has fewer than maxDevices devices (0: no limit), else
	// ErrLimit. A public key another device of the user has is ErrConflict.
	// A key that is new for the device is recorded at d.KeySetAt, and the
	// owner's expiry of the previous key (KeyExpiredAt) is cleared; the
	// same key again keeps both.
	RegisterDevice(ctx context.Context, d Device, maxDevices int) (Device, bool, error)
	DeviceByID(ctx context.Context, id string) (Device, error)
	DeviceByHardware(ctx context.Context, userID, hardwareUUID string) (Device, error)
	ListDevices(ctx context.Context, userID string) ([]Device, error) // userID "" lists all
	RenameDevice(ctx context.Context, id, name, dnsName string) error
	SetDeviceTags(ctx context.Context, id string, tags []string) error
	// DeleteDevice removes a device with its memberships; in the same
	// transaction each network it left gets the secret rotate returns
	// (sealed) and its secret version bumped.
	DeleteDevice(ctx context.Context, id string, rotate func(networkID string) (sealed string)) error
	// ExpireDeviceKey records that the owner expired the device's current
	// key at the given time (ErrNotFound: no such device; a device
	// without a key is left alone).
	ExpireDeviceKey(ctx context.Context, id string, at time.Time) error
	// KeyExpiries returns the networks where a member's key reaches the
	// end of the network's lifetime in (after, until], and the earliest
	// such end after until (zero: none). Keys the owner expired by hand
	// are not counted.
	KeyExpiries(ctx context.Context, after, until time.Time) (due []string, next time.Time, err error)
	FlushPresence(ctx context.Context, seen []Presence) error

	// CreateNetwork inserts n when its owner has fewer than maxNetworks
	// networks (0: no limit). When n.Range is invalid, pick chooses the
	// range given the ranges of the owner's networks; a chosen or given
	// range that overlaps one of the owner's fails with ErrOverlap. Other
	// owners' ranges play no part.
	CreateNetwork(ctx context.Context, n Network, maxNetworks int, pick func(used []netip.Prefix) (netip.Prefix, error)) (Network, error)
	NetworkByID(ctx context.Context, id string) (Network, error)
	ListNetworks(ctx context.Context, ownerID string) ([]Network, error) // ownerID "" lists all
	UpdateNetwork(ctx context.Context, n Network) error                  // name, server, DNS label and key lifetime
	DeleteNetwork(ctx context.Context, id string) error

	// Join returns the existing membership or allocates a host with alloc
	// (given the hosts in use) and inserts it. created reports which.
	Join(ctx context.Context, networkID, deviceID string, at time.Time, alloc func(used []uint32) (uint32, error)) (m Membership, created bool, err error)
	// Leave removes a membership and, in the same transaction, replaces
	// the network's secret with sealed (bumping its secret version).
	Leave(ctx context.Context, networkID, deviceID, sealed string) error
	Membership(ctx context.Context, networkID, deviceID string) (Membership, error)
	Members(ctx context.Context, networkID string) ([]Membership, error)
	// MemberDevices is Members with each member's device, in one query.
	MemberDevices(ctx context.Context, networkID string) ([]Membership, []Device, error)
	DeviceMemberships(ctx context.Context, deviceID string) ([]Membership, error)
	// UserMemberships returns the memberships in a user's networks (""
	// lists all; a device joins only its owner's networks, so they are
	// those of the user's devices) in one query, ordered by device, join
	// time and network.
	UserMemberships(ctx context.Context, userID string) ([]Membership, error)
	SetExitEnabled(ctx context.Context, networkID, deviceID string, enabled bool) error
	SelectExitNode(ctx context.Context, networkID, deviceID, exitDeviceID string) error
	ExitRoutes(ctx context.Context, deviceID string) ([]ExitRoute, error)
	// Subnet routes (routes.go): comma-separated canonical prefixes.
	SetAdvertisedRoutes(ctx context.Context, deviceID, routes string) error
	SetApprovedRoutes(ctx context.Context, networkID, deviceID, routes string) error
	AdvertisedRoutes(ctx context.Context, deviceID string) (string, error)
	NetworkRoutes(ctx context.Context, networkID string) (map[string]StoredRoutes, error)
	// Access policies (policy.go).
	Policy(ctx context.Context, networkID string) (StoredPolicy, error)
	SetPolicy(ctx context.Context, networkID, document string, ifVersion int64, at time.Time) (int64, error)
	// MemberKeys lists a network's members with their device keys.
	MemberKeys(ctx context.Context, networkID string) ([]MemberKey, error)
	// SecretVersions lists the secret versions of a device's networks.
	SecretVersions(ctx context.Context, deviceID string) ([]SecretVersion, error)
	// Memberships returns ExitRoutes and SecretVersions in one query;
	// DeviceBySession is DeviceByHardware that also reports whether the
	// login session was recorded for the device. A heartbeat's cache
	// miss costs these two queries.
	Memberships(ctx context.Context, deviceID string) ([]ExitRoute, []SecretVersion, error)
	DeviceBySession(ctx context.Context, userID, hardwareUUID, sessionID string) (Device, bool, error)

	CreateUserServer(ctx context.Context, s UserServer) error
	UserServer(ctx context.Context, id string) (UserServer, error)
	ListUserServers(ctx context.Context, userID string) ([]UserServer, error)
	UpdateUserServer(ctx context.Context, s UserServer) error
	DeleteUserServer(ctx context.Context, id string) error

	Epoch(ctx context.Context) (int64, error)
}

// RevokedSession is a login session and when it was revoked.
type RevokedSession struct {
	ID        string
	RevokedAt time.Time
}

// Presence is one device's last heartbeat.
type Presence struct {
	DeviceID    string
	At          time.Time
	ExitConsent bool
}
