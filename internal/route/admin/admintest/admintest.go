// Package admintest is what the management API's tests share: a gateway
// assembled with route/app over a fresh SQLite database behind an
// httptest server, a client that keeps the dashboard cookie, a fake
// OpenAI-compatible upstream, and helpers to send requests and check
// answers. It is imported by tests only.
package admintest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/sqldb"
	routeapp "github.com/omniedge/omni/internal/route/app"
	"github.com/omniedge/omni/internal/route/routetest"
)

// MasterKey is the master key the gateway is opened with.
var MasterKey = []byte("0123456789abcdef0123456789abcdef")

// Password is the dashboard password (INITIAL_PASSWORD) of NewEnv.
const Password = "correct horse battery"

// Upstream is a fake OpenAI-compatible provider: it answers every chat
// with "hi from NAME", or with the status SetStatus set.
type Upstream struct {
	*httptest.Server
	name   string
	mu     sync.Mutex
	status int
	auths  []string
	models []string
}

// NewUpstream starts an upstream named name, stopped when t ends.
func NewUpstream(t *testing.T, name string) *Upstream {
	u := &Upstream{name: name, status: http.StatusOK}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Model string `json:"model"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		u.mu.Lock()
		u.auths = append(u.auths, r.Header.Get("Authorization"))
		u.models = append(u.models, body.Model)
		status := u.status
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if status != http.StatusOK {
			w.WriteHeader(status)
			io.WriteString(w, `{"error":{"message":"upstream broken","type":"server_error"}}`)
			return
		}
		fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"hi from %s"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`, body.Model, u.name)
	}))
	t.Cleanup(u.Close)
	return u
}

// SetStatus sets the status of the next answers.
func (u *Upstream) SetStatus(s int) { u.mu.Lock(); u.status = s; u.mu.Unlock() }

// Calls returns the Authorization headers and models of the calls so far.
func (u *Upstream) Calls() (auths, models []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auths...), append([]string(nil), u.models...)
}

// Env is a gateway with management over a fresh SQLite database.
type Env struct {
	T   *testing.T
	Srv *httptest.Server
	DB  *sqldb.DB
	App *routeapp.App
	C   *http.Client // keeps cookies
}

// NewEnv opens a gateway with the dashboard password Password on cfg
// changed by mutate (if not nil).
func NewEnv(t *testing.T, mutate func(*config.Config)) *Env {
	t.Helper()
	return NewEnvLog(t, mutate, logging.Discard())
}

// NewEnvLog is NewEnv with the gateway logging to log.
func NewEnvLog(t *testing.T, mutate func(*config.Config), log *slog.Logger) *Env {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Route.InitialPassword = Password
	if mutate != nil {
		mutate(&cfg)
	}
	return newEnv(t, cfg, filepath.Join(t.TempDir(), "omni.db"), log)
}

// NewEnvDSN is NewEnv over the database dsn names (a PostgreSQL one:
// testenv.Postgres).
func NewEnvDSN(t *testing.T, dsn string, mutate func(*config.Config)) *Env {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Route.InitialPassword = Password
	if mutate != nil {
		mutate(&cfg)
	}
	return newEnv(t, cfg, dsn, logging.Discard())
}

func newEnv(t *testing.T, cfg config.Config, dsn string, log *slog.Logger) *Env {
	t.Helper()
	db, err := sqldb.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: db, MasterKey: MasterKey, Clock: clock.Real{}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return &Env{T: t, Srv: srv, DB: db, App: a, C: &http.Client{Jar: jar}}
}

// Resp is a whole answer.
type Resp = routetest.Resp

// Do sends a request; body may be a string (sent as is) or a value
// (encoded as JSON). hdr adds headers in pairs.
func (e *Env) Do(method, path string, body any, hdr ...string) Resp {
	e.T.Helper()
	r := routetest.Send(e.T, e.C, method, e.Srv.URL+path, body, hdr...)
	return r
}

// Want asserts a status and returns the response.
func (e *Env) Want(status int, method, path string, body any, hdr ...string) Resp {
	e.T.Helper()
	r := e.Do(method, path, body, hdr...)
	if r.Status != status {
		e.T.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.Status, status, r.Body)
	}
	return r
}

// Login logs in with Password.
func (e *Env) Login() {
	e.T.Helper()
	e.Want(http.StatusOK, "POST", "/api/auth/login", map[string]string{"password": Password})
}

// Run runs the gateway's background loops (the usage writer, the
// modules' sweeps) until the test ends, and waits for them then.
func (e *Env) Run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.App.Run(ctx) }()
	e.T.Cleanup(func() { cancel(); <-done })
}

// Running is NewEnv with its background loops running (usage records
// reach the store), logged in.
func Running(t *testing.T, mutate func(*config.Config)) *Env {
	t.Helper()
	e := NewEnv(t, mutate)
	e.Run()
	e.Login()
	return e
}

// CreateKey creates a gateway key of body ({"name", policy …}) and
// returns its id and raw value.
func (e *Env) CreateKey(body map[string]any) (id, raw string) {
	e.T.Helper()
	r := e.Want(http.StatusCreated, "POST", "/api/keys", body).Object(e.T)
	return r["id"].(string), r["key"].(string)
}

// WantError asserts a JSON error answer with status.
func (e *Env) WantError(status int, method, path string, body any, hdr ...string) string {
	e.T.Helper()
	r := e.Want(status, method, path, body, hdr...)
	var eb httpx.ErrorBody
	if strings.HasPrefix(path, "/v1/") { // the gateway answers in the client's dialect
		eb.Error.Status = status
	}
	if err := json.Unmarshal(r.Body, &eb); err != nil || eb.Error.Status != status || eb.Error.Message == "" {
		e.T.Fatalf("%s %s: error body %s is not a JSON error with status %d", method, path, r.Body, status)
	}
	return eb.Error.Message
}

// Chat is a chat request body for model.
func Chat(model string) map[string]any {
	return map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": "hello"}}}
}

// ChatText sends a chat for model and returns the answer's text.
func (e *Env) ChatText(model string, hdr ...string) string {
	e.T.Helper()
	r := e.Want(http.StatusOK, "POST", "/v1/chat/completions", Chat(model), hdr...)
	var out struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil || len(out.Choices) == 0 {
		e.T.Fatalf("chat answer %s", r.Body)
	}
	return out.Choices[0].Message.Content
}

// ModelIDs lists the ids /v1/models shows.
func (e *Env) ModelIDs(hdr ...string) []string {
	e.T.Helper()
	r := e.Want(http.StatusOK, "GET", "/v1/models", nil, hdr...)
	var out struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		e.T.Fatal(err)
	}
	var ids []string
	for _, d := range out.Data {
		ids = append(ids, d.ID)
	}
	return ids
}

// Contains reports whether list holds s.
func Contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Remote marks a request as relayed by a proxy, so it is not trusted as
// coming from the gateway host.
var Remote = []string{"X-Forwarded-For", "203.0.113.7"}

// Bearer is an Authorization header pair with key k.
func Bearer(k string) []string { return []string{"Authorization", "Bearer " + k} }
