package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/edge/edgetest"
)

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
	add("PUT,PATCH", "/api/v2/virtual-networks/"+n.ID, true, `{"name":5}`, `{"server_id":5}`, `{"key_expiry":5}`, `{"key_expiry":"5 days"}`)
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
