package api_test

// TestSpecClientAPI follows the published client contract
// (shared/specs/omniedge-client-api.md) section by section, speaking raw
// JSON over net/http: no client package and no wire types, so a renamed
// field or a changed JSON type fails here even if both sides of the Go
// code agree.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/platform/config"
)

// specResp is one raw API answer.
type specResp struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
}

func (r specResp) String() string {
	return fmt.Sprintf("%s %s -> %d %s", r.method, r.path, r.status, bytes.TrimSpace(r.body))
}

// specCall sends body (raw JSON, "" for none) with an optional bearer token.
func specCall(t *testing.T, env *edgetest.Env, method, path, token, body string) specResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, env.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return specResp{method: method, path: path, status: resp.StatusCode, header: resp.Header, body: b}
}

// specExpect checks the status and returns the body decoded as an object
// (nil for an empty body).
func specExpect(t *testing.T, r specResp, status int) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("want %d: %s", status, r)
	}
	if len(bytes.TrimSpace(r.body)) == 0 {
		return nil
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json: %s", ct, r)
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object (%v): %s", err, r)
	}
	return m
}

// specExpectList checks the status and returns the body as an array.
func specExpectList(t *testing.T, r specResp, status int) []any {
	t.Helper()
	if r.status != status {
		t.Fatalf("want %d: %s", status, r)
	}
	var l []any
	if err := json.Unmarshal(r.body, &l); err != nil || l == nil {
		t.Fatalf("body is not a JSON array (%v): %s", err, r)
	}
	return l
}

// specExpectError checks an error answer: status, and a JSON body
// {"error": {"code": code, "message": "..."}}.
func specExpectError(t *testing.T, r specResp, status int, code string) {
	t.Helper()
	m := specExpect(t, r, status)
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf(`want {"error": {...}}: %s`, r)
	}
	if got, _ := e["code"].(string); got != code {
		t.Errorf("error.code %q, want %q: %s", got, code, r)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("error.message is empty: %s", r)
	}
}

// specString returns m[key], failing unless it is a non-empty JSON string.
func specString(t *testing.T, r specResp, m map[string]any, key string) string {
	t.Helper()
	v, ok := m[key]
	if !ok {
		t.Fatalf("key %q missing: %s", key, r)
	}
	s, ok := v.(string)
	if !ok || s == "" {
		t.Fatalf("key %q is %T %v, want a non-empty string: %s", key, v, v, r)
	}
	return s
}

// specInt returns m[key], failing unless it is a JSON integer.
func specInt(t *testing.T, r specResp, m map[string]any, key string) int {
	t.Helper()
	v, ok := m[key].(float64)
	if !ok || v != math.Trunc(v) {
		t.Fatalf("key %q is %T %v, want an integer: %s", key, m[key], m[key], r)
	}
	return int(v)
}

// specObject returns m[key], failing unless it is a JSON object.
func specObject(t *testing.T, r specResp, m map[string]any, key string) map[string]any {
	t.Helper()
	v, ok := m[key].(map[string]any)
	if !ok {
		t.Fatalf("key %q is %T %v, want an object: %s", key, m[key], m[key], r)
	}
	return v
}

// specLogin logs in with a security key and returns the pair.
func specLogin(t *testing.T, env *edgetest.Env, key string) (token, refresh string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"key": key})
	r := specCall(t, env, http.MethodPost, "/api/v2/auth/login/security-key", "", string(b))
	m := specExpect(t, r, http.StatusOK)
	return specString(t, r, m, "token"), specString(t, r, m, "refresh_token")
}

// specHeartbeat sends the spec's heartbeat and checks the response shape;
// it returns exit_nodes.
func specHeartbeat(t *testing.T, env *edgetest.Env, token, hw string, exit bool) map[string]any {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"hardware_id": hw, "is_exit_node": exit})
	r := specCall(t, env, http.MethodPost, "/api/v2/devices/heartbeat", token, string(b))
	m := specExpect(t, r, http.StatusOK)
	// secret_versions is an addition (docs/edge-api.md) present once the
	// device is a member of a network.
	if _, extra := m["secret_versions"]; len(m) != 3 && !(len(m) == 4 && extra) {
		t.Errorf("heartbeat keys %v, want exactly message, last_seen, exit_nodes (and secret_versions): %s", slices.Sorted(maps.Keys(m)), r)
	}
	if msg := specString(t, r, m, "message"); msg != "Heartbeat received" {
		t.Errorf("message %q, want %q", msg, "Heartbeat received")
	}
	ls := specString(t, r, m, "last_seen")
	at, err := time.Parse(time.RFC3339, ls)
	if err != nil || !strings.HasSuffix(ls, "Z") {
		t.Errorf("last_seen %q is not an RFC 3339 UTC time like 2024-03-20T10:00:00Z (%v)", ls, err)
	}
	if want := env.Clock.Now().UTC().Truncate(time.Second); !at.Equal(want) {
		t.Errorf("last_seen %v, want the server's now %v", at, want)
	}
	return specObject(t, r, m, "exit_nodes")
}

