package api_test

// Browser login sessions end to end: a real WebSocket client (the device)
// and a plain HTTP client (the browser) against the in-process control
// plane. Every env gets its own password rate limit (burst 5 per client
// IP), so each test keeps to at most five password submissions per env.

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/omniedge/omni/internal/edge/device/client"
	"github.com/omniedge/omni/internal/edge/edgetest"
)

const sessPassword = "correct horse battery"

// sessWait bounds every wait for something that must happen; sessQuietFor
// is how long we watch for something that must not.
const (
	sessWait     = 10 * time.Second
	sessQuietFor = 250 * time.Millisecond
)

var (
	sessUUIDRE     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	sessApprovalRE = regexp.MustCompile(`<input type="hidden" name="approval" value="([^"]*)">`)
)

// sessPage is an HTTP answer seen by the browser.
type sessPage struct {
	status int
	header http.Header
	body   string
}

func (p sessPage) String() string {
	return p.header.Get("Content-Type") + " " + http.StatusText(p.status) + ":\n" + p.body
}

func sessDo(t *testing.T, env *edgetest.Env, req *http.Request) sessPage {
	t.Helper()
	resp, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return sessPage{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func sessGet(t *testing.T, env *edgetest.Env, rawURL string) sessPage {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sessDo(t, env, req)
}

func sessPostForm(t *testing.T, env *edgetest.Env, path string, form url.Values) sessPage {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, env.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return sessDo(t, env, req)
}

// sessExpectPage checks status and the security headers every login page
// carries, and that the body contains each of want.
func sessExpectPage(t *testing.T, what string, p sessPage, status int, want ...string) {
	t.Helper()
	if p.status != status {
		t.Fatalf("%s: status %d, want %d; page: %s", what, p.status, status, p)
	}
	if ct := p.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("%s: Content-Type %q, want text/html", what, ct)
	}
	if v := p.header.Get("X-Frame-Options"); v != "DENY" {
		t.Errorf("%s: X-Frame-Options %q, want DENY", what, v)
	}
	csp := p.header.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "script-src 'self';", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", what, csp, d)
		}
	}
	if strings.Contains(csp, "unsafe-") {
		t.Errorf("%s: Content-Security-Policy %q allows unsafe sources", what, csp)
	}
	if v := p.header.Get("Cache-Control"); v != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", what, v)
	}
	for _, w := range want {
		if !strings.Contains(p.body, w) {
			t.Errorf("%s: page lacks %q; page: %s", what, w, p)
		}
	}
}

// sessStart opens a login session through the API (prefix "/api/v2" or
// "/api/v1") and checks the answer.
func sessStart(t *testing.T, env *edgetest.Env, prefix string) (id, authURL string) {
	t.Helper()
	p := sessGet(t, env, env.URL+prefix+"/auth/login/session")
	if p.status != http.StatusOK {
		t.Fatalf("GET %s/auth/login/session: %s", prefix, p)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(p.body), &body); err != nil {
		t.Fatalf("GET %s/auth/login/session: not JSON: %v; body %s", prefix, err, p.body)
	}
	id, _ = body["uuid"].(string)
	authURL, _ = body["auth_url"].(string)
	if !sessUUIDRE.MatchString(id) {
		t.Fatalf("uuid %q is not a version-4 UUID; body %s", id, p.body)
	}
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatalf("auth_url %q: %v", authURL, err)
	}
	base, _ := url.Parse(env.URL)
	if u.Scheme != base.Scheme || u.Host != base.Host || u.Path != "/login" || u.Query().Get("session") != id || len(u.Query()) != 1 {
		t.Fatalf("auth_url %q does not point at %s/login?session=%s", authURL, env.URL, id)
	}
	return id, authURL
}

// sessLogin posts the password form as a browser would.
func sessLogin(t *testing.T, env *edgetest.Env, id, email, password string) sessPage {
	t.Helper()
	return sessPostForm(t, env, "/login", url.Values{"session": {id}, "email": {email}, "password": {password}})
}

// sessApprovalOf extracts the hidden approval token of an approval page.
func sessApprovalOf(t *testing.T, p sessPage) string {
	t.Helper()
	m := sessApprovalRE.FindAllStringSubmatch(p.body, -1)
	if len(m) != 1 || m[0][1] == "" {
		t.Fatalf("want exactly one non-empty hidden approval input; page: %s", p)
	}
	return html.UnescapeString(m[0][1])
}

