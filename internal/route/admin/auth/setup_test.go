package auth_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

// logBuffer collects a gateway's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var setupTokenRe = regexp.MustCompile(`setup_token=(\S+)`)

// tokens returns every setup token the log printed.
func (b *logBuffer) tokens() []string {
	var out []string
	for _, m := range setupTokenRe.FindAllStringSubmatch(b.String(), -1) {
		out = append(out, m[1])
	}
	return out
}

func setupBody(token, pw string) map[string]string {
	return map[string]string{"token": token, "password": pw}
}

// A fresh install (no password stored, no INITIAL_PASSWORD) accepts no
// management request at all — not even from the gateway host, where any
// local process or web page would otherwise administer it — until the
// one-time setup token printed in the log sets a password.
func TestFreshInstallNeedsTheSetupToken(t *testing.T) {
	logs := &logBuffer{}
	e := newEnvLog(t, func(c *config.Config) { c.Route.InitialPassword = "" }, slog.New(slog.NewTextHandler(logs, nil)))

	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/api/providers", nil},
		{"POST", "/api/providers", map[string]any{"id": "x", "type": "openai"}},
		{"GET", "/api/keys", nil},
		{"POST", "/api/keys", map[string]any{"name": "k"}},
		{"POST", "/api/auth/password", map[string]string{"password": password}},
		{"PUT", "/api/settings/require-login", map[string]bool{"requireLogin": false}},
		{"GET", "/api/resilience", nil},
	} {
		msg := e.WantError(http.StatusUnauthorized, c.method, c.path, c.body)
		if !strings.Contains(msg, "setup") {
			t.Fatalf("%s %s: message %q does not explain the setup", c.method, c.path, msg)
		}
	}
	e.WantError(http.StatusConflict, "POST", "/api/auth/login", map[string]string{"password": password})
	if v := e.Want(http.StatusOK, "GET", "/api/settings/require-login", nil).Object(t); v["setupRequired"] != true || v["hasPassword"] != false {
		t.Fatalf("require-login = %v", v)
	}

	toks := logs.tokens()
	if len(toks) != 1 || len(toks[0]) < 32 {
		t.Fatalf("the log printed setup tokens %q, want exactly one; log:\n%s", toks, logs)
	}
	tok := toks[0]
	// The token is kept hashed.
	rows, err := e.DB.Query(context.Background(), `SELECT key, value FROM route_settings`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(v, tok) || strings.Contains(v, tok[len(tok)-16:]) {
			t.Fatalf("setting %s holds the setup token: %q", k, v)
		}
	}
	rows.Close()

	e.WantError(http.StatusUnauthorized, "POST", "/api/auth/setup", setupBody("omrs_wrong", password))
	e.WantError(http.StatusUnauthorized, "POST", "/api/auth/setup", setupBody(tok[:len(tok)-1], password))
	e.WantError(http.StatusBadRequest, "POST", "/api/auth/setup", setupBody(tok, "short"))
	e.WantError(http.StatusUnsupportedMediaType, "POST", "/api/auth/setup", `{"token":"`+tok+`","password":"`+password+`"}`, "Content-Type", "text/plain")
	e.WantError(http.StatusForbidden, "POST", "/api/auth/setup", setupBody(tok, password), "Origin", "https://evil.example")
	e.WantError(http.StatusUnauthorized, "GET", "/api/providers", nil)

	// The token sets the password and logs the caller in.
	e.Want(http.StatusOK, "POST", "/api/auth/setup", setupBody(tok, password))
	e.Want(http.StatusOK, "GET", "/api/providers", nil)
	// It is single-use.
	e.WantError(http.StatusConflict, "POST", "/api/auth/setup", setupBody(tok, "another password"))
	// Everyone else logs in with the password.
	jar, _ := cookiejar.New(nil)
	other := &env{T: t, Srv: e.Srv, DB: e.DB, App: e.App, C: &http.Client{Jar: jar}}
	other.WantError(http.StatusUnauthorized, "GET", "/api/providers", nil)
	other.Login()
	other.Want(http.StatusOK, "GET", "/api/providers", nil)
	if v := e.Want(http.StatusOK, "GET", "/api/settings/require-login", nil).Object(t); v["setupRequired"] != false || v["hasPassword"] != true {
		t.Fatalf("require-login after setup = %v", v)
	}
	// A restart prints no new token once a password exists.
	restart := config.Default()
	if _, err := routeapp.Open(context.Background(), &restart, routeapp.Deps{DB: e.DB, MasterKey: masterKey, Clock: clock.Real{},
		Log: slog.New(slog.NewTextHandler(logs, nil))}); err != nil {
		t.Fatal(err)
	}
	if toks := logs.tokens(); len(toks) != 1 {
		t.Fatalf("tokens after a restart with a password: %q", toks)
	}
}

