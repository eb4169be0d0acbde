package api

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/omniedge/omni/internal/edge/proto/ipam"
	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/ratelimit"
)

// The browser half of the session login: GET /login?session=ID shows an
// email + password form, POST /login checks the password and shows an
// approval page, POST /login/approve issues the tokens to the session.

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>OmniEdge login</title>
<link rel="icon" href="/ui/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/base.css">
<link rel="stylesheet" href="/app.css">
<script src="/ui/theme.js"></script>
</head><body>
<main class="center"><section class="card narrow login-card">
{{if eq .Step "form"}}
<h1>Sign in to OmniEdge</h1>
<p class="muted">A device asked to sign in to your account.</p>
{{if .Error}}<div class="error" role="alert">{{.Error}}</div>{{end}}
<form method="post" action="/login">
<input type="hidden" name="session" value="{{.Session}}">
<div class="field"><label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required value="{{.Email}}"></div>
<div class="field"><label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required></div>
<div class="form-actions"><button type="submit" class="primary">Continue</button></div>
</form>
{{else if eq .Step "approve"}}
<h1>Approve this device?</h1>
<p>Signed in as <b>{{.Email}}</b>. The device that started this login will
receive access to your account.</p>
<dl class="kv">
<dt>Code shown on the device</dt><dd><code class="code">{{.Code}}</code></dd>
<dt>Requested from</dt><dd><code>{{.ClientIP}}</code></dd>
<dt>Client</dt><dd>{{if .UserAgent}}<code>{{.UserAgent}}</code>{{else}}unknown{{end}}</dd>
</dl>
<p class="muted">Only approve if you started this login yourself and your device
shows the same code. If someone sent you this link, deny it.</p>
<form method="post" action="/login/approve">
<input type="hidden" name="session" value="{{.Session}}">
<input type="hidden" name="approval" value="{{.Approval}}">
<div class="form-actions"><button type="submit" name="action" value="approve" class="primary">Approve</button>
<button type="submit" name="action" value="deny">Deny</button></div>
</form>
{{else if eq .Step "done"}}
<h1>Device approved</h1><p>You can close this window and return to your device.</p>
{{else if eq .Step "denied"}}
<h1>Login denied</h1><p>The device was not given access. You can close this window.</p>
{{else}}
<h1>Login link not valid</h1><div class="error" role="alert">{{.Error}}</div><p class="muted">Start the login again from your device.</p>
{{end}}
</section></main></body></html>`))

type loginView struct {
	Step, Session, Email, Error, Approval string
	Code, ClientIP, UserAgent             string // of the device that asked
}

func (s *Server) renderLogin(w http.ResponseWriter, status int, v loginView) error {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	// The page is styled by the dashboard's style sheets; its one script
	// is the shared theme.js (the light or dark theme before the first
	// paint): nothing inline, nothing from elsewhere.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	return loginTmpl.Execute(w, v)
}

func (s *Server) pendingOr404(w http.ResponseWriter, r *http.Request, id string) (control.LoginRequest, bool, error) {
	if id == "" {
		return control.LoginRequest{}, false, s.renderLogin(w, http.StatusBadRequest, loginView{Step: "invalid", Error: "The link has no login session."})
	}
	req, ok, err := s.svc.SessionPending(r.Context(), id)
	if err != nil {
		return control.LoginRequest{}, false, err
	}
	if !ok {
		return control.LoginRequest{}, false, s.renderLogin(w, http.StatusNotFound, loginView{Step: "invalid", Error: "This login session has expired or was already used."})
	}
	return req, true, nil
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) error {
	id := r.URL.Query().Get("session")
	if _, ok, err := s.pendingOr404(w, r, id); !ok {
		return err
	}
	return s.renderLogin(w, http.StatusOK, loginView{Step: "form", Session: id})
}

// passwordLimit throttles password attempts per client IP (argon2id is
// deliberately expensive, and guessing must be slow).
var passwordLimit = ratelimit.Limit{Rate: 0.2, Burst: 5}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return s.renderLogin(w, http.StatusBadRequest, loginView{Step: "invalid", Error: "The form could not be read."})
	}
	id, email, password := r.PostForm.Get("session"), r.PostForm.Get("email"), r.PostForm.Get("password")
	req, ok, err := s.pendingOr404(w, r, id)
	if !ok {
		return err
	}
	if s.limiter != nil {
		if err := s.limit(r.Context(), "pw:"+ipam.SourceString(httpx.ClientIP(r, s.cfg.TrustProxy)), passwordLimit, "client IP"); err != nil {
			var he *httpx.Error
			if errors.As(err, &he) {
				w.Header().Set("Retry-After", "5")
			}
			return s.renderLogin(w, http.StatusTooManyRequests, loginView{Step: "form", Session: id, Email: email, Error: "Too many attempts. Wait a moment and try again."})
		}
	}
	u, err := s.svc.CheckPassword(r.Context(), email, password)
	if err != nil {
		if control.KindOf(err) == control.KindUnauthorized {
			return s.renderLogin(w, http.StatusUnauthorized, loginView{Step: "form", Session: id, Email: email, Error: "Wrong email or password."})
		}
		return err
	}
	return s.renderLogin(w, http.StatusOK, loginView{Step: "approve", Session: id, Email: u.Email, Approval: s.svc.ApprovalToken(id, u.ID),
		Code: req.Code, ClientIP: req.ClientIP, UserAgent: req.UserAgent})
}

func (s *Server) loginApprove(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return s.renderLogin(w, http.StatusBadRequest, loginView{Step: "invalid", Error: "The form could not be read."})
	}
	id, approval := r.PostForm.Get("session"), r.PostForm.Get("approval")
	decide, done := s.svc.ApproveSession, "done"
	if r.PostForm.Get("action") == "deny" {
		decide, done = s.svc.DenySession, "denied"
	}
	if err := decide(r.Context(), id, approval); err != nil {
		switch control.KindOf(err) {
		case control.KindUnauthorized:
			return s.renderLogin(w, http.StatusUnauthorized, loginView{Step: "invalid", Error: "The approval is invalid or expired. Start again."})
		case control.KindNotFound, control.KindConflict:
			return s.renderLogin(w, http.StatusNotFound, loginView{Step: "invalid", Error: "This login session has expired or was already used."})
		}
		return err
	}
	return s.renderLogin(w, http.StatusOK, loginView{Step: done})
}

// ipCounter counts open sockets per client source (an IP, or an IPv6
// client's /64); entries at zero are removed, so it holds one entry per
// source with a socket open.
type ipCounter struct {
	mu sync.Mutex
	m  map[string]int
}

// acquire takes a place for ip unless it has max already.
func (c *ipCounter) acquire(ip string, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[ip] >= max {
		return false
	}
	c.m[ip]++
	return true
}

func (c *ipCounter) release(ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[ip] <= 1 {
		delete(c.m, ip)
	} else {
		c.m[ip]--
	}
}

// sessionSocket is the WebSocket a client listens on for its tokens. It
// sends {"token","refresh_token"} once and closes normally; an unknown,
// expired or already delivered session closes with code 4404, a denied one
// with 4403, and a session another socket already waits on with 4409.
// Each client IP may hold SocketsPerIP sockets on this replica (429
// beyond). Browsers may only connect from this origin (native clients
// send no Origin header).
func (s *Server) sessionSocket(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("uuid")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return httpx.Errorf(http.StatusUpgradeRequired, "upgrade_required", "this endpoint is a WebSocket: connect with Upgrade: websocket")
	}
	ip := ipam.SourceString(httpx.ClientIP(r, s.cfg.TrustProxy)) // an IPv6 client's /64
	if !s.sockets.acquire(ip, s.cfg.SocketsPerIP) {
		return httpx.Errorf(http.StatusTooManyRequests, "too_many_sockets", "this address already has %d login sockets open; close one first", s.cfg.SocketsPerIP)
	}
	defer s.sockets.release(ip)
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil // Accept already wrote an HTTP error
	}
	defer c.CloseNow()
	// CloseRead handles pings and notices the client going away.
	ctx := c.CloseRead(r.Context())
	pair, err := s.svc.WaitSession(ctx, id)
	if err != nil {
		switch control.KindOf(err) {
		case control.KindNotFound:
			c.Close(4404, "login session not found, expired or already used")
			return nil
		case control.KindForbidden:
			c.Close(4403, "login denied by the user")
			return nil
		case control.KindConflict:
			c.Close(4409, "another client is already waiting for this login session")
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		s.log.Error("login session wait failed", "err", err)
		c.Close(websocket.StatusInternalError, "internal error")
		return nil
	}
	msg, _ := json.Marshal(map[string]string{"token": pair.Token, "refresh_token": pair.RefreshToken})
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(wctx, websocket.MessageText, msg); err != nil {
		s.log.Warn("login session: client went away before delivery", "err", err)
		return nil
	}
	c.Close(websocket.StatusNormalClosure, "")
	return nil
}
