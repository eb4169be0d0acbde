package manage_test

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

var masterKey = []byte("0123456789abcdef0123456789abcdef")

const password = "correct horse battery"

// upstream is a fake OpenAI-compatible provider.
type upstream struct {
	*httptest.Server
	name   string
	mu     sync.Mutex
	status int
	auths  []string
	models []string
}

func newUpstream(t *testing.T, name string) *upstream {
	u := &upstream{name: name, status: http.StatusOK}
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

func (u *upstream) setStatus(s int) { u.mu.Lock(); u.status = s; u.mu.Unlock() }

func (u *upstream) calls() (auths, models []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auths...), append([]string(nil), u.models...)
}

// env is a gateway with management over a fresh SQLite database.
type env struct {
	t   *testing.T
	srv *httptest.Server
	db  *sqldb.DB
	app *routeapp.App
	c   *http.Client // keeps cookies
}

func newEnv(t *testing.T, mutate func(*config.Config)) *env {
	t.Helper()
	return newEnvLog(t, mutate, logging.Discard())
}

// newEnvLog is newEnv with the gateway logging to log.
func newEnvLog(t *testing.T, mutate func(*config.Config), log *slog.Logger) *env {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Route.InitialPassword = password
	if mutate != nil {
		mutate(&cfg)
	}
	db, err := sqldb.Open(context.Background(), filepath.Join(t.TempDir(), "omni.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: db, MasterKey: masterKey, Clock: clock.Real{}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpx.Wrap(a.Handler(), logging.Discard(), nil))
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return &env{t: t, srv: srv, db: db, app: a, c: &http.Client{Jar: jar}}
}

// resp is a whole answer.
type resp = routetest.Resp

// do sends a request; body may be a string (sent as is) or a value
// (encoded as JSON). hdr adds headers in pairs.
func (e *env) do(method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	r := routetest.Send(e.t, e.c, method, e.srv.URL+path, body, hdr...)
	return r
}

// want asserts a status and returns the response.
func (e *env) want(status int, method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	r := e.do(method, path, body, hdr...)
	if r.Status != status {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.Status, status, r.Body)
	}
	return r
}

func (e *env) login() {
	e.t.Helper()
	e.want(http.StatusOK, "POST", "/api/auth/login", map[string]string{"password": password})
}

// wantError asserts a JSON error answer with status.
func (e *env) wantError(status int, method, path string, body any, hdr ...string) string {
	e.t.Helper()
	r := e.want(status, method, path, body, hdr...)
	var eb httpx.ErrorBody
	if strings.HasPrefix(path, "/v1/") { // the gateway answers in the client's dialect
		eb.Error.Status = status
	}
	if err := json.Unmarshal(r.Body, &eb); err != nil || eb.Error.Status != status || eb.Error.Message == "" {
		e.t.Fatalf("%s %s: error body %s is not a JSON error with status %d", method, path, r.Body, status)
	}
	return eb.Error.Message
}

func chat(model string) map[string]any {
	return map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": "hello"}}}
}

func (e *env) chatText(model string, hdr ...string) string {
	e.t.Helper()
	r := e.want(http.StatusOK, "POST", "/v1/chat/completions", chat(model), hdr...)
	var out struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil || len(out.Choices) == 0 {
		e.t.Fatalf("chat answer %s", r.Body)
	}
	return out.Choices[0].Message.Content
}

func (e *env) modelIDs(hdr ...string) []string {
	e.t.Helper()
	r := e.want(http.StatusOK, "GET", "/v1/models", nil, hdr...)
	var out struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		e.t.Fatal(err)
	}
	var ids []string
	for _, d := range out.Data {
		ids = append(ids, d.ID)
	}
	return ids
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// remote marks a request as relayed by a proxy, so it is not trusted as
// coming from the gateway host.
var remote = []string{"X-Forwarded-For", "203.0.113.7"}
