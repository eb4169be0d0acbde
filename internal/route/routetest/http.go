// Package routetest holds what the gateway's HTTP tests share: sending one
// request to a test server and reading the whole answer, and logging in
// to the management API.
package routetest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
)

// Resp is a whole answer.
type Resp struct {
	Status int
	Header http.Header
	Body   []byte
}

// Send sends one request with c and reads the answer. body is nil (a
// POST, PUT or PATCH without a body is still labelled JSON, as the
// dashboard and SDKs send it), a []byte (sent as is, without a content
// type), a string (sent as is, as JSON) or any other value (encoded as
// JSON). hdr adds headers in pairs
// and may override the content type; a "Host" pair sets the Host header
// the request carries (as a DNS-rebinding page would), not the address
// it is sent to.
func Send(t testing.TB, c *http.Client, method, url string, body any, hdr ...string) Resp {
	t.Helper()
	var rd io.Reader
	isJSON := true
	switch b := body.(type) {
	case nil:
		isJSON = method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
	case []byte:
		rd, isJSON = bytes.NewReader(b), false
	case string:
		rd = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if isJSON {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// Object decodes the body as a JSON object, failing t when it is not one.
func (r Resp) Object(t testing.TB) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.Body, err)
	}
	return v
}

// Login returns a client with a cookie jar logged in to the management
// API at base (the gateway's URL) with password.
func Login(t testing.TB, base, password string) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar}
	if r := Send(t, c, http.MethodPost, base+"/api/auth/login", map[string]string{"password": password}); r.Status != http.StatusOK {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	return c
}
