package api_test

// FuzzDecodeBodies feeds arbitrary bytes as the body of every endpoint that
// takes one, straight into the API handler (no recovery middleware, so a
// panic is a crash): no input may cause a 5xx, every 4xx must carry the
// JSON error shape, and every success must be JSON.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/edge/edgetest"
)

// fuzzEndpoint is one route that decodes a body.
type fuzzEndpoint struct {
	method, path string
	auth         bool
}

// fuzzServe sends one request to h and returns the recorder.
func fuzzServe(h http.Handler, method, path, token, contentType string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// fuzzSetup calls one endpoint during setup and decodes its JSON answer.
func fuzzSetup(f *testing.F, h http.Handler, method, path, token, body string, status int) map[string]any {
	f.Helper()
	rec := fuzzServe(h, method, path, token, "application/json", []byte(body))
	if rec.Code != status {
		f.Fatalf("setup %s %s: %d %s", method, path, rec.Code, rec.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		f.Fatalf("setup %s %s: %v: %s", method, path, err, rec.Body)
	}
	return m
}

// fuzzContentTypes are the labels a body is sent with; DecodeJSON ignores
// the Content-Type but words its errors by it.
var fuzzContentTypes = []string{"application/json", "", "application/x-www-form-urlencoded", "text/plain; charset=utf-8", "application/merge-patch+json", ";;"}

func FuzzDecodeBodies(f *testing.F) {
	env := edgetest.New(f, edgetest.Options{})
	h := env.App.Handler()
	u := env.NewUser("")

	login := fuzzSetup(f, h, http.MethodPost, "/api/v2/auth/login/security-key", "", `{"key":"`+u.Key+`"}`, http.StatusOK)
	token, _ := login["token"].(string)
	// A second family whose refresh token seeds the corpus, so rotating or
	// replaying it never touches the bearer token's family.
	spare := fuzzSetup(f, h, http.MethodPost, "/api/v2/auth/login/security-key", "", `{"key":"`+u.Key+`"}`, http.StatusOK)
	spareRefresh, _ := spare["refresh_token"].(string)

	dev := fuzzSetup(f, h, http.MethodPost, "/api/v2/devices", token, `{"name":"fuzz","hardware_uuid":"fuzz-hw","platform":"linux"}`, http.StatusCreated)["id"].(string)
	exit := fuzzSetup(f, h, http.MethodPost, "/api/v2/devices", token, `{"name":"exit","hardware_uuid":"fuzz-exit","platform":"linux"}`, http.StatusCreated)["id"].(string)
	vn := fuzzSetup(f, h, http.MethodPost, "/api/v2/virtual-networks", token, `{"name":"fuzz net"}`, http.StatusCreated)["id"].(string)
	fuzzSetup(f, h, http.MethodPost, "/api/v2/virtual-networks/"+vn+"/devices/"+dev, token, "", http.StatusOK)
	fuzzSetup(f, h, http.MethodPost, "/api/v2/virtual-networks/"+vn+"/devices/"+exit, token, "", http.StatusOK)
	srv := fuzzSetup(f, h, http.MethodPost, "/api/v2/user-servers", token, `{"name":"lab","host":"nucleus.example.com:51820","country":"US"}`, http.StatusCreated)["id"].(string)

	endpoints := []fuzzEndpoint{
		{http.MethodPost, "/api/v2/auth/login/security-key", false},
		{http.MethodPost, "/api/v2/auth/refresh", false},
		{http.MethodPost, "/api/v2/auth/logout", false},
		{http.MethodPost, "/api/v2/devices", true},
		{http.MethodPost, "/api/v2/devices/heartbeat", true},
		{http.MethodPut, "/api/v2/devices/" + dev, true},
		{http.MethodPost, "/api/v2/virtual-networks", true},
		{http.MethodPut, "/api/v2/virtual-networks/" + vn, true},
		{http.MethodPatch, "/api/v2/virtual-networks/" + vn, true},
		{http.MethodPut, "/api/v2/virtual-networks/" + vn + "/devices/" + dev, true},
		{http.MethodPost, "/api/v2/user-servers", true},
		{http.MethodPut, "/api/v2/user-servers/" + srv, true},
		{http.MethodPost, "/api/v2/security-keys", true},
	}

	for i, seed := range []string{
		// Valid bodies of each endpoint.
		`{"key":"` + u.Key + `"}`,
		`{"refresh_token":"` + spareRefresh + `"}`,
		`{"refreshToken":"oer_camel"}`,
		`{"name":"My-Robot-Agent","hardware_uuid":"unique-persistent-uuid","platform":"linux"}`,
		`{"name":"alias","hardware_id":"fuzz-hw-2","platform":"Windows"}`,
		`{"hardware_id":"fuzz-hw","is_exit_node":false}`,
		`{"hardware_uuid":"fuzz-exit","is_exit_node":true}`,
		`{"name":"Spec Network"}`,
		`{"name":"ranged","ip_range":"100.100.0.0/30"}`,
		`{"name":"on lab","server_id":"` + srv + `"}`,
		`{"name":"renamed"}`,
		`{"server_id":null}`,
		`{"server_id":""}`,
		`{"is_exit_node":true}`,
		`{"exit_node":"` + exit + `"}`,
		`{"exit_node":null}`,
		`{"exit_node":"` + dev + `"}`,
		`{"is_exit_node":false,"exit_node":""}`,
		`{"name":"My Home Lab","host":"nucleus.example.com:51820","country":"US"}`,
		`{"name":"v6","host":"[2001:db8::1]:51820","country":"de"}`,
		`{"name":"ci key","expires_in":"720h"}`,
		// Typical breakages.
		``,
		` `,
		`{`,
		`}`,
		`{}`,
		`null`,
		`[]`,
		`[{}]`,
		`"string"`,
		`123`,
		`true`,
		`{} {}`,
		`{}garbage`,
		`{"name":1}`,
		`{"name":null,"hardware_uuid":null}`,
		`{"is_exit_node":"yes"}`,
		`{"is_exit_node":null}`,
		`{"exit_node":123}`,
		`{"server_id":true}`,
		`{"key":["a"]}`,
		`{"refresh_token":{}}`,
		`{"name":"a","name":"b"}`,
		`{"name":"\u0000\u001f"}`,
		`{"name":"\ud800"}`,
		"{\"name\":\"\xff\xfe\"}",
		`{"name":"` + strings.Repeat("n", 200) + `"}`,
		`{"hardware_uuid":"with space"}`,
		`{"hardware_uuid":"` + strings.Repeat("h", 129) + `"}`,
		`{"ip_range":"100.64.0.0/33","name":"x"}`,
		`{"ip_range":"::/0","name":"x"}`,
		`{"ip_range":"10.0.0.0/8","name":"x"}`,
		`{"ip_range":"100.64.0.0/10","name":"x"}`,
		`{"host":"[::1]:0","name":"x","country":"US"}`,
		`{"host":"h:99999","name":"x","country":"US"}`,
		`{"host":":51820","name":"x","country":"us"}`,
		`{"name":"x","expires_in":"-1h"}`,
		`{"name":"x","expires_in":"2562047h"}`,
		`{"name":"x","expires_in":"9999999999999h"}`,
		`{"a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
		`{"name":1e400}`,
		`{"is_exit_node":1}`,
		"\xef\xbb\xbf{}",
		"{\"name\":\"x\"}\n",
		`name=x&hardware_uuid=y`,
	} {
		// Each seed as JSON and under one other label, rotating.
		f.Add([]byte(seed), uint8(0))
		f.Add([]byte(seed), uint8(1+i%(len(fuzzContentTypes)-1)))
	}

	f.Fuzz(func(t *testing.T, body []byte, ct uint8) {
		contentType := fuzzContentTypes[int(ct)%len(fuzzContentTypes)]
		for _, ep := range endpoints {
			tok := ""
			if ep.auth {
				tok = token
			}
			rec := fuzzServe(h, ep.method, ep.path, tok, contentType, body)
			fuzzCheck(t, ep, rec, body)
		}
	})
}

// fuzzCheck asserts the invariants of one answer.
func fuzzCheck(t *testing.T, ep fuzzEndpoint, rec *httptest.ResponseRecorder, body []byte) {
	t.Helper()
	what := func() string {
		return ep.method + " " + ep.path + " with body " + strings.ToValidUTF8(string(body[:min(len(body), 300)]), "?")
	}
	switch {
	case rec.Code >= 500:
		t.Fatalf("%s: %d %s", what(), rec.Code, rec.Body)
	case rec.Code >= 400:
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: %d with Content-Type %q: %s", what(), rec.Code, ct, rec.Body)
		}
		var e struct {
			Error *struct {
				Code    *string `json:"code"`
				Message *string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == nil || e.Error.Code == nil || e.Error.Message == nil ||
			*e.Error.Code == "" || *e.Error.Message == "" {
			t.Fatalf("%s: %d without {\"error\":{\"code\",\"message\"}} (%v): %s", what(), rec.Code, err, rec.Body)
		}
	case rec.Code >= 200 && rec.Code < 300 && rec.Code != http.StatusNoContent:
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s: %d with a body that is not JSON: %s", what(), rec.Code, rec.Body)
		}
	default:
		t.Fatalf("%s: unexpected status %d: %s", what(), rec.Code, rec.Body)
	}
}
