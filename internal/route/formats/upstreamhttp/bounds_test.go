package upstreamhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/llm"
)

// readAll sends a GET to url with hc and reads the whole body.
func readAll(t *testing.T, hc *http.Client, ctx context.Context, url string) ([]byte, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := Send(hc, req, "p", decode)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// cutLine reports whether b is the first whole bytes of a stream followed
// by at most max bytes of the line that was too long (a reader cannot
// know a line is too long before it is), and no line end after them.
func cutLine(b []byte, whole, max int) bool {
	return len(b) >= whole && len(b)-whole <= max && !strings.ContainsAny(string(b[whole:]), "\r\n") && strings.HasSuffix(string(b[:whole]), "\n")
}

func TestBoundedBodies(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/json":
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(strings.Repeat("x", 3000)))
		case "/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			for i := 0; i < 100; i++ { // many short lines: far more than MaxLine in all
				io.WriteString(w, "data: "+strings.Repeat("y", 500)+"\n\n")
			}
			io.WriteString(w, "data: "+strings.Repeat("z", 2000)+"\n\n")
		case "/ndjson":
			w.Header().Set("Content-Type", "application/x-ndjson")
			io.WriteString(w, `{"message":{"content":"ok"}}`+"\n")
			io.WriteString(w, `{"message":{"content":"`+strings.Repeat("n", 2000)+`"}}`+"\n")
		case "/stall":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-release
		case "/silent":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-release
		}
	}))
	defer srv.Close()
	defer close(release) // before Close waits for the stalled handlers
	hc := Bounded(srv.Client(), Limits{MaxBody: 2048, MaxLine: 1024, IdleTimeout: 100 * time.Millisecond, FirstByteTimeout: 300 * time.Millisecond})
	ctx := context.Background()

	if _, err := readAll(t, hc, ctx, srv.URL+"/json"); err == nil || !strings.Contains(err.Error(), "larger than 2048 bytes") {
		t.Fatalf("a 3000-byte answer under a 2048-byte cap: %v", err)
	}
	// An embedding answer may be 8 times larger.
	if b, err := readAll(t, hc, LargeAnswer(ctx), srv.URL+"/json"); err != nil || len(b) != 3000 {
		t.Fatalf("a large answer: %d bytes, %v", len(b), err)
	}
	// A stream answering a request marked Streamed is bounded per line.
	sctx := Streamed(ctx)
	b, err := readAll(t, hc, sctx, srv.URL+"/sse")
	if err == nil || !strings.Contains(err.Error(), "longer than 1024 bytes") || !cutLine(b, 100*(len("data: ")+500+2), 1024) {
		t.Fatalf("a stream of short lines then a long one: read %d bytes, %v", len(b), err)
	}
	if b, err := readAll(t, hc, sctx, srv.URL+"/ndjson"); err == nil || !strings.Contains(err.Error(), "longer than 1024 bytes") || !cutLine(b, len(`{"message":{"content":"ok"}}`+"\n"), 1024) {
		t.Fatalf("an NDJSON stream with a long line: %q, %v", b, err)
	}
	// Any other answer is bounded in total, whatever its content type
	// says: an upstream cannot lift the cap by calling its answer a stream.
	for _, path := range []string{"/sse", "/ndjson"} {
		if _, err := readAll(t, hc, ctx, srv.URL+path); err == nil || !strings.Contains(err.Error(), "larger than 2048 bytes") {
			t.Fatalf("%s answering a plain request: %v", path, err)
		}
	}
	start := time.Now()
	b, err = readAll(t, hc, sctx, srv.URL+"/stall")
	if err == nil || !strings.Contains(err.Error(), "sent nothing for 100ms") || string(b) != "data: first\n\n" {
		t.Fatalf("a stalled stream: %q, %v", b, err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("the idle timeout took %v", time.Since(start))
	}
	if _, err := readAll(t, hc, ctx, srv.URL+"/silent"); err == nil || !strings.Contains(err.Error(), "no answer body for 300ms") {
		t.Fatalf("headers and then nothing: %v", err)
	}
	// A client that goes away gets its context's error, not an upstream failure.
	cctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, srv.URL+"/stall", nil)
	resp, err := Send(Bounded(srv.Client(), Limits{}), req, "p", decode)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("reading after the client left: %v", err)
	}
}

func TestRedirectsAreUpstreamErrors(t *testing.T) {
	followed := false
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed = true }))
	defer target.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	// Whatever client the adapter was given.
	for _, hc := range []*http.Client{nil, srv.Client(), Bounded(nil, Limits{})} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer sk-provider")
		_, err := Send(hc, req, "p", decode)
		var le *llm.Error
		if !errors.As(err, &le) || le.Status != http.StatusBadGateway || !strings.Contains(le.Message, "redirect") || strings.Contains(le.Message, target.URL) {
			t.Fatalf("redirect answer: %v", err)
		}
	}
	if followed {
		t.Fatal("a redirect was followed")
	}
}

func TestDescribeHidesAddresses(t *testing.T) {
	addr := testenv.RefusedAddr(t)
	for url, want := range map[string]string{
		"http://" + addr + "/v1":              "connection refused",
		"http://no-such-host.invalid:8080/v1": "could not be resolved",
	} {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		_, err := Send(nil, req, "p", decode)
		var le *llm.Error
		if !errors.As(err, &le) || !strings.HasPrefix(le.Message, "p: upstream unreachable: ") || !strings.Contains(le.Message, want) {
			t.Fatalf("%s: %v", url, err)
		}
		if strings.Contains(le.Message, "127.0.0.1") || strings.Contains(le.Message, "invalid") || strings.Contains(le.Message, "http") {
			t.Fatalf("%s: the message reveals the upstream: %q", url, le.Message)
		}
	}
}
