package api_test

// Behaviour tests of the OmniEdge client API (../shared/specs/omniedge-client-api.md)
// through the real HTTP server of edgetest: the Go client for most calls,
// raw requests where the status line, headers or exact JSON shape matter.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
	"github.com/omniedge/omni/internal/platform/config"
)

// ---- fixture and helpers ----
//
// The tests that use them live by resource: auth_test.go, devices_test.go,
// heartbeat_test.go (with exit nodes), networks_test.go (with joins),
// userservers_test.go, ratelimit_test.go, badinput_test.go and
// backends_test.go (one flow on SQLite and on PostgreSQL + Redis).

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