// Each start without a password prints a new token, which replaces the
// previous one; guesses are rate limited like logins.
func TestSetupTokenRotatesAndIsRateLimited(t *testing.T) {
	logs := &logBuffer{}
	e := newEnvLog(t, func(c *config.Config) { c.Route.InitialPassword = "" }, slog.New(slog.NewTextHandler(logs, nil)))
	// A second start over the same database.
	cfg := config.Default()
	if _, err := routeapp.Open(context.Background(), &cfg, routeapp.Deps{DB: e.DB, MasterKey: masterKey, Clock: clock.Real{},
		Log: slog.New(slog.NewTextHandler(logs, nil))}); err != nil {
		t.Fatal(err)
	}
	toks := logs.tokens()
	if len(toks) != 2 || toks[0] == toks[1] {
		t.Fatalf("tokens after two starts: %q", toks)
	}
	e.WantError(http.StatusUnauthorized, "POST", "/api/auth/setup", setupBody(toks[0], password))
	limited := false
	for i := 0; i < 15 && !limited; i++ {
		switch r := e.Do("POST", "/api/auth/setup", setupBody("omrs_guess", password)); r.Status {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			limited = r.Header.Get("Retry-After") != ""
		default:
			t.Fatalf("guess %d: %d %s", i, r.Status, r.Body)
		}
	}
	if !limited {
		t.Fatal("15 wrong setup tokens were never rate limited")
	}
	e.WantError(http.StatusTooManyRequests, "POST", "/api/auth/setup", setupBody(toks[1], password))
}

// With INITIAL_PASSWORD there is nothing to set up: no token is printed
// and the password works at once.
func TestInitialPasswordNeedsNoSetupToken(t *testing.T) {
	logs := &logBuffer{}
	e := newEnvLog(t, nil, slog.New(slog.NewTextHandler(logs, nil)))
	if toks := logs.tokens(); len(toks) != 0 {
		t.Fatalf("a setup token was printed although INITIAL_PASSWORD is set: %q", toks)
	}
	e.WantError(http.StatusConflict, "POST", "/api/auth/setup", setupBody("omrs_anything", password))
	e.Login()
	e.Want(http.StatusOK, "GET", "/api/providers", nil)
}

// Concurrent setups with the same token set one password: the token is
// spent by exactly one request, even when the password setting exists but
// is empty (as a restored fresh install leaves it). Each request comes
// from its own loopback address, so the rate limit lets them all race.
func TestConcurrentSetupsSetOnePassword(t *testing.T) {
	logs := &logBuffer{}
	e := newEnvLog(t, func(c *config.Config) { c.Route.InitialPassword = "" }, slog.New(slog.NewTextHandler(logs, nil)))
	if _, err := e.DB.Exec(context.Background(), `INSERT INTO route_settings (key, value, updated_at) VALUES ('password_hash', '', 0)`); err != nil {
		t.Fatal(err)
	}
	toks := logs.tokens()
	if len(toks) != 1 {
		t.Fatalf("setup tokens %q", toks)
	}
	const n = 20
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		statuses = make([]int, n)
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))}}
			c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
			body := fmt.Sprintf(`{"token":%q,"password":"password number %d"}`, toks[0], i)
			req, _ := http.NewRequest("POST", e.Srv.URL+"/api/auth/setup", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			<-start
			res, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			statuses[i] = res.StatusCode
		}(i)
	}
	close(start)
	wg.Wait()
	won := -1
	for i, s := range statuses {
		switch {
		case s >= 200 && s <= 299 && won >= 0:
			t.Fatalf("setups %d and %d both succeeded: statuses %v", won, i, statuses)
		case s >= 200 && s <= 299:
			won = i
		case s != http.StatusUnauthorized && s != http.StatusConflict:
			t.Fatalf("setup %d: status %d; statuses %v", i, s, statuses)
		}
	}
	if won < 0 {
		t.Fatalf("no setup succeeded: statuses %v", statuses)
	}
	// The winner's password is the password; nobody else's is.
	for i := 0; i < n; i++ {
		want := http.StatusUnauthorized
		if i == won {
			want = http.StatusOK
		}
		jar, _ := cookiejar.New(nil)
		other := &env{T: t, Srv: e.Srv, DB: e.DB, App: e.App, C: &http.Client{Jar: jar}}
		if i == won || i%5 == 0 { // the rate limit bounds how many wrong ones one address may try
			other.Want(want, "POST", "/api/auth/login", map[string]string{"password": fmt.Sprintf("password number %d", i)})
		}
	}
}
