package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func decodeBody(t *testing.T, w *httptest.ResponseRecorder) ErrorDetail {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var b ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	return b.Error
}

func TestErrorsAndRequestIDs(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	mux := http.NewServeMux()
	mux.Handle("GET /bad", HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return BadRequest("field %q is wrong", "name")
	}))
	mux.Handle("GET /limited", HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		e := Errorf(http.StatusTooManyRequests, "rate_limited", "slow down")
		e.RetryAfter = 1500 * time.Millisecond
		return e
	}))
	mux.Handle("GET /boom", HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return errors.New("db password=hunter2 exploded")
	}))
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) { panic("kaboom") })
	h := Wrap(mux, log, NewMetrics(reg, "test"))

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/bad", nil))
	d := decodeBody(t, w)
	if w.Code != 400 || d.Code != "invalid_request" || d.Message != `field "name" is wrong` || d.Status != 400 || d.RequestID == "" || d.RequestID != w.Header().Get("X-Request-Id") {
		t.Fatalf("bad request: %d %+v", w.Code, d)
	}

	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/limited", nil))
	if w.Code != 429 || w.Header().Get("Retry-After") != "2" {
		t.Fatalf("limited: %d Retry-After %q (want rounded up to 2)", w.Code, w.Header().Get("Retry-After"))
	}

	// A plain error is a 500 whose cause is logged but never sent.
	w = httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/boom", nil)
	r.Header.Set("X-Request-Id", "client-id-1")
	h.ServeHTTP(w, r)
	d = decodeBody(t, w)
	if w.Code != 500 || d.Code != "internal" || strings.Contains(w.Body.String(), "hunter2") || d.RequestID != "client-id-1" {
		t.Fatalf("internal error leaked or lost the client's request id: %d %s", w.Code, w.Body)
	}
	if !strings.Contains(logs.String(), "exploded") || !strings.Contains(logs.String(), "client-id-1") {
		t.Fatalf("cause not logged with the request id: %s", logs.String())
	}

	// A panic becomes a JSON 500, not a dropped connection.
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/panic", nil))
	if d = decodeBody(t, w); w.Code != 500 || d.Code != "internal" {
		t.Fatalf("panic: %d %s", w.Code, w.Body)
	}
	if !strings.Contains(logs.String(), "kaboom") {
		t.Fatalf("panic not logged")
	}

	// Over-long client ids are replaced.
	w = httptest.NewRecorder()
	r = httptest.NewRequest("GET", "/bad", nil)
	r.Header.Set("X-Request-Id", strings.Repeat("x", 500))
	h.ServeHTTP(w, r)
	if id := w.Header().Get("X-Request-Id"); len(id) > 128 || id == "" {
		t.Fatalf("request id %q", id)
	}

	if got := countCode(t, reg, "500"); got != 2 {
		t.Fatalf("500s counted: %v", got)
	}
}