func sessApprove(t *testing.T, env *edgetest.Env, id, approval, action string) sessPage {
	t.Helper()
	return sessPostForm(t, env, "/login/approve", url.Values{"session": {id}, "approval": {approval}, "action": {action}})
}

// sessBrowser plays the whole browser side for user: login page, password,
// approval. It returns the approval token it used.
func sessBrowser(t *testing.T, env *edgetest.Env, authURL, id string, u edgetest.User) string {
	t.Helper()
	page := sessGet(t, env, authURL)
	sessExpectPage(t, "GET auth_url", page, http.StatusOK,
		`<form method="post" action="/login">`,
		`<input type="hidden" name="session" value="`+id+`">`,
		`name="email"`, `name="password" type="password"`)
	page = sessLogin(t, env, id, u.Email, sessPassword)
	sessExpectPage(t, "POST /login", page, http.StatusOK, `<form method="post" action="/login/approve">`, html.EscapeString(u.Email), id[:8])
	approval := sessApprovalOf(t, page)
	page = sessApprove(t, env, id, approval, "approve")
	sessExpectPage(t, "POST /login/approve", page, http.StatusOK, "Device approved")
	return approval
}

// sessMsg is one result of reading the socket.
type sessMsg struct {
	typ  websocket.MessageType
	data []byte
	err  error
}

// sessSocket is a device listening for its tokens; a goroutine reads every
// message (and finally the error that ended the connection) into msgs.
type sessSocket struct {
	conn   *websocket.Conn
	msgs   chan sessMsg
	cancel context.CancelFunc
}

func sessDial(t *testing.T, env *edgetest.Env, path string) *sessSocket {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dctx, dcancel := context.WithTimeout(ctx, sessWait)
	defer dcancel()
	wsURL := "ws" + strings.TrimPrefix(env.URL, "http") + path
	conn, resp, err := websocket.Dial(dctx, wsURL, nil)
	if err != nil {
		cancel()
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("dial %s: status %d, want 101", wsURL, resp.StatusCode)
	}
	s := &sessSocket{conn: conn, msgs: make(chan sessMsg, 8), cancel: cancel}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			typ, data, err := conn.Read(ctx)
			s.msgs <- sessMsg{typ: typ, data: data, err: err}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		conn.CloseNow()
		<-done
	})
	return s
}

func (s *sessSocket) next(t *testing.T, what string) sessMsg {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(sessWait):
		t.Fatalf("%s: nothing arrived on the socket within %v", what, sessWait)
		return sessMsg{}
	}
}

// quiet asserts that nothing (neither a message nor a close) arrives for a
// while: the socket is still waiting.
func (s *sessSocket) quiet(t *testing.T, what string) {
	t.Helper()
	select {
	case m := <-s.msgs:
		t.Fatalf("%s: socket should still be waiting, got message %q (err %v, close status %d)", what, m.data, m.err, websocket.CloseStatus(m.err))
	case <-time.After(sessQuietFor):
	}
}

// tokens expects exactly one text message {token, refresh_token} followed
// by a normal close, and returns the pair.
func (s *sessSocket) tokens(t *testing.T) (token, refresh string) {
	t.Helper()
	m := s.next(t, "waiting for tokens")
	if m.err != nil {
		t.Fatalf("waiting for tokens: socket ended: %v (close status %d)", m.err, websocket.CloseStatus(m.err))
	}
	if m.typ != websocket.MessageText {
		t.Errorf("token message type %v, want text", m.typ)
	}
	var body map[string]any
	if err := json.Unmarshal(m.data, &body); err != nil {
		t.Fatalf("token message is not JSON: %v: %q", err, m.data)
	}
	token, _ = body["token"].(string)
	refresh, _ = body["refresh_token"].(string)
	if token == "" || refresh == "" || len(body) != 2 {
		t.Fatalf(`token message %s: want exactly {"token": "...", "refresh_token": "..."}`, m.data)
	}
	end := s.next(t, "waiting for close after tokens")
	if end.err == nil {
		t.Fatalf("a second message arrived after the tokens: %q", end.data)
	}
	if cs := websocket.CloseStatus(end.err); cs != websocket.StatusNormalClosure {
		t.Fatalf("after the tokens the socket ended with %v (close status %d), want a normal close", end.err, cs)
	}
	return token, refresh
}

