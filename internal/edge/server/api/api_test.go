package api_test

// Behaviour tests of the OmniEdge client API (../shared/specs/omniedge-client-api.md)
// through the real HTTP server of edgetest: the Go client for most calls,
// raw requests where the status line, headers or exact JSON shape matter.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/config"
)

// ---- fixture and helpers ----

// apiFx is one running control plane with convenience methods that fail the
// test on unexpected errors.
type apiFx struct {
	t   *testing.T
	env *edgetest.Env
	ctx context.Context
}

func newAPIFx(t *testing.T, o edgetest.Options) *apiFx {
	t.Helper()
	return &apiFx{t: t, env: edgetest.New(t, o), ctx: t.Context()}
}

// in returns f reporting to t (for subtests).
func (f *apiFx) in(t *testing.T) *apiFx {
	c := *f
	c.t = t
	return &c
}

// apiConfig returns Options whose Config applies fns in order.
func apiConfig(fns ...func(*config.Config)) edgetest.Options {
	return edgetest.Options{Config: func(c *config.Config) {
		for _, fn := range fns {
			fn(c)
		}
	}}
}

// apiFreePlan sets the limits of the free plan.
func apiFreePlan(devices, networks int) func(*config.Config) {
	return func(c *config.Config) {
		c.Plans[config.PlanFree] = config.PlanLimit{MaxDevices: devices, MaxNetworks: networks}
	}
}

// user creates an account on plan and a client logged in with its key.
func (f *apiFx) user(plan string) (edgetest.User, *client.Client) {
	f.t.Helper()
	u := f.env.NewUser(plan)
	return u, f.env.Client(u)
}

// anon is a client without credentials.
func (f *apiFx) anon() *client.Client { return client.New(f.env.URL, f.env.Server.Client()) }

func apiToken(c *client.Client) string {
	tok, _ := c.Tokens()
	return tok
}

func apiRefreshOf(c *client.Client) string {
	_, rt := c.Tokens()
	return rt
}

func (f *apiFx) register(c *client.Client, hw string) wire.Device {
	f.t.Helper()
	d, err := c.RegisterDevice(f.ctx, wire.RegisterDeviceRequest{Name: "dev-" + hw, HardwareUUID: hw, Platform: "linux"})
	if err != nil {
		f.t.Fatalf("register %s: %v", hw, err)
	}
	return d
}

func (f *apiFx) network(c *client.Client, name, ipRange string) wire.Network {
	f.t.Helper()
	n, err := c.CreateNetwork(f.ctx, wire.CreateNetworkRequest{Name: name, IPRange: ipRange})
	if err != nil {
		f.t.Fatalf("create network %s: %v", name, err)
	}
	return n
}

func (f *apiFx) join(c *client.Client, vn, dev string) wire.JoinResponse {
	f.t.Helper()
	j, err := c.Join(f.ctx, vn, dev)
	if err != nil {
		f.t.Fatalf("join %s to %s: %v", dev, vn, err)
	}
	return j
}

func (f *apiFx) heartbeat(c *client.Client, hw string, exit bool) wire.HeartbeatResponse {
	f.t.Helper()
	hb, err := c.Heartbeat(f.ctx, hw, exit)
	if err != nil {
		f.t.Fatalf("heartbeat %s: %v", hw, err)
	}
	return hb
}

func (f *apiFx) updateMember(c *client.Client, vn, dev string, req wire.UpdateMemberRequest) wire.DeviceNetwork {
	f.t.Helper()
	m, err := c.UpdateMember(f.ctx, vn, dev, req)
	if err != nil {
		f.t.Fatalf("update member %s in %s: %v", dev, vn, err)
	}
	return m
}

func (f *apiFx) device(c *client.Client, id string) wire.Device {
	f.t.Helper()
	d, err := c.Device(f.ctx, id)
	if err != nil {
		f.t.Fatalf("get device %s: %v", id, err)
	}
	return d
}

func (f *apiFx) userServer(c *client.Client, name, host, country string) wire.UserServer {
	f.t.Helper()
	s, err := c.CreateUserServer(f.ctx, wire.UserServerRequest{Name: name, Host: host, Country: country})
	if err != nil {
		f.t.Fatalf("create user server: %v", err)
	}
	return s
}

// apiResp is a raw HTTP answer.
type apiResp struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends one raw request. body is nil (no body), a string or []byte
// (sent verbatim as JSON) or any other value (marshalled). An empty bearer
// sends no Authorization header.
func (f *apiFx) do(method, path, bearer string, body any) apiResp {
	f.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(f.ctx, method, f.env.URL+path, r)
	if err != nil {
		f.t.Fatal(err)
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return f.send(req)
}

func (f *apiFx) send(req *http.Request) apiResp {
	f.t.Helper()
	hr, err := f.env.Server.Client().Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer hr.Body.Close()
	b, err := io.ReadAll(hr.Body)
	if err != nil {
		f.t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return apiResp{Status: hr.StatusCode, Header: hr.Header, Body: b}
}

func (r apiResp) String() string { return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body)) }

// wantStatus fails unless r has status.
func (r apiResp) wantStatus(t *testing.T, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %s, want %d", r, status)
	}
}

// object decodes r's body as a JSON object.
func (r apiResp) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.Body, err)
	}
	return m
}

// decode decodes r's body into v.
func (r apiResp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %q: %v", r.Body, err)
	}
}

// wantError fails unless r is a JSON error with status and (when not "")
// code: {"error":{"code","message","status"}}.
func (r apiResp) wantError(t *testing.T, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %s, want %d", r, status)
	}
	apiCheckErrorBody(t, r, code)
}