// specStep runs one section as a subtest; later sections depend on earlier
// ones, so the first failure stops the test.
func specStep(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

func TestSpecClientAPI(t *testing.T) {
	t.Parallel()
	// Two devices per free account, so the spec's plan-limit 400 is cheap.
	env := edgetest.New(t, edgetest.Options{Config: func(c *config.Config) {
		c.Plans[config.PlanFree] = config.PlanLimit{MaxDevices: 2, MaxNetworks: 3}
	}})
	user, intruder := env.NewUser(""), env.NewUser("")

	var (
		token, refresh string
		deviceID       string // My-Robot-Agent
		exitID         string // the exit node
		vnID           string
		join           map[string]any
	)
	const hw = "unique-persistent-uuid"

	specStep(t, "1 authentication: security key", func(t *testing.T) {
		token, refresh = specLogin(t, env, user.Key)
		if token == refresh {
			t.Errorf("token and refresh_token are equal")
		}
		specExpectError(t, specCall(t, env, http.MethodPost, "/api/v2/auth/login/security-key", "", `{"key": "oek_not-a-key"}`), http.StatusUnauthorized, "unauthorized")
	})

	specStep(t, "1 authentication: bearer usage", func(t *testing.T) {
		specExpectList(t, specCall(t, env, http.MethodGet, "/api/v2/devices", token, ""), http.StatusOK)
		specExpectError(t, specCall(t, env, http.MethodGet, "/api/v2/devices", "", ""), http.StatusUnauthorized, "unauthorized")
		specExpectError(t, specCall(t, env, http.MethodGet, "/api/v2/devices", token+"x", ""), http.StatusUnauthorized, "unauthorized")
	})

	specStep(t, "1 authentication: session init", func(t *testing.T) {
		r := specCall(t, env, http.MethodGet, "/api/v2/auth/login/session", "", "")
		m := specExpect(t, r, http.StatusOK)
		id := specString(t, r, m, "uuid")
		if au := specString(t, r, m, "auth_url"); !strings.HasSuffix(au, "/login?session="+id) {
			t.Errorf("auth_url %q does not carry the session %s", au, id)
		}
	})

	specStep(t, "2 device lifecycle: register", func(t *testing.T) {
		body := `{"name":"My-Robot-Agent","hardware_uuid":"unique-persistent-uuid","platform":"linux"}`
		r := specCall(t, env, http.MethodPost, "/api/v2/devices", token, body)
		m := specExpect(t, r, http.StatusCreated)
		deviceID = specString(t, r, m, "id")
		for k, want := range map[string]string{"name": "My-Robot-Agent", "hardware_uuid": hw, "platform": "linux"} {
			if got := specString(t, r, m, k); got != want {
				t.Errorf("%s %q, want %q", k, got, want)
			}
		}
		// The hardware id is the device's identity: registering again
		// returns the same device.
		r = specCall(t, env, http.MethodPost, "/api/v2/devices", token, body)
		if again := specString(t, r, specExpect(t, r, http.StatusOK), "id"); again != deviceID {
			t.Errorf("re-registering gave device %s, want %s", again, deviceID)
		}
		l := specExpectList(t, specCall(t, env, http.MethodGet, "/api/v2/devices", token, ""), http.StatusOK)
		if len(l) != 1 {
			t.Errorf("%d devices listed, want 1", len(l))
		}
	})

	specStep(t, "2 device lifecycle: heartbeat", func(t *testing.T) {
		r := specCall(t, env, http.MethodGet, "/api/v2/devices/"+deviceID, token, "")
		if online, _ := specExpect(t, r, http.StatusOK)["online"].(bool); online {
			t.Errorf("device online before its first heartbeat: %s", r)
		}
		if x := specHeartbeat(t, env, token, hw, false); len(x) != 0 {
			t.Errorf("exit_nodes %v, want {}", x)
		}
		r = specCall(t, env, http.MethodGet, "/api/v2/devices/"+deviceID, token, "")
		if online, _ := specExpect(t, r, http.StatusOK)["online"].(bool); !online {
			t.Errorf("device not online after a heartbeat: %s", r)
		}
		specExpectError(t, specCall(t, env, http.MethodPost, "/api/v2/devices/heartbeat", token, `{"hardware_id":"never-registered","is_exit_node":false}`), http.StatusNotFound, "not_found")
	})

	specStep(t, "3 virtual networking: create network (dashboard)", func(t *testing.T) {
		r := specCall(t, env, http.MethodPost, "/api/v2/virtual-networks", token, `{"name":"Spec Network"}`)
		m := specExpect(t, r, http.StatusCreated)
		vnID = specString(t, r, m, "id")
	})

	specStep(t, "3 virtual networking: join", func(t *testing.T) {
		path := "/api/v2/virtual-networks/" + vnID + "/devices/" + deviceID
		r := specCall(t, env, http.MethodPost, path, token, "")
		join = specExpect(t, r, http.StatusOK)
		if c := specString(t, r, join, "cluster"); c != "Spec Network" {
			t.Errorf("cluster %q, want the network name", c)
		}
		specString(t, r, join, "secret_key")
		ip4, err := netip.ParseAddr(specString(t, r, join, "virtual_ip"))
		if err != nil || !ip4.Is4() {
			t.Fatalf("virtual_ip is not IPv4 (%v): %s", err, r)
		}
		ip6, err := netip.ParseAddr(specString(t, r, join, "virtual_ip_v6"))
		if err != nil || !ip6.Is6() || ip6.Is4In6() {
			t.Fatalf("virtual_ip_v6 is not IPv6 (%v): %s", err, r)
		}
		mask, err := netip.ParseAddr(specString(t, r, join, "subnet_mask"))
		if err != nil || !mask.Is4() {
			t.Fatalf("subnet_mask is not a dotted IPv4 mask (%v): %s", err, r)
		}
		ones, bits := net.IPMask(mask.AsSlice()).Size()
		if bits != 32 {
			t.Fatalf("subnet_mask %s is not a contiguous mask: %s", mask, r)
		}
		p6 := specInt(t, r, join, "subnet_prefix_v6")
		if p6 != 128-(32-ones) {
			t.Errorf("subnet_prefix_v6 %d does not mirror subnet_mask /%d (want %d)", p6, ones, 128-(32-ones))
		}
		if ones != 24 || p6 != 120 {
			t.Errorf("a default network is /%d and /%d, want /24 and /120 as in the spec", ones, p6)
		}
		// The v4 and v6 addresses share the host part of their subnets.
		net4 := netip.PrefixFrom(ip4, ones).Masked()
		net6 := netip.PrefixFrom(ip6, p6).Masked()
		low32 := func(a netip.Addr) uint32 { s := a.AsSlice(); return binary.BigEndian.Uint32(s[len(s)-4:]) }
		h4, h6 := low32(ip4)-low32(net4.Addr()), low32(ip6)-low32(net6.Addr())
		if h4 == 0 || h4 != h6 {
			t.Errorf("virtual_ip %s (host %d of %s) and virtual_ip_v6 %s (host %d of %s) do not share a valid host part", ip4, h4, net4, ip6, h6, net6)
		}
		srv := specObject(t, r, join, "server")
		host := specString(t, r, srv, "host")
		if h, port, err := net.SplitHostPort(host); err != nil || h == "" || port == "" {
			t.Errorf("server.host %q is not HOST:PORT: %s", host, r)
		}
		specString(t, r, srv, "name")

		// Joining again keeps the addresses.
		r2 := specCall(t, env, http.MethodPost, path, token, "")
		again := specExpect(t, r2, http.StatusOK)
		if again["virtual_ip"] != join["virtual_ip"] || again["virtual_ip_v6"] != join["virtual_ip_v6"] || again["secret_key"] != join["secret_key"] {
			t.Errorf("joining again changed the membership:\n first %s\nsecond %s", r, r2)
		}
	})

	specStep(t, "3 virtual networking: leave", func(t *testing.T) {
		path := "/api/v2/virtual-networks/" + vnID + "/devices/" + deviceID
		specExpect(t, specCall(t, env, http.MethodDelete, path, token, ""), http.StatusOK)
		l := specExpectList(t, specCall(t, env, http.MethodGet, "/api/v2/virtual-networks/"+vnID+"/devices", token, ""), http.StatusOK)
		if len(l) != 0 {
			t.Errorf("members after leave: %v", l)
		}
		specExpectError(t, specCall(t, env, http.MethodDelete, path, token, ""), http.StatusNotFound, "not_found")
		// Rejoin for the exit-node section.
		r := specCall(t, env, http.MethodPost, path, token, "")
		join = specExpect(t, r, http.StatusOK)
	})

	var exitIP string
	specStep(t, "4 exit node", func(t *testing.T) {
		r := specCall(t, env, http.MethodPost, "/api/v2/devices", token, `{"name":"Exit-Node","hardware_uuid":"exit-node-uuid","platform":"linux"}`)
		exitID = specString(t, r, specExpect(t, r, http.StatusCreated), "id")
		r = specCall(t, env, http.MethodPost, "/api/v2/virtual-networks/"+vnID+"/devices/"+exitID, token, "")
		exitIP = specString(t, r, specExpect(t, r, http.StatusOK), "virtual_ip")

		// 1. Local consent.
		specHeartbeat(t, env, token, "exit-node-uuid", true)
		// 2. Network permission.
		r = specCall(t, env, http.MethodPut, "/api/v2/virtual-networks/"+vnID+"/devices/"+exitID, token, `{"is_exit_node": true}`)
		if v, _ := specExpect(t, r, http.StatusOK)["is_exit_node"].(bool); !v {
			t.Errorf("is_exit_node not set: %s", r)
		}
		// Using it: the first device selects it.
		r = specCall(t, env, http.MethodPut, "/api/v2/virtual-networks/"+vnID+"/devices/"+deviceID, token, `{"exit_node": "`+exitID+`"}`)
		if v, _ := specExpect(t, r, http.StatusOK)["exit_node"].(string); v != exitID {
			t.Errorf("exit_node not selected: %s", r)
		}
		x := specHeartbeat(t, env, token, hw, false)
		if len(x) != 1 || x[vnID] != exitIP {
			t.Fatalf(`exit_nodes %v, want {%q: %q}`, x, vnID, exitIP)
		}
		// Without local consent the exit node is not offered...
		specHeartbeat(t, env, token, "exit-node-uuid", false)
		if x := specHeartbeat(t, env, token, hw, false); len(x) != 0 {
			t.Errorf("exit_nodes %v after the exit node withdrew consent, want {}", x)
		}
		specHeartbeat(t, env, token, "exit-node-uuid", true)
		if x := specHeartbeat(t, env, token, hw, false); x[vnID] != exitIP {
			t.Errorf("exit_nodes %v after consent was given again, want {%q: %q}", x, vnID, exitIP)
		}
		// ...nor without the admin's permission.
		specExpect(t, specCall(t, env, http.MethodPut, "/api/v2/virtual-networks/"+vnID+"/devices/"+exitID, token, `{"is_exit_node": false}`), http.StatusOK)
		if x := specHeartbeat(t, env, token, hw, false); len(x) != 0 {
			t.Errorf("exit_nodes %v after the admin disabled the exit node, want {}", x)
		}
		specExpect(t, specCall(t, env, http.MethodPut, "/api/v2/virtual-networks/"+vnID+"/devices/"+exitID, token, `{"is_exit_node": true}`), http.StatusOK)
		if x := specHeartbeat(t, env, token, hw, false); x[vnID] != exitIP {
			t.Errorf("exit_nodes %v after re-enabling, want {%q: %q}", x, vnID, exitIP)
		}
	})

	specStep(t, "5 IPv6 dual-stack", func(t *testing.T) {
		ula := netip.MustParsePrefix("fd00::/8")
		cgnat := netip.MustParsePrefix("100.64.0.0/10")
		r := specCall(t, env, http.MethodGet, "/api/v2/virtual-networks/"+vnID+"/devices", token, "")
		members := specExpectList(t, r, http.StatusOK)
		if len(members) != 2 {
			t.Fatalf("want 2 members: %s", r)
		}
		seen := map[netip.Addr]bool{}
		for _, mv := range members {
			m, _ := mv.(map[string]any)
			ip4, err4 := netip.ParseAddr(specString(t, r, m, "virtual_ip"))
			ip6, err6 := netip.ParseAddr(specString(t, r, m, "virtual_ip_v6"))
			if err4 != nil || !cgnat.Contains(ip4) {
				t.Errorf("virtual_ip %v outside %s: %s", ip4, cgnat, r)
			}
			if err6 != nil || !ula.Contains(ip6) {
				t.Errorf("virtual_ip_v6 %v outside %s: %s", ip6, ula, r)
			}
			if seen[ip4] || seen[ip6] {
				t.Errorf("address reused between members: %s", r)
			}
			seen[ip4], seen[ip6] = true, true
		}
		ip6, _ := netip.ParseAddr(join["virtual_ip_v6"].(string))
		if !ula.Contains(ip6) {
			t.Errorf("join virtual_ip_v6 %s outside fd00::/8", ip6)
		}
	})

	specStep(t, "6 custom user servers", func(t *testing.T) {
		if l := specExpectList(t, specCall(t, env, http.MethodGet, "/api/v2/user-servers", token, ""), http.StatusOK); len(l) != 0 {
			t.Errorf("user servers before creating one: %v", l)
		}
		r := specCall(t, env, http.MethodPost, "/api/v2/user-servers", token, `{"name":"My Home Lab","host":"nucleus.example.com:51820","country":"US"}`)
		m := specExpect(t, r, http.StatusCreated)
		id := specString(t, r, m, "id")
		for k, want := range map[string]string{"name": "My Home Lab", "host": "nucleus.example.com:51820", "country": "US"} {
			if got := specString(t, r, m, k); got != want {
				t.Errorf("created %s %q, want %q", k, got, want)
			}
		}
		r = specCall(t, env, http.MethodGet, "/api/v2/user-servers", token, "")
		l := specExpectList(t, r, http.StatusOK)
		if len(l) != 1 || l[0].(map[string]any)["id"] != id {
			t.Errorf("list after create: %s", r)
		}
		r = specCall(t, env, http.MethodPut, "/api/v2/user-servers/"+id, token, `{"name":"Updated Name","host":"new-nucleus.example.com:51820","country":"US"}`)
		m = specExpect(t, r, http.StatusOK)
		for k, want := range map[string]string{"id": id, "name": "Updated Name", "host": "new-nucleus.example.com:51820", "country": "US"} {
			if got := specString(t, r, m, k); got != want {
				t.Errorf("updated %s %q, want %q", k, got, want)
			}
		}
		specExpectError(t, specCall(t, env, http.MethodPost, "/api/v2/user-servers", token, `{"name":"Bad","host":"no-port","country":"US"}`), http.StatusBadRequest, "invalid_request")
		specExpectError(t, specCall(t, env, http.MethodPost, "/api/v2/user-servers", token, `{"name":"Bad","host":"h.example.com:1","country":"XX"}`), http.StatusBadRequest, "invalid_request")
		r = specCall(t, env, http.MethodDelete, "/api/v2/user-servers/"+id, token, "")
		if r.status != http.StatusNoContent && r.status != http.StatusOK {
			t.Fatalf("delete: %s", r)
		}
		if l := specExpectList(t, specCall(t, env, http.MethodGet, "/api/v2/user-servers", token, ""), http.StatusOK); len(l) != 0 {
			t.Errorf("user servers after delete: %v", l)
		}
		specExpectError(t, specCall(t, env, http.MethodPut, "/api/v2/user-servers/"+id, token, `{"name":"Updated Name","host":"new-nucleus.example.com:51820","country":"US"}`), http.StatusNotFound, "not_found")
	})

	specStep(t, "7 errors: 403 another user's network or device", func(t *testing.T) {
		other, _ := specLogin(t, env, intruder.Key)
		r := specCall(t, env, http.MethodPost, "/api/v2/devices", other, `{"name":"Intruder","hardware_uuid":"intruder-uuid","platform":"linux"}`)
		otherDev := specString(t, r, specExpect(t, r, http.StatusCreated), "id")
		vn := "/api/v2/virtual-networks/" + vnID
		for _, c := range []struct{ method, path, body string }{
			{http.MethodGet, vn, ""},
			{http.MethodGet, vn + "/devices", ""},
			{http.MethodPut, vn, `{"name":"mine now"}`},
			{http.MethodDelete, vn, ""},
			{http.MethodPost, vn + "/devices/" + otherDev, ""},
			{http.MethodPut, vn + "/devices/" + deviceID, `{"is_exit_node": true}`},
			{http.MethodDelete, vn + "/devices/" + deviceID, ""},
			{http.MethodGet, "/api/v2/devices/" + deviceID, ""},
		} {
			specExpectError(t, specCall(t, env, c.method, c.path, other, c.body), http.StatusForbidden, "forbidden")
		}
		// The owner may not pull a foreign device into the network either.
		specExpectError(t, specCall(t, env, http.MethodPost, vn+"/devices/"+otherDev, token, ""), http.StatusForbidden, "forbidden")
		if x := specHeartbeat(t, env, token, hw, false); x[vnID] != exitIP {
			t.Errorf("the intruder's attempts changed the network: exit_nodes %v", x)
		}
	})

	specStep(t, "7 errors: 400 validation and plan device limit", func(t *testing.T) {
		r := specCall(t, env, http.MethodPost, "/api/v2/devices", token, `{"name":"Third","hardware_uuid":"third-uuid","platform":"linux"}`)
		specExpectError(t, r, http.StatusBadRequest, "limit_reached")
		// At the limit an existing device may still re-register.
		specExpect(t, specCall(t, env, http.MethodPost, "/api/v2/devices", token, `{"name":"My-Robot-Agent","hardware_uuid":"unique-persistent-uuid","platform":"linux"}`), http.StatusOK)
		for _, body := range []string{`{"name":"x","platform":"linux"}`, `{"name":"x","hardware_uuid":42}`, `{"name":`, ``} {
			specExpectError(t, specCall(t, env, http.MethodPost, "/api/v2/devices", token, body), http.StatusBadRequest, "invalid_request")
		}
	})

	specStep(t, "7 errors: 401 expired token, then refresh", func(t *testing.T) {
		env.Clock.Advance(16 * time.Minute)
		r := specCall(t, env, http.MethodGet, "/api/v2/devices", token, "")
		specExpectError(t, r, http.StatusUnauthorized, "unauthorized")
		if !strings.Contains(string(r.body), "/api/v2/auth/refresh") {
			t.Errorf("the 401 does not point at the refresh endpoint: %s", r)
		}
		b, _ := json.Marshal(map[string]string{"refresh_token": refresh})
		r = specCall(t, env, http.MethodPost, "/api/v2/auth/refresh", "", string(b))
		m := specExpect(t, r, http.StatusOK)
		newToken, newRefresh := specString(t, r, m, "token"), specString(t, r, m, "refresh_token")
		if newToken == token || newRefresh == refresh {
			t.Errorf("refresh did not rotate the pair: %s", r)
		}
		l := specExpectList(t, specCall(t, env, http.MethodGet, "/api/v2/devices", newToken, ""), http.StatusOK)
		if len(l) != 2 {
			t.Errorf("%d devices with the refreshed token, want 2", len(l))
		}
		// A refresh token is single-use.
		specExpectError(t, specCall(t, env, http.MethodPost, "/api/v2/auth/refresh", "", string(b)), http.StatusUnauthorized, "unauthorized")
		specExpectError(t, specCall(t, env, http.MethodPost, "/api/v2/auth/refresh", "", `{"refresh_token": "oer_bogus"}`), http.StatusUnauthorized, "unauthorized")
	})

	t.Run("7 errors: 429 rate limit", func(t *testing.T) {
		t.Parallel()
		env := edgetest.New(t, edgetest.Options{Config: func(c *config.Config) { c.RateLimitToken = 1 }})
		a, b := env.NewUser(""), env.NewUser("")
		ta, _ := specLogin(t, env, a.Key)
		tb, _ := specLogin(t, env, b.Key)
		// Rate 1/s allows a burst of 2.
		for range 2 {
			specExpectList(t, specCall(t, env, http.MethodGet, "/api/v2/devices", ta, ""), http.StatusOK)
		}
		r := specCall(t, env, http.MethodGet, "/api/v2/devices", ta, "")
		specExpectError(t, r, http.StatusTooManyRequests, "rate_limited")
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("Retry-After %q, want a positive number of seconds: %s", r.header.Get("Retry-After"), r)
		}
		// Another token has its own budget.
		specExpectList(t, specCall(t, env, http.MethodGet, "/api/v2/devices", tb, ""), http.StatusOK)
		// And the budget refills.
		env.Clock.Advance(2 * time.Second)
		specExpectList(t, specCall(t, env, http.MethodGet, "/api/v2/devices", ta, ""), http.StatusOK)
	})
}
