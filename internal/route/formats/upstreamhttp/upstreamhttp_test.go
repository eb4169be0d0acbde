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
	resp, err := Send(nil, req, "p", "f", "f: unreachable: ", decode)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("2xx: %v", err)
	}
	resp.Body.Close()

	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/fail", nil)
	_, err = Send(srv.Client(), req, "p", "f", "f: unreachable: ", decode)
	var le *llm.Error
	if !errors.As(err, &le) || le.Status != 429 || le.Provider != "p" || len(le.Message) != MaxErrorBody {
		t.Fatalf("non-2xx: %v", err)
	}

	req, _ = http.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)
	_, err = Send(nil, req, "p", "f", "f: unreachable: ", decode)
	if !errors.As(err, &le) || le.Status != 0 || le.Type != llm.ErrServer || le.Provider != "p" || !strings.HasPrefix(le.Message, "f: unreachable: ") {
		t.Fatalf("transport error: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, prefix := range []string{"f", ""} {
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/ok", nil)
		_, err = Send(nil, req, "p", prefix, "f: unreachable: ", decode)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("prefix %q: %v", prefix, err)
		}
		if want := "context canceled"; prefix != "" {
			if err.Error() != "f: "+want {
				t.Fatalf("prefix %q: %v", prefix, err)
			}
		} else if err != context.Canceled {
			t.Fatalf("without a prefix the error is the context's own: %v", err)
		}
	}
}
