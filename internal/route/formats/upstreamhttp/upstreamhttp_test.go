package upstreamhttp

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/route/llm"
)

func decode(status int, _ http.Header, body []byte) *llm.Error {
	return &llm.Error{Status: status, Type: llm.TypeForStatus(status), Message: string(body)}
}

func TestSend(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(strings.Repeat("x", MaxErrorBody+10)))
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ok", nil)
	resp, err := Send(nil, req, "p", decode)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("2xx: %v", err)
	}
	resp.Body.Close()

	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/fail", nil)
	_, err = Send(srv.Client(), req, "p", decode)
	var le *llm.Error
	if !errors.As(err, &le) || le.Status != 429 || le.Provider != "p" || le.Message != "p: upstream answered 429: "+strings.Repeat("x", MaxErrorBody) {
		t.Fatalf("non-2xx: %v", err)
	}

	req, _ = http.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)
	_, err = Send(nil, req, "p", decode)
	if !errors.As(err, &le) || le.Status != 0 || le.Type != llm.ErrServer || le.Provider != "p" || le.Message != "p: upstream unreachable: connection refused" {
		t.Fatalf("transport error: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/ok", nil)
	if _, err = Send(nil, req, "p", decode); err != context.Canceled {
		t.Fatalf("the context ended: %v, want the context's own error", err)
	}
}

// fixedRT answers every request with an empty 200.
type fixedRT struct{}

func (fixedRT) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

// Send uses a Bounded client (the gateway's, on every upstream call) as
// it is: it allocates nothing beyond what the client's own Do does. Other
// clients still get redirects refused (TestRedirectsAreUpstreamErrors).
func TestSendUsesBoundedClientsAsTheyAre(t *testing.T) {
	hc := Bounded(&http.Client{Transport: fixedRT{}}, Limits{})
	req, _ := http.NewRequest(http.MethodGet, "http://upstream.test/v1/chat", nil)
	direct := testing.AllocsPerRun(200, func() {
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	})
	sent := testing.AllocsPerRun(200, func() {
		resp, err := Send(hc, req, "p", decode)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	})
	if sent > direct {
		t.Fatalf("Send allocates %.1f times per call, the client's Do %.1f: Send copies the client", sent, direct)
	}
}