// countCode sums omni_http_requests_total over the series with code.
func countCode(t *testing.T, reg *prometheus.Registry, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "omni_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

func TestDecodeJSON(t *testing.T) {
	type body struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	}
	cases := []struct {
		in, ct string
		status int
		msg    string
	}{
		{`{"name":"a","count":1,"extra":true}`, "application/json", 200, ""},
		{`{"name":"a"}`, "application/x-www-form-urlencoded", 200, ""},
		{``, "application/json", 400, "empty"},
		{`{"name":`, "application/json", 400, "truncated"},
		{`{"name":"a"`, "text/plain", 400, "must be JSON"},
		{`{"name":5}`, "application/json", 400, `field "name" must be a string`},
		{`{"count":"x"}`, "application/json", 400, `field "count" must be a number`},
		{`[]`, "application/json", 400, "must be an object, not array"},
		{`{"name":"a"} {"name":"b"}`, "application/json", 400, "after the JSON value"},
		{`{"name":"` + strings.Repeat("a", 2000) + `"}`, "application/json", 413, "exceeds"},
		{`{nope}`, "application/json", 400, "malformed JSON"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("POST", "/", strings.NewReader(c.in))
		r.Header.Set("Content-Type", c.ct)
		w := httptest.NewRecorder()
		var v body
		err := DecodeJSON(w, r, &v, 1024)
		if c.status == 200 {
			if err != nil {
				t.Errorf("%q: %v", c.in, err)
			}
			continue
		}
		var he *Error
		if !errors.As(err, &he) || he.Status != c.status || !strings.Contains(he.Message, c.msg) {
			t.Errorf("%q: got %v, want %d containing %q", c.in, err, c.status, c.msg)
		}
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		trusted    []netip.Prefix
		want       string
	}{
		{"no trust", "10.0.0.9:1234", []string{"203.0.113.7"}, nil, "10.0.0.9"},
		{"untrusted peer forging the header", "198.51.100.1:1234", []string{"203.0.113.7"}, trusted, "198.51.100.1"},
		{"one trusted proxy", "10.0.0.9:1234", []string{"203.0.113.7"}, trusted, "203.0.113.7"},
		// The client forges a left-most entry; the proxy appends the
		// address it really saw.
		{"forged left-most entry", "10.0.0.9:1234", []string{" 1.2.3.4 , 203.0.113.7"}, trusted, "203.0.113.7"},
		{"chain of trusted proxies", "10.0.0.9:1234", []string{"1.2.3.4, 203.0.113.7, 10.0.0.1", "10.0.0.2"}, trusted, "203.0.113.7"},
		{"IPv6 peer and client", "[2001:db8::1]:443", []string{"1.2.3.4, 2001:db8:ffff::9, 2001:db9::5"}, trusted, "2001:db9::5"},
		{"garbage right of the client", "10.0.0.9:1234", []string{"203.0.113.7, garbage"}, trusted, "10.0.0.9"},
		{"garbage only", "10.0.0.9:1234", []string{"garbage"}, trusted, "10.0.0.9"},
		{"only trusted entries", "10.0.0.9:1234", []string{"10.1.1.1, 10.2.2.2"}, trusted, "10.1.1.1"},
		{"no header", "10.0.0.9:1234", nil, trusted, "10.0.0.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientIP(r, tc.trusted); got != tc.want {
				t.Errorf("ClientIP = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTrustedPeer(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "127.0.0.1:5"
	if !TrustedPeer(r, trusted) {
		t.Error("loopback peer not trusted")
	}
	r.RemoteAddr = "198.51.100.1:5"
	if TrustedPeer(r, trusted) || TrustedPeer(r, nil) {
		t.Error("outside peer trusted")
	}
}

// A handler behind Wrap that flushes reaches the client before it
// returns: streaming answers are not held until the end.
func TestWrapFlushes(t *testing.T) {
	release := make(chan struct{})
	h := Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := w.(http.Flusher)
		if !ok {
			t.Error("wrapped writer is not an http.Flusher")
			return
		}
		w.Write([]byte("data: first\n\n"))
		f.Flush()
		<-release
	}), slog.New(slog.DiscardHandler), nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer close(release)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	done := make(chan string, 1)
	go func() {
		n, _ := resp.Body.Read(buf)
		done <- string(buf[:n])
	}()
	select {
	case got := <-done:
		if got != "data: first\n\n" {
			t.Fatalf("read %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the flushed bytes did not arrive while the handler was still running")
	}
}

func TestQueryInt(t *testing.T) {
	for _, c := range []struct {
		query string
		want  int
		bad   bool
	}{{"", 7, false}, {"n=0", 0, false}, {"n=50", 50, false}, {"n=51", 0, true}, {"n=-1", 0, true}, {"n=x", 0, true}, {"n=99999999999999999999", 0, true}} {
		r := httptest.NewRequest("GET", "/?"+c.query, nil)
		n, err := QueryInt(r, "n", 7, 50)
		var he *Error
		if c.bad {
			if !errors.As(err, &he) || he.Status != http.StatusBadRequest || !strings.Contains(he.Message, "n must be") {
				t.Errorf("%q: %v, want a 400 naming n", c.query, err)
			}
			continue
		}
		if err != nil || n != c.want {
			t.Errorf("%q: %d %v, want %d", c.query, n, err, c.want)
		}
	}
}
