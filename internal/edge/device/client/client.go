// Package client is the Go client of the OmniEdge control-plane API, used
// by the edge daemon, the CLI and the API tests. It keeps the token pair,
// refreshes it once on a 401 (falling back to the security key when the
// refresh token is spent), and returns API errors as *APIError with the
// server's code, message and Retry-After.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// APIError is a non-2xx answer.
type APIError struct {
	Status     int
	Code       string
	Message    string
	RequestID  string
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	return fmt.Sprintf("omniedge api: %d %s: %s", e.Status, e.Code, e.Message)
}

// StatusOf returns the HTTP status of an *APIError, or 0.
func StatusOf(err error) int {
	var e *APIError
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Client talks to one control plane. It is safe for concurrent use.
type Client struct {
	base string
	hc   *http.Client

	mu          sync.Mutex
	token       string
	refresh     string
	securityKey string
	// reauthMu makes concurrent calls that meet an expired token renew it
	// once: a refresh token is single-use, and presenting it twice would
	// look like a stolen one (the control plane revokes the login).
	reauthMu sync.Mutex
}

// New returns a client for the API at baseURL (e.g. http://localhost:8080).
// hc may be nil for a default client with a 30 s timeout.
func New(baseURL string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: hc}
}

// SetTokens installs a token pair (e.g. one stored by a previous run).
func (c *Client) SetTokens(token, refresh string) {
	c.mu.Lock()
	c.token, c.refresh = token, refresh
	c.mu.Unlock()
}

// Tokens returns the current token pair.
func (c *Client) Tokens() (token, refresh string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token, c.refresh
}

// LoginSecurityKey logs in with a security key and remembers it for
// re-login when the refresh token is no longer valid.
func (c *Client) LoginSecurityKey(ctx context.Context, key string) (wire.TokenResponse, error) {
	var out wire.TokenResponse
	if err := c.do(ctx, http.MethodPost, "/api/v2/auth/login/security-key", wire.LoginKeyRequest{Key: key}, &out, false); err != nil {
		return out, err
	}
	c.mu.Lock()
	c.token, c.refresh, c.securityKey = out.Token, out.RefreshToken, key
	c.mu.Unlock()
	return out, nil
}

// Refresh rotates the token pair.
func (c *Client) Refresh(ctx context.Context) (wire.TokenResponse, error) {
	_, rt := c.Tokens()
	var out wire.TokenResponse
	if err := c.do(ctx, http.MethodPost, "/api/v2/auth/refresh", wire.RefreshRequest{RefreshToken: rt}, &out, false); err != nil {
		return out, err
	}
	c.SetTokens(out.Token, out.RefreshToken)
	return out, nil
}

// Logout revokes the current refresh family.
func (c *Client) Logout(ctx context.Context) error {
	_, rt := c.Tokens()
	return c.do(ctx, http.MethodPost, "/api/v2/auth/logout", wire.RefreshRequest{RefreshToken: rt}, nil, false)
}

// LoginSessions lists the caller's login sessions.
func (c *Client) LoginSessions(ctx context.Context) ([]wire.LoginSession, error) {
	var out []wire.LoginSession
	err := c.get(ctx, "/api/v2/sessions", &out)
	return out, err
}

// RevokeLoginSession revokes one of the caller's login sessions.
func (c *Client) RevokeLoginSession(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v2/sessions/"+esc(id), nil, nil, true)
}

// StartSession begins a browser login.
func (c *Client) StartSession(ctx context.Context) (wire.SessionResponse, error) {
	var out wire.SessionResponse
	err := c.do(ctx, http.MethodGet, "/api/v2/auth/login/session", nil, &out, false)
	return out, err
}

