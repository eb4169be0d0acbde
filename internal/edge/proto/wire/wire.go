// Package wire owns the JSON contract of the OmniEdge control-plane API
// (see docs/edge-api.md): request and response bodies shared by the HTTP
// handlers (internal/edge/server/api) and the Go client
// (internal/edge/device/client), one on each side of the wire.
// Field names follow the published client API; additions are backwards
// compatible and never rename a field.
package wire

import (
	"encoding/json"
	"time"
)

// LoginKeyRequest is the body of POST /api/v2/auth/login/security-key.
type LoginKeyRequest struct {
	Key string `json:"key"`
}

// TokenResponse is returned by every login and by refresh.
type TokenResponse struct {
	Token        string `json:"token"`
	RefreshToken string `json:"refresh_token"`
	// RefreshTokenCamel repeats RefreshToken for older clients.
	RefreshTokenCamel string `json:"refreshToken,omitempty"`
	TokenType         string `json:"token_type"`
	ExpiresIn         int    `json:"expires_in"` // seconds until Token expires
}

// RefreshRequest is the body of POST /api/v2/auth/refresh and
// /api/v2/auth/logout.
type RefreshRequest struct {
	RefreshToken      string `json:"refresh_token"`
	RefreshTokenCamel string `json:"refreshToken,omitempty"`
}

// SessionResponse is returned by GET /api/v2/auth/login/session.
type SessionResponse struct {
	UUID      string    `json:"uuid"`
	AuthURL   string    `json:"auth_url"`
	ExpiresAt time.Time `json:"expires_at"`
	// Code is a short code the device shows its user; the approval page
	// shows the same code, so the user can tell their own login from a
	// link someone else sent.
	Code string `json:"code"`
}

