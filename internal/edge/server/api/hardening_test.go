package api_test

// Attacker tests of the control plane: another tenant probing address
// ranges, anonymous floods of login sessions and sockets, a phishing
// approval page, a former device holder with stolen tokens, and a client
// forging X-Forwarded-For behind a trusted proxy.

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/omniedge/omni/internal/edge/edgetest"
	"github.com/omniedge/omni/internal/edge/proto/wire"
)

// ---- item: browser login caps and the approval page ----

// sessStartAs opens a login session with a User-Agent and returns the
// whole answer.
func sessStartAs(t *testing.T, env *edgetest.Env, ua, xff string) sessPage {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, env.URL+"/api/v2/auth/login/session", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ua != "" {
		req.Header.Set("User-Agent", ua)
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	return sessDo(t, env, req)
}

// sessStarted is the answer to GET /api/v2/auth/login/session.
type sessStarted struct {
	UUID    string `json:"uuid"`
	AuthURL string `json:"auth_url"`
	Code    string `json:"code"`
}

// One socket waits per session: a second is refused while the first
// waits, and the first still gets the tokens.
func TestSessionOneWaiter(t *testing.T) {
	t.Parallel()
	for _, redis := range []bool{false, true} {
		t.Run(fmt.Sprintf("redis=%v", redis), func(t *testing.T) {
			t.Parallel()
			env := edgetest.New(t, edgetest.Options{Redis: redis})
			u := env.NewUser("")
			id, authURL := sessStart(t, env, "/api/v2")
			first := sessDial(t, env, "/login/session/"+id)
			first.quiet(t, "first socket")
			sessDial(t, env, "/api/v2/login/session/"+id).closedWith(t, 4409)
			first.quiet(t, "first socket after the second was refused")
			sessBrowser(t, env, authURL, id, u)
			token, refresh := first.tokens(t)
			sessTokensWork(t, env, u, token, refresh)
		})
	}
}

// The first waiter going away frees the session for a reconnect.
func TestSessionWaiterReconnect(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	id, authURL := sessStart(t, env, "/api/v2")
	first := sessDial(t, env, "/login/session/"+id)
	first.quiet(t, "first socket")
	first.conn.Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(sessWait)
	for {
		s := sessDial(t, env, "/login/session/"+id)
		select {
		case m := <-s.msgs:
			if websocket.CloseStatus(m.err) != 4409 || time.Now().After(deadline) {
				t.Fatalf("reconnect: %v (close %d)", m.err, websocket.CloseStatus(m.err))
			}
			continue // the server has not noticed the first close yet
		case <-time.After(sessQuietFor):
		}
		sessBrowser(t, env, authURL, id, u)
		s.tokens(t)
		return
	}
}

// An anonymous client cannot hold more sockets than the cap from one IP.
func TestSessionSocketCapPerIP(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{Config: withFlags(t, "--login-sockets-per-ip=3", "--login-pending-per-ip=10")})
	var ids []string
	for range 4 {
		id, _ := sessStart(t, env, "/api/v2")
		ids = append(ids, id)
	}
	for _, id := range ids[:3] {
		sessDial(t, env, "/login/session/"+id).quiet(t, "socket within the cap")
	}
	ctx, cancel := context.WithTimeout(context.Background(), sessWait)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(env.URL, "http") + "/login/session/" + ids[3]
	conn, resp, err := websocket.Dial(ctx, wsURL, nil)
	if err == nil {
		conn.CloseNow()
		t.Fatal("a fourth socket from one IP was accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth socket: %v (response %v), want 429", err, resp)
	}
}

