package control

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds of a network's key lifetime (Network.KeyExpiry); 0 turns it off.
const (
	// MinKeyExpiry is the shortest lifetime: a device renews its key at
	// two thirds of it, and heartbeats every 30 s.
	MinKeyExpiry = time.Hour
	// MaxKeyExpiry is the longest lifetime (ten years).
	MaxKeyExpiry = 10 * 365 * 24 * time.Hour
)

// DefaultKeyCheckMax is how long the key-expiry loop of Run sleeps at
// most between two looks at the next key to expire.
const DefaultKeyCheckMax = time.Minute

// ParseKeyExpiry reads a network's key lifetime: "" or "0" (keys never
// expire), a Go duration ("720h", "36h30m") or whole days ("90d"). It
// checks the bounds: KindInvalid for a malformed, negative, too short
// (below MinKeyExpiry) or too long (above MaxKeyExpiry) value.
func ParseKeyExpiry(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil {
			return 0, errorf(KindInvalid, "key_expiry %q must be a duration such as 720h or 90d, or 0 for keys that never expire", s)
		}
		// Out of bounds either way, without overflowing a Duration.
		n = min(max(n, -1), int64(MaxKeyExpiry/(24*time.Hour))+1)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errorf(KindInvalid, "key_expiry %q must be a duration such as 720h or 90d, or 0 for keys that never expire", s)
		}
	}
	return d, checkKeyExpiry(d)
}

// checkKeyExpiry checks the bounds of a key lifetime.
func checkKeyExpiry(d time.Duration) error {
	switch {
	case d == 0:
		return nil
	case d < 0:
		return errorf(KindInvalid, "key_expiry must not be negative (0 turns key expiry off)")
	case d < MinKeyExpiry:
		return errorf(KindInvalid, "key_expiry %v is shorter than the minimum of %v", d, MinKeyExpiry)
	case d > MaxKeyExpiry:
		return errorf(KindInvalid, "key_expiry %v is longer than the maximum of %v (10 years)", d, MaxKeyExpiry)
	}
	return nil
}

// FormatKeyExpiry writes a key lifetime as ParseKeyExpiry reads it: "0"
// when off, else a Go duration without zero units ("720h", "1h30m").
func FormatKeyExpiry(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	s := d.String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok && strings.Contains(t, "h") {
		s = t
		if t, ok := strings.CutSuffix(s, "h0"); ok {
			s = t + "h"
		} else {
			s += "m"
		}
	} else if t, ok := strings.CutSuffix(s, "0s"); ok && strings.HasSuffix(t, "m") {
		s = t
	}
	return s
}

// KeyExpiresAt is when a device key recorded at setAt expires in a
// network whose key lifetime is life: when the owner expired it by hand
// (expiredAt), else setAt + life; zero when it never expires (no key, or
// no lifetime).
func KeyExpiresAt(setAt, expiredAt time.Time, life time.Duration) time.Time {
	if !expiredAt.IsZero() {
		return expiredAt
	}
	if life <= 0 || setAt.IsZero() {
		return time.Time{}
	}
	return setAt.Add(life)
}

// keyExpired reports whether a key expiring at exp (zero: never) has
// expired at now.
func keyExpired(exp, now time.Time) bool { return !exp.IsZero() && !now.Before(exp) }

// ExpireDeviceKey expires the current key of one of p's devices at once,
// in every network it is a member of: the nuclei stop admitting it (each
// of its networks is announced as changed, so the other members drop it
// at once) and the member lists mark it expired. Every login session that
// registered the device or heartbeated for it is revoked, and a new key
// is accepted only from a login made after this call (a browser login, or
// a security key created after it; see replaceExpiredKey): the device
// cannot renew its way back on the credentials it holds. A device with no
// key is KindInvalid.
func (s *Service) ExpireDeviceKey(ctx context.Context, p Principal, id string) (Device, error) {
	d, err := s.device(ctx, p, id)
	if err != nil {
		return Device{}, err
	}
	if d.PublicKey == "" {
		return Device{}, errorf(KindInvalid, "device %s has registered no public key to expire", id)
	}
	now := s.now()
	if err := s.store.ExpireDeviceKey(ctx, id, now); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Device{}, errorf(KindNotFound, "device %s not found", id)
		}
		return Device{}, err
	}
	fams, err := s.store.DeviceSessions(ctx, id)
	if err != nil {
		return Device{}, err
	}
	for _, f := range fams {
		if err := s.revokeFamily(ctx, f); err != nil {
			return Device{}, err
		}
	}
	s.invalidate()
	nets, err := s.deviceChanged(ctx, id)
	if err != nil {
		return Device{}, err
	}
	s.log.Info("device key expired by its owner", "device", id, "user_id", d.UserID, "networks", nets)
	d.KeyExpiredAt = now
	return d, nil
}