// WaitSession listens on the session's WebSocket until the browser
// approves, then installs and returns the tokens.
func (c *Client) WaitSession(ctx context.Context, uuid string) (wire.TokenResponse, error) {
	u := strings.Replace(c.base, "http", "ws", 1) + "/login/session/" + url.PathEscape(uuid)
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: &http.Client{Transport: c.hc.Transport}})
	if err != nil {
		return wire.TokenResponse{}, fmt.Errorf("omniedge api: session socket: %w", err)
	}
	defer conn.CloseNow()
	_, msg, err := conn.Read(ctx)
	if err != nil {
		switch websocket.CloseStatus(err) {
		case 4404:
			return wire.TokenResponse{}, &APIError{Status: http.StatusNotFound, Code: "not_found", Message: "login session not found, expired or already used"}
		case 4403:
			return wire.TokenResponse{}, &APIError{Status: http.StatusForbidden, Code: "forbidden", Message: "login denied by the user"}
		case 4409:
			return wire.TokenResponse{}, &APIError{Status: http.StatusConflict, Code: "conflict", Message: "another client is already waiting for this login session"}
		}
		return wire.TokenResponse{}, fmt.Errorf("omniedge api: session socket: %w", err)
	}
	var out wire.TokenResponse
	if err := json.Unmarshal(msg, &out); err != nil || out.Token == "" {
		return out, fmt.Errorf("omniedge api: session socket sent an unexpected message")
	}
	c.SetTokens(out.Token, out.RefreshToken)
	conn.Close(websocket.StatusNormalClosure, "")
	return out, nil
}

// do sends one request. With auth set it adds the bearer token and, on a
// 401, refreshes (or logs in again with the security key) and retries once.
func (c *Client) do(ctx context.Context, method, path string, in, out any, auth bool) error {
	_, err := c.doH(ctx, method, path, in, out, auth, nil)
	return err
}

// doH is do with request headers; it returns the answer's headers and
// status (a 304 is no error and leaves out alone).
func (c *Client) doH(ctx context.Context, method, path string, in, out any, auth bool, hdr http.Header) (*http.Response, error) {
	used, _ := c.Tokens()
	resp, err := c.once(ctx, method, path, in, out, auth, hdr)
	if !auth || StatusOf(err) != http.StatusUnauthorized {
		return resp, err
	}
	if rerr := c.reauthOnce(ctx, used); rerr != nil {
		return resp, err
	}
	return c.once(ctx, method, path, in, out, auth, hdr)
}

// reauthOnce renews the credentials after a 401 to a call made with the
// access token used, unless another call renewed them meanwhile.
func (c *Client) reauthOnce(ctx context.Context, used string) error {
	c.reauthMu.Lock()
	defer c.reauthMu.Unlock()
	if cur, _ := c.Tokens(); cur != used {
		return nil // renewed by a concurrent call: retry with the new token
	}
	return c.reauth(ctx)
}

func (c *Client) reauth(ctx context.Context) error {
	c.mu.Lock()
	rt, key := c.refresh, c.securityKey
	c.mu.Unlock()
	if rt != "" {
		if _, err := c.Refresh(ctx); err == nil {
			return nil
		}
	}
	if key != "" {
		_, err := c.LoginSecurityKey(ctx, key)
		return err
	}
	return errors.New("no credentials to re-authenticate")
}

func (c *Client) once(ctx context.Context, method, path string, in, out any, auth bool, hdr http.Header) (*http.Response, error) {
	var body io.Reader
	if raw, ok := in.(rawBody); ok {
		body = bytes.NewReader(raw) // sent as given (a document whose lines matter)
	} else if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if auth {
		tok, _ := c.Tokens()
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotModified {
		return resp, nil
	}
	if resp.StatusCode >= 300 {
		e := &APIError{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(raw))}
		var eb struct {
			Error struct {
				Code      string `json:"code"`
				Message   string `json:"message"`
				RequestID string `json:"request_id"`
			} `json:"error"`
		}
		if json.Unmarshal(raw, &eb) == nil && eb.Error.Message != "" {
			e.Code, e.Message, e.RequestID = eb.Error.Code, eb.Error.Message, eb.Error.RequestID
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		return resp, e
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return resp, nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return resp, fmt.Errorf("omniedge api: decode %s %s: %w", method, path, err)
	}
	return resp, nil
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out, true)
}

func esc(s string) string { return url.PathEscape(s) }

// Me returns the caller's account, plan limits and usage.
func (c *Client) Me(ctx context.Context) (wire.Me, error) {
	var out wire.Me
	return out, c.get(ctx, "/api/v2/users/me", &out)
}