// Pending sessions are capped per client IP and in total.
func TestSessionPendingCaps(t *testing.T) {
	t.Parallel()
	for _, redis := range []bool{false, true} {
		t.Run(fmt.Sprintf("redis=%v", redis), func(t *testing.T) {
			t.Parallel()
			env := edgetest.New(t, edgetest.Options{Redis: redis, Config: withFlags(t,
				"--login-pending-per-ip=3", "--login-pending-max=5", "--trust-proxy=127.0.0.1/32")})
			for i := range 3 {
				if p := sessStartAs(t, env, "", "198.51.100.1"); p.status != http.StatusOK {
					t.Fatalf("session %d from one IP: %s", i, p)
				}
			}
			p := sessStartAs(t, env, "", "198.51.100.1")
			if p.status != http.StatusTooManyRequests || !strings.Contains(p.body, `"error"`) {
				t.Fatalf("fourth pending session from one IP: %s, want a 429 JSON error", p)
			}
			for i := range 2 {
				if p := sessStartAs(t, env, "", fmt.Sprintf("198.51.100.%d", 10+i)); p.status != http.StatusOK {
					t.Fatalf("session from another IP: %s", p)
				}
			}
			if p := sessStartAs(t, env, "", "198.51.100.20"); p.status != http.StatusTooManyRequests {
				t.Fatalf("sixth pending session in all: %s, want 429", p)
			}
			// Expired sessions free their places.
			env.Clock.Advance(env.Config.SessionTTL + time.Second)
			if redis {
				return // Redis expires keys in real time; the conformance tests cover it
			}
			if p := sessStartAs(t, env, "", "198.51.100.1"); p.status != http.StatusOK {
				t.Fatalf("after expiry: %s", p)
			}
		})
	}
}

// The approval page shows who asked: the requesting client's IP, its
// User-Agent (escaped) and the short code the device printed, which the
// session id in the link does not give away.
func TestSessionApprovalShowsRequester(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	u := env.NewUser("")
	ua := `omni-edge/1.0 (linux) <b>evil</b>`
	p := sessStartAs(t, env, ua, "")
	if p.status != http.StatusOK {
		t.Fatalf("start: %s", p)
	}
	var s sessStarted
	if err := json.Unmarshal([]byte(p.body), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Code) < 8 || strings.Contains(s.UUID, strings.ReplaceAll(strings.ToLower(s.Code), "-", "")) {
		t.Fatalf("session code %q: want a short code of its own, got uuid %s", s.Code, s.UUID)
	}
	page := sessLogin(t, env, s.UUID, u.Email, sessPassword)
	sessExpectPage(t, "approval page", page, http.StatusOK, "Approve this device?", s.Code, "127.0.0.1", html.EscapeString(ua))
	if strings.Contains(page.body, "<b>evil</b>") {
		t.Fatal("the User-Agent reached the page unescaped")
	}
}

// ---- item: immediate revocation ----

func wantRevoked(t *testing.T, f *apiFx, what, token string) {
	t.Helper()
	r := f.do("GET", "/api/v2/users/me", token, nil)
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("%s: access token still accepted: %s", what, r)
	}
	apiCheckErrorBody(t, r, "unauthorized")
}

func TestLogoutRevokesAccessToken(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	u, c := f.user("")
	other := f.env.Client(u)
	tok := apiToken(c)
	apiOK(t, c.Logout(f.ctx))
	wantRevoked(t, f, "after logout", tok)
	f.do("GET", "/api/v2/users/me", apiToken(other), nil).wantStatus(t, http.StatusOK)
}

// A thief replaying a spent refresh token kills the family: the rightful
// holder's current access token stops working at once, and so does the
// thief's.
func TestRefreshReuseRevokesAccessTokens(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	_, c := f.user("")
	stolen := apiRefreshOf(c)
	_, err := c.Refresh(f.ctx)
	apiOK(t, err)
	f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: stolen}).wantError(t, http.StatusUnauthorized, "unauthorized")
	wantRevoked(t, f, "after refresh reuse", apiToken(c))
}

func TestRevokeKeyRevokesAccessTokens(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	u, admin := f.user("")
	k, err := admin.CreateSecurityKey(f.ctx, wire.CreateSecurityKeyRequest{Name: "laptop"})
	apiOK(t, err)
	laptop := f.anon()
	_, err = laptop.LoginSecurityKey(f.ctx, k.Key)
	apiOK(t, err)
	apiOK(t, admin.RevokeSecurityKey(f.ctx, k.ID))
	wantRevoked(t, f, "after key revocation", apiToken(laptop))
	_ = u
}