// replaceExpiredKey checks that p may give a new key to a device whose
// owner expired its key at expiredAt: p's login must be younger than the
// expiry, and, for a security-key login, the security key too. The
// device's own sessions were revoked by the expiry; this also keeps out
// other sessions that were live then and a security key held on the
// device, which would otherwise log in again by itself.
func (s *Service) replaceExpiredKey(ctx context.Context, p Principal, deviceID string, expiredAt time.Time) error {
	refuse := errorf(KindForbidden, "the owner expired the key of device %s at %s: registering a new key needs a login made since then "+
		"(omni edge login in the browser, or a security key created after the expiry)", deviceID, expiredAt.Format(time.RFC3339))
	if p.Family == "" {
		return refuse
	}
	ls, err := s.store.LoginSession(ctx, p.Family)
	if errors.Is(err, ErrNotFound) {
		return refuse
	}
	if err != nil {
		return err
	}
	if ls.UserID != p.UserID || !ls.RevokedAt.IsZero() || ls.CreatedAt.Before(expiredAt) {
		return refuse
	}
	if ls.Method != MethodSecurityKey {
		return nil
	}
	k, err := s.store.SecurityKeyByID(ctx, ls.KeyID)
	if errors.Is(err, ErrNotFound) {
		return refuse
	}
	if err != nil {
		return err
	}
	if k.CreatedAt.Before(expiredAt) {
		return refuse
	}
	return nil
}

// keyClock is the state of the key-expiry loop: the end of the last scan
// (keys that expired up to it were announced) and a wake-up for changes.
type keyClock struct {
	mu   sync.Mutex
	last time.Time
	kick chan struct{}
}

// kickKeys tells the key-expiry loop that lifetimes, keys or members may
// have changed (must not block).
func (s *Service) kickKeys() {
	select {
	case s.keys.kick <- struct{}{}:
	default:
	}
}

// ExpireKeys announces (networkChanged) the networks where a member's key
// reached the end of the network's lifetime since the previous call (or
// since the Service was built), so that their nuclei drop the member at
// once, and returns when the next key expires (zero: none). Run calls it
// when that time comes; keys expired by hand were announced then.
func (s *Service) ExpireKeys(ctx context.Context) (time.Time, error) {
	s.keys.mu.Lock()
	defer s.keys.mu.Unlock()
	now := s.now()
	if now.Before(s.keys.last) {
		s.keys.last = now // the clock went back: start again from now
	}
	due, next, err := s.store.KeyExpiries(ctx, s.keys.last, now)
	if err != nil {
		return time.Time{}, err
	}
	s.keys.last = now
	if len(due) > 0 {
		s.invalidate()
		s.log.Info("device keys expired", "networks", len(due))
		s.networkChanged(due...)
	}
	return next, nil
}

// runKeys is Run's key-expiry loop: it calls ExpireKeys when the next key
// expires, at most KeyCheckMax apart (so a clock that jumps, or a change
// no kick reported, is noticed), and a second after a change (kickKeys;
// changes coalesce, so a busy control plane scans once a second at most).
func (s *Service) runKeys(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	due := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.keys.kick:
			if time.Until(due) > time.Second {
				due = time.Now().Add(time.Second)
				t.Reset(time.Second)
			}
		case <-t.C:
			wait := s.opts.KeyCheckMax
			next, err := s.ExpireKeys(ctx)
			switch {
			case err != nil:
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("checking device key expiry failed", "err", err)
				wait = min(wait, 5*time.Second)
			case !next.IsZero():
				wait = min(wait, max(next.Sub(s.clock.Now()), 0))
			}
			due = time.Now().Add(wait)
			t.Reset(wait)
		}
	}
}