// ---- devices ----

// RegisterDevice registers (or re-registers) this device.
func (c *Client) RegisterDevice(ctx context.Context, req wire.RegisterDeviceRequest) (wire.Device, error) {
	var out wire.Device
	return out, c.do(ctx, http.MethodPost, "/api/v2/devices", req, &out, true)
}

// Heartbeat reports the device alive and returns the exit nodes to use.
func (c *Client) Heartbeat(ctx context.Context, hardwareID string, isExitNode bool) (wire.HeartbeatResponse, error) {
	var out wire.HeartbeatResponse
	return out, c.do(ctx, http.MethodPost, "/api/v2/devices/heartbeat", wire.HeartbeatRequest{HardwareID: hardwareID, IsExitNode: isExitNode}, &out, true)
}

// Devices lists the caller's devices.
func (c *Client) Devices(ctx context.Context) ([]wire.Device, error) {
	var out []wire.Device
	return out, c.get(ctx, "/api/v2/devices", &out)
}

// Device returns one device with its memberships.
func (c *Client) Device(ctx context.Context, id string) (wire.Device, error) {
	var out wire.Device
	return out, c.get(ctx, "/api/v2/devices/"+esc(id), &out)
}

// RenameDevice renames a device.
func (c *Client) RenameDevice(ctx context.Context, id, name string) (wire.Device, error) {
	var out wire.Device
	return out, c.do(ctx, http.MethodPut, "/api/v2/devices/"+esc(id), wire.RenameDeviceRequest{Name: name}, &out, true)
}

// DeleteDevice deletes a device.
func (c *Client) DeleteDevice(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v2/devices/"+esc(id), nil, nil, true)
}

// ExpireDeviceKey expires a device's current key at once (in every
// network); the device needs a new login to register a new one.
func (c *Client) ExpireDeviceKey(ctx context.Context, id string) (wire.Device, error) {
	var out wire.Device
	return out, c.do(ctx, http.MethodPost, "/api/v2/devices/"+esc(id)+"/expire", nil, &out, true)
}

// ---- networks ----

// CreateNetwork creates a virtual network.
func (c *Client) CreateNetwork(ctx context.Context, req wire.CreateNetworkRequest) (wire.Network, error) {
	var out wire.Network
	return out, c.do(ctx, http.MethodPost, "/api/v2/virtual-networks", req, &out, true)
}

// Networks lists the caller's networks.
func (c *Client) Networks(ctx context.Context) ([]wire.Network, error) {
	var out []wire.Network
	return out, c.get(ctx, "/api/v2/virtual-networks", &out)
}

// Network returns one network.
func (c *Client) Network(ctx context.Context, id string) (wire.Network, error) {
	var out wire.Network
	return out, c.get(ctx, "/api/v2/virtual-networks/"+esc(id), &out)
}

// UpdateNetwork renames a network or changes its server.
func (c *Client) UpdateNetwork(ctx context.Context, id string, req wire.UpdateNetworkRequest) (wire.Network, error) {
	var out wire.Network
	return out, c.do(ctx, http.MethodPut, "/api/v2/virtual-networks/"+esc(id), req, &out, true)
}

// DeleteNetwork deletes a network.
func (c *Client) DeleteNetwork(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v2/virtual-networks/"+esc(id), nil, nil, true)
}

// Members lists a network's devices.
func (c *Client) Members(ctx context.Context, networkID string) ([]wire.Member, error) {
	var out []wire.Member
	return out, c.get(ctx, "/api/v2/virtual-networks/"+esc(networkID)+"/devices", &out)
}

// Names returns a network's DNS zone and its ETag. With the tag of the
// answer the caller holds and a wait, the control plane holds the call up
// to wait (at most 60 s; keep it below the HTTP client's timeout) until
// the names change; changed is false when they did not (the zone is then
// empty: keep the one held).
func (c *Client) Names(ctx context.Context, networkID, etag string, wait time.Duration) (zone wire.DNSZone, tag string, changed bool, err error) {
	tag, changed, err = c.longPoll(ctx, "/api/v2/virtual-networks/"+esc(networkID)+"/dns", etag, wait, &zone)
	return zone, tag, changed, err
}