// closedWith expects the socket to be closed by the server with code.
func (s *sessSocket) closedWith(t *testing.T, code websocket.StatusCode) {
	t.Helper()
	m := s.next(t, "waiting for close")
	if m.err == nil {
		t.Fatalf("got message %q, want close %d", m.data, code)
	}
	if cs := websocket.CloseStatus(m.err); cs != code {
		t.Fatalf("socket ended with %v (close status %d), want close status %d", m.err, cs, code)
	}
}

// sessAPI makes an authenticated API call and returns status and body.
func sessAPI(t *testing.T, env *edgetest.Env, method, path, token, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, env.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	p := sessDo(t, env, req)
	return p.status, p.body
}

// sessTokensWork checks that the pair delivered to the device belongs to u.
func sessTokensWork(t *testing.T, env *edgetest.Env, u edgetest.User, token, refresh string) {
	t.Helper()
	if st, body := sessAPI(t, env, http.MethodGet, "/api/v2/devices", token, ""); st != http.StatusOK || !strings.HasPrefix(strings.TrimSpace(body), "[") {
		t.Fatalf("GET /api/v2/devices with the session token: %d %s", st, body)
	}
	st, body := sessAPI(t, env, http.MethodGet, "/api/v2/users/me", token, "")
	if st != http.StatusOK {
		t.Fatalf("GET /api/v2/users/me with the session token: %d %s", st, body)
	}
	var me struct{ ID, Email string }
	if err := json.Unmarshal([]byte(body), &me); err != nil || me.ID != u.ID || me.Email != u.Email {
		t.Fatalf("the session token is not %s's (%s): %s", u.Email, u.ID, body)
	}
	rb, _ := json.Marshal(map[string]string{"refresh_token": refresh})
	if st, body := sessAPI(t, env, http.MethodPost, "/api/v2/auth/refresh", "", string(rb)); st != http.StatusOK {
		t.Fatalf("refresh with the session refresh token: %d %s", st, body)
	}
}

// sessMainFlow is the documented flow: start, device listens, browser logs
// in and approves, device gets the tokens once.
func sessMainFlow(t *testing.T, env *edgetest.Env) {
	u := env.NewUser("")
	id, authURL := sessStart(t, env, "/api/v2")

	sock := sessDial(t, env, "/login/session/"+id)
	sock.quiet(t, "before the browser logs in")

	page := sessGet(t, env, authURL)
	sessExpectPage(t, "GET auth_url", page, http.StatusOK, `<form method="post" action="/login">`, `name="session" value="`+id+`"`)
	page = sessLogin(t, env, id, u.Email, sessPassword)
	sessExpectPage(t, "POST /login", page, http.StatusOK, "Approve this device?")
	approval := sessApprovalOf(t, page)
	sock.quiet(t, "after the password, before approval")

	page = sessApprove(t, env, id, approval, "approve")
	sessExpectPage(t, "POST /login/approve", page, http.StatusOK, "Device approved")

	token, refresh := sock.tokens(t)
	sessTokensWork(t, env, u, token, refresh)

	// The session is spent: a second socket, the login page and another
	// approval all refuse.
	sessDial(t, env, "/login/session/"+id).closedWith(t, 4404)
	sessExpectPage(t, "GET auth_url after delivery", sessGet(t, env, authURL), http.StatusNotFound, "expired or was already used")
	sessExpectPage(t, "approve after delivery", sessApprove(t, env, id, approval, "approve"), http.StatusNotFound, "expired or was already used")
}

func TestSessionFlow(t *testing.T) {
	t.Parallel()
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		sessMainFlow(t, edgetest.New(t, edgetest.Options{}))
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		sessMainFlow(t, edgetest.New(t, edgetest.Options{Redis: true}))
	})
}