func apiCheckErrorBody(t *testing.T, r apiResp, code string) {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type = %q, want application/json (body %q)", ct, r.Body)
	}
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Status  int    `json:"status"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &eb); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.Body, err)
	}
	if eb.Error.Code == "" || eb.Error.Message == "" {
		t.Errorf("error body %q lacks error.code or error.message", r.Body)
	}
	if code != "" && eb.Error.Code != code {
		t.Errorf("error.code = %q, want %q (body %q)", eb.Error.Code, code, r.Body)
	}
	if eb.Error.Status != r.Status {
		t.Errorf("error.status = %d, want %d", eb.Error.Status, r.Status)
	}
}

// apiWantErr fails unless err is an *client.APIError with status and
// (when not "") the JSON error code — the client only takes the code from
// a JSON error body, so a matching code also proves the body was JSON.
func apiWantErr(t *testing.T, err error, status int, code string) {
	t.Helper()
	var ae *client.APIError
	if err == nil {
		t.Fatalf("err = nil, want %d %s", status, code)
	}
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v (%T), want *client.APIError %d", err, err, status)
	}
	if ae.Status != status || (code != "" && ae.Code != code) {
		t.Fatalf("err = %v, want %d %s", err, status, code)
	}
}

func apiOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// apiHost6 returns the low 32 bits of a (the host part of a /96-or-longer prefix).
func apiHost6(a netip.Addr) uint32 {
	b := a.As16()
	return binary.BigEndian.Uint32(b[12:])
}

func apiHost4(r netip.Prefix, a netip.Addr) uint32 {
	b, base := a.As4(), r.Masked().Addr().As4()
	return binary.BigEndian.Uint32(b[:]) - binary.BigEndian.Uint32(base[:])
}

// ---- 1. auth ----

func TestLoginSecurityKey(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	u := f.env.NewUser("")

	r := f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: u.Key})
	r.wantStatus(t, http.StatusOK)
	body := r.object(t)
	for _, k := range []string{"token", "refresh_token"} {
		if s, _ := body[k].(string); s == "" {
			t.Errorf("login response %s: %q is not a non-empty string", r.Body, k)
		}
	}
	if body["token"] == body["refresh_token"] {
		t.Error("token and refresh_token are equal")
	}
	me := f.do("GET", "/api/v2/users/me", body["token"].(string), nil)
	me.wantStatus(t, http.StatusOK)
	if got := me.object(t)["id"]; got != u.ID {
		t.Errorf("me.id = %v, want %s", got, u.ID)
	}

	t.Run("unknown key", func(t *testing.T) {
		f := f.in(t)
		f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: "oek_doesnotexist"}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
		_, err := f.anon().LoginSecurityKey(f.ctx, u.Key+"x")
		apiWantErr(t, err, http.StatusUnauthorized, "unauthorized")
	})
	t.Run("empty key", func(t *testing.T) {
		f := f.in(t)
		f.do("POST", "/api/v2/auth/login/security-key", "", `{"key":""}`).wantError(t, http.StatusBadRequest, "invalid_request")
	})
	t.Run("keys list never shows secrets", func(t *testing.T) {
		f := f.in(t)
		r := f.do("GET", "/api/v2/security-keys", body["token"].(string), nil)
		r.wantStatus(t, http.StatusOK)
		if bytes.Contains(r.Body, []byte(u.Key)) || bytes.Contains(r.Body, []byte("hash")) {
			t.Errorf("security key list leaks a secret: %s", r.Body)
		}
	})
}

func TestRefreshRotation(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	tok1, rt1 := c.Tokens()

	pair, err := c.Refresh(f.ctx)
	apiOK(t, err)
	tok2, rt2 := c.Tokens()
	if pair.Token == "" || pair.RefreshToken == "" || rt2 == rt1 || tok2 == tok1 {
		t.Fatalf("refresh did not rotate the pair: %+v", pair)
	}
	if _, err := c.Me(f.ctx); err != nil {
		t.Fatalf("new access token rejected: %v", err)
	}

	// Second use of the spent refresh token: 401, and the whole family
	// (including the fresh rt2) is revoked.
	f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: rt1}).
		wantError(t, http.StatusUnauthorized, "unauthorized")
	f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: rt2}).
		wantError(t, http.StatusUnauthorized, "unauthorized")

	t.Run("camelCase alias", func(t *testing.T) {
		f := f.in(t)
		_, c := f.user("")
		r := f.do("POST", "/api/v2/auth/refresh", "", map[string]string{"refreshToken": apiRefreshOf(c)})
		r.wantStatus(t, http.StatusOK)
		var tr wire.TokenResponse
		r.decode(t, &tr)
		if tr.Token == "" || tr.RefreshToken == "" {
			t.Fatalf("refresh response %s lacks tokens", r.Body)
		}
	})
	t.Run("unknown or empty", func(t *testing.T) {
		f := f.in(t)
		f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: "oer_nope"}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
		f.do("POST", "/api/v2/auth/refresh", "", `{}`).wantError(t, http.StatusBadRequest, "invalid_request")
	})
	t.Run("refresh token expiry", func(t *testing.T) {
		ff := newAPIFx(t, edgetest.Options{})
		_, c := ff.user("")
		rt := apiRefreshOf(c)
		ff.env.Clock.Advance(ff.env.Config.RefreshTokenTTL)
		ff.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: rt}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
	})
}

func TestRevokedSecurityKey(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	u, owner := f.user("")

	check := func(t *testing.T, key, rt string) {
		t.Helper()
		f := f.in(t)
		f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: key}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
		f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: rt}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
	}

	t.Run("via API", func(t *testing.T) {
		f := f.in(t)
		k, err := owner.CreateSecurityKey(f.ctx, wire.CreateSecurityKeyRequest{Name: "robot"})
		apiOK(t, err)
		robot := f.anon()
		_, err = robot.LoginSecurityKey(f.ctx, k.Key)
		apiOK(t, err)
		apiOK(t, owner.RevokeSecurityKey(f.ctx, k.ID))
		check(t, k.Key, apiRefreshOf(robot))

		keys, err := owner.SecurityKeys(f.ctx)
		apiOK(t, err)
		for _, sk := range keys {
			if sk.ID == k.ID && sk.RevokedAt == nil {
				t.Errorf("revoked key %s listed without revoked_at", k.ID)
			}
		}
	})
	t.Run("via Service", func(t *testing.T) {
		f := f.in(t)
		// The harness key of u: find its id, revoke it in the service.
		keys, err := owner.SecurityKeys(f.ctx)
		apiOK(t, err)
		var id string
		for _, k := range keys {
			if k.Name == "test" {
				id = k.ID
			}
		}
		if id == "" {
			t.Fatalf("harness key not listed: %+v", keys)
		}
		other := f.env.Client(u)
		apiOK(t, f.env.Service.RevokeSecurityKey(f.ctx, u.ID, id))
		check(t, u.Key, apiRefreshOf(other))
	})
	t.Run("another user's key", func(t *testing.T) {
		f := f.in(t)
		_, stranger := f.user("")
		k, err := stranger.CreateSecurityKey(f.ctx, wire.CreateSecurityKeyRequest{Name: "theirs"})
		apiOK(t, err)
		// owner's own key was revoked above, and its sessions with it.
		_, owner := f.user("")
		apiWantErr(t, owner.RevokeSecurityKey(f.ctx, k.ID), http.StatusNotFound, "not_found")
		_, err = f.anon().LoginSecurityKey(f.ctx, k.Key)
		apiOK(t, err)
	})
}

func TestSecurityKeyExpiry(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, owner := f.user("")
	k, err := owner.CreateSecurityKey(f.ctx, wire.CreateSecurityKeyRequest{Name: "short", ExpiresIn: "1h"})
	apiOK(t, err)
	if k.ExpiresAt == nil || !k.ExpiresAt.Equal(f.env.Clock.Now().Add(time.Hour)) {
		t.Errorf("expires_at = %v, want now+1h", k.ExpiresAt)
	}

	robot := f.anon()
	_, err = robot.LoginSecurityKey(f.ctx, k.Key)
	apiOK(t, err)
	f.env.Clock.Advance(time.Hour - time.Second)
	_, err = f.anon().LoginSecurityKey(f.ctx, k.Key)
	apiOK(t, err)

	f.env.Clock.Advance(time.Second) // exactly at expiry: no longer valid
	_, err = f.anon().LoginSecurityKey(f.ctx, k.Key)
	apiWantErr(t, err, http.StatusUnauthorized, "unauthorized")
	// A session the key started dies with it.
	f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: apiRefreshOf(robot)}).
		wantError(t, http.StatusUnauthorized, "unauthorized")

	for _, bad := range []string{"-1h", "0s", "soon"} {
		_, err := owner.CreateSecurityKey(f.ctx, wire.CreateSecurityKeyRequest{Name: "bad", ExpiresIn: bad})
		apiWantErr(t, err, http.StatusBadRequest, "invalid_request")
	}
}

func TestAccessTokenExpiry(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	old, oldRT := c.Tokens()

	f.env.Clock.Advance(f.env.Config.AccessTokenTTL - time.Second)
	f.do("GET", "/api/v2/users/me", old, nil).wantStatus(t, http.StatusOK)

	f.env.Clock.Advance(2 * time.Second)
	f.do("GET", "/api/v2/users/me", old, nil).wantError(t, http.StatusUnauthorized, "unauthorized")

	// The client refreshes on the 401 and retries.
	if _, err := c.Me(f.ctx); err != nil {
		t.Fatalf("client did not recover from an expired token: %v", err)
	}
	tok, rt := c.Tokens()
	if tok == old || rt == oldRT {
		t.Fatal("client did not rotate its tokens")
	}
	f.do("GET", "/api/v2/users/me", tok, nil).wantStatus(t, http.StatusOK)
	// It rotated through /refresh, so the old refresh token is spent.
	f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: oldRT}).
		wantError(t, http.StatusUnauthorized, "unauthorized")
}

func TestBearerRequired(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	other := newAPIFx(t, edgetest.Options{})
	_, foreign := other.user("") // signed with another master key

	cases := map[string]string{
		"missing":        "",
		"empty bearer":   "Bearer ",
		"garbage":        "Bearer garbage",
		"jwt-ish":        "Bearer a.b.c",
		"basic":          "Basic dXNlcjpwYXNz",
		"refresh token":  "Bearer oer_abc",
		"foreign signer": "Bearer " + apiToken(foreign),
	}
	for name, h := range cases {
		for _, path := range []string{"/api/v2/users/me", "/api/v2/devices", "/api/v2/virtual-networks"} {
			req, err := http.NewRequestWithContext(f.ctx, "GET", f.env.URL+path, nil)
			apiOK(t, err)
			if h != "" {
				req.Header.Set("Authorization", h)
			}
			r := f.send(req)
			t.Run(name+path, func(t *testing.T) { r.wantError(t, http.StatusUnauthorized, "unauthorized") })
		}
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	u, c := f.user("")

	t.Run("current token", func(t *testing.T) {
		f := f.in(t)
		rt := apiRefreshOf(c)
		apiOK(t, c.Logout(f.ctx))
		f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: rt}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
	})
	t.Run("spent token revokes the family", func(t *testing.T) {
		f := f.in(t)
		c := f.env.Client(u)
		rt1 := apiRefreshOf(c)
		_, err := c.Refresh(f.ctx)
		apiOK(t, err)
		rt2 := apiRefreshOf(c)
		f.do("POST", "/api/v2/auth/logout", "", wire.RefreshRequest{RefreshToken: rt1}).wantStatus(t, http.StatusOK)
		f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: rt2}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
	})
	t.Run("other families survive", func(t *testing.T) {
		f := f.in(t)
		a, b := f.env.Client(u), f.env.Client(u)
		apiOK(t, a.Logout(f.ctx))
		_, err := b.Refresh(f.ctx)
		apiOK(t, err)
	})
	t.Run("unknown token", func(t *testing.T) {
		f := f.in(t)
		f.do("POST", "/api/v2/auth/logout", "", wire.RefreshRequest{RefreshToken: "oer_nope"}).
			wantError(t, http.StatusUnauthorized, "unauthorized")
	})
}

// ---- 2. devices ----

func TestRegisterDevice(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, apiConfig(apiFreePlan(2, 3)))
	_, c := f.user("")
	tok := apiToken(c)
	reg := func(body any) apiResp { return f.do("POST", "/api/v2/devices", tok, body) }

	r := reg(wire.RegisterDeviceRequest{Name: "robot", HardwareUUID: "hw-1", Platform: "Linux"})
	r.wantStatus(t, http.StatusCreated)
	var d1 wire.Device
	r.decode(t, &d1)
	if d1.ID == "" || d1.Name != "robot" || d1.HardwareUUID != "hw-1" || d1.Platform != "linux" || d1.Online || d1.LastSeen != nil {
		t.Fatalf("registered device = %+v", d1)
	}

	r = reg(wire.RegisterDeviceRequest{Name: "robot-renamed", HardwareUUID: "hw-1", Platform: "linux"})
	r.wantStatus(t, http.StatusOK)
	var again wire.Device
	r.decode(t, &again)
	if again.ID != d1.ID || again.Name != "robot-renamed" {
		t.Fatalf("re-register = %+v, want id %s renamed", again, d1.ID)
	}

	// hardware_id alias
	r = reg(map[string]string{"name": "alias", "hardware_id": "hw-2", "platform": "macos"})
	r.wantStatus(t, http.StatusCreated)
	var d2 wire.Device
	r.decode(t, &d2)
	if d2.HardwareUUID != "hw-2" || d2.ID == d1.ID {
		t.Fatalf("alias registration = %+v", d2)
	}

	// At the plan limit (2): a new device is refused, known ones are not.
	reg(wire.RegisterDeviceRequest{Name: "third", HardwareUUID: "hw-3"}).wantError(t, http.StatusBadRequest, "limit_reached")
	_, err := c.RegisterDevice(f.ctx, wire.RegisterDeviceRequest{HardwareUUID: "hw-4"})
	apiWantErr(t, err, http.StatusBadRequest, "limit_reached")
	for _, body := range []any{
		wire.RegisterDeviceRequest{Name: "robot", HardwareUUID: "hw-1"},
		map[string]string{"hardware_id": "hw-2"},
	} {
		r := reg(body)
		r.wantStatus(t, http.StatusOK)
		var d wire.Device
		r.decode(t, &d)
		if d.ID != d1.ID && d.ID != d2.ID {
			t.Fatalf("re-register at limit returned a new device %+v", d)
		}
	}
	me, err := c.Me(f.ctx)
	apiOK(t, err)
	if me.Usage.Devices != 2 || me.Limits.MaxDevices != 2 {
		t.Errorf("me = %+v, want 2 devices of 2", me)
	}

	// Other users have their own namespace of hardware ids.
	_, c2 := f.user("")
	r = f.do("POST", "/api/v2/devices", apiToken(c2), wire.RegisterDeviceRequest{HardwareUUID: "hw-1"})
	r.wantStatus(t, http.StatusCreated)
	var foreign wire.Device
	r.decode(t, &foreign)
	if foreign.ID == d1.ID || foreign.Name != "hw-1" {
		t.Errorf("other user's device = %+v (name should default to the hardware id)", foreign)
	}
}

func TestRegisterDeviceInvalid(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	long := strings.Repeat("n", 129)
	for name, req := range map[string]wire.RegisterDeviceRequest{
		"empty hardware_uuid":  {Name: "x"},
		"blank hardware_uuid":  {Name: "x", HardwareUUID: "   "},
		"spaces in hw":         {Name: "x", HardwareUUID: "a b"},
		"hw too long":          {Name: "x", HardwareUUID: strings.Repeat("h", 129)},
		"name too long":        {Name: long, HardwareUUID: "hw"},
		"control char in name": {Name: "a\x01b", HardwareUUID: "hw"},
		"platform too long":    {Name: "x", HardwareUUID: "hw", Platform: strings.Repeat("p", 33)},
	} {
		t.Run(name, func(t *testing.T) {
			f := f.in(t)
			r := f.do("POST", "/api/v2/devices", apiToken(c), req)
			r.wantError(t, http.StatusBadRequest, "invalid_request")
		})
	}
	devs, err := c.Devices(f.ctx)
	apiOK(t, err)
	if len(devs) != 0 {
		t.Errorf("invalid registrations created devices: %+v", devs)
	}
}

func TestDeviceCRUD(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	a, b := f.register(c, "a"), f.register(c, "b")

	list, err := c.Devices(f.ctx)
	apiOK(t, err)
	if len(list) != 2 {
		t.Fatalf("devices = %+v, want 2", list)
	}
	got := f.device(c, a.ID)
	if got.ID != a.ID || got.HardwareUUID != "a" || got.Name != "dev-a" {
		t.Fatalf("get = %+v", got)
	}

	renamed, err := c.RenameDevice(f.ctx, a.ID, "  kitchen  ")
	apiOK(t, err)
	if renamed.Name != "kitchen" || f.device(c, a.ID).Name != "kitchen" {
		t.Fatalf("rename: %+v", renamed)
	}
	// PATCH is an alias of PUT.
	f.do("PATCH", "/api/v2/devices/"+a.ID, apiToken(c), `{"name":"patched"}`).wantStatus(t, http.StatusOK)
	if n := f.device(c, a.ID).Name; n != "patched" {
		t.Fatalf("name after PATCH = %q", n)
	}
	for _, bad := range []string{"", "  ", strings.Repeat("x", 129), "tab\tname"} {
		_, err := c.RenameDevice(f.ctx, a.ID, bad)
		apiWantErr(t, err, http.StatusBadRequest, "invalid_request")
	}

	f.do("DELETE", "/api/v2/devices/"+b.ID, apiToken(c), nil).wantStatus(t, http.StatusNoContent)
	_, err = c.Device(f.ctx, b.ID)
	apiWantErr(t, err, http.StatusNotFound, "not_found")
	list, err = c.Devices(f.ctx)
	apiOK(t, err)
	if len(list) != 1 || list[0].ID != a.ID {
		t.Fatalf("devices after delete = %+v", list)
	}

	t.Run("unknown", func(t *testing.T) {
		f := f.in(t)
		for _, r := range []apiResp{
			f.do("GET", "/api/v2/devices/dev_nope", apiToken(c), nil),
			f.do("PUT", "/api/v2/devices/dev_nope", apiToken(c), `{"name":"x"}`),
			f.do("DELETE", "/api/v2/devices/dev_nope", apiToken(c), nil),
			f.do("DELETE", "/api/v2/devices/"+b.ID, apiToken(c), nil),
		} {
			r.wantError(t, http.StatusNotFound, "not_found")
		}
	})
}

func TestDeviceOfAnotherUser(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, alice := f.user("")
	_, bob := f.user("")
	bobs := f.register(bob, "bob-hw")
	aliceNet := f.network(alice, "alice-net", "")
	bobNet := f.network(bob, "bob-net", "")
	alices := f.register(alice, "alice-hw")

	tok := apiToken(alice)
	for name, r := range map[string]apiResp{
		"get":                 f.do("GET", "/api/v2/devices/"+bobs.ID, tok, nil),
		"rename":              f.do("PUT", "/api/v2/devices/"+bobs.ID, tok, `{"name":"mine"}`),
		"delete":              f.do("DELETE", "/api/v2/devices/"+bobs.ID, tok, nil),
		"join to own network": f.do("POST", "/api/v2/virtual-networks/"+aliceNet.ID+"/devices/"+bobs.ID, tok, nil),
		"join to his network": f.do("POST", "/api/v2/virtual-networks/"+bobNet.ID+"/devices/"+alices.ID, tok, nil),
	} {
		t.Run(name, func(t *testing.T) { r.wantError(t, http.StatusForbidden, "forbidden") })
	}
	// Nothing changed for bob.
	d := f.device(bob, bobs.ID)
	if d.Name != "dev-bob-hw" || len(d.VirtualNetworks) != 0 {
		t.Fatalf("bob's device changed: %+v", d)
	}
	// A heartbeat only finds the caller's own devices.
	_, err := alice.Heartbeat(f.ctx, "bob-hw", false)
	apiWantErr(t, err, http.StatusNotFound, "not_found")
}

// ---- 3. heartbeat ----

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	tok := apiToken(c)
	window := f.env.Config.OnlineWindow

	f.do("POST", "/api/v2/devices/heartbeat", tok, wire.HeartbeatRequest{HardwareID: "unknown"}).
		wantError(t, http.StatusNotFound, "not_found")
	f.do("POST", "/api/v2/devices/heartbeat", tok, `{"is_exit_node":false}`).
		wantError(t, http.StatusBadRequest, "invalid_request")

	d := f.register(c, "hw-1")
	if got := f.device(c, d.ID); got.Online || got.LastSeen != nil {
		t.Fatalf("device online before any heartbeat: %+v", got)
	}

	f.env.Clock.Advance(1500 * time.Millisecond) // a fractional second to truncate
	r := f.do("POST", "/api/v2/devices/heartbeat", tok, map[string]any{"hardware_uuid": "hw-1", "is_exit_node": false})
	r.wantStatus(t, http.StatusOK)
	body := r.object(t)
	want := f.env.Clock.Now().UTC().Truncate(time.Second)
	if body["message"] != "Heartbeat received" {
		t.Errorf("message = %v", body["message"])
	}
	ls, _ := body["last_seen"].(string)
	if ls != want.Format(time.RFC3339) || !strings.HasSuffix(ls, "Z") {
		t.Errorf("last_seen = %q, want %q", ls, want.Format(time.RFC3339))
	}
	if en, ok := body["exit_nodes"].(map[string]any); !ok || len(en) != 0 {
		t.Errorf("exit_nodes = %#v, want {}", body["exit_nodes"])
	}

	online := func(wantOnline bool) {
		t.Helper()
		got := f.device(c, d.ID)
		list, err := c.Devices(f.ctx)
		apiOK(t, err)
		if got.Online != wantOnline || len(list) != 1 || list[0].Online != wantOnline {
			t.Fatalf("online get=%v list=%+v, want %v (clock %s)", got.Online, list, wantOnline, f.env.Clock.Now())
		}
		if got.LastSeen == nil || !got.LastSeen.Equal(want) || list[0].LastSeen == nil || !list[0].LastSeen.Equal(want) {
			t.Fatalf("last_seen get=%v list=%v, want %v", got.LastSeen, list[0].LastSeen, want)
		}
	}
	online(true)
	f.env.Clock.Advance(window - time.Second)
	online(true)
	f.env.Clock.Advance(time.Second)
	online(false)

	hb := f.heartbeat(c, "hw-1", true)
	want = f.env.Clock.Now().UTC().Truncate(time.Second)
	if hb.LastSeen != want.Format(time.RFC3339) {
		t.Errorf("last_seen = %q, want %q", hb.LastSeen, want.Format(time.RFC3339))
	}
	online(true)
	if !f.device(c, d.ID).ExitNodeConsent {
		t.Error("exit_node_consent not recorded from heartbeat")
	}
}

// apiExitScenario is a network N with a client device A, an exit device E
// (both members) and a device X that is not a member.
type apiExitScenario struct {
	*apiFx
	c       *client.Client
	n       wire.Network
	a, e, x wire.Device
	eIP     string
}

func newAPIExitScenario(f *apiFx) *apiExitScenario {
	f.t.Helper()
	_, c := f.user("")
	s := &apiExitScenario{apiFx: f, c: c, n: f.network(c, "exit-net", "")}
	s.a, s.e, s.x = f.register(c, "a"), f.register(c, "e"), f.register(c, "x")
	f.join(c, s.n.ID, s.a.ID)
	s.eIP = f.join(c, s.n.ID, s.e.ID).VirtualIP
	return s
}

// exitNodes is A's heartbeat answer.
func (s *apiExitScenario) exitNodes() map[string]string {
	s.t.Helper()
	return s.heartbeat(s.c, "a", false).ExitNodes
}

func (s *apiExitScenario) wantExit(present bool) {
	s.t.Helper()
	got := s.exitNodes()
	switch {
	case present && (len(got) != 1 || got[s.n.ID] != s.eIP):
		s.t.Fatalf("exit_nodes = %v, want {%s: %s}", got, s.n.ID, s.eIP)
	case !present && len(got) != 0:
		s.t.Fatalf("exit_nodes = %v, want {}", got)
	}
}

func (s *apiExitScenario) selectExit(v wire.NullableString) wire.DeviceNetwork {
	s.t.Helper()
	return s.updateMember(s.c, s.n.ID, s.a.ID, wire.UpdateMemberRequest{ExitNode: v})
}

func (s *apiExitScenario) enableExit(on bool) wire.DeviceNetwork {
	s.t.Helper()
	return s.updateMember(s.c, s.n.ID, s.e.ID, wire.UpdateMemberRequest{IsExitNode: &on})
}

// in returns s reporting to t (for subtests).
func (s *apiExitScenario) in(t *testing.T) *apiExitScenario {
	c := *s
	c.apiFx = s.apiFx.in(t)
	return &c
}

func TestExitNodeMatrix(t *testing.T) {
	t.Parallel()
	s := newAPIExitScenario(newAPIFx(t, edgetest.Options{}))
	window := s.env.Config.OnlineWindow

	// Every combination of the four conditions; the exit node appears only
	// when all hold.
	for mask := range 16 {
		selected, enabled, consent, online := mask&1 != 0, mask&2 != 0, mask&4 != 0, mask&8 != 0
		name := fmt.Sprintf("selected=%v,enabled=%v,consent=%v,online=%v", selected, enabled, consent, online)
		t.Run(name, func(t *testing.T) {
			s := s.in(t)
			if selected {
				s.selectExit(wire.Some(s.e.ID))
			} else {
				s.selectExit(wire.Null())
			}
			s.enableExit(enabled)
			s.heartbeat(s.c, "e", consent)
			if !online {
				s.env.Clock.Advance(window)
			}
			s.wantExit(selected && enabled && consent && online)
		})
	}
}

func TestExitNodeSelection(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	s := newAPIExitScenario(f)
	window := f.env.Config.OnlineWindow

	m := s.selectExit(wire.Some(s.e.ID))
	if m.ExitNode == nil || *m.ExitNode != s.e.ID || m.NetworkID != s.n.ID {
		t.Fatalf("select response = %+v", m)
	}
	if m := s.enableExit(true); !m.IsExitNode || m.VirtualIP != s.eIP {
		t.Fatalf("enable response = %+v", m)
	}
	s.heartbeat(s.c, "e", true)
	s.wantExit(true)

	t.Run("latest heartbeat governs consent", func(t *testing.T) {
		s := s.in(t)
		s.heartbeat(s.c, "e", false)
		s.wantExit(false)
		s.heartbeat(s.c, "e", true)
		s.wantExit(true)
	})
	t.Run("online window", func(t *testing.T) {
		f, s := f.in(t), s.in(t)
		s.heartbeat(s.c, "e", true)
		f.env.Clock.Advance(window - time.Second)
		s.wantExit(true)
		f.env.Clock.Advance(time.Second)
		s.wantExit(false)
		s.heartbeat(s.c, "e", true)
		s.wantExit(true)
	})
	t.Run("visible in device and members", func(t *testing.T) {
		f, s := f.in(t), s.in(t)
		d := f.device(s.c, s.a.ID)
		if len(d.VirtualNetworks) != 1 || d.VirtualNetworks[0].ExitNode == nil || *d.VirtualNetworks[0].ExitNode != s.e.ID {
			t.Fatalf("device A networks = %+v", d.VirtualNetworks)
		}
		ms, err := s.c.Members(f.ctx, s.n.ID)
		apiOK(t, err)
		for _, m := range ms {
			if m.DeviceID == s.e.ID && (!m.IsExitNode || !m.Online) {
				t.Errorf("member E = %+v, want exit node and online", m)
			}
		}
	})
	t.Run("clear with null", func(t *testing.T) {
		f, s := f.in(t), s.in(t)
		r := f.do("PUT", "/api/v2/virtual-networks/"+s.n.ID+"/devices/"+s.a.ID, apiToken(s.c), `{"exit_node":null}`)
		r.wantStatus(t, http.StatusOK)
		var m wire.DeviceNetwork
		r.decode(t, &m)
		if m.ExitNode != nil {
			t.Fatalf("exit_node after clear = %v", *m.ExitNode)
		}
		s.wantExit(false)
		s.selectExit(wire.Some(s.e.ID))
		s.wantExit(true)
	})
	t.Run("invalid selections", func(t *testing.T) {
		f, s := f.in(t), s.in(t)
		path := "/api/v2/virtual-networks/" + s.n.ID + "/devices/"
		tok := apiToken(s.c)
		for name, r := range map[string]apiResp{
			"non-member":     f.do("PUT", path+s.a.ID, tok, map[string]string{"exit_node": s.x.ID}),
			"unknown device": f.do("PUT", path+s.a.ID, tok, map[string]string{"exit_node": "dev_nope"}),
			"itself":         f.do("PUT", path+s.a.ID, tok, map[string]string{"exit_node": s.a.ID}),
			"empty body {}":  f.do("PUT", path+s.a.ID, tok, `{}`),
		} {
			t.Run(name, func(t *testing.T) { r.wantError(t, http.StatusBadRequest, "invalid_request") })
		}
		f.do("PUT", path+s.x.ID, tok, `{"is_exit_node":true}`).wantError(t, http.StatusNotFound, "not_found")
		s.wantExit(true) // the failed attempts changed nothing
	})
	t.Run("exit node leaves", func(t *testing.T) {
		outer := s
		f, s := f.in(t), s.in(t)
		apiOK(t, s.c.Leave(f.ctx, s.n.ID, s.e.ID))
		s.heartbeat(s.c, "e", true)
		s.wantExit(false)
		d := f.device(s.c, s.a.ID)
		if len(d.VirtualNetworks) != 1 || d.VirtualNetworks[0].ExitNode != nil {
			t.Fatalf("selection not cleared after the exit node left: %+v", d.VirtualNetworks)
		}
		// Rejoining does not restore the old selection.
		s.eIP = f.join(s.c, s.n.ID, s.e.ID).VirtualIP
		outer.eIP = s.eIP
		s.enableExit(true)
		s.heartbeat(s.c, "e", true)
		s.wantExit(false)
	})
	t.Run("exit device deleted", func(t *testing.T) {
		f, s := f.in(t), s.in(t)
		s.selectExit(wire.Some(s.e.ID))
		s.wantExit(true)
		apiOK(t, s.c.DeleteDevice(f.ctx, s.e.ID))
		s.wantExit(false)
		if d := f.device(s.c, s.a.ID); d.VirtualNetworks[0].ExitNode != nil {
			t.Fatalf("selection of a deleted device survives: %+v", d.VirtualNetworks)
		}
	})
	t.Run("network deleted", func(t *testing.T) {
		f, s := f.in(t), s.in(t)
		apiOK(t, s.c.DeleteNetwork(f.ctx, s.n.ID))
		s.wantExit(false)
		if d := f.device(s.c, s.a.ID); len(d.VirtualNetworks) != 0 {
			t.Fatalf("memberships of a deleted network survive: %+v", d.VirtualNetworks)
		}
	})
}

// ---- 4. networks ----

func TestCreateNetworkRanges(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("pro")

	explicit := f.network(c, "explicit", "100.66.1.0/24")
	if explicit.IPRange != "100.66.1.0/24" {
		t.Fatalf("explicit ip_range = %q", explicit.IPRange)
	}
	n1, n2 := f.network(c, "one", ""), f.network(c, "two", "")

	var v4s, v6s []netip.Prefix
	for _, n := range []wire.Network{explicit, n1, n2} {
		p4, err := netip.ParsePrefix(n.IPRange)
		apiOK(t, err)
		p6, err := netip.ParsePrefix(n.IPv6Range)
		apiOK(t, err)
		if !p4.Addr().Is4() || p4.Bits() != 24 || !ipam.CGNAT.Contains(p4.Addr()) || p4 != p4.Masked() {
			t.Errorf("%s: ip_range %s is not a /24 inside 100.64.0.0/10", n.Name, p4)
		}
		if !strings.HasPrefix(n.IPv6Range, "fd") || !p6.Addr().Is6() || p6.Bits() != 120 || p6 != p6.Masked() {
			t.Errorf("%s: ipv6_range %s is not a ULA /120", n.Name, p6)
		}
		if n.SubnetMask != "255.255.255.0" || n.SubnetPrefixV6 != 120 {
			t.Errorf("%s: mask %s /%d", n.Name, n.SubnetMask, n.SubnetPrefixV6)
		}
		for i := range v4s {
			if v4s[i].Overlaps(p4) || v6s[i].Overlaps(p6) {
				t.Errorf("%s: ranges %s %s overlap an earlier network's", n.Name, p4, p6)
			}
		}
		v4s, v6s = append(v4s, p4), append(v6s, p6)
	}

	small := f.network(c, "small", "100.66.200.0/30")
	if small.SubnetMask != "255.255.255.252" || small.SubnetPrefixV6 != 126 || !strings.HasSuffix(small.IPv6Range, "/126") {
		t.Errorf("/30 network = %+v", small)
	}
	if f.network(c, "unmasked", "100.66.201.7/24").IPRange != "100.66.201.0/24" {
		t.Error("explicit range not masked")
	}

	for _, bad := range []string{
		"100.66.1.0/24",   // same
		"100.66.1.128/25", // inside
		"100.66.0.0/16",   // around
		"10.0.0.0/24",     // outside CGNAT
		"100.128.0.0/24",  // just past 100.64.0.0/10
		"192.168.1.0/24",
		"fd00::/120", // IPv6
		"100.66.9.0/31",
		"100.0.0.0/8",
		"100.66.9.0",
		"not-a-range",
	} {
		t.Run(bad, func(t *testing.T) {
			f := f.in(t)
			_, err := c.CreateNetwork(f.ctx, wire.CreateNetworkRequest{Name: "bad", IPRange: bad})
			apiWantErr(t, err, http.StatusBadRequest, "invalid_request")
		})
	}
	for _, name := range []string{"", " ", strings.Repeat("n", 129)} {
		_, err := c.CreateNetwork(f.ctx, wire.CreateNetworkRequest{Name: name})
		apiWantErr(t, err, http.StatusBadRequest, "invalid_request")
	}
	nets, err := c.Networks(f.ctx)
	apiOK(t, err)
	if len(nets) != 5 {
		t.Errorf("networks = %d, want 5 (invalid requests must not create any)", len(nets))
	}
}

func TestNetworkPlanLimit(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, apiConfig(apiFreePlan(20, 2)))
	_, c := f.user("")
	f.network(c, "a", "")
	f.network(c, "b", "")
	r := f.do("POST", "/api/v2/virtual-networks", apiToken(c), wire.CreateNetworkRequest{Name: "c"})
	r.wantError(t, http.StatusBadRequest, "limit_reached")
	// Deleting one frees a slot.
	nets, err := c.Networks(f.ctx)
	apiOK(t, err)
	apiOK(t, c.DeleteNetwork(f.ctx, nets[0].ID))
	f.network(c, "c", "")
}

func TestNetworkCRUD(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	n := f.network(c, "home", "")
	f.network(c, "office", "")

	got, err := c.Network(f.ctx, n.ID)
	apiOK(t, err)
	if got.ID != n.ID || got.Name != "home" || got.IPRange != n.IPRange || got.IPv6Range != n.IPv6Range {
		t.Fatalf("get = %+v, want %+v", got, n)
	}
	list, err := c.Networks(f.ctx)
	apiOK(t, err)
	if len(list) != 2 {
		t.Fatalf("list = %+v", list)
	}

	name := "renamed"
	upd, err := c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{Name: &name})
	apiOK(t, err)
	if upd.Name != "renamed" || upd.IPRange != n.IPRange {
		t.Fatalf("update = %+v", upd)
	}
	if got, _ := c.Network(f.ctx, n.ID); got.Name != "renamed" {
		t.Fatalf("name after update = %q", got.Name)
	}
	empty := ""
	_, err = c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{Name: &empty})
	apiWantErr(t, err, http.StatusBadRequest, "invalid_request")
	_, err = c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{ServerID: wire.Some("srv_nope")})
	apiWantErr(t, err, http.StatusNotFound, "not_found")

	d := f.register(c, "hw")
	f.join(c, n.ID, d.ID)
	f.do("DELETE", "/api/v2/virtual-networks/"+n.ID, apiToken(c), nil).wantStatus(t, http.StatusNoContent)
	_, err = c.Network(f.ctx, n.ID)
	apiWantErr(t, err, http.StatusNotFound, "not_found")
	if dv := f.device(c, d.ID); len(dv.VirtualNetworks) != 0 {
		t.Errorf("device still in deleted network: %+v", dv.VirtualNetworks)
	}

	t.Run("unknown", func(t *testing.T) {
		f := f.in(t)
		tok := apiToken(c)
		base := "/api/v2/virtual-networks/vn_nope"
		for _, r := range []apiResp{
			f.do("GET", base, tok, nil),
			f.do("PUT", base, tok, `{"name":"x"}`),
			f.do("DELETE", base, tok, nil),
			f.do("GET", base+"/devices", tok, nil),
			f.do("POST", base+"/devices/"+d.ID, tok, nil),
			f.do("DELETE", base+"/devices/"+d.ID, tok, nil),
		} {
			r.wantError(t, http.StatusNotFound, "not_found")
		}
	})
}

func TestNetworkOfAnotherUser(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, alice := f.user("")
	_, bob := f.user("")
	bobNet := f.network(bob, "bob", "")
	bobDev := f.register(bob, "bob-hw")
	f.join(bob, bobNet.ID, bobDev.ID)
	aliceDev := f.register(alice, "alice-hw")

	tok := apiToken(alice)
	base := "/api/v2/virtual-networks/" + bobNet.ID
	for name, r := range map[string]apiResp{
		"get":            f.do("GET", base, tok, nil),
		"update":         f.do("PUT", base, tok, `{"name":"mine"}`),
		"delete":         f.do("DELETE", base, tok, nil),
		"members":        f.do("GET", base+"/devices", tok, nil),
		"join":           f.do("POST", base+"/devices/"+aliceDev.ID, tok, nil),
		"leave":          f.do("DELETE", base+"/devices/"+aliceDev.ID, tok, nil),
		"leave his dev":  f.do("DELETE", base+"/devices/"+bobDev.ID, tok, nil),
		"update member":  f.do("PUT", base+"/devices/"+bobDev.ID, tok, `{"is_exit_node":true}`),
		"select as exit": f.do("PUT", base+"/devices/"+aliceDev.ID, tok, `{"exit_node":"`+bobDev.ID+`"}`),
	} {
		t.Run(name, func(t *testing.T) { r.wantError(t, http.StatusForbidden, "forbidden") })
	}
	got, err := bob.Network(f.ctx, bobNet.ID)
	apiOK(t, err)
	ms, err := bob.Members(f.ctx, bobNet.ID)
	apiOK(t, err)
	if got.Name != "bob" || len(ms) != 1 || ms[0].IsExitNode {
		t.Fatalf("bob's network changed: %+v %+v", got, ms)
	}
	list, err := alice.Networks(f.ctx)
	apiOK(t, err)
	if len(list) != 0 {
		t.Errorf("alice lists bob's network: %+v", list)
	}
}

func TestJoinResponse(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	n := f.network(c, "lab", "100.66.1.0/24")
	devs := make([]wire.Device, 5)
	for i := range devs {
		devs[i] = f.register(c, fmt.Sprintf("hw-%d", i+1))
	}
	path := "/api/v2/virtual-networks/" + n.ID + "/devices/" + devs[0].ID

	r := f.do("POST", path, apiToken(c), nil)
	r.wantStatus(t, http.StatusOK)
	m := r.object(t)
	for key, kind := range map[string]string{
		"cluster": "string", "secret_key": "string", "virtual_ip": "string", "virtual_ip_v6": "string",
		"subnet_mask": "string", "subnet_prefix_v6": "number", "server": "object",
	} {
		if got := apiJSONKind(m[key]); got != kind {
			t.Errorf("join.%s is %s (%v), want %s", key, got, m[key], kind)
		}
	}
	srv, _ := m["server"].(map[string]any)
	for _, key := range []string{"host", "name"} {
		if s, _ := srv[key].(string); s == "" {
			t.Errorf("join.server.%s = %v, want a non-empty string", key, srv[key])
		}
	}
	if m["cluster"] != "lab" || m["subnet_mask"] != "255.255.255.0" || m["subnet_prefix_v6"] != float64(120) {
		t.Errorf("join = %s", r.Body)
	}
	secret := m["secret_key"].(string)
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(secret, "="))
	if err != nil || len(raw) < 32 {
		t.Errorf("secret_key %q decodes to %d bytes (%v), want >= 32", secret, len(raw), err)
	}

	var first wire.JoinResponse
	r.decode(t, &first)
	again := f.join(c, n.ID, devs[0].ID)
	if again.VirtualIP != first.VirtualIP || again.VirtualIPv6 != first.VirtualIPv6 || again.SecretKey != first.SecretKey {
		t.Errorf("second join = %+v, want %+v", again, first)
	}

	r6 := netip.MustParsePrefix(n.IPv6Range)
	r4 := netip.MustParsePrefix(n.IPRange)
	joins := []wire.JoinResponse{first}
	for _, d := range devs[1:] {
		joins = append(joins, f.join(c, n.ID, d.ID))
	}
	for i, j := range joins {
		want4 := fmt.Sprintf("100.66.1.%d", i+1)
		v4, v6 := netip.MustParseAddr(j.VirtualIP), netip.MustParseAddr(j.VirtualIPv6)
		if j.VirtualIP != want4 {
			t.Errorf("device %d: virtual_ip %s, want %s", i, j.VirtualIP, want4)
		}
		if !r6.Contains(v6) || apiHost6(v6)-apiHost6(r6.Addr()) != apiHost4(r4, v4) {
			t.Errorf("device %d: v6 %s does not mirror v4 %s in %s", i, v6, v4, r6)
		}
		if j.SecretKey != first.SecretKey {
			t.Errorf("device %d: secret differs", i)
		}
	}
	if !strings.HasSuffix(joins[4].VirtualIPv6, "::5") {
		t.Errorf("100.66.1.5 maps to %s, want …::5", joins[4].VirtualIPv6)
	}

	// Another network has another secret.
	other := f.network(c, "other", "")
	if f.join(c, other.ID, devs[0].ID).SecretKey == first.SecretKey {
		t.Error("two networks share a secret")
	}
	// Members list agrees with the join answers.
	ms, err := c.Members(f.ctx, n.ID)
	apiOK(t, err)
	if len(ms) != 5 || ms[0].VirtualIP != first.VirtualIP || ms[0].VirtualIPv6 != first.VirtualIPv6 {
		t.Errorf("members = %+v", ms)
	}
}

func apiJSONKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case nil:
		return "null/missing"
	}
	return fmt.Sprintf("%T", v)
}

func TestJoinSmallNetwork(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	n := f.network(c, "tiny", "100.66.2.0/30")
	d1, d2, d3 := f.register(c, "1"), f.register(c, "2"), f.register(c, "3")

	if ip := f.join(c, n.ID, d1.ID).VirtualIP; ip != "100.66.2.1" {
		t.Fatalf("first = %s", ip)
	}
	if ip := f.join(c, n.ID, d2.ID).VirtualIP; ip != "100.66.2.2" {
		t.Fatalf("second = %s", ip)
	}
	f.do("POST", "/api/v2/virtual-networks/"+n.ID+"/devices/"+d3.ID, apiToken(c), nil).
		wantError(t, http.StatusBadRequest, "limit_reached")

	r := f.do("DELETE", "/api/v2/virtual-networks/"+n.ID+"/devices/"+d1.ID, apiToken(c), nil)
	r.wantStatus(t, http.StatusOK)
	if msg, _ := r.object(t)["message"].(string); msg == "" {
		t.Errorf("leave response %s has no message", r.Body)
	}
	j3 := f.join(c, n.ID, d3.ID)
	if j3.VirtualIP != "100.66.2.1" || !strings.HasSuffix(j3.VirtualIPv6, "::1") {
		t.Fatalf("freed address not reused: %+v", j3)
	}

	f.do("DELETE", "/api/v2/virtual-networks/"+n.ID+"/devices/"+d1.ID, apiToken(c), nil).
		wantError(t, http.StatusNotFound, "not_found")
	f.do("DELETE", "/api/v2/virtual-networks/"+n.ID+"/devices/dev_nope", apiToken(c), nil).
		wantError(t, http.StatusNotFound, "not_found")
}

func TestJoinServer(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	n := f.network(c, "net", "")
	d := f.register(c, "hw")

	u, err := url.Parse(f.env.URL)
	apiOK(t, err)
	builtin := wire.Server{Host: u.Hostname() + ":51820", Name: f.env.Config.NucleusName}
	wantServer := func(want wire.Server) {
		t.Helper()
		j := f.join(c, n.ID, d.ID)
		if j.Server.Host != want.Host || j.Server.Name != want.Name {
			t.Fatalf("join server = %+v, want %+v", j.Server, want)
		}
		got, err := c.Network(f.ctx, n.ID)
		apiOK(t, err)
		if got.Server.Host != want.Host || got.Server.Name != want.Name {
			t.Fatalf("network server = %+v, want %+v", got.Server, want)
		}
	}
	wantServer(builtin)

	srv := f.userServer(c, "US East Server", "nucleus.example.com:51820", "US")
	upd, err := c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{ServerID: wire.Some(srv.ID)})
	apiOK(t, err)
	if upd.Server.Host != srv.Host {
		t.Fatalf("update response server = %+v", upd.Server)
	}
	wantServer(wire.Server{Host: "nucleus.example.com:51820", Name: "US East Server"})

	// Edits of the server show in the next join.
	_, err = c.UpdateUserServer(f.ctx, srv.ID, wire.UserServerRequest{Name: "Moved", Host: "10.1.2.3:4000", Country: "de"})
	apiOK(t, err)
	wantServer(wire.Server{Host: "10.1.2.3:4000", Name: "Moved"})

	_, err = c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{ServerID: wire.Null()})
	apiOK(t, err)
	wantServer(builtin)

	_, err = c.UpdateNetwork(f.ctx, n.ID, wire.UpdateNetworkRequest{ServerID: wire.Some(srv.ID)})
	apiOK(t, err)
	apiOK(t, c.DeleteUserServer(f.ctx, srv.ID))
	wantServer(builtin)

	t.Run("create with server_id", func(t *testing.T) {
		f := f.in(t)
		srv := f.userServer(c, "Lab", "[2001:db8::1]:51820", "nl")
		n2, err := c.CreateNetwork(f.ctx, wire.CreateNetworkRequest{Name: "with-server", ServerID: srv.ID})
		apiOK(t, err)
		if n2.Server.Host != "[2001:db8::1]:51820" || n2.Server.Name != "Lab" {
			t.Fatalf("server = %+v", n2.Server)
		}
		_, err = c.CreateNetwork(f.ctx, wire.CreateNetworkRequest{Name: "x", ServerID: "srv_nope"})
		apiWantErr(t, err, http.StatusNotFound, "not_found")
	})
}

// ---- 5. user servers ----

func TestUserServerCRUD(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")

	r := f.do("POST", "/api/v2/user-servers", apiToken(c), wire.UserServerRequest{Name: "My Home Lab", Host: "nucleus.example.com:51820", Country: "us"})
	r.wantStatus(t, http.StatusCreated)
	var s wire.UserServer
	r.decode(t, &s)
	if s.ID == "" || s.Name != "My Home Lab" || s.Host != "nucleus.example.com:51820" || s.Country != "US" {
		t.Fatalf("created = %+v", s)
	}

	list, err := c.UserServers(f.ctx)
	apiOK(t, err)
	if len(list) != 1 || list[0].ID != s.ID || list[0].Country != "US" {
		t.Fatalf("list = %+v", list)
	}
	r = f.do("GET", "/api/v2/user-servers/"+s.ID, apiToken(c), nil)
	r.wantStatus(t, http.StatusOK)

	f.env.Clock.Advance(time.Minute)
	upd, err := c.UpdateUserServer(f.ctx, s.ID, wire.UserServerRequest{Name: "Updated Name", Host: "new-nucleus.example.com:51820", Country: "US"})
	apiOK(t, err)
	if upd.Name != "Updated Name" || upd.Host != "new-nucleus.example.com:51820" || !upd.UpdatedAt.After(s.UpdatedAt) {
		t.Fatalf("updated = %+v", upd)
	}
	f.do("PATCH", "/api/v2/user-servers/"+s.ID, apiToken(c), `{"name":"P","host":"1.2.3.4:1","country":"fr"}`).wantStatus(t, http.StatusOK)

	f.do("DELETE", "/api/v2/user-servers/"+s.ID, apiToken(c), nil).wantStatus(t, http.StatusNoContent)
	f.do("GET", "/api/v2/user-servers/"+s.ID, apiToken(c), nil).wantError(t, http.StatusNotFound, "not_found")
	f.do("PUT", "/api/v2/user-servers/"+s.ID, apiToken(c), wire.UserServerRequest{Name: "x", Host: "a.b:1", Country: "US"}).
		wantError(t, http.StatusNotFound, "not_found")
	f.do("DELETE", "/api/v2/user-servers/"+s.ID, apiToken(c), nil).wantError(t, http.StatusNotFound, "not_found")
}

func TestServedNetworks(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	srv := f.userServer(c, "Home", "nucleus.example.com:51820", "US")
	served, err := c.CreateNetwork(f.ctx, wire.CreateNetworkRequest{Name: "served", ServerID: srv.ID})
	apiOK(t, err)
	f.network(c, "builtin", "") // on the built-in nucleus: not listed
	d := f.register(c, "hw-served")
	j := f.join(c, served.ID, d.ID)

	list, err := c.ServedNetworks(f.ctx, srv.ID)
	apiOK(t, err)
	if len(list) != 1 || list[0].ID != served.ID || list[0].Name != "served" || list[0].SecretKey != j.SecretKey {
		t.Fatalf("served = %+v", list)
	}
	if m := list[0].Members; len(m) != 1 || m[0].DeviceID != d.ID || m[0].VirtualIP != j.VirtualIP || m[0].VirtualIPv6 != j.VirtualIPv6 {
		t.Fatalf("members = %+v, join %+v", m, j)
	}

	other := f.userServer(c, "Other", "other.example.com:51820", "US")
	empty, err := c.ServedNetworks(f.ctx, other.ID)
	apiOK(t, err)
	f.do("GET", "/api/v2/user-servers/"+other.ID+"/networks", apiToken(c), nil).wantStatus(t, http.StatusOK)
	if empty == nil || len(empty) != 0 {
		t.Fatalf("server without networks: %#v", empty)
	}

	_, stranger := f.user("")
	f.do("GET", "/api/v2/user-servers/"+srv.ID+"/networks", apiToken(stranger), nil).wantError(t, http.StatusForbidden, "forbidden")
	f.do("GET", "/api/v2/user-servers/srv_nope/networks", apiToken(c), nil).wantError(t, http.StatusNotFound, "not_found")
	f.do("GET", "/api/v2/user-servers/"+srv.ID+"/networks", "", nil).wantError(t, http.StatusUnauthorized, "unauthorized")

	apiOK(t, c.Leave(f.ctx, served.ID, d.ID))
	list, err = c.ServedNetworks(f.ctx, srv.ID)
	apiOK(t, err)
	if len(list) != 1 || len(list[0].Members) != 0 {
		t.Fatalf("after leave: %+v", list)
	}
}

func TestUserServerValidation(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	existing := f.userServer(c, "ok", "ok.example.com:1", "US")
	good := wire.UserServerRequest{Name: "n", Host: "nucleus.example.com:51820", Country: "US"}
	with := func(mod func(*wire.UserServerRequest)) wire.UserServerRequest {
		r := good
		mod(&r)
		return r
	}
	for name, req := range map[string]wire.UserServerRequest{
		"host without port":  with(func(r *wire.UserServerRequest) { r.Host = "nucleus.example.com" }),
		"port only":          with(func(r *wire.UserServerRequest) { r.Host = ":51820" }),
		"port 0":             with(func(r *wire.UserServerRequest) { r.Host = "nucleus.example.com:0" }),
		"port 70000":         with(func(r *wire.UserServerRequest) { r.Host = "nucleus.example.com:70000" }),
		"port not a number":  with(func(r *wire.UserServerRequest) { r.Host = "nucleus.example.com:http" }),
		"host with spaces":   with(func(r *wire.UserServerRequest) { r.Host = "nucleus example.com:51820" }),
		"host with scheme":   with(func(r *wire.UserServerRequest) { r.Host = "https://nucleus.example.com:51820" }),
		"unbracketed ipv6":   with(func(r *wire.UserServerRequest) { r.Host = "2001:db8::1:51820" }),
		"empty host":         with(func(r *wire.UserServerRequest) { r.Host = "" }),
		"country XX":         with(func(r *wire.UserServerRequest) { r.Country = "XX" }),
		"country usa":        with(func(r *wire.UserServerRequest) { r.Country = "usa" }),
		"country empty":      with(func(r *wire.UserServerRequest) { r.Country = "" }),
		"name empty":         with(func(r *wire.UserServerRequest) { r.Name = "" }),
		"name too long":      with(func(r *wire.UserServerRequest) { r.Name = strings.Repeat("n", 129) }),
		"name control chars": with(func(r *wire.UserServerRequest) { r.Name = "a\nb" }),
	} {
		t.Run(name, func(t *testing.T) {
			f := f.in(t)
			f.do("POST", "/api/v2/user-servers", apiToken(c), req).wantError(t, http.StatusBadRequest, "invalid_request")
			f.do("PUT", "/api/v2/user-servers/"+existing.ID, apiToken(c), req).wantError(t, http.StatusBadRequest, "invalid_request")
		})
	}
	got, err := c.UserServers(f.ctx)
	apiOK(t, err)
	if len(got) != 1 || got[0].Host != "ok.example.com:1" || got[0].Name != "ok" {
		t.Fatalf("invalid requests changed the servers: %+v", got)
	}
	for _, host := range []string{"1.2.3.4:65535", "[::1]:1", "a-b.example.com.:51820", "localhost:8"} {
		if _, err := c.CreateUserServer(f.ctx, with(func(r *wire.UserServerRequest) { r.Host = host })); err != nil {
			t.Errorf("host %q rejected: %v", host, err)
		}
	}
}

func TestUserServerOfAnotherUser(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, alice := f.user("")
	_, bob := f.user("")
	s := f.userServer(bob, "bob's", "bob.example.com:51820", "GB")
	aliceNet := f.network(alice, "alice", "")

	tok := apiToken(alice)
	path := "/api/v2/user-servers/" + s.ID
	for name, r := range map[string]apiResp{
		"get":    f.do("GET", path, tok, nil),
		"update": f.do("PUT", path, tok, wire.UserServerRequest{Name: "mine", Host: "a.b:1", Country: "US"}),
		"delete": f.do("DELETE", path, tok, nil),
		"use in network update": f.do("PUT", "/api/v2/virtual-networks/"+aliceNet.ID, tok,
			map[string]string{"server_id": s.ID}),
		"use in network create": f.do("POST", "/api/v2/virtual-networks", tok,
			wire.CreateNetworkRequest{Name: "x", ServerID: s.ID}),
	} {
		t.Run(name, func(t *testing.T) { r.wantError(t, http.StatusForbidden, "forbidden") })
	}
	list, err := alice.UserServers(f.ctx)
	apiOK(t, err)
	if len(list) != 0 {
		t.Errorf("alice lists bob's servers: %+v", list)
	}
	got, err := bob.UserServers(f.ctx)
	apiOK(t, err)
	if len(got) != 1 || got[0].Name != "bob's" {
		t.Errorf("bob's server changed: %+v", got)
	}
}

// ---- 6. rate limits ----

// apiWantRateLimited fails unless r is a 429 with Retry-After >= 1 and a JSON
// rate_limited error; it returns the Retry-After.
func apiWantRateLimited(t *testing.T, r apiResp) time.Duration {
	t.Helper()
	r.wantError(t, http.StatusTooManyRequests, "rate_limited")
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || secs < 1 {
		t.Fatalf("Retry-After = %q, want an integer >= 1", r.Header.Get("Retry-After"))
	}
	return time.Duration(secs) * time.Second
}

func TestRateLimitToken(t *testing.T) {
	t.Parallel()
	apiRateLimitTokenCase(t, edgetest.Options{})
}

func apiRateLimitTokenCase(t *testing.T, o edgetest.Options) {
	inner := o.Config
	o.Config = func(c *config.Config) {
		if inner != nil {
			inner(c)
		}
		c.RateLimitToken, c.RateLimitIP = 2, 0
	}
	f := newAPIFx(t, o)
	u, c := f.user("")
	tok := apiToken(c)
	burst := 4 // 2/s with a burst of 2 s

	for i := range burst {
		if r := f.do("GET", "/api/v2/users/me", tok, nil); r.Status != http.StatusOK {
			t.Fatalf("request %d of the burst: %s", i+1, r)
		}
	}
	retry := apiWantRateLimited(t, f.do("GET", "/api/v2/devices", tok, nil))
	_, err := c.Me(f.ctx)
	apiWantErr(t, err, http.StatusTooManyRequests, "rate_limited")
	var ae *client.APIError
	if errors.As(err, &ae) && ae.RetryAfter < time.Second {
		t.Errorf("client RetryAfter = %v", ae.RetryAfter)
	}

	// Another session of the same user has its own budget.
	other := f.env.Client(u)
	_, err = other.Me(f.ctx)
	apiOK(t, err)

	f.env.Clock.Advance(retry)
	f.do("GET", "/api/v2/users/me", tok, nil).wantStatus(t, http.StatusOK)
	f.env.Clock.Advance(10 * time.Second) // a full bucket again
	for range burst {
		f.do("GET", "/api/v2/users/me", tok, nil).wantStatus(t, http.StatusOK)
	}
	apiWantRateLimited(t, f.do("POST", "/api/v2/devices/heartbeat", tok, `{"hardware_id":"x"}`))
}

func TestRateLimitIP(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, apiConfig(func(c *config.Config) { c.RateLimitIP, c.RateLimitToken = 3, 0 }))
	u := f.env.NewUser("")
	burst := 6 // 3/s with a burst of 2 s

	// Public endpoints count: spend the whole burst on failed logins.
	for i := range burst {
		r := f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: "oek_wrong"})
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("request %d of the burst: %s", i+1, r)
		}
	}
	retry := apiWantRateLimited(t, f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: u.Key}))
	apiWantRateLimited(t, f.do("GET", "/api/v2/users/me", "", nil))

	f.env.Clock.Advance(retry)
	c := f.env.Client(u) // the bucket refills: login passes again

	f.env.Clock.Advance(time.Minute)
	for range burst {
		f.do("GET", "/api/v2/users/me", apiToken(c), nil).wantStatus(t, http.StatusOK)
	}
	apiWantRateLimited(t, f.do("GET", "/api/v2/users/me", apiToken(c), nil))
}

func TestRateLimitOff(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, apiConfig(func(c *config.Config) { c.RateLimitIP, c.RateLimitToken = 0, 0 }))
	u, c := f.user("")
	tok := apiToken(c)
	for i := range 150 {
		if r := f.do("GET", "/api/v2/users/me", tok, nil); r.Status != http.StatusOK {
			t.Fatalf("request %d: %s", i+1, r)
		}
	}
	for i := range 30 {
		if r := f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: u.Key}); r.Status != http.StatusOK {
			t.Fatalf("login %d: %s", i+1, r)
		}
	}
}

// ---- 7. bad input ----

func TestBadInputNever5xx(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	u, c := f.user("")
	tok := apiToken(c)
	d := f.register(c, "hw")
	n := f.network(c, "net", "")
	f.join(c, n.ID, d.ID)
	s := f.userServer(c, "srv", "srv.example.com:51820", "US")

	type endpoint struct {
		method, path string
		authed       bool
		wrongType    []string // bodies with a field of the wrong JSON type
	}
	var endpoints []endpoint
	add := func(methods, path string, authed bool, wrongType ...string) {
		for _, m := range strings.Split(methods, ",") {
			endpoints = append(endpoints, endpoint{m, path, authed, wrongType})
		}
	}
	add("POST", "/api/v2/auth/login/security-key", false, `{"key":5}`, `{"key":["k"]}`)
	add("POST", "/api/v2/auth/refresh", false, `{"refresh_token":5}`, `{"refreshToken":true}`)
	add("POST", "/api/v2/auth/logout", false, `{"refresh_token":{}}`)
	add("POST", "/api/v2/security-keys", true, `{"name":5}`, `{"name":"k","expires_in":3600}`)
	add("POST", "/api/v2/devices", true, `{"name":5,"hardware_uuid":"x"}`, `{"hardware_uuid":5}`, `{"hardware_id":[]}`, `{"hardware_uuid":"x","platform":{}}`)
	add("POST", "/api/v2/devices/heartbeat", true, `{"hardware_id":5}`, `{"hardware_id":"hw","is_exit_node":"yes"}`, `{"hardware_uuid":1}`)
	add("PUT,PATCH", "/api/v2/devices/"+d.ID, true, `{"name":5}`, `{"name":null,"x":1}`)
	add("POST", "/api/v2/virtual-networks", true, `{"name":5}`, `{"name":"n","ip_range":5}`, `{"name":"n","server_id":5}`)
	add("PUT,PATCH", "/api/v2/virtual-networks/"+n.ID, true, `{"name":5}`, `{"server_id":5}`)
	add("PUT,PATCH", "/api/v2/virtual-networks/"+n.ID+"/devices/"+d.ID, true, `{"is_exit_node":"yes"}`, `{"exit_node":5}`, `{"is_exit_node":1}`)
	add("POST", "/api/v2/user-servers", true, `{"name":5,"host":"a.b:1","country":"US"}`, `{"name":"n","host":5,"country":"US"}`, `{"name":"n","host":"a.b:1","country":5}`)
	add("PUT,PATCH", "/api/v2/user-servers/"+s.ID, true, `{"name":5,"host":"a.b:1","country":"US"}`, `{"name":"n","host":["a"],"country":"US"}`)

	huge := `{"name":"` + strings.Repeat("a", 2<<20) + `"}`
	generic := map[string]string{
		"malformed":        `{"name":`,
		"unquoted key":     `{name: "x"}`,
		"trailing comma":   `{"name":"x",}`,
		"not json":         `name=x`,
		"array":            `[]`,
		"string":           `"str"`,
		"number":           `5`,
		"bool":             `true`,
		"empty":            ``,
		"trailing data":    `{} {}`,
		"trailing garbage": `{"name":"x"} x`,
		"invalid utf8 key": "{\"\xff\":1",
		"2 MB":             huge,
	}
	for _, ep := range endpoints {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			f := f.in(t)
			tk := ""
			if ep.authed {
				tk = tok
			}
			for name, body := range generic {
				r := f.do(ep.method, ep.path, tk, body)
				want := http.StatusBadRequest
				if name == "2 MB" {
					want = http.StatusRequestEntityTooLarge
				}
				t.Run(name, func(t *testing.T) {
					if r.Status >= 500 || (r.Status != http.StatusBadRequest && r.Status != http.StatusRequestEntityTooLarge) {
						t.Fatalf("got %s, want 400 or 413", r)
					}
					r.wantError(t, want, "")
				})
			}
			for _, body := range ep.wrongType {
				r := f.do(ep.method, ep.path, tk, body)
				t.Run("wrong type "+body, func(t *testing.T) { r.wantError(t, http.StatusBadRequest, "invalid_request") })
			}
		})
	}

	// Nothing above changed the state.
	if got := f.device(c, d.ID); got.Name != "dev-hw" {
		t.Errorf("device renamed by bad input: %+v", got)
	}
	if got, err := c.Network(f.ctx, n.ID); err != nil || got.Name != "net" {
		t.Errorf("network changed by bad input: %+v %v", got, err)
	}
	if _, err := f.anon().LoginSecurityKey(f.ctx, u.Key); err != nil {
		t.Errorf("login after bad input: %v", err)
	}

	t.Run("browser login forms", func(t *testing.T) {
		f := f.in(t)
		for _, path := range []string{"/login", "/login/approve"} {
			for _, body := range []string{"", "%zz", huge, `{"session":1}`} {
				req, err := http.NewRequestWithContext(f.ctx, "POST", f.env.URL+path, strings.NewReader(body))
				apiOK(t, err)
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if r := f.send(req); r.Status >= 500 || r.Status < 400 {
					t.Errorf("POST %s with %.20q: %d, want 4xx", path, body, r.Status)
				}
			}
		}
	})
}

func TestUnknownRoutes(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	for _, mp := range [][2]string{
		{"GET", "/api/v2/nope"},
		{"GET", "/api/v3/devices"},
		{"POST", "/api/whatever"},
		{"GET", "/api/"},
		{"GET", "/api/v2/devices/x/y"},
		{"DELETE", "/api/v2/virtual-networks/vn/devices/dev/extra"},
	} {
		for _, tok := range []string{"", apiToken(c)} {
			r := f.do(mp[0], mp[1], tok, nil)
			t.Run(mp[0]+" "+mp[1], func(t *testing.T) { r.wantError(t, http.StatusNotFound, "not_found") })
		}
	}
}

func TestWrongMethod(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	cases := [][2]string{
		{"PUT", "/api/v2/auth/login/security-key"},
		{"GET", "/api/v2/auth/refresh"},
		{"DELETE", "/api/v2/auth/logout"},
		{"DELETE", "/api/v2/devices"},
		{"PUT", "/api/v2/devices"},
		{"POST", "/api/v2/users/me"},
		{"DELETE", "/api/v2/user-servers"},
		{"PATCH", "/api/v2/virtual-networks"},
		{"POST", "/api/v2/virtual-networks/vn/devices"},
		{"POST", "/api/v2/security-keys/key_1"},
	}
	// Outside /api/ the mux answers 405 itself.
	f.do("PUT", "/login", "", nil).wantStatus(t, http.StatusMethodNotAllowed)

	for _, mp := range cases {
		r := f.do(mp[0], mp[1], apiToken(c), nil)
		t.Run(mp[0]+" "+mp[1], func(t *testing.T) {
			r.wantError(t, http.StatusMethodNotAllowed, "")
			if r.Header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
		})
	}
}

// ---- 8. both backends ----

// apiCoreFlow is the life of a client: login, register, network, join,
// heartbeats and exit-node selection, presence, refresh.
func apiCoreFlow(t *testing.T, f *apiFx) {
	u := f.env.NewUser("")
	r := f.do("POST", "/api/v2/auth/login/security-key", "", wire.LoginKeyRequest{Key: u.Key})
	r.wantStatus(t, http.StatusOK)
	var tr wire.TokenResponse
	r.decode(t, &tr)
	c := f.anon()
	c.SetTokens(tr.Token, tr.RefreshToken)

	r = f.do("POST", "/api/v2/devices", tr.Token, wire.RegisterDeviceRequest{Name: "A", HardwareUUID: "hw-a", Platform: "linux"})
	r.wantStatus(t, http.StatusCreated)
	var a wire.Device
	r.decode(t, &a)
	f.do("POST", "/api/v2/devices", tr.Token, wire.RegisterDeviceRequest{Name: "A", HardwareUUID: "hw-a"}).wantStatus(t, http.StatusOK)
	e := f.register(c, "hw-e")

	n := f.network(c, "core", "100.66.7.0/24")
	ja, je := f.join(c, n.ID, a.ID), f.join(c, n.ID, e.ID)
	if ja.VirtualIP != "100.66.7.1" || je.VirtualIP != "100.66.7.2" || ja.SecretKey == "" || ja.SecretKey != je.SecretKey {
		t.Fatalf("joins = %+v %+v", ja, je)
	}
	if again := f.join(c, n.ID, a.ID); again.VirtualIP != ja.VirtualIP || again.VirtualIPv6 != ja.VirtualIPv6 {
		t.Fatalf("rejoin = %+v", again)
	}

	if hb := f.heartbeat(c, "hw-a", false); len(hb.ExitNodes) != 0 ||
		hb.LastSeen != f.env.Clock.Now().UTC().Truncate(time.Second).Format(time.RFC3339) {
		t.Fatalf("first heartbeat = %+v", hb)
	}
	f.heartbeat(c, "hw-e", true)
	on := true
	f.updateMember(c, n.ID, e.ID, wire.UpdateMemberRequest{IsExitNode: &on})
	f.updateMember(c, n.ID, a.ID, wire.UpdateMemberRequest{ExitNode: wire.Some(e.ID)})
	if hb := f.heartbeat(c, "hw-a", false); hb.ExitNodes[n.ID] != je.VirtualIP || len(hb.ExitNodes) != 1 {
		t.Fatalf("exit_nodes = %v, want {%s: %s}", hb.ExitNodes, n.ID, je.VirtualIP)
	}
	ms, err := c.Members(f.ctx, n.ID)
	apiOK(t, err)
	if len(ms) != 2 || !ms[0].Online || !ms[1].Online {
		t.Fatalf("members = %+v, want both online", ms)
	}

	// Presence survives a flush to the store.
	apiOK(t, f.env.Service.Flush(f.ctx))
	if d := f.device(c, e.ID); !d.Online || !d.ExitNodeConsent {
		t.Fatalf("E after flush = %+v", d)
	}

	f.env.Clock.Advance(f.env.Config.OnlineWindow)
	if hb := f.heartbeat(c, "hw-a", false); len(hb.ExitNodes) != 0 {
		t.Fatalf("exit node offline but listed: %v", hb.ExitNodes)
	}
	if d := f.device(c, e.ID); d.Online {
		t.Fatalf("E online after the window: %+v", d)
	}
	f.heartbeat(c, "hw-e", true)
	if hb := f.heartbeat(c, "hw-a", false); hb.ExitNodes[n.ID] != je.VirtualIP {
		t.Fatalf("exit node back online but not listed: %v", hb.ExitNodes)
	}

	// The access token expires; the client refreshes.
	f.env.Clock.Advance(f.env.Config.AccessTokenTTL)
	f.do("GET", "/api/v2/devices", tr.Token, nil).wantError(t, http.StatusUnauthorized, "unauthorized")
	devs, err := c.Devices(f.ctx)
	apiOK(t, err)
	if len(devs) != 2 {
		t.Fatalf("devices = %+v", devs)
	}
	f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: tr.RefreshToken}).
		wantError(t, http.StatusUnauthorized, "unauthorized")
	// The replay revoked the whole family, the client's current access
	// token included; it logs in again.
	f.do("GET", "/api/v2/devices", apiToken(c), nil).wantError(t, http.StatusUnauthorized, "unauthorized")
	_, err = c.LoginSecurityKey(f.ctx, u.Key)
	apiOK(t, err)

	f.updateMember(c, n.ID, a.ID, wire.UpdateMemberRequest{ExitNode: wire.Null()})
	f.heartbeat(c, "hw-e", true)
	if hb := f.heartbeat(c, "hw-a", false); len(hb.ExitNodes) != 0 {
		t.Fatalf("exit_nodes after clear = %v", hb.ExitNodes)
	}
	apiOK(t, c.Leave(f.ctx, n.ID, a.ID))
	apiOK(t, c.DeleteNetwork(f.ctx, n.ID))
}

func TestCoreFlowSQLite(t *testing.T) {
	t.Parallel()
	apiCoreFlow(t, newAPIFx(t, edgetest.Options{}))
}

func TestCoreFlowPostgresRedis(t *testing.T) {
	t.Parallel()
	pgRedis := edgetest.Options{Postgres: true, Redis: true}
	t.Run("flow", func(t *testing.T) {
		t.Parallel()
		apiCoreFlow(t, newAPIFx(t, pgRedis))
	})
	t.Run("exit matrix", func(t *testing.T) {
		t.Parallel()
		f := newAPIFx(t, pgRedis)
		s := newAPIExitScenario(f)
		s.selectExit(wire.Some(s.e.ID))
		s.enableExit(true)
		s.heartbeat(s.c, "e", true)
		s.wantExit(true)
		s.heartbeat(s.c, "e", false)
		s.wantExit(false)
		s.heartbeat(s.c, "e", true)
		f.env.Clock.Advance(f.env.Config.OnlineWindow)
		s.wantExit(false)
		s.heartbeat(s.c, "e", true)
		apiOK(t, s.c.Leave(f.ctx, s.n.ID, s.e.ID))
		s.wantExit(false)
	})
	t.Run("rate limit", func(t *testing.T) {
		t.Parallel()
		apiRateLimitTokenCase(t, pgRedis)
	})
	t.Run("limits and ownership", func(t *testing.T) {
		t.Parallel()
		o := pgRedis
		o.Config = apiFreePlan(1, 1)
		f := newAPIFx(t, o)
		_, c := f.user("")
		d := f.register(c, "one")
		f.do("POST", "/api/v2/devices", apiToken(c), wire.RegisterDeviceRequest{HardwareUUID: "two"}).wantError(t, http.StatusBadRequest, "limit_reached")
		f.do("POST", "/api/v2/devices", apiToken(c), wire.RegisterDeviceRequest{HardwareUUID: "one"}).wantStatus(t, http.StatusOK)
		n := f.network(c, "tiny", "100.66.2.0/30")
		f.do("POST", "/api/v2/virtual-networks", apiToken(c), wire.CreateNetworkRequest{Name: "2"}).wantError(t, http.StatusBadRequest, "limit_reached")
		_, other := f.user("")
		f.do("GET", "/api/v2/virtual-networks/"+n.ID, apiToken(other), nil).wantError(t, http.StatusForbidden, "forbidden")
		f.do("GET", "/api/v2/devices/"+d.ID, apiToken(other), nil).wantError(t, http.StatusForbidden, "forbidden")
		if j := f.join(c, n.ID, d.ID); j.SubnetMask != "255.255.255.252" {
			t.Fatalf("join = %+v", j)
		}
	})
}