// longPoll GETs path into out, conditional on etag and held up to wait
// when one is given; it returns the answer's tag and whether out was
// filled (false: 304, the caller keeps what it holds).
func (c *Client) longPoll(ctx context.Context, path, etag string, wait time.Duration, out any) (string, bool, error) {
	hdr := http.Header{}
	if etag != "" {
		hdr.Set("If-None-Match", etag)
		if wait > 0 {
			path += "?wait=" + strconv.Itoa(int(wait/time.Second))
		}
	}
	resp, err := c.doH(ctx, http.MethodGet, path, nil, out, true, hdr)
	if err != nil || resp.StatusCode == http.StatusNotModified {
		return etag, false, err
	}
	return resp.Header.Get("ETag"), true, nil
}

// Map returns a network's map (every member's name, addresses, key and
// subnet routes) and its ETag, with the long poll of Names.
func (c *Client) Map(ctx context.Context, networkID, etag string, wait time.Duration) (m wire.NetMap, tag string, changed bool, err error) {
	tag, changed, err = c.longPoll(ctx, "/api/v2/virtual-networks/"+esc(networkID)+"/map", etag, wait, &m)
	return m, tag, changed, err
}

// MemberRoutes returns a member's subnet routes.
func (c *Client) MemberRoutes(ctx context.Context, networkID, deviceID string) (wire.Routes, error) {
	var out wire.Routes
	return out, c.get(ctx, "/api/v2/virtual-networks/"+esc(networkID)+"/devices/"+esc(deviceID)+"/routes", &out)
}

// ApproveRoutes sets the subnet routes the owner approves for a member.
func (c *Client) ApproveRoutes(ctx context.Context, networkID, deviceID string, routes []string) (wire.Routes, error) {
	var out wire.Routes
	if routes == nil {
		routes = []string{}
	}
	return out, c.do(ctx, http.MethodPut, "/api/v2/virtual-networks/"+esc(networkID)+"/devices/"+esc(deviceID)+"/routes",
		wire.ApproveRoutesRequest{Approved: routes}, &out, true)
}

// rawBody is a request body sent byte for byte, as JSON.
type rawBody []byte

// Policy returns a network's access policy.
func (c *Client) Policy(ctx context.Context, networkID string) (wire.Policy, error) {
	var out wire.Policy
	return out, c.get(ctx, "/api/v2/virtual-networks/"+esc(networkID)+"/policy", &out)
}

// SetPolicy replaces a network's access policy with doc (a JSON document;
// "null" removes it).
func (c *Client) SetPolicy(ctx context.Context, networkID string, doc []byte) (wire.Policy, error) {
	var out wire.Policy
	return out, c.do(ctx, http.MethodPut, "/api/v2/virtual-networks/"+esc(networkID)+"/policy", rawBody(doc), &out, true)
}

// CheckPolicy runs a connection through a network's policy (or the one
// in req) without changing anything.
func (c *Client) CheckPolicy(ctx context.Context, networkID string, req wire.PolicyCheckRequest) (wire.PolicyCheckResponse, error) {
	var out wire.PolicyCheckResponse
	return out, c.do(ctx, http.MethodPost, "/api/v2/virtual-networks/"+esc(networkID)+"/policy/check", req, &out, true)
}

// SetDeviceDNSName sets a device's DNS label ("" derives it from its
// name again).
func (c *Client) SetDeviceDNSName(ctx context.Context, id, label string) (wire.Device, error) {
	var out wire.Device
	return out, c.do(ctx, http.MethodPatch, "/api/v2/devices/"+esc(id), wire.RenameDeviceRequest{DNSName: &label}, &out, true)
}

// SetDeviceTags replaces a device's tags ("tag:server"; none clears
// them), which network access policies name.
func (c *Client) SetDeviceTags(ctx context.Context, id string, tags ...string) (wire.Device, error) {
	var out wire.Device
	tags = append([]string{}, tags...) // [] clears; nil would leave them
	return out, c.do(ctx, http.MethodPatch, "/api/v2/devices/"+esc(id), wire.RenameDeviceRequest{Tags: &tags}, &out, true)
}

