package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/route/admin"
	"github.com/omniedge/omni/internal/route/routetest"
	"github.com/omniedge/omni/internal/route/store"
)

// fakeStore is a guard's store with a password, login required, and
// the given keys (by raw value).
type fakeStore struct{ keys map[string]store.APIKey }

func (f fakeStore) Setting(_ context.Context, key string) (string, bool, error) {
	if key == store.SettingPasswordHash {
		return "hash", true, nil
	}
	return "", false, nil
}
func (fakeStore) CreateSession(context.Context, string, time.Time, time.Time) error { return nil }
func (fakeStore) SessionValid(context.Context, string, time.Time) (bool, error)     { return false, nil }
func (fakeStore) DeleteSession(context.Context, string) error                       { return nil }
func (f fakeStore) APIKeyByHash(_ context.Context, hash string) (store.APIKey, error) {
	for raw, k := range f.keys {
		if auth.TokenHash(raw) == hash {
			return k, nil
		}
	}
	return store.APIKey{}, store.ErrNotFound
}

type recorded struct {
	mu sync.Mutex
	e  []admin.AuditEntry
}

func (r *recorded) Record(_ context.Context, e admin.AuditEntry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.e = append(r.e, e)
	return nil
}

// A route registered with Scoped(mux, "mcp") admits a key holding mcp,
// not a management key without it; its handler reads the caller with
// ActorFrom; its messages stay out of the compliance log (the MCP module
// audits its tool calls itself), so an mcp key cannot flood that log.
func TestScopedRoutes(t *testing.T) {
	rec := &recorded{}
	g, err := admin.New(admin.Options{Store: fakeStore{keys: map[string]store.APIKey{
		"sk-mcp":    {ID: "key_mcp", Name: "agent", Kind: store.KindManaged, Scopes: []string{store.ScopeMCP}},
		"sk-manage": {ID: "key_manage", Name: "ci", Kind: store.KindManaged, Scopes: []string{store.ScopeManage}},
	}}, MasterKey: make([]byte, 32), Audit: rec})
	if err != nil {
		t.Fatal(err)
	}
	mux := httpx.NewMux("")
	echo := func(w http.ResponseWriter, r *http.Request) error {
		a, ok := admin.ActorFrom(r.Context())
		if !ok {
			t.Error("no actor in the context")
		}
		httpx.WriteJSON(w, http.StatusOK, a)
		return nil
	}
	stream := func(w http.ResponseWriter, r *http.Request) error {
		t.Error("the stream's GET was served for the audit log")
		return nil
	}
	g.Scoped(mux, store.ScopeMCP)("POST /api/mcp/stream", echo)
	g.Scoped(mux, store.ScopeMCP)("GET /api/mcp/stream", stream)
	srv := httptest.NewServer(httpx.Wrap(mux, logging.Discard(), nil))
	defer srv.Close()
	if got := mux.Routes()[0].Auth; got != "management session or key (mcp)" {
		t.Fatalf("auth label %q", got)
	}

	send := func(status int, key string) routetest.Resp {
		t.Helper()
		var hdr []string
		if key != "" {
			hdr = []string{"Authorization", "Bearer " + key}
		}
		r := routetest.Send(t, &http.Client{}, "POST", srv.URL+"/api/mcp/stream", map[string]any{"token": "tool-secret"}, hdr...)
		if r.Status != status {
			t.Fatalf("key %q: %d, want %d: %s", key, r.Status, status, r.Body)
		}
		return r
	}
	var a admin.Actor
	if err := json.Unmarshal(send(http.StatusOK, "sk-mcp").Body, &a); err != nil {
		t.Fatal(err)
	}
	if a != (admin.Actor{Kind: "key", ID: "key_mcp", Name: "agent", Addr: "127.0.0.1"}) {
		t.Fatalf("actor %+v", a)
	}
	send(http.StatusForbidden, "sk-manage")
	send(http.StatusUnauthorized, "sk-nope")
	send(http.StatusUnauthorized, "")

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.e) != 0 {
		t.Fatalf("an MCP message recorded in the compliance log: %+v", rec.e)
	}
}
