package control

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
)

// Principal is an authenticated caller.
type Principal struct {
	UserID   string
	Family   string    // refresh family (login session) of the access token
	AuthTime time.Time // when the login session was created
	Method   string    // MethodSecurityKey or MethodBrowser
}

// Client is what the transport knows about the caller of a login.
type Client struct {
	IP        string
	UserAgent string
}

// FreshLogin is how recent a browser login must be to create a security
// key: a stolen, refreshed session must not mint a permanent credential.
const FreshLogin = 15 * time.Minute

// maxUserAgent bounds the stored User-Agent.
const maxUserAgent = 256

// cleanClient bounds and sanitises what a client tells about itself.
func cleanClient(c Client) Client {
	if len(c.IP) > 64 {
		c.IP = c.IP[:64]
	}
	ua := []rune(c.UserAgent)
	out := make([]rune, 0, len(ua))
	n := 0
	for _, r := range ua {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			r = ' '
		}
		n += len(string(r))
		if n > maxUserAgent {
			break
		}
		out = append(out, r)
	}
	c.UserAgent = strings.TrimSpace(string(out))
	return c
}

// Prefixes of raw credentials, so leaked ones are recognisable.
const (
	SecurityKeyPrefix  = "oek_"
	RefreshTokenPrefix = "oer_"
)

// CreateUser adds an account.
func (s *Service) CreateUser(ctx context.Context, email, password, plan string) (User, error) {
	email, err := validEmail(email)
	if err != nil {
		return User{}, err
	}
	if len(password) < 8 {
		return User{}, errorf(KindInvalid, "password must be at least 8 characters")
	}
	if len(password) > 1024 {
		return User{}, errorf(KindInvalid, "password is longer than 1024 bytes")
	}
	if plan == "" {
		plan = "free"
	}
	if !s.validPlan(plan) {
		return User{}, errorf(KindInvalid, "unknown plan %q", plan)
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return User{}, err
	}
	u := User{ID: newID("usr_"), Email: email, PasswordHash: hash, Plan: plan, CreatedAt: s.now()}
	if err := s.store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, ErrConflict) {
			return User{}, errorf(KindConflict, "a user with email %s already exists", email)
		}
		return User{}, err
	}
	return u, nil
}

// User returns the account of p.
func (s *Service) User(ctx context.Context, userID string) (User, error) {
	u, err := s.store.UserByID(ctx, userID)
	if errors.Is(err, ErrNotFound) {
		return User{}, errorf(KindNotFound, "user not found")
	}
	return u, err
}

// UserByEmail finds an account.
func (s *Service) UserByEmail(ctx context.Context, email string) (User, error) {
	u, err := s.store.UserByEmail(ctx, strings.TrimSpace(email))
	if errors.Is(err, ErrNotFound) {
		return User{}, errorf(KindNotFound, "no user with email %s", email)
	}
	return u, err
}

// ListUsers returns all accounts.
func (s *Service) ListUsers(ctx context.Context) ([]User, error) { return s.store.ListUsers(ctx) }

// SetPlan changes a user's plan.
func (s *Service) SetPlan(ctx context.Context, userID, plan string) error {
	if !s.validPlan(plan) {
		return errorf(KindInvalid, "unknown plan %q", plan)
	}
	err := s.store.SetUserPlan(ctx, userID, plan)
	if errors.Is(err, ErrNotFound) {
		return errorf(KindNotFound, "user not found")
	}
	return err
}

// CheckPassword returns the user whose email and password match.
func (s *Service) CheckPassword(ctx context.Context, email, password string) (User, error) {
	u, err := s.store.UserByEmail(ctx, strings.TrimSpace(email))
	if errors.Is(err, ErrNotFound) {
		// Spend the same time as a real check so timing does not reveal
		// which emails exist.
		_ = auth.CheckPassword(dummyHash(), password)
		return User{}, errorf(KindUnauthorized, "wrong email or password")
	}
	if err != nil {
		return User{}, err
	}
	if err := auth.CheckPassword(u.PasswordHash, password); err != nil {
		return User{}, errorf(KindUnauthorized, "wrong email or password")
	}
	return u, nil
}