// Join adds a device to a network.
func (c *Client) Join(ctx context.Context, networkID, deviceID string) (wire.JoinResponse, error) {
	var out wire.JoinResponse
	return out, c.do(ctx, http.MethodPost, "/api/v2/virtual-networks/"+esc(networkID)+"/devices/"+esc(deviceID), nil, &out, true)
}

// Membership returns a device's current join answer in a network (the
// network's current secret) without joining; not a member → 404.
func (c *Client) Membership(ctx context.Context, networkID, deviceID string) (wire.JoinResponse, error) {
	var out wire.JoinResponse
	return out, c.get(ctx, "/api/v2/virtual-networks/"+esc(networkID)+"/devices/"+esc(deviceID), &out)
}

// JoinWith is Join with a body (the device's public key).
func (c *Client) JoinWith(ctx context.Context, networkID, deviceID string, req wire.JoinRequest) (wire.JoinResponse, error) {
	var out wire.JoinResponse
	return out, c.do(ctx, http.MethodPost, "/api/v2/virtual-networks/"+esc(networkID)+"/devices/"+esc(deviceID), req, &out, true)
}

// Leave removes a device from a network.
func (c *Client) Leave(ctx context.Context, networkID, deviceID string) error {
	return c.do(ctx, http.MethodDelete, "/api/v2/virtual-networks/"+esc(networkID)+"/devices/"+esc(deviceID), nil, nil, true)
}

// UpdateMember enables an exit node or selects the exit node a device uses.
func (c *Client) UpdateMember(ctx context.Context, networkID, deviceID string, req wire.UpdateMemberRequest) (wire.DeviceNetwork, error) {
	var out wire.DeviceNetwork
	return out, c.do(ctx, http.MethodPut, "/api/v2/virtual-networks/"+esc(networkID)+"/devices/"+esc(deviceID), req, &out, true)
}

// ---- user servers ----

// UserServers lists the caller's servers.
func (c *Client) UserServers(ctx context.Context) ([]wire.UserServer, error) {
	var out []wire.UserServer
	return out, c.get(ctx, "/api/v2/user-servers", &out)
}

// CreateUserServer registers a user-hosted nucleus.
func (c *Client) CreateUserServer(ctx context.Context, req wire.UserServerRequest) (wire.UserServer, error) {
	var out wire.UserServer
	return out, c.do(ctx, http.MethodPost, "/api/v2/user-servers", req, &out, true)
}

// UpdateUserServer replaces a server's name, host and country.
func (c *Client) UpdateUserServer(ctx context.Context, id string, req wire.UserServerRequest) (wire.UserServer, error) {
	var out wire.UserServer
	return out, c.do(ctx, http.MethodPut, "/api/v2/user-servers/"+esc(id), req, &out, true)
}

// ServedNetworks lists the networks that use the user server id as their
// nucleus, with secrets and members (for a user-hosted nucleus).
func (c *Client) ServedNetworks(ctx context.Context, id string) ([]wire.ServedNetwork, error) {
	var out []wire.ServedNetwork
	return out, c.get(ctx, "/api/v2/user-servers/"+esc(id)+"/networks", &out)
}

// DeleteUserServer deletes a server.
func (c *Client) DeleteUserServer(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v2/user-servers/"+esc(id), nil, nil, true)
}

// ---- security keys ----

// SecurityKeys lists the caller's keys.
func (c *Client) SecurityKeys(ctx context.Context) ([]wire.SecurityKey, error) {
	var out []wire.SecurityKey
	return out, c.get(ctx, "/api/v2/security-keys", &out)
}

// CreateSecurityKey issues a key; the raw key is in the result once.
func (c *Client) CreateSecurityKey(ctx context.Context, req wire.CreateSecurityKeyRequest) (wire.CreatedSecurityKey, error) {
	var out wire.CreatedSecurityKey
	return out, c.do(ctx, http.MethodPost, "/api/v2/security-keys", req, &out, true)
}

// RevokeSecurityKey revokes a key.
func (c *Client) RevokeSecurityKey(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v2/security-keys/"+esc(id), nil, nil, true)
}
