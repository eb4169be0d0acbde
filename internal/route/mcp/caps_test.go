package mcp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
)

type settings struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *settings) Setting(_ context.Context, k string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	return v, ok, nil
}

func openDB(t *testing.T, dsn string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := sqldb.Migrate(context.Background(), db, Product, Migrations()); err != nil {
		t.Fatal(err)
	}
	return db
}

// harness serves the MCP routes alone (no login; the caller is named by
// the X-Caller header "kind:keyid:scope,scope") over HTTP.
type harness struct {
	srv   *Server
	http  *httptest.Server
	clock *clock.Fake
}

func callerOf(r *http.Request) Caller {
	parts := strings.SplitN(r.Header.Get("X-Caller")+"::", ":", 3)
	c := Caller{Kind: parts[0], KeyID: parts[1]}
	if c.Kind == "" {
		c.Kind = "session"
	}
	if sc := strings.Trim(parts[2], ":"); sc != "" {
		c.Scopes = strings.Split(sc, ",")
	}
	return c
}

func newHarness(t *testing.T, transport string, maxSessions int) *harness {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC))
	srv := New(Options{
		Settings: &settings{m: map[string]string{SettingEnabled: "true", SettingTransport: transport}},
		DB:       openDB(t, filepath.Join(t.TempDir(), "mcp.db")),
		Sources: Sources{
			Models: func() []Model { return []Model{{ID: "p/m", OwnedBy: "p", Kind: "chat"}} },
			Keys: func(context.Context) ([]Key, error) {
				return []Key{{ID: "k1", Name: "one", Masked: "sk-ab…"}}, nil
			},
			Usage: func(_ context.Context, _ time.Time, keyID string) (any, error) {
				return map[string]any{"keyId": keyID}, nil
			},
		},
		Caller:      callerOf,
		MaxSessions: maxSessions,
		Clock:       clk,
	})
	mux := http.NewServeMux()
	add := func(p string, h httpx.HandlerFunc) { mux.Handle(p, h) }
	srv.Register(add, add)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return &harness{srv: srv, http: hs, clock: clk}
}

// as is an HTTP client that names its caller.
func as(caller string) *http.Client {
	return &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("X-Caller", caller)
		return http.DefaultTransport.RoundTrip(r)
	})}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (h *harness) connect(t *testing.T, transport, caller string) (*sdk.ClientSession, error) {
	var tr sdk.Transport = &sdk.StreamableClientTransport{Endpoint: h.http.URL + "/api/mcp/stream", HTTPClient: as(caller), MaxRetries: -1}
	if transport == TransportSSE {
		tr = &sdk.SSEClientTransport{Endpoint: h.http.URL + "/api/mcp/sse", HTTPClient: as(caller)}
	}
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "t", Version: "1"}, nil).Connect(context.Background(), tr, nil)
	if err == nil {
		t.Cleanup(func() { cs.Close() })
	}
	return cs, err
}