// The browser may finish before the device connects: the tokens wait for
// it, on every socket path.
func TestSessionBufferedBeforeSocket(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	for _, tc := range []struct{ start, socket string }{
		{"/api/v2", "/login/session/"},
		{"/api/v2", "/api/v2/login/session/"},
		{"/api/v1", "/api/v1/login/session/"},
	} {
		t.Run(strings.Trim(tc.socket, "/"), func(t *testing.T) {
			id, authURL := sessStart(t, env, tc.start)
			sessBrowser(t, env, authURL, id, u)
			token, refresh := sessDial(t, env, tc.socket+id).tokens(t)
			sessTokensWork(t, env, u, token, refresh)
			sessDial(t, env, tc.socket+id).closedWith(t, 4404)
		})
	}
}

func TestSessionOnceOnly(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")

	t.Run("second socket after delivery", func(t *testing.T) {
		id, authURL := sessStart(t, env, "/api/v2")
		first := sessDial(t, env, "/login/session/"+id)
		first.quiet(t, "before approval")
		sessBrowser(t, env, authURL, id, u)
		first.tokens(t)
		sessDial(t, env, "/login/session/"+id).closedWith(t, 4404)
		sessDial(t, env, "/api/v2/login/session/"+id).closedWith(t, 4404)
	})

	t.Run("two sockets waiting", func(t *testing.T) {
		// One socket waits per session; TestSessionOneWaiter covers it.
		id, authURL := sessStart(t, env, "/api/v2")
		a := sessDial(t, env, "/login/session/"+id)
		a.quiet(t, "socket a before approval")
		sessDial(t, env, "/api/v2/login/session/"+id).closedWith(t, 4409)
		sessBrowser(t, env, authURL, id, u)
		a.tokens(t)
	})
}

func TestSessionWrongPassword(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	id, _ := sessStart(t, env, "/api/v2")
	sock := sessDial(t, env, "/login/session/"+id)

	for _, tc := range []struct{ name, email, password string }{
		{"wrong password", u.Email, "correct horse battery staple"},
		{"unknown email", "nobody@example.com", sessPassword},
	} {
		page := sessLogin(t, env, id, tc.email, tc.password)
		sessExpectPage(t, tc.name, page, http.StatusUnauthorized, `role="alert"`, "Wrong email or password.",
			`<form method="post" action="/login">`, `value="`+html.EscapeString(tc.email)+`"`)
		if strings.Contains(page.body, `name="approval"`) {
			t.Errorf("%s: the page carries an approval input: %s", tc.name, page)
		}
		if strings.Contains(page.body, tc.password) {
			t.Errorf("%s: the page echoes the password", tc.name)
		}
	}
	sock.quiet(t, "after failed logins")

	// The session survives failed attempts.
	page := sessLogin(t, env, id, u.Email, sessPassword)
	sessExpectPage(t, "right password", page, http.StatusOK)
	sessExpectPage(t, "approve", sessApprove(t, env, id, sessApprovalOf(t, page), "approve"), http.StatusOK)
	sock.tokens(t)
}

// Password guessing is throttled per client IP (burst 5).
func TestSessionPasswordRateLimit(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	id, _ := sessStart(t, env, "/api/v2")
	for i := range 5 {
		sessExpectPage(t, "attempt", sessLogin(t, env, id, u.Email, "wrong password "+string(rune('a'+i))), http.StatusUnauthorized)
	}
	page := sessLogin(t, env, id, u.Email, sessPassword)
	sessExpectPage(t, "sixth attempt", page, http.StatusTooManyRequests, "Too many attempts")
	if page.header.Get("Retry-After") == "" {
		t.Errorf("429 page without Retry-After")
	}
	if strings.Contains(page.body, `name="approval"`) {
		t.Errorf("throttled page carries an approval input")
	}
	env.Clock.Advance(10 * time.Second)
	sessExpectPage(t, "after waiting", sessLogin(t, env, id, u.Email, sessPassword), http.StatusOK, `name="approval"`)
}