// dummyHash is checked against when an email is unknown; it is computed
// on first use so that processes which never check passwords do not pay.
var dummyHash = sync.OnceValue(func() string {
	h, _ := auth.HashPassword("omni-dummy-password")
	return h
})

// CreateSecurityKey issues a security key for a user. The raw key is
// returned once; only its hash is stored. ttl 0 means no expiry.
func (s *Service) CreateSecurityKey(ctx context.Context, userID, name string, ttl time.Duration) (string, SecurityKey, error) {
	if name == "" {
		name = "default"
	}
	name, err := cleanName("security key", name, 128)
	if err != nil {
		return "", SecurityKey{}, err
	}
	if ttl < 0 {
		return "", SecurityKey{}, errorf(KindInvalid, "expiry must not be negative")
	}
	raw := auth.RandomToken(SecurityKeyPrefix, 32)
	now := s.now()
	k := SecurityKey{ID: newID("key_"), UserID: userID, Name: name, Hash: auth.TokenHash(raw), CreatedAt: now}
	if ttl > 0 {
		k.ExpiresAt = now.Add(ttl)
	}
	if err := s.store.CreateSecurityKey(ctx, k); err != nil {
		return "", SecurityKey{}, err
	}
	return raw, k, nil
}

// ListSecurityKeys returns a user's keys (hashes included; transports must
// not expose them).
func (s *Service) ListSecurityKeys(ctx context.Context, userID string) ([]SecurityKey, error) {
	return s.store.ListSecurityKeys(ctx, userID)
}

// CreateSecurityKeyAs creates a key for p, who must have logged in with a
// security key or in the browser less than FreshLogin ago.
func (s *Service) CreateSecurityKeyAs(ctx context.Context, p Principal, name string, ttl time.Duration) (string, SecurityKey, error) {
	if p.Method != MethodSecurityKey && s.now().Sub(p.AuthTime) >= FreshLogin {
		return "", SecurityKey{}, errorf(KindForbidden, "creating a security key needs a login younger than %v: log in again (omni edge login) and retry", FreshLogin)
	}
	return s.CreateSecurityKey(ctx, p.UserID, name, ttl)
}

// RevokeSecurityKey revokes a key and every refresh family it started;
// their access tokens stop working at once.
func (s *Service) RevokeSecurityKey(ctx context.Context, userID, keyID string) error {
	now := s.now()
	err := s.store.RevokeSecurityKey(ctx, userID, keyID, now)
	if errors.Is(err, ErrNotFound) {
		return errorf(KindNotFound, "security key not found")
	}
	if err != nil {
		return err
	}
	fams, err := s.store.KeySessions(ctx, keyID, now.Add(-s.opts.AccessTokenTTL))
	if err != nil {
		return err
	}
	for _, f := range fams {
		if err := s.revoked.Revoke(ctx, f, now.Add(s.opts.AccessTokenTTL)); err != nil {
			return err
		}
	}
	return nil
}

// LoadRevoked adds to the revocation set the login sessions the store
// says were revoked within the access-token lifetime, so that their
// access tokens stay refused after a restart (the in-process set starts
// empty; a shared one may have lost its entries). Call it before serving.
func (s *Service) LoadRevoked(ctx context.Context) error {
	now := s.now()
	rs, err := s.store.RevokedSessions(ctx, now.Add(-s.opts.AccessTokenTTL))
	if err != nil {
		return fmt.Errorf("edge: load revoked sessions: %w", err)
	}
	for _, r := range rs {
		if err := s.revoked.Revoke(ctx, r.ID, r.RevokedAt.Add(s.opts.AccessTokenTTL)); err != nil {
			return err
		}
	}
	return nil
}

// revokeFamily revokes a login session: its refresh tokens in the store
// and its access tokens in the revocation set.
func (s *Service) revokeFamily(ctx context.Context, family string) error {
	now := s.now()
	if err := s.store.RevokeRefreshFamily(ctx, family, now); err != nil {
		return err
	}
	return s.revoked.Revoke(ctx, family, now.Add(s.opts.AccessTokenTTL))
}

// ListLoginSessions returns p's live login sessions.
func (s *Service) ListLoginSessions(ctx context.Context, p Principal) ([]LoginSession, error) {
	return s.store.ListLoginSessions(ctx, p.UserID, s.now())
}