func TestSessionCap(t *testing.T) {
	for _, transport := range []string{TransportStreamable, TransportSSE} {
		t.Run(transport, func(t *testing.T) {
			h := newHarness(t, transport, 2)
			for range 2 {
				if _, err := h.connect(t, transport, "session"); err != nil {
					t.Fatal(err)
				}
			}
			testenv.Eventually(t, "both sessions count", func() bool { return h.srv.liveSessions() == 2 })
			if _, err := h.connect(t, transport, "session"); err == nil {
				t.Fatal("a third session was opened past the cap of 2")
			}
			endpoint := "/api/mcp/stream"
			if transport == TransportSSE {
				endpoint = "/api/mcp/sse"
			}
			var resp *http.Response
			var err error
			if transport == TransportSSE {
				resp, err = http.Get(h.http.URL + endpoint)
			} else {
				req, _ := http.NewRequest("POST", h.http.URL+endpoint, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				resp, err = http.DefaultClient.Do(req)
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("past the cap: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestIdleSessionsClose(t *testing.T) {
	for _, transport := range []string{TransportStreamable, TransportSSE} {
		t.Run(transport, func(t *testing.T) {
			h := newHarness(t, transport, 4)
			cs, err := h.connect(t, transport, "session")
			if err != nil {
				t.Fatal(err)
			}
			// The idle clock starts when the server has taken the client's
			// "initialized" notification, which the client does not wait for.
			testenv.Eventually(t, "the session is initialized", func() bool { return h.srv.initializedSessions() == 1 })
			h.clock.Advance(DefaultIdleTimeout / 2)
			h.srv.closeIdle(h.clock.Now())
			if _, err := cs.ListTools(context.Background(), nil); err != nil {
				t.Fatalf("a session idle for half the timeout: %v", err)
			}
			h.clock.Advance(DefaultIdleTimeout/2 + time.Second)
			h.srv.closeIdle(h.clock.Now()) // the list call above was its last activity
			if h.srv.liveSessions() != 1 {
				t.Fatal("a session active within the timeout was closed")
			}
			h.clock.Advance(DefaultIdleTimeout + time.Second)
			h.srv.closeIdle(h.clock.Now())
			testenv.Eventually(t, "the idle session ends", func() bool { return h.srv.liveSessions() == 0 })
		})
	}
}

// An SSE stream holds a slot from the moment it opens; one that never
// initializes a session is closed after the idle timeout, so streams
// opened and left uninitialized cannot hold every slot for good.
func TestUninitializedStreamCloses(t *testing.T) {
	h := newHarness(t, TransportSSE, 1)
	resp, err := as("session").Get(h.http.URL + "/api/mcp/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); ended <- err }()
	testenv.Eventually(t, "the stream holds the slot", func() bool { return h.srv.liveSessions() == 1 })
	if _, err := h.connect(t, TransportSSE, "session"); err == nil {
		t.Fatal("a session opened while an uninitialized stream holds the only slot")
	}
	h.clock.Advance(DefaultIdleTimeout - time.Second)
	h.srv.closeIdle(h.clock.Now())
	select {
	case <-ended:
		t.Fatal("a stream younger than the idle timeout was closed")
	case <-time.After(100 * time.Millisecond):
	}
	h.clock.Advance(2 * time.Second)
	h.srv.closeIdle(h.clock.Now())
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the uninitialized stream is still open past the idle timeout")
	}
	testenv.Eventually(t, "the slot is free", func() bool { return h.srv.liveSessions() == 0 })
	cs, err := h.connect(t, TransportSSE, "session")
	if err != nil {
		t.Fatalf("a session after the stale stream closed: %v", err)
	}
	testenv.Eventually(t, "the new session is initialized", func() bool { return h.srv.initializedSessions() == 1 })
	h.clock.Advance(DefaultIdleTimeout / 2)
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(DefaultIdleTimeout/2 + time.Second)
	h.srv.closeIdle(h.clock.Now()) // the stream is older than the timeout, its session is not idle
	if _, err := cs.ListTools(context.Background(), nil); err != nil {
		t.Fatalf("an initialized stream was closed with the stale one's rule: %v", err)
	}
}

// A management key holds only its scopes: without "manage" it cannot
// list the keys nor read another key's usage, and it chats only as
// itself.
func TestKeyCallerScopes(t *testing.T) {
	h := newHarness(t, TransportStreamable, 8)
	cs, err := h.connect(t, TransportStreamable, "key:k1:mcp")
	if err != nil {
		t.Fatal(err)
	}
	callTool := func(name string, args map[string]any) (string, bool) {
		res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatal(err)
		}
		return res.Content[0].(*sdk.TextContent).Text, res.IsError
	}
	if text, failed := callTool("omniroute_list_keys", nil); !failed || !strings.Contains(text, "manage") {
		t.Errorf("list keys without manage: %s", text)
	}
	if text, failed := callTool("omniroute_usage_summary", map[string]any{"apiKeyId": "k2"}); !failed {
		t.Errorf("another key's usage: %s", text)
	}
	text, failed := callTool("omniroute_usage_summary", nil)
	var out map[string]any
	if failed || json.Unmarshal([]byte(text), &out) != nil || out["apiKeyId"] != "k1" {
		t.Errorf("own usage: %s", text)
	}
	if text, failed := callTool("omniroute_chat", map[string]any{"model": "p/m", "keyId": "k2", "messages": []map[string]string{{"role": "user", "content": "x"}}}); !failed {
		t.Errorf("chat as another key: %s", text)
	}

	// A key without the mcp scope can open no tool.
	cs2, err := h.connect(t, TransportStreamable, "key:k3:")
	if err != nil {
		t.Fatal(err)
	}
	res, err := cs2.CallTool(context.Background(), &sdk.CallToolParams{Name: "omniroute_list_models"})
	if err != nil || !res.IsError {
		t.Errorf("a key without mcp listed models: %v %+v", err, res)
	}

	// The audit rows name the key.
	rows, _, err := h.srv.audit.list(context.Background(), AuditFilter{APIKeyID: "k1", Limit: 10})
	if err != nil || len(rows) != 4 || rows[0].Caller != "key" {
		t.Errorf("audit of k1: %v %+v", err, rows)
	}
}

// A session belongs to the caller that opened it: another caller who
// learns its id is told it does not exist.
func TestSessionsBoundToTheirCaller(t *testing.T) {
	for _, transport := range []string{TransportStreamable, TransportSSE} {
		t.Run(transport, func(t *testing.T) {
			h := newHarness(t, transport, 8)
			cs, err := h.connect(t, transport, "key:k1:mcp")
			if err != nil {
				t.Fatal(err)
			}
			var id string
			testenv.Eventually(t, "the session is bound", func() bool {
				h.srv.mu.Lock()
				defer h.srv.mu.Unlock()
				for sid := range h.srv.owners {
					id = sid
				}
				return id != ""
			})
			body := `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`
			url := h.http.URL + "/api/mcp/stream"
			if transport == TransportSSE {
				url = h.http.URL + "/api/mcp/sse?sessionid=" + id
			}
			req, _ := http.NewRequest("POST", url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Mcp-Session-Id", id)
			req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
			resp, err := as("key:k2:mcp,manage").Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("another key posting to the session: %d", resp.StatusCode)
			}
			if _, err := cs.ListTools(context.Background(), nil); err != nil {
				t.Errorf("the owner's session: %v", err)
			}
		})
	}
}

// The audit log's queries on both dialects (OMNI_TEST_STRICT=1 makes a
// missing PostgreSQL a failure).
func TestAuditStore(t *testing.T) {
	for _, db := range []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "a.db") }},
		{"postgres", func(t *testing.T) string { return testenv.Postgres(t) }},
	} {
		t.Run(db.name, func(t *testing.T) {
			a := &auditLog{db: openDB(t, db.dsn(t))}
			ctx := context.Background()
			at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			for i := range 10 {
				e := AuditEntry{At: at.Add(time.Duration(i) * time.Hour), Tool: []string{"a", "b"}[i%2], Transport: TransportSSE,
					Caller: "key", APIKeyID: "k", Success: i%3 != 0, DurationMS: int64(i), Arguments: "{}"}
				if err := a.insert(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			no := false
			rows, total, err := a.list(ctx, AuditFilter{Tool: "a", Success: &no, Limit: 2})
			if err != nil || total != 2 || len(rows) != 2 || rows[0].At.Before(rows[1].At) {
				t.Fatalf("failed a calls: %v %d %+v", err, total, rows)
			}
			st, err := a.stats(ctx, at.Add(5*time.Hour))
			if err != nil || st.Total != 5 || st.Failures != 2 || st.AvgDurationMS != 7 || len(st.TopTools) != 2 || !st.LastCallAt.Equal(at.Add(9*time.Hour)) {
				t.Fatalf("stats: %v %+v", err, st)
			}
			if err := a.prune(ctx, at.Add(2*time.Hour), 5); err != nil {
				t.Fatal(err)
			}
			if _, total, _ := a.list(ctx, AuditFilter{Limit: 100}); total != 5 {
				t.Errorf("%d rows after pruning to 5", total)
			}
			if err := a.prune(ctx, at.Add(8*time.Hour), 100); err != nil {
				t.Fatal(err)
			}
			if _, total, _ := a.list(ctx, AuditFilter{Limit: 100}); total != 2 {
				t.Errorf("%d rows after pruning by age", total)
			}
			empty := &auditLog{db: openDB(t, db.dsn(t))}
			if st, err := empty.stats(ctx, time.Time{}); err != nil || st.Total != 0 || st.SuccessRate != 1 || st.LastCallAt != nil {
				t.Errorf("empty stats %v %+v", err, st)
			}
		})
	}
}

func TestMessageSizeCap(t *testing.T) {
	for _, transport := range []string{TransportStreamable, TransportSSE} {
		t.Run(transport, func(t *testing.T) {
			h := newHarness(t, transport, 4)
			big := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"pad":"` + strings.Repeat("x", DefaultMaxMessage) + `"}}`
			url := h.http.URL + "/api/mcp/stream"
			if transport == TransportSSE {
				if _, err := h.connect(t, transport, "session"); err != nil {
					t.Fatal(err)
				}
				h.srv.mu.Lock()
				for id := range h.srv.owners {
					url = h.http.URL + "/api/mcp/sse?sessionid=" + id
				}
				h.srv.mu.Unlock()
			}
			req, _ := http.NewRequest("POST", url, strings.NewReader(big))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("a message over 1 MiB: %d", resp.StatusCode)
			}
		})
	}
}

// initializedSessions counts the sessions the server has tracked.
func (s *Server) initializedSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}