func TestSessionUnknownOrExpired(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	const unknown = "0b6f3c2e-9a1d-4c5e-8f7a-1b2c3d4e5f60"

	t.Run("unknown", func(t *testing.T) {
		sessExpectPage(t, "GET /login unknown", sessGet(t, env, env.URL+"/login?session="+unknown), http.StatusNotFound, "Login link not valid")
		sessExpectPage(t, "GET /login without session", sessGet(t, env, env.URL+"/login"), http.StatusBadRequest, "no login session")
		page := sessLogin(t, env, unknown, u.Email, sessPassword)
		sessExpectPage(t, "POST /login unknown", page, http.StatusNotFound, "expired or was already used")
		if strings.Contains(page.body, `name="approval"`) {
			t.Errorf("approval issued for an unknown session")
		}
		sessDial(t, env, "/login/session/"+unknown).closedWith(t, 4404)
		sessDial(t, env, "/api/v2/login/session/not-a-uuid").closedWith(t, 4404)
	})

	t.Run("expired", func(t *testing.T) {
		id, authURL := sessStart(t, env, "/api/v2")
		env.Clock.Advance(16 * time.Minute)
		sessExpectPage(t, "GET auth_url after expiry", sessGet(t, env, authURL), http.StatusNotFound, "expired or was already used")
		sessExpectPage(t, "POST /login after expiry", sessLogin(t, env, id, u.Email, sessPassword), http.StatusNotFound)
		sessDial(t, env, "/login/session/"+id).closedWith(t, 4404)
	})

	t.Run("approval expires", func(t *testing.T) {
		id, authURL := sessStart(t, env, "/api/v2")
		sessGet(t, env, authURL)
		page := sessLogin(t, env, id, u.Email, sessPassword)
		sessExpectPage(t, "POST /login", page, http.StatusOK)
		approval := sessApprovalOf(t, page)
		env.Clock.Advance(6 * time.Minute) // approval lives 5 min, the session 15
		sessExpectPage(t, "approve after 6 min", sessApprove(t, env, id, approval, "approve"), http.StatusUnauthorized, "invalid or expired")
		sessExpectPage(t, "session still pending", sessGet(t, env, authURL), http.StatusOK)
	})
}

func TestSessionApproveTampered(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	u, other := env.NewUser(""), env.NewUser("")
	id, _ := sessStart(t, env, "/api/v2")
	otherID, _ := sessStart(t, env, "/api/v2")
	sock := sessDial(t, env, "/login/session/"+id)

	page := sessLogin(t, env, id, u.Email, sessPassword)
	sessExpectPage(t, "POST /login", page, http.StatusOK)
	approval := sessApprovalOf(t, page)
	parts := strings.Split(approval, ".")
	if len(parts) != 3 {
		t.Fatalf("approval %q: want three dot-separated parts", approval)
	}
	flip := func(s string, i int) string {
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	for _, tc := range []struct{ name, session, approval string }{
		{"signature changed", id, parts[0] + "." + parts[1] + "." + flip(parts[2], 5)},
		{"signature truncated", id, parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-4]},
		{"signature not base64", id, parts[0] + "." + parts[1] + ".!!!!"},
		{"no signature", id, parts[0] + "." + parts[1] + "."},
		{"other user", id, other.ID + "." + parts[1] + "." + parts[2]},
		{"later expiry", id, parts[0] + ".9999999999." + parts[2]},
		{"four parts", id, approval + ".x"},
		{"garbage", id, "not-an-approval"},
		{"empty", id, ""},
		{"approval of another session", otherID, approval},
	} {
		sessExpectPage(t, tc.name, sessApprove(t, env, tc.session, tc.approval, "approve"), http.StatusUnauthorized, "invalid or expired")
	}
	sock.quiet(t, "after tampered approvals")
	sessExpectPage(t, "other session still pending", sessGet(t, env, env.URL+"/login?session="+otherID), http.StatusOK)

	// The genuine approval still works and yields u's tokens, not other's.
	sessExpectPage(t, "genuine approval", sessApprove(t, env, id, approval, "approve"), http.StatusOK, "Device approved")
	token, refresh := sock.tokens(t)
	sessTokensWork(t, env, u, token, refresh)
}

func TestSessionApproveTwice(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	id, _ := sessStart(t, env, "/api/v2")
	page := sessLogin(t, env, id, u.Email, sessPassword)
	sessExpectPage(t, "POST /login", page, http.StatusOK)
	approval := sessApprovalOf(t, page)
	sessExpectPage(t, "first approval", sessApprove(t, env, id, approval, "approve"), http.StatusOK, "Device approved")
	// Not yet delivered: the second approval must not replace the tokens.
	second := sessApprove(t, env, id, approval, "approve")
	if second.status < 400 {
		t.Fatalf("second approval succeeded: %s", second)
	}
	sessExpectPage(t, "second approval", second, http.StatusNotFound, "expired or was already used")
	token, refresh := sessDial(t, env, "/login/session/"+id).tokens(t)
	sessTokensWork(t, env, u, token, refresh)
}