// LoginSession is one entry of GET /api/v2/sessions: a login (refresh-token
// family) of the caller.
type LoginSession struct {
	ID         string     `json:"id"`
	Method     string     `json:"method"` // "security_key" or "browser"
	KeyID      *string    `json:"key_id"`
	ClientIP   string     `json:"client_ip,omitempty"`
	UserAgent  string     `json:"user_agent,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	Current    bool       `json:"current"`
}

// RegisterDeviceRequest is the body of POST /api/v2/devices.
type RegisterDeviceRequest struct {
	Name         string `json:"name"`
	HardwareUUID string `json:"hardware_uuid"`
	HardwareID   string `json:"hardware_id,omitempty"` // accepted alias
	Platform     string `json:"platform"`
	// PublicKey is the device's WireGuard public key (standard base64, 44
	// characters), unique among the user's devices. The nucleus admits a
	// member only under the key bound to its address.
	PublicKey string `json:"public_key,omitempty"`
	// AdvertisedRoutes are the prefixes behind the device it offers to
	// route to (`omni edge up --advertise-routes`); absent keeps what was
	// advertised before, [] withdraws them.
	AdvertisedRoutes *[]string `json:"advertised_routes,omitempty"`
}

// Device is a registered device.
type Device struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	HardwareUUID    string     `json:"hardware_uuid"`
	Platform        string     `json:"platform"`
	Online          bool       `json:"online"`
	LastSeen        *time.Time `json:"last_seen"`
	ExitNodeConsent bool       `json:"exit_node_consent"`
	CreatedAt       time.Time  `json:"created_at"`
	PublicKey       string     `json:"public_key,omitempty"`
	// DNSName is the DNS label the user set for the device; "" while it
	// is derived from Name (each member's full name is in the member list
	// and GET .../dns).
	DNSName string `json:"dns_name,omitempty"`
	// VirtualNetworks are the device's memberships (GET of one device
	// and of the list; absent from other answers).
	VirtualNetworks []DeviceNetwork `json:"virtual_networks,omitzero"`
	// KeySetAt is when the control plane recorded PublicKey: its age,
	// and its expiry in each network with a key lifetime, count from it.
	KeySetAt *time.Time `json:"key_set_at,omitempty"`
	// KeyExpiredAt is when the owner expired PublicKey by hand
	// (POST /api/v2/devices/{id}/expire); absent otherwise.
	KeyExpiredAt *time.Time `json:"key_expired_at,omitempty"`
	// Tags are the device's tags, which access policies name; absent
	// without any.
	Tags []string `json:"tags,omitempty"`
}

// DeviceNetwork is one membership of a device.
type DeviceNetwork struct {
	NetworkID   string  `json:"network_id"`
	VirtualIP   string  `json:"virtual_ip"`
	VirtualIPv6 string  `json:"virtual_ip_v6"`
	IsExitNode  bool    `json:"is_exit_node"`
	ExitNode    *string `json:"exit_node"`
	NetworkName string  `json:"network_name,omitempty"` // an addition: the network's name
}

// RenameDeviceRequest is the body of PUT/PATCH /api/v2/devices/{id}: a
// new name, a DNS label ("" derives it from the name again), or both.
type RenameDeviceRequest struct {
	Name    string  `json:"name,omitempty"`
	DNSName *string `json:"dns_name,omitempty"`
	// Tags replace the device's tags when present ([] clears them):
	// "tag:<name>", at most 16.
	Tags *[]string `json:"tags,omitempty"`
}

// HeartbeatRequest is the body of POST /api/v2/devices/heartbeat.
type HeartbeatRequest struct {
	HardwareID   string `json:"hardware_id"`
	HardwareUUID string `json:"hardware_uuid,omitempty"` // accepted alias
	IsExitNode   bool   `json:"is_exit_node"`
}

// HeartbeatResponse maps network id to the exit node's virtual IP.
type HeartbeatResponse struct {
	Message   string            `json:"message"`
	LastSeen  string            `json:"last_seen"`
	ExitNodes map[string]string `json:"exit_nodes"`
	// SecretVersions maps each network of the device to its secret's
	// version: a device holding an older secret joins again to fetch it.
	SecretVersions map[string]int64 `json:"secret_versions,omitempty"`
	// KeyExpiresAt maps each network of the device where its key expires
	// to when (absent: it never expires there); KeySetAt is when the key
	// was recorded, so KeyExpiresAt − KeySetAt is the key's lifetime and
	// KeyExpiresAt − LastSeen what is left of it, both in the control
	// plane's time. KeyExpiredAt is set when the owner expired the key by
	// hand. The three are present only when the key expires somewhere.
	KeySetAt     *time.Time           `json:"key_set_at,omitempty"`
	KeyExpiresAt map[string]time.Time `json:"key_expires_at,omitempty"`
	KeyExpiredAt *time.Time           `json:"key_expired_at,omitempty"`
}

// Server is the nucleus a network's members connect to.
type Server struct {
	Host string `json:"host"`
	Name string `json:"name"`
	ID   string `json:"id,omitempty"` // user server id; empty for the built-in nucleus
	// PublicKey is the nucleus's static X25519 public key (standard
	// base64): devices key their signaling with it. Absent for a user
	// server that published none (devices cannot use it).
	PublicKey string `json:"public_key,omitempty"`
}

// CreateNetworkRequest is the body of POST /api/v2/virtual-networks.
type CreateNetworkRequest struct {
	Name     string `json:"name"`
	IPRange  string `json:"ip_range,omitempty"`
	ServerID string `json:"server_id,omitempty"`
}

// UpdateNetworkRequest is the body of PUT/PATCH /api/v2/virtual-networks/{id}.
type UpdateNetworkRequest struct {
	Name     *string        `json:"name,omitempty"`
	ServerID NullableString `json:"server_id,omitzero"` // null: built-in nucleus
	DNSName  *string        `json:"dns_name,omitempty"` // the network's DNS label; "" derives it from the name
	// KeyExpiry is the members' key lifetime: a duration ("720h", "90d";
	// 1h to 10 years) or "0" for keys that never expire.
	KeyExpiry *string `json:"key_expiry,omitempty"`
}

// Network is a virtual network (the secret is only in JoinResponse).
type Network struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	IPRange        string    `json:"ip_range"`
	IPv6Range      string    `json:"ipv6_range"`
	SubnetMask     string    `json:"subnet_mask"`
	SubnetPrefixV6 int       `json:"subnet_prefix_v6"`
	Server         Server    `json:"server"`
	CreatedAt      time.Time `json:"created_at"`
	// DNSName is the network's DNS zone: its members are
	// <device>.<dns_name>.
	DNSName string `json:"dns_name,omitempty"`
	// KeyExpiry is how long a member's device key is valid, counted from
	// when the control plane recorded it ("720h"); "0": keys never expire.
	KeyExpiry string `json:"key_expiry"`
}

// JoinRequest is the optional body of POST
// /api/v2/virtual-networks/{vn}/devices/{dev}.
type JoinRequest struct {
	PublicKey string `json:"public_key,omitempty"` // as in RegisterDeviceRequest
}

// JoinResponse is returned by POST /api/v2/virtual-networks/{vn}/devices/{dev}.
type JoinResponse struct {
	Cluster        string `json:"cluster"`
	CommunityName  string `json:"community_name"`
	SecretKey      string `json:"secret_key"`
	VirtualIP      string `json:"virtual_ip"`
	VirtualIPv6    string `json:"virtual_ip_v6"`
	SubnetMask     string `json:"subnet_mask"`
	SubnetPrefixV6 int    `json:"subnet_prefix_v6"`
	Server         Server `json:"server"`
	NetworkID      string `json:"network_id"`
	DeviceID       string `json:"device_id"`
	IPRange        string `json:"ip_range"`
	IPv6Range      string `json:"ipv6_range"`
	// SecretVersion is the version of SecretKey; it changes whenever a
	// member leaves or is removed (the secret rotates).
	SecretVersion int64 `json:"secret_version"`
}

// Member is a device in a network, as listed by
// GET /api/v2/virtual-networks/{id}/devices.
type Member struct {
	DeviceID    string     `json:"device_id"`
	Name        string     `json:"name"`
	DNSName     string     `json:"dns_name,omitempty"` // <device>.<network>.<suffix>
	Platform    string     `json:"platform"`
	VirtualIP   string     `json:"virtual_ip"`
	VirtualIPv6 string     `json:"virtual_ip_v6"`
	IsExitNode  bool       `json:"is_exit_node"`
	ExitNode    *string    `json:"exit_node"`
	Online      bool       `json:"online"`
	LastSeen    *time.Time `json:"last_seen"`
	JoinedAt    time.Time  `json:"joined_at"`
	// ExitNodeConsent is the device's own consent (sent with its
	// heartbeat) to carry the network's traffic as an exit node; an
	// admin's is_exit_node takes effect only with it.
	ExitNodeConsent bool `json:"exit_node_consent"`
	// PublicKey is the device's WireGuard public key ("" when it
	// registered none): the only key peers accept at VirtualIP.
	PublicKey string `json:"public_key,omitempty"`
	// Routes are its subnet routes; absent when it advertises and was
	// approved none.
	Routes *Routes `json:"routes,omitempty"`
	// Tags are the device's tags, which the network's policy may name.
	Tags []string `json:"tags,omitempty"`
	// KeyExpiresAt is when PublicKey expires in this network (absent:
	// never); KeyExpired says it has: the nucleus no longer admits the
	// member and peers accept no key at VirtualIP until it registers a
	// new one.
	KeyExpiresAt *time.Time `json:"key_expires_at,omitempty"`
	KeyExpired   bool       `json:"key_expired"`
}

// DNSZone is the answer of GET /api/v2/virtual-networks/{id}/dns: every
// member's name and addresses.
type DNSZone struct {
	NetworkID string      `json:"network_id"`
	Zone      string      `json:"zone"`
	Records   []DNSRecord `json:"records"`
}

// DNSRecord is one member's name.
type DNSRecord struct {
	DeviceID    string `json:"device_id"`
	Name        string `json:"name"`
	VirtualIP   string `json:"virtual_ip"`
	VirtualIPv6 string `json:"virtual_ip_v6"`
}

// NetMap is the answer of GET /api/v2/virtual-networks/{id}/map: what a
// member's daemon follows of its network.
type NetMap struct {
	NetworkID string    `json:"network_id"`
	Zone      string    `json:"zone"`
	Peers     []MapPeer `json:"peers"`
	// Policy is the network's access policy (absent: none) and
	// PolicyVersion its version: each member enforces it on what it
	// receives.
	Policy        json.RawMessage `json:"policy,omitempty"`
	PolicyVersion int64           `json:"policy_version,omitempty"`
}

// MapPeer is one member in a NetMap.
type MapPeer struct {
	DeviceID    string   `json:"device_id"`
	Name        string   `json:"name"` // its DNS name
	VirtualIP   string   `json:"virtual_ip"`
	VirtualIPv6 string   `json:"virtual_ip_v6"`
	PublicKey   string   `json:"public_key,omitempty"`
	Routes      []string `json:"routes"`         // the subnet routes it carries
	Tags        []string `json:"tags,omitempty"` // its tags, which the policy may name
	// KeyExpired says PublicKey expired in this network: peers must not
	// accept it (the daemon then fetches the member list again).
	KeyExpired bool `json:"key_expired,omitempty"`
}

// Routes is the answer of GET and PUT
// /api/v2/virtual-networks/{vn}/devices/{dev}/routes.
type Routes struct {
	Advertised []string `json:"advertised"` // what the device offers
	Approved   []string `json:"approved"`   // what the network's owner approved
	Enabled    []string `json:"enabled"`    // both
	Primary    []string `json:"primary"`    // the enabled routes it carries (another member may carry the same prefix)
}

// ApproveRoutesRequest is the body of PUT
// /api/v2/virtual-networks/{vn}/devices/{dev}/routes.
type ApproveRoutesRequest struct {
	Approved []string `json:"approved"`
}

// Policy is the answer of GET and PUT /api/v2/virtual-networks/{id}/policy:
// the network's access policy as its owner wrote it (null: none, every
// member reaches every member) and its version (the ETag; If-Match takes
// it).
type Policy struct {
	Version   int64           `json:"version"`
	Policy    json.RawMessage `json:"policy"`
	UpdatedAt *time.Time      `json:"updated_at,omitempty"`
}

// PolicyCheckRequest is the body of POST
// /api/v2/virtual-networks/{id}/policy/check: would the policy (the one
// given, else the stored one) let Src reach Dst on Proto and Port?
type PolicyCheckRequest struct {
	Policy json.RawMessage `json:"policy,omitempty"`
	Src    string          `json:"src"`   // a member (device id or DNS label) or an address
	Dst    string          `json:"dst"`   // a member or an address (on a subnet route too)
	Proto  string          `json:"proto"` // tcp, udp or icmp
	Port   int             `json:"port,omitempty"`
}

// PolicyCheckResponse answers a PolicyCheckRequest.
type PolicyCheckResponse struct {
	Allowed bool   `json:"allowed"`
	Src     string `json:"src"` // the addresses the names resolved to
	Dst     string `json:"dst"`
}

// UpdateMemberRequest is the body of PUT /api/v2/virtual-networks/{vn}/devices/{dev}.
type UpdateMemberRequest struct {
	IsExitNode *bool          `json:"is_exit_node,omitempty"`
	ExitNode   NullableString `json:"exit_node,omitzero"` // null clears
}

// UserServer is a user-hosted nucleus.
type UserServer struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Host      string    `json:"host"`
	Country   string    `json:"country"`
	PublicKey string    `json:"public_key,omitempty"` // the nucleus's static key; absent until published
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// UserServerRequest is the body of POST and PUT /api/v2/user-servers.
type UserServerRequest struct {
	Name    string `json:"name"`
	Host    string `json:"host"`
	Country string `json:"country"`
	// PublicKey is the nucleus's static X25519 public key (standard
	// base64, 44 characters; optional). An update without one keeps the
	// key published before.
	PublicKey string `json:"public_key,omitempty"`
}

// ServedNetwork is one entry of GET /api/v2/user-servers/{id}/networks: a
// network whose members use this user-hosted nucleus, with the secret its
// signaling key derives from and its current members.
type ServedNetwork struct {
	ID            string         `json:"id"`
	Name          string         `json:"name"`
	SecretKey     string         `json:"secret_key"`
	SecretVersion int64          `json:"secret_version"`
	Members       []ServedMember `json:"members"`
}

// ServedMember is a member of a ServedNetwork.
type ServedMember struct {
	DeviceID    string `json:"device_id"`
	VirtualIP   string `json:"virtual_ip"`
	VirtualIPv6 string `json:"virtual_ip_v6"`
	PublicKey   string `json:"public_key,omitempty"` // the device's key; "" admits nobody
}

// SecurityKey describes a key without its secret.
type SecurityKey struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// CreateSecurityKeyRequest is the body of POST /api/v2/security-keys.
type CreateSecurityKeyRequest struct {
	Name      string `json:"name"`
	ExpiresIn string `json:"expires_in,omitempty"` // Go duration, e.g. "720h"; empty: never
}

// CreatedSecurityKey carries the raw key, shown once.
type CreatedSecurityKey struct {
	SecurityKey
	Key string `json:"key"`
}

// Me is the caller's account, GET /api/v2/users/me.
type Me struct {
	ID     string `json:"id"`
	Email  string `json:"email"`
	Plan   string `json:"plan"`
	Limits struct {
		MaxDevices  int `json:"max_devices"`
		MaxNetworks int `json:"max_networks"`
	} `json:"limits"`
	Usage struct {
		Devices  int `json:"devices"`
		Networks int `json:"networks"`
	} `json:"usage"`
}

// Message is a plain acknowledgement.
type Message struct {
	Message string `json:"message"`
}

// NullableString tells an absent field (Set false) from an explicit null
// (Set true, Valid false) and a value.
type NullableString struct {
	Set   bool
	Valid bool
	Value string
}

// Null returns an explicit null.
func Null() NullableString { return NullableString{Set: true} }

// Some returns a present value.
func Some(v string) NullableString { return NullableString{Set: true, Valid: true, Value: v} }

// UnmarshalJSON records presence.
func (n *NullableString) UnmarshalJSON(b []byte) error {
	n.Set = true
	if string(b) == "null" {
		n.Valid, n.Value = false, ""
		return nil
	}
	n.Valid = true
	return json.Unmarshal(b, &n.Value)
}

// MarshalJSON writes null or the value.
func (n NullableString) MarshalJSON() ([]byte, error) {
	if !n.Valid {
		return []byte("null"), nil
	}
	return json.Marshal(n.Value)
}

// IsZero makes omitzero drop an absent field.
func (n NullableString) IsZero() bool { return !n.Set }
