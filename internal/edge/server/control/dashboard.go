package control

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"time"
)

// The dashboard's login: email and password start a login session (a
// refresh family without refresh tokens, method MethodDashboard) like
// any other, listed and revoked with the others. The browser holds it as
// an HttpOnly cookie whose value is the session id and a MAC of it under
// a key derived from the master key: the cookie cannot be forged, and
// every use checks the stored session, so a revoked or expired session
// (logout, DELETE /api/v2/sessions/{id}) is refused at once, on every
// replica, however long ago it was revoked.

// dashTouchEvery bounds how often a cookie's use is written back (last
// use and the sliding expiry).
const dashTouchEvery = time.Minute

// DashboardLogin checks email and password and starts a dashboard login
// session; it returns the cookie value and when the session expires.
func (s *Service) DashboardLogin(ctx context.Context, email, password string, from Client) (string, time.Time, error) {
	u, err := s.CheckPassword(ctx, email, password)
	if err != nil {
		return "", time.Time{}, err
	}
	now := s.now()
	from = cleanClient(from)
	ls := LoginSession{ID: newID("fam_"), UserID: u.ID, Method: MethodDashboard, ClientIP: from.IP, UserAgent: from.UserAgent,
		CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(s.opts.RefreshTokenTTL)}
	if err := s.store.CreateLoginSession(ctx, ls); err != nil {
		return "", time.Time{}, err
	}
	return ls.ID + "." + s.dashMAC(ls.ID), ls.ExpiresAt, nil
}

func (s *Service) dashMAC(id string) string {
	m := hmac.New(sha256.New, s.dashKey)
	m.Write([]byte(id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// AuthenticateDashboard verifies a dashboard cookie and that its login
// session is live, and returns its principal. Use slides the session's
// expiry forward.
func (s *Service) AuthenticateDashboard(ctx context.Context, cookie string) (Principal, error) {
	bad := errorf(KindUnauthorized, "not logged in, or the dashboard session has ended; log in again")
	id, mac, ok := strings.Cut(cookie, ".")
	if !ok || !strings.HasPrefix(id, "fam_") || !hmac.Equal([]byte(mac), []byte(s.dashMAC(id))) {
		return Principal{}, bad
	}
	now := s.now()
	if s.revoked.Revoked(id, now) {
		return Principal{}, bad
	}
	ls, err := s.store.LoginSession(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Principal{}, bad
	}
	if err != nil {
		return Principal{}, err
	}
	if ls.Method != MethodDashboard || !ls.RevokedAt.IsZero() || !now.Before(ls.ExpiresAt) {
		return Principal{}, bad
	}
	if now.Sub(ls.LastUsedAt) >= dashTouchEvery {
		if err := s.store.TouchLoginSession(ctx, id, now, now.Add(s.opts.RefreshTokenTTL)); err != nil {
			s.log.Warn("touch dashboard session", "family", id, "err", err)
		}
	}
	return Principal{UserID: ls.UserID, Family: id, AuthTime: ls.CreatedAt, Method: MethodDashboard}, nil
}

// DashboardLogout ends the dashboard login session of a cookie (a cookie
// that is no longer valid is not an error: the session is over either
// way).
func (s *Service) DashboardLogout(ctx context.Context, cookie string) error {
	p, err := s.AuthenticateDashboard(ctx, cookie)
	if KindOf(err) == KindUnauthorized {
		return nil
	}
	if err != nil {
		return err
	}
	return s.revokeFamily(ctx, p.Family)
}