func TestSessionDeny(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	id, _ := sessStart(t, env, "/api/v2")
	sock := sessDial(t, env, "/login/session/"+id)
	page := sessLogin(t, env, id, u.Email, sessPassword)
	sessExpectPage(t, "POST /login", page, http.StatusOK)
	approval := sessApprovalOf(t, page)
	page = sessApprove(t, env, id, approval, "deny")
	sessExpectPage(t, "deny", page, http.StatusOK, "Login denied")
	if strings.Contains(page.body, "Device approved") {
		t.Fatalf("deny page says approved: %s", page)
	}
	// The waiting device learns at once that the user refused: no tokens,
	// close code 4403.
	m := sock.next(t, "after deny")
	if m.err == nil {
		t.Fatalf("got a message after deny: %q", m.data)
	}
	if cs := websocket.CloseStatus(m.err); cs != 4403 {
		t.Fatalf("after deny the socket ended with %v (status %d), want close 4403", m.err, cs)
	}
	// The session is over: approving it now (Back button) fails, and a new
	// socket is told it is gone.
	page = sessApprove(t, env, id, approval, "approve")
	sessExpectPage(t, "approve after deny", page, http.StatusNotFound)
	late := sessDial(t, env, "/login/session/"+id)
	if m := late.next(t, "socket after deny"); websocket.CloseStatus(m.err) != 4404 {
		t.Fatalf("socket after deny: %v, want close 4404", m.err)
	}
	// Denying needs a valid approval too.
	id2, _ := sessStart(t, env, "/api/v2")
	page = sessApprove(t, env, id2, approval, "deny")
	sessExpectPage(t, "deny with a foreign approval", page, http.StatusUnauthorized)
}

// The Go client's helpers against the same flow.
func TestSessionClientHelper(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	c := client.New(env.URL, env.Server.Client())
	ctx, cancel := context.WithTimeout(context.Background(), 2*sessWait)
	defer cancel()

	sr, err := c.StartSession(ctx)
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	if !sessUUIDRE.MatchString(sr.UUID) || sr.AuthURL != env.URL+"/login?session="+sr.UUID {
		t.Fatalf("StartSession = %+v", sr)
	}
	if !sr.ExpiresAt.Equal(env.Clock.Now().Add(15 * time.Minute)) {
		t.Errorf("expires_at %v, want %v", sr.ExpiresAt, env.Clock.Now().Add(15*time.Minute))
	}

	type result struct {
		token, refresh string
		err            error
	}
	res := make(chan result, 1)
	go func() {
		tr, err := c.WaitSession(ctx, sr.UUID)
		res <- result{tr.Token, tr.RefreshToken, err}
	}()
	select {
	case r := <-res:
		t.Fatalf("WaitSession returned before approval: %+v", r)
	case <-time.After(sessQuietFor):
	}
	sessBrowser(t, env, sr.AuthURL, sr.UUID, u)

	var r result
	select {
	case r = <-res:
	case <-time.After(sessWait):
		t.Fatalf("WaitSession did not return within %v of the approval", sessWait)
	}
	if r.err != nil {
		t.Fatalf("WaitSession: %v", r.err)
	}
	if tok, rt := c.Tokens(); tok != r.token || rt != r.refresh || tok == "" || rt == "" {
		t.Fatalf("client holds (%q, %q), WaitSession returned (%q, %q)", tok, rt, r.token, r.refresh)
	}
	me, err := c.Me(ctx)
	if err != nil || me.ID != u.ID {
		t.Fatalf("Me with the session tokens = %+v, %v; want user %s", me, err, u.ID)
	}
	if _, err := c.Devices(ctx); err != nil {
		t.Fatalf("Devices with the session tokens: %v", err)
	}

	// Waiting again on a spent session is a 404 API error.
	_, err = client.New(env.URL, env.Server.Client()).WaitSession(ctx, sr.UUID)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Fatalf("WaitSession on a spent session: %v, want APIError 404", err)
	}
}
