// Package control owns the OmniEdge control-plane domain: users and their
// plans, security keys and token rotation, devices and their presence,
// virtual networks with address management, memberships and exit-node
// selection, custom user servers, and browser login sessions. Service is
// the single coordinator every transport calls; the persistence, presence
// and session interfaces it needs are declared here and implemented in
// the packages beside it (store, presence, session, netevents). This
// package imports no transport, nothing of the device side and nothing of
// the gateway; of internal/edge, only the shared protocols (proto/...).
package control

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// User is an account that owns devices, networks, keys and servers.
type User struct {
	ID           string
	Email        string
	PasswordHash string
	Plan         string
	CreatedAt    time.Time
}

// SecurityKey is a long-lived credential for headless login. Only its hash
// is stored.
type SecurityKey struct {
	ID         string
	UserID     string
	Name       string
	Hash       string
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
	RevokedAt  time.Time // zero: active
	LastUsedAt time.Time
}

// RefreshToken is one single-use link in a refresh-token family. Only its
// hash is stored.
type RefreshToken struct {
	ID        string
	FamilyID  string
	UserID    string
	KeyID     string // security key the family came from, "" for browser logins
	Hash      string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time
	RevokedAt time.Time
}

// Device is a registered machine, unique per user by hardware UUID.
type Device struct {
	ID           string
	UserID       string
	HardwareUUID string
	Name         string
	Platform     string
	CreatedAt    time.Time
	LastSeen     time.Time // as last flushed to the store
	ExitConsent  bool      // as last flushed to the store
	// PublicKey is the device's WireGuard public key (standard base64),
	// "" until the device sent one. Unique per user.
	PublicKey string
	// DNSName is the DNS label the user chose for the device; "" derives
	// it from Name (see DNSLabel).
	DNSName string
	// KeySetAt is when the control plane recorded PublicKey (zero without
	// a key): a key's age, and so its expiry in each network, counts from
	// it (see KeyExpiresAt).
	KeySetAt time.Time
	// KeyExpiredAt is when the owner expired PublicKey by hand (zero: not
	// expired by hand). A new key clears it.
	KeyExpiredAt time.Time
	// Tags are the device's tags ("tag:server"), sorted: what access
	// policies name it by besides its id and label (see ParseTags).
	Tags []string
}

// Network is a virtual network with its IPv4 range and mirrored IPv6 ULA
// range.
type Network struct {
	ID           string
	OwnerID      string
	Name         string
	Range        netip.Prefix
	Range6       netip.Prefix
	SecretSealed string
	// SecretVersion counts the secret's rotations (1 for the first
	// secret); every removal of a member rotates it.
	SecretVersion int64
	ServerID      string // "" for the built-in nucleus
	CreatedAt     time.Time
	DNSName       string // the DNS label the user chose; "" derives it from Name
	// KeyExpiry is how long a member's device key is valid here, counted
	// from when it was recorded (Device.KeySetAt); 0: keys never expire.
	KeyExpiry time.Duration
}

// Membership is a device's place in a network.
type Membership struct {
	NetworkID  string
	DeviceID   string
	Host       uint32 // host offset inside the network's range
	IsExitNode bool   // enabled by the network admin
	ExitNodeID string // device this member routes internet traffic through
	JoinedAt   time.Time
}

// UserServer is a user-hosted nucleus/relay.
type UserServer struct {
	ID        string
	UserID    string
	Name      string
	Host      string
	Country   string
	PublicKey string // the nucleus's static X25519 key (base64); "" until published
	CreatedAt time.Time
	UpdatedAt time.Time
}

// MemberKey is a member's virtual address (host offset) and device key,
// with when the key was recorded and when its owner expired it (zero: not).
type MemberKey struct {
	DeviceID     string
	Host         uint32
	PublicKey    string // "" when the device registered none
	KeySetAt     time.Time
	KeyExpiredAt time.Time
}

// SecretVersion is the version of one network's secret, as a member's
// heartbeat reports it, with the network's key lifetime (Network.KeyExpiry).
type SecretVersion struct {
	NetworkID string
	Version   int64
	KeyExpiry time.Duration
}

// ExitRoute is what a heartbeat needs about one network of a device whose
// member row selects an exit node.
type ExitRoute struct {
	NetworkID    string
	ExitDeviceID string
	ExitHost     uint32
	ExitEnabled  bool
	Range        netip.Prefix
}

// Login methods of a login session.
const (
	MethodSecurityKey = "security_key"
	MethodBrowser     = "browser"
	// MethodDashboard is a dashboard login (email and password in the
	// browser), held in an HttpOnly cookie (DashboardLogin).
	MethodDashboard = "dashboard"
)

// LoginSession is one refresh-token family: how and from where it was
// created and when it was last refreshed.
type LoginSession struct {
	ID         string // the family id
	UserID     string
	KeyID      string // security key it came from, "" for browser logins
	Method     string
	ClientIP   string
	UserAgent  string
	CreatedAt  time.Time
	LastUsedAt time.Time
	ExpiresAt  time.Time // of its newest refresh token
	RevokedAt  time.Time
}

// TokenPair is what a login returns.
type TokenPair struct {
	Token        string        `json:"token"`
	RefreshToken string        `json:"refresh_token"`
	ExpiresIn    time.Duration `json:"-"` // lifetime of Token
}

// Kind classifies domain errors so transports can map them.
type Kind int

// Error kinds.
const (
	KindInvalid      Kind = iota + 1 // bad input: 400
	KindLimit                        // plan limit or exhausted range: 400
	KindUnauthorized                 // 401
	KindForbidden                    // 403
	KindNotFound                     // 404
	KindConflict                     // 409
	KindTooMany                      // a cap on pending work: 429
)

// Error is a domain error with a kind and a user-safe message.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of a domain error, or 0.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// Store sentinel errors, returned (possibly wrapped) by Store implementations.
var (
	ErrNotFound  = errors.New("not found")
	ErrConflict  = errors.New("already exists")
	ErrLimit     = errors.New("plan limit reached")
	ErrExhausted = errors.New("address range exhausted")
	ErrOverlap   = errors.New("address range overlaps another network")
)
