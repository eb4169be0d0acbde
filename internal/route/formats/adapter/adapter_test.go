package adapter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/omniedge/omni/internal/route/llm"
)

// fake is a format whose answers are their body's text.
type fake struct {
	url     string
	streams []bool // the stream flag of each NewRequest
}

func (f *fake) Conn() Conn {
	return Conn{Provider: "p", DecodeError: func(status int, _ http.Header, b []byte) *llm.Error {
		return &llm.Error{Status: status, Type: llm.TypeForStatus(status), Message: string(b)}
	}}
}

func (f *fake) NewRequest(ctx context.Context, r *llm.Request, model string, stream bool) (*http.Request, error) {
	f.streams = append(f.streams, stream)
	return NewRequest(ctx, "p", http.MethodPost, f.url+"/"+model, []byte("{}"), Accept(stream))
}

func (f *fake) DecodeAnswer(_ *llm.Request, b []byte) (*llm.Response, error) {
	return &llm.Response{Model: string(b)}, nil
}

func (f *fake) DecodeStream(_ *llm.Request, body io.ReadCloser) llm.Stream {
	b, _ := io.ReadAll(body)
	body.Close()
	return &llm.SliceStream{Events: []llm.Event{{Type: llm.EventStart, Model: "stream:" + string(b)}}}
}

// replaying is fake accepting a whole answer to a stream request.
type replaying struct{ *fake }

func (f replaying) Replay(r *llm.Request, b []byte) (llm.Stream, error) {
	return Replay(f.DecodeAnswer(r, b))
}

func first(t *testing.T, s llm.Stream) llm.Event {
	t.Helper()
	ev, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func message(err error) string {
	var le *llm.Error
	if !errors.As(err, &le) {
		return fmt.Sprintf("not an *llm.Error: %v", err)
	}
	return le.Message
}

func TestFlow(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
		}
		switch r.URL.Path {
		case "/fail":
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte("slow down"))
		case "/json":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("whole"))
		default:
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = w.Write([]byte("events:" + r.Header.Get("Accept")))
		}
	}))
	defer srv.Close()
	f := &fake{url: srv.URL}
	ctx := context.Background()

	if r, err := Chat(ctx, f, &llm.Request{}, "sse"); err != nil || r.Model != "events:application/json" {
		t.Fatalf("Chat: %+v, %v", r, err)
	}
	if _, err := Chat(ctx, f, &llm.Request{}, "fail"); message(err) != "p: upstream answered 429: slow down" {
		t.Fatalf("Chat of a 429: %v", err)
	}
	s, err := Stream(ctx, f, &llm.Request{}, "sse")
	if err != nil || first(t, s).Model != "stream:events:text/event-stream" {
		t.Fatalf("Stream: %v", err)
	}
	// A whole answer to a stream request: the stream decoder reads it,
	// unless the format replays it.
	s, err = Stream(ctx, f, &llm.Request{}, "json")
	if err != nil || first(t, s).Model != "stream:whole" {
		t.Fatalf("Stream of JSON, no Replayer: %v", err)
	}
	s, err = Stream(ctx, replaying{f}, &llm.Request{}, "json")
	if err != nil || first(t, s).Model != "whole" {
		t.Fatalf("Stream of JSON replayed: %v", err)
	}
	if want := []bool{false, false, true, true, true}; len(f.streams) != len(want) {
		t.Fatalf("NewRequest streams %v, want %v", f.streams, want)
	} else {
		for i := range want {
			if f.streams[i] != want[i] {
				t.Fatalf("NewRequest streams %v, want %v", f.streams, want)
			}
		}
	}
}

func TestHeadersAndKey(t *testing.T) {
	extra := map[string]string{"Authorization": "Basic proxy", "X-Extra": "1"}
	h := http.Header{}
	SetHeaders(h, extra)
	SetKey(h, "Authorization", "Bearer ", "k")
	if h.Get("Authorization") != "Bearer k" || h.Get("X-Extra") != "1" {
		t.Fatalf("key after the headers: %v", h)
	}
	h = http.Header{}
	SetHeaders(h, extra)
	SetKey(h, "Authorization", "Bearer ", "")
	if _, ok := h["Authorization"]; ok {
		t.Fatalf("no key: the headers' Authorization stays: %v", h)
	}
	h = http.Header{}
	SetKey(h, "Authorization", "Bearer ", "k")
	SetHeaders(h, extra)
	if h.Get("Authorization") != "Basic proxy" {
		t.Fatalf("key before the headers: %v", h)
	}
	req, err := NewRequest(context.Background(), "p", http.MethodGet, "http://up.test/models", nil, "")
	if err != nil || req.Body != nil || len(req.Header) != 0 {
		t.Fatalf("a request without body: %v, %v", req.Header, err)
	}
	if _, err := NewRequest(context.Background(), "p", http.MethodGet, "http://up test/\x7f", nil, ""); message(err) != "p: upstream unreachable: the provider's base URL is not valid" {
		t.Fatalf("a URL that does not parse: %v", err)
	}
}