// RevokeLoginSession revokes one of p's login sessions; its access tokens
// stop working at once.
func (s *Service) RevokeLoginSession(ctx context.Context, p Principal, id string) error {
	ls, err := s.store.LoginSession(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && ls.UserID != p.UserID) {
		return errorf(KindNotFound, "login session %s not found", id)
	}
	if err != nil {
		return err
	}
	return s.revokeFamily(ctx, id)
}

// LoginSecurityKey exchanges a security key for a token pair.
func (s *Service) LoginSecurityKey(ctx context.Context, raw string) (TokenPair, error) {
	return s.LoginSecurityKeyFrom(ctx, raw, Client{})
}

// LoginSecurityKeyFrom is LoginSecurityKey recording the client in the new
// login session.
func (s *Service) LoginSecurityKeyFrom(ctx context.Context, raw string, from Client) (TokenPair, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return TokenPair{}, errorf(KindInvalid, "key is required")
	}
	k, err := s.store.SecurityKeyByHash(ctx, auth.TokenHash(raw))
	if errors.Is(err, ErrNotFound) {
		return TokenPair{}, errorf(KindUnauthorized, "invalid security key")
	}
	if err != nil {
		return TokenPair{}, err
	}
	now := s.now()
	if !k.RevokedAt.IsZero() {
		return TokenPair{}, errorf(KindUnauthorized, "security key has been revoked")
	}
	if !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt) {
		return TokenPair{}, errorf(KindUnauthorized, "security key has expired")
	}
	if err := s.store.TouchSecurityKey(ctx, k.ID, now); err != nil {
		s.log.Warn("touch security key", "key_id", k.ID, "err", err)
	}
	return s.login(ctx, k.UserID, k.ID, MethodSecurityKey, from)
}

// login starts a new login session (refresh family) and issues its first
// pair.
func (s *Service) login(ctx context.Context, userID, keyID, method string, from Client) (TokenPair, error) {
	now := s.now()
	from = cleanClient(from)
	ls := LoginSession{ID: newID("fam_"), UserID: userID, KeyID: keyID, Method: method, ClientIP: from.IP, UserAgent: from.UserAgent,
		CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(s.opts.RefreshTokenTTL)}
	if err := s.store.CreateLoginSession(ctx, ls); err != nil {
		return TokenPair{}, err
	}
	return s.issue(ctx, ls)
}

// issue creates a refresh token in the login session's family and a
// matching access token carrying the family, auth time and method.
func (s *Service) issue(ctx context.Context, ls LoginSession) (TokenPair, error) {
	now := s.now()
	raw := auth.RandomToken(RefreshTokenPrefix, 32)
	rt := RefreshToken{ID: newID("rt_"), FamilyID: ls.ID, UserID: ls.UserID, KeyID: ls.KeyID, Hash: auth.TokenHash(raw),
		CreatedAt: now, ExpiresAt: now.Add(s.opts.RefreshTokenTTL)}
	if err := s.store.CreateRefreshToken(ctx, rt); err != nil {
		return TokenPair{}, err
	}
	c := auth.NewClaims(ls.UserID, ls.ID, now, s.opts.AccessTokenTTL)
	// auth_time is the login's, never the refresh's: a refresh does not
	// make a login fresh (CreateSecurityKeyAs).
	c.AuthMethod = ls.Method
	if !ls.CreatedAt.IsZero() {
		c.AuthTime = ls.CreatedAt.Unix()
	}
	access, err := s.signer.Sign(c)
	if err != nil {
		return TokenPair{}, err
	}
	return TokenPair{Token: access, RefreshToken: raw, ExpiresIn: s.opts.AccessTokenTTL}, nil
}