// A former device holder: the daemon's family (which registered and
// heartbeated the device) dies with the device.
func TestDeleteDeviceRevokesFamilies(t *testing.T) {
	t.Parallel()
	f := newAPIFx(t, edgetest.Options{})
	u, owner := f.user("")
	daemon := f.env.Client(u)
	dev := f.register(daemon, "hw-stolen")
	f.heartbeat(daemon, "hw-stolen", false)
	// The daemon logged in again later: its new session only heartbeats.
	relogged := f.env.Client(u)
	f.heartbeat(relogged, "hw-stolen", false)
	other := f.env.Client(u)
	f.register(other, "hw-other")

	apiOK(t, owner.DeleteDevice(f.ctx, dev.ID))
	wantRevoked(t, f, "after device deletion", apiToken(daemon))
	wantRevoked(t, f, "after device deletion (session that only heartbeated)", apiToken(relogged))
	f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: apiRefreshOf(daemon)}).wantError(t, http.StatusUnauthorized, "unauthorized")
	f.do("GET", "/api/v2/users/me", apiToken(other), nil).wantStatus(t, http.StatusOK)
	f.do("GET", "/api/v2/users/me", apiToken(owner), nil).wantStatus(t, http.StatusOK)
}

type sessionList []struct {
	ID         string     `json:"id"`
	Method     string     `json:"method"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ClientIP   string     `json:"client_ip"`
	UserAgent  string     `json:"user_agent"`
	Current    bool       `json:"current"`
}

// Login sessions can be listed and revoked; revoking one kills its access
// token at once; another user can neither see nor revoke them.
func TestSessionsListRevoke(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	f := &apiFx{t: t, env: env, ctx: t.Context()}
	u, keyClient := f.user("")

	// A browser login from a device with a User-Agent.
	p := sessStartAs(t, env, "omni-edge/1.0 (test)", "")
	var s sessStarted
	apiOK(t, json.Unmarshal([]byte(p.body), &s))
	sock := sessDial(t, env, "/login/session/"+s.UUID)
	sessBrowser(t, env, s.AuthURL, s.UUID, u)
	browserTok, _ := sock.tokens(t)

	r := f.do("GET", "/api/v2/sessions", apiToken(keyClient), nil)
	r.wantStatus(t, http.StatusOK)
	var list sessionList
	r.decode(t, &list)
	var browserID, keyID string
	for _, e := range list {
		switch e.Method {
		case "browser":
			browserID = e.ID
			if e.UserAgent != "omni-edge/1.0 (test)" || e.ClientIP != "127.0.0.1" || e.Current {
				t.Errorf("browser session %+v", e)
			}
		case "security_key":
			if e.Current {
				keyID = e.ID
			}
		}
		if e.CreatedAt.IsZero() {
			t.Errorf("session %+v has no created_at", e)
		}
	}
	if browserID == "" || keyID == "" {
		t.Fatalf("sessions %s: want a browser session and the current security-key session", r)
	}

	_, intruder := f.user("")
	f.do("DELETE", "/api/v2/sessions/"+browserID, apiToken(intruder), nil).wantError(t, http.StatusNotFound, "not_found")
	f.do("GET", "/api/v2/users/me", browserTok, nil).wantStatus(t, http.StatusOK)

	f.do("DELETE", "/api/v2/sessions/"+browserID, apiToken(keyClient), nil).wantStatus(t, http.StatusNoContent)
	wantRevoked(t, f, "after DELETE /api/v2/sessions/{id}", browserTok)
	r = f.do("GET", "/api/v2/sessions", apiToken(keyClient), nil)
	r.decode(t, &list)
	for _, e := range list {
		if e.ID == browserID {
			t.Errorf("revoked session still listed: %s", r)
		}
	}
}

// Creating a security key needs a fresh browser login (under 15 minutes)
// or a key-based one: a stolen, refreshed browser session cannot mint a
// permanent credential.
func TestCreateKeyNeedsFreshLogin(t *testing.T) {
	t.Parallel()
	env := edgetest.New(t, edgetest.Options{})
	f := &apiFx{t: t, env: env, ctx: t.Context()}
	u, keyClient := f.user("")
	id, authURL := sessStart(t, env, "/api/v2")
	sock := sessDial(t, env, "/login/session/"+id)
	sessBrowser(t, env, authURL, id, u)
	tok, refresh := sock.tokens(t)

	f.do("POST", "/api/v2/security-keys", tok, wire.CreateSecurityKeyRequest{Name: "fresh"}).wantStatus(t, http.StatusCreated)

	env.Clock.Advance(16 * time.Minute)
	var pair wire.TokenResponse
	r := f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: refresh})
	r.wantStatus(t, http.StatusOK)
	r.decode(t, &pair)
	r = f.do("POST", "/api/v2/security-keys", pair.Token, wire.CreateSecurityKeyRequest{Name: "stale"})
	r.wantError(t, http.StatusForbidden, "")
	if !strings.Contains(strings.ToLower(string(r.Body)), "log in again") {
		t.Errorf("stale-login error %s does not tell the user to log in again", r)
	}
	// Every further refresh keeps the login's time, also for a family
	// whose login session is not on record (from before sessions were
	// recorded): its tokens carry no login time, never the refresh's.
	refreshed := func(rt string) wire.TokenResponse {
		t.Helper()
		var p wire.TokenResponse
		r := f.do("POST", "/api/v2/auth/refresh", "", wire.RefreshRequest{RefreshToken: rt})
		r.wantStatus(t, http.StatusOK)
		r.decode(t, &p)
		return p
	}
	pair = refreshed(pair.RefreshToken)
	f.do("POST", "/api/v2/security-keys", pair.Token, wire.CreateSecurityKeyRequest{Name: "stale"}).wantError(t, http.StatusForbidden, "")
	if _, err := env.App.Store.DB().Exec(f.ctx, `DELETE FROM edge_login_sessions WHERE user_id = ? AND method = ?`, u.ID, "browser"); err != nil {
		t.Fatal(err)
	}
	pair = refreshed(pair.RefreshToken)
	f.do("POST", "/api/v2/security-keys", pair.Token, wire.CreateSecurityKeyRequest{Name: "stale"}).wantError(t, http.StatusForbidden, "")
	// A key-based session is fine at any age.
	_, err := keyClient.Refresh(f.ctx)
	apiOK(t, err)
	_, err = keyClient.CreateSecurityKey(f.ctx, wire.CreateSecurityKeyRequest{Name: "by-key"})
	apiOK(t, err)
}

// An IPv6 client holds a whole /64: the pending-session and socket caps
// count the /64, not each of its 2^64 addresses, while another /64 has
// its own places. The approval page still names the full address.
func TestLoginCapsGroupIPv6By64(t *testing.T) {
	t.Parallel()
	for _, redis := range []bool{false, true} {
		t.Run(fmt.Sprintf("redis=%v", redis), func(t *testing.T) {
			t.Parallel()
			env := edgetest.New(t, edgetest.Options{Redis: redis, Config: withFlags(t,
				"--login-pending-per-ip=3", "--login-sockets-per-ip=2", "--trust-proxy=127.0.0.1/32")})
			var ids []string
			for i := range 3 {
				p := sessStartAs(t, env, "", fmt.Sprintf("2001:db8:1:2::%x", 0x100+i*0x1111))
				if p.status != http.StatusOK {
					t.Fatalf("session %d from one /64: %s", i, p)
				}
				var s sessStarted
				if err := json.Unmarshal([]byte(p.body), &s); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, s.UUID)
			}
			if p := sessStartAs(t, env, "", "2001:db8:1:2:ffff:ffff:ffff:fffe"); p.status != http.StatusTooManyRequests {
				t.Fatalf("a fourth pending session from another address of the same /64: %s, want 429", p)
			}
			if p := sessStartAs(t, env, "", "2001:db8:1:3::1"); p.status != http.StatusOK {
				t.Fatalf("a session from another /64: %s", p)
			}

			dial := func(id, from string) (*websocket.Conn, *http.Response, error) {
				ctx, cancel := context.WithTimeout(context.Background(), sessWait)
				defer cancel()
				h := http.Header{}
				h.Set("X-Forwarded-For", from)
				return websocket.Dial(ctx, "ws"+strings.TrimPrefix(env.URL, "http")+"/login/session/"+id, &websocket.DialOptions{HTTPHeader: h})
			}
			for i, id := range ids[:2] {
				conn, _, err := dial(id, fmt.Sprintf("2001:db8:1:2::%x", 0xa000+i))
				if err != nil {
					t.Fatalf("socket %d within the cap: %v", i, err)
				}
				t.Cleanup(func() { conn.CloseNow() })
			}
			conn, resp, err := dial(ids[2], "2001:db8:1:2::beef")
			if err == nil {
				conn.CloseNow()
				t.Fatal("a third socket from the same /64 was accepted")
			}
			if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("third socket from the /64: %v (response %v), want 429", err, resp)
			}
		})
	}
}
