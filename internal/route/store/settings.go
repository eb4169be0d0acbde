package store

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

// Setting keys.
const (
	SettingPasswordHash = "password_hash" // argon2id hash of the dashboard password
	SettingRequireLogin = "require_login" // "true" or "false"; unset means true
)

// Setting returns a setting's value; ok is false when it is unset.
func (s *Store) Setting(ctx context.Context, key string) (value string, ok bool, err error) {
	err = s.db.QueryRow(ctx, `SELECT value FROM route_settings WHERE key = ?`, key).Scan(&value)
	if errors.Is(err, sqldb.ErrNoRows) {
		return "", false, nil
	}
	return value, err == nil, err
}

// SetSetting creates or replaces a setting.
func (s *Store) SetSetting(ctx context.Context, key, value string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		_, err := s.upsertSetting(ctx, tx, key, value, true)
		return err
	})
}

// SetSettingIfAbsent stores a setting only when it is unset, atomically
// (replicas starting together agree on one value); set reports whether
// this call stored it.
func (s *Store) SetSettingIfAbsent(ctx context.Context, key, value string) (set bool, err error) {
	err = s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		set, err = s.upsertSetting(ctx, tx, key, value, false)
		return err
	})
	return set, err
}

func (s *Store) upsertSetting(ctx context.Context, tx *sqldb.Tx, key, value string, replace bool) (bool, error) {
	if err := tx.LockKey(ctx, "route.settings."+key); err != nil {
		return false, err
	}
	now := ms(s.now())
	var cur string
	err := tx.QueryRow(ctx, `SELECT value FROM route_settings WHERE key = ?`, key).Scan(&cur)
	switch {
	case err == nil && !replace:
		return false, nil
	case err == nil:
		_, err = tx.Exec(ctx, `UPDATE route_settings SET value = ?, updated_at = ? WHERE key = ?`, value, now, key)
		return err == nil, err
	case errors.Is(err, sqldb.ErrNoRows):
		_, err = tx.Exec(ctx, `INSERT INTO route_settings (key, value, updated_at) VALUES (?, ?, ?)`, key, value, now)
		return err == nil, err
	default:
		return false, err
	}
}

// CompareAndSwapSetting replaces a setting's value with value only when it
// is old (an old of "" also matches an unset setting), atomically:
// of concurrent calls with the same old value, one swaps. swapped reports
// whether this call did.
func (s *Store) CompareAndSwapSetting(ctx context.Context, key, old, value string) (swapped bool, err error) {
	err = s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		swapped, err = s.swapSetting(ctx, tx, key, old, value)
		return err
	})
	return swapped, err
}

func (s *Store) swapSetting(ctx context.Context, tx *sqldb.Tx, key, old, value string) (bool, error) {
	if err := tx.LockKey(ctx, "route.settings."+key); err != nil {
		return false, err
	}
	var cur string
	err := tx.QueryRow(ctx, `SELECT value FROM route_settings WHERE key = ?`, key).Scan(&cur)
	switch {
	case errors.Is(err, sqldb.ErrNoRows):
		if old != "" {
			return false, nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO route_settings (key, value, updated_at) VALUES (?, ?, ?)`, key, value, ms(s.now()))
		return err == nil, err
	case err != nil:
		return false, err
	}
	// The value is compared again by the UPDATE itself, so even without
	// the lock a concurrent change makes this a no-op, not an overwrite.
	res, err := tx.Exec(ctx, `UPDATE route_settings SET value = ?, updated_at = ? WHERE key = ? AND value = ?`, value, ms(s.now()), key, old)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// SetFirstPassword stores the dashboard password hash only when no
// password is stored (the setting unset or empty), ending every session
// (a restored database may carry some), in one transaction; set reports
// whether this call stored it.
func (s *Store) SetFirstPassword(ctx context.Context, hash string) (set bool, err error) {
	err = s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if set, err = s.swapSetting(ctx, tx, SettingPasswordHash, "", hash); err != nil || !set {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM route_sessions`)
		return err
	})
	return set, err
}

// SetPassword stores a new dashboard password hash and ends every
// dashboard session, in one transaction.
func (s *Store) SetPassword(ctx context.Context, hash string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := s.upsertSetting(ctx, tx, SettingPasswordHash, hash, true); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM route_sessions`)
		return err
	})
}

// ---- dashboard sessions ----

// CreateSession records a login session until expires; expired sessions
// are pruned on the way.
func (s *Store) CreateSession(ctx context.Context, id string, now, expires time.Time) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM route_sessions WHERE expires_at <= ?`, ms(now)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO route_sessions (id, created_at, expires_at) VALUES (?, ?, ?)`, id, ms(now), ms(expires))
		return conflict(err, "session")
	})
}

// SessionValid reports whether a session exists and has not expired at now.
func (s *Store) SessionValid(ctx context.Context, id string, now time.Time) (bool, error) {
	var exp int64
	err := s.db.QueryRow(ctx, `SELECT expires_at FROM route_sessions WHERE id = ?`, id).Scan(&exp)
	if errors.Is(err, sqldb.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return ms(now) < exp, nil
}

// DeleteSession ends one session (no error when it is already gone).
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	_, err := s.db.Exec(ctx, `DELETE FROM route_sessions WHERE id = ?`, id)
	return err
}

// SetSettings creates or replaces several settings in one transaction:
// all of them are stored, or none. The keys are locked in sorted order,
// so concurrent calls cannot deadlock.
func (s *Store) SetSettings(ctx context.Context, kv map[string]string) error {
	keys := slices.Sorted(maps.Keys(kv))
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		for _, k := range keys {
			if _, err := s.upsertSetting(ctx, tx, k, kv[k], true); err != nil {
				return err
			}
		}
		return nil
	})
}