// Refresh rotates a refresh token: the presented one is spent and a new
// pair in the same family is returned. Presenting a spent token revokes the
// whole family (it was stolen or replayed).
func (s *Service) Refresh(ctx context.Context, raw string) (TokenPair, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return TokenPair{}, errorf(KindInvalid, "refresh_token is required")
	}
	now := s.now()
	rt, err := s.store.UseRefreshToken(ctx, auth.TokenHash(raw), now)
	switch {
	case errors.Is(err, ErrConflict):
		if rerr := s.revokeFamily(ctx, rt.FamilyID); rerr != nil {
			return TokenPair{}, rerr
		}
		s.log.Warn("refresh token reuse; family revoked", "family", rt.FamilyID, "user_id", rt.UserID)
		return TokenPair{}, errorf(KindUnauthorized, "refresh token already used; please log in again")
	case errors.Is(err, ErrNotFound):
		return TokenPair{}, errorf(KindUnauthorized, "invalid or expired refresh token")
	case err != nil:
		return TokenPair{}, err
	}
	if rt.KeyID != "" {
		k, err := s.store.SecurityKeyByID(ctx, rt.KeyID)
		if err != nil || !k.RevokedAt.IsZero() || (!k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)) {
			return TokenPair{}, errorf(KindUnauthorized, "the security key of this session is no longer valid")
		}
	}
	ls, err := s.store.LoginSession(ctx, rt.FamilyID)
	if errors.Is(err, ErrNotFound) {
		// A family from before login sessions were recorded. Its login
		// time is unknown (rt.CreatedAt is the last refresh's): the access
		// token carries none, so it never counts as a fresh login.
		ls = LoginSession{ID: rt.FamilyID, UserID: rt.UserID, KeyID: rt.KeyID, Method: MethodBrowser}
		if rt.KeyID != "" {
			ls.Method = MethodSecurityKey
		}
	} else if err != nil {
		return TokenPair{}, err
	} else if !ls.RevokedAt.IsZero() {
		return TokenPair{}, errorf(KindUnauthorized, "this login session was revoked; please log in again")
	}
	if err := s.store.TouchLoginSession(ctx, rt.FamilyID, now, now.Add(s.opts.RefreshTokenTTL)); err != nil {
		return TokenPair{}, err
	}
	return s.issue(ctx, ls)
}

// Logout revokes the family of a refresh token.
func (s *Service) Logout(ctx context.Context, raw string) error {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return errorf(KindInvalid, "refresh_token is required")
	}
	rt, err := s.store.UseRefreshToken(ctx, auth.TokenHash(raw), s.now())
	if err != nil && !errors.Is(err, ErrConflict) {
		return errorf(KindUnauthorized, "invalid or expired refresh token")
	}
	return s.revokeFamily(ctx, rt.FamilyID)
}

// Authenticate verifies an access token and that its login session has
// not been revoked (an in-memory lookup).
func (s *Service) Authenticate(token string) (Principal, error) {
	now := s.clock.Now()
	c, err := s.signer.Verify(token, now)
	if err != nil {
		if errors.Is(err, auth.ErrTokenExpired) {
			return Principal{}, errorf(KindUnauthorized, "access token expired; use the refresh token at POST /api/v2/auth/refresh")
		}
		return Principal{}, errorf(KindUnauthorized, "invalid access token")
	}
	if c.Session != "" && s.revoked.Revoked(c.Session, now) {
		return Principal{}, errorf(KindUnauthorized, "this login session was revoked; please log in again")
	}
	p := Principal{UserID: c.Subject, Family: c.Session, Method: c.AuthMethod}
	if c.AuthTime != 0 {
		p.AuthTime = time.Unix(c.AuthTime, 0).UTC()
	}
	return p, nil
}

// ---- browser sessions ----

// StartedSession is a new browser login session.
type StartedSession struct {
	ID      string
	Code    string // for the device to print and the approval page to show
	Expires time.Time
}

// StartSession opens a browser login session for a client and returns its
// id and short code. The store caps pending sessions per client IP and in
// all (KindTooMany).
func (s *Service) StartSession(ctx context.Context, from Client) (StartedSession, error) {
	from = cleanClient(from)
	st := StartedSession{ID: newUUID(), Code: newCode(), Expires: s.now().Add(s.opts.SessionTTL)}
	err := s.sessions.Create(ctx, st.ID, LoginRequest{ClientIP: from.IP, UserAgent: from.UserAgent, Code: st.Code, Expires: st.Expires})
	if errors.Is(err, ErrLimit) {
		return StartedSession{}, errorf(KindTooMany, "too many login sessions are awaiting approval; finish one or wait until one expires (%v)", s.opts.SessionTTL)
	}
	return st, err
}

// SessionPending returns the request of a session that awaits approval.
func (s *Service) SessionPending(ctx context.Context, id string) (LoginRequest, bool, error) {
	return s.sessions.Pending(ctx, id)
}

// ApprovalToken binds an approval form to one session and one user for a
// few minutes, so the approve step needs the password step first.
func (s *Service) ApprovalToken(sessionID, userID string) string {
	exp := strconv.FormatInt(s.now().Add(5*time.Minute).Unix(), 10)
	m := hmac.New(sha256.New, s.approval)
	m.Write([]byte(sessionID + "\x00" + userID + "\x00" + exp))
	return userID + "." + exp + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// ApproveSession checks an approval token and completes the session with a
// fresh token pair for its user.
func (s *Service) ApproveSession(ctx context.Context, sessionID, approval string) error {
	userID, req, err := s.checkApproval(ctx, sessionID, approval)
	if err != nil {
		return err
	}
	pair, err := s.login(ctx, userID, "", MethodBrowser, Client{IP: req.ClientIP, UserAgent: req.UserAgent})
	if err != nil {
		return err
	}
	return s.completeSession(ctx, sessionID, pair)
}

// DenySession checks an approval token and ends the session without
// tokens: its waiting client learns that the user refused.
func (s *Service) DenySession(ctx context.Context, sessionID, approval string) error {
	if _, _, err := s.checkApproval(ctx, sessionID, approval); err != nil {
		return err
	}
	return s.completeSession(ctx, sessionID, TokenPair{})
}

func (s *Service) completeSession(ctx context.Context, sessionID string, pair TokenPair) error {
	if err := s.sessions.Complete(ctx, sessionID, pair); err != nil {
		if errors.Is(err, ErrConflict) {
			return errorf(KindConflict, "login session already approved")
		}
		if errors.Is(err, ErrNotFound) {
			return errorf(KindNotFound, "login session not found or expired")
		}
		return err
	}
	return nil
}

// checkApproval verifies an approval token for a pending session and
// returns its user and request.
func (s *Service) checkApproval(ctx context.Context, sessionID, approval string) (string, LoginRequest, error) {
	parts := strings.Split(approval, ".")
	if len(parts) != 3 {
		return "", LoginRequest{}, errorf(KindUnauthorized, "invalid approval")
	}
	userID, exp := parts[0], parts[1]
	m := hmac.New(sha256.New, s.approval)
	m.Write([]byte(sessionID + "\x00" + userID + "\x00" + exp))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, m.Sum(nil)) {
		return "", LoginRequest{}, errorf(KindUnauthorized, "invalid approval")
	}
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || s.now().Unix() > e {
		return "", LoginRequest{}, errorf(KindUnauthorized, "approval expired; log in again")
	}
	req, ok, err := s.sessions.Pending(ctx, sessionID)
	if err != nil {
		return "", LoginRequest{}, err
	}
	if !ok {
		return "", LoginRequest{}, errorf(KindNotFound, "login session not found, expired or already used")
	}
	return userID, req, nil
}

// WaitSession blocks until the session is approved and returns its tokens
// once.
func (s *Service) WaitSession(ctx context.Context, id string) (TokenPair, error) {
	p, err := s.sessions.Wait(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return TokenPair{}, errorf(KindNotFound, "login session not found, expired or already used")
	}
	if errors.Is(err, ErrConflict) {
		return TokenPair{}, errorf(KindConflict, "another client is already waiting for this login session")
	}
	if err == nil && p.Token == "" {
		return TokenPair{}, errorf(KindForbidden, "login denied by the user")
	}
	return p, err
}

// codeAlphabet has no letters easily taken for others (no I, L, O, U, 0, 1).
const codeAlphabet = "ABCDEFGHJKMNPQRSTVWXYZ23456789"

// newCode returns a short random code such as "KX4T-9QRM" (about 39 bits),
// independent of the session id in the login link.
func newCode() string {
	b := auth.RandomBytes(8)
	out := make([]byte, 0, 9)
	for i, c := range b {
		if i == 4 {
			out = append(out, '-')
		}
		out = append(out, codeAlphabet[int(c)%len(codeAlphabet)])
	}
	return string(out)
}

func newUUID() string {
	b := auth.RandomBytes(16)
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0xf])
	}
	return string(out)
}
