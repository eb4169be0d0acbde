// Package store implements control.Store on SQLite and PostgreSQL through
// platform/sqldb, with the OmniEdge migrations embedded. The same code and
// the same test suite serve both dialects.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/edge/server/control"
	"github.com/omniedge/omni/internal/edge/server/store/migrations"
	"github.com/omniedge/omni/internal/platform/sqldb"
)

// Store is the SQL implementation of control.Store.
type Store struct {
	db *sqldb.DB
}

var _ control.Store = (*Store)(nil)

// New migrates db to the current OmniEdge schema and returns a store.
func New(ctx context.Context, db *sqldb.DB) (*Store, error) {
	if err := sqldb.Migrate(ctx, db, "edge", migrations.FS); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// DB returns the underlying database.
func (s *Store) DB() *sqldb.DB { return s.db }

func ms(t time.Time) int64 { return t.UnixMilli() }

func nullMS(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNull(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMS(v.Int64)
}

func nullStr(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, control.ErrNotFound)
	}
	return err
}

func conflict(err error, what string) error {
	if sqldb.IsUniqueViolation(err) {
		return fmt.Errorf("%s: %w", what, control.ErrConflict)
	}
	return err
}

func mustAffect(res sql.Result, err error, what string) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, control.ErrNotFound)
	}
	return nil
}

type querier interface {
	Exec(ctx context.Context, q string, args ...any) (sql.Result, error)
}

func bumpEpoch(ctx context.Context, q querier) error {
	_, err := q.Exec(ctx, `UPDATE edge_epoch SET value = value + 1 WHERE id = 1`)
	return err
}

// Epoch returns the current cache epoch.
func (s *Store) Epoch(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRow(ctx, `SELECT value FROM edge_epoch WHERE id = 1`).Scan(&v)
	return v, err
}

// ---- users ----

const userCols = `id, email, password_hash, plan, created_at`

func scanUser(row interface{ Scan(...any) error }) (control.User, error) {
	var u control.User
	var created int64
	err := row.Scan(&u.ID, &u.Email, &u.PasswordHash, &u.Plan, &created)
	u.CreatedAt = fromMS(created)
	return u, err
}

func (s *Store) CreateUser(ctx context.Context, u control.User) error {
	_, err := s.db.Exec(ctx, `INSERT INTO edge_users (`+userCols+`) VALUES (?, ?, ?, ?, ?)`,
		u.ID, strings.ToLower(u.Email), u.PasswordHash, u.Plan, ms(u.CreatedAt))
	return conflict(err, "user "+u.Email)
}

func (s *Store) UserByID(ctx context.Context, id string) (control.User, error) {
	u, err := scanUser(s.db.QueryRow(ctx, `SELECT `+userCols+` FROM edge_users WHERE id = ?`, id))
	return u, notFound(err, "user")
}

func (s *Store) UserByEmail(ctx context.Context, email string) (control.User, error) {
	u, err := scanUser(s.db.QueryRow(ctx, `SELECT `+userCols+` FROM edge_users WHERE email = ?`, strings.ToLower(email)))
	return u, notFound(err, "user")
}

func (s *Store) ListUsers(ctx context.Context) ([]control.User, error) {
	rows, err := s.db.Query(ctx, `SELECT `+userCols+` FROM edge_users ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanUser)
}

func (s *Store) SetUserPlan(ctx context.Context, id, plan string) error {
	res, err := s.db.Exec(ctx, `UPDATE edge_users SET plan = ? WHERE id = ?`, plan, id)
	return mustAffect(res, err, "user")
}

// ---- security keys ----

const keyCols = `id, user_id, name, key_hash, created_at, expires_at, revoked_at, last_used_at`

func scanKey(row interface{ Scan(...any) error }) (control.SecurityKey, error) {
	var k control.SecurityKey
	var created int64
	var exp, rev, used sql.NullInt64
	err := row.Scan(&k.ID, &k.UserID, &k.Name, &k.Hash, &created, &exp, &rev, &used)
	k.CreatedAt, k.ExpiresAt, k.RevokedAt, k.LastUsedAt = fromMS(created), fromNull(exp), fromNull(rev), fromNull(used)
	return k, err
}

func (s *Store) CreateSecurityKey(ctx context.Context, k control.SecurityKey) error {
	_, err := s.db.Exec(ctx, `INSERT INTO edge_security_keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.UserID, k.Name, k.Hash, ms(k.CreatedAt), nullMS(k.ExpiresAt), nullMS(k.RevokedAt), nullMS(k.LastUsedAt))
	return conflict(err, "security key")
}

func (s *Store) SecurityKeyByHash(ctx context.Context, hash string) (control.SecurityKey, error) {
	k, err := scanKey(s.db.QueryRow(ctx, `SELECT `+keyCols+` FROM edge_security_keys WHERE key_hash = ?`, hash))
	return k, notFound(err, "security key")
}

func (s *Store) SecurityKeyByID(ctx context.Context, id string) (control.SecurityKey, error) {
	k, err := scanKey(s.db.QueryRow(ctx, `SELECT `+keyCols+` FROM edge_security_keys WHERE id = ?`, id))
	return k, notFound(err, "security key")
}

func (s *Store) ListSecurityKeys(ctx context.Context, userID string) ([]control.SecurityKey, error) {
	rows, err := s.db.Query(ctx, `SELECT `+keyCols+` FROM edge_security_keys WHERE user_id = ? ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanKey)
}

// RevokeSecurityKey revokes the key and every refresh family it started.
func (s *Store) RevokeSecurityKey(ctx context.Context, userID, id string, at time.Time) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE edge_security_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND user_id = ?`, ms(at), id, userID)
		if err := mustAffect(res, err, "security key"); err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, `UPDATE edge_refresh_tokens SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL`, ms(at), id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE edge_login_sessions SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL`, ms(at), id)
		return err
	})
}

func (s *Store) TouchSecurityKey(ctx context.Context, id string, at time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE edge_security_keys SET last_used_at = ? WHERE id = ?`, ms(at), id)
	return err
}

// ---- refresh tokens ----

const rtCols = `id, family_id, user_id, key_id, token_hash, created_at, expires_at, used_at, revoked_at`

func scanRT(row interface{ Scan(...any) error }) (control.RefreshToken, error) {
	var t control.RefreshToken
	var key sql.NullString
	var created, exp int64
	var used, rev sql.NullInt64
	err := row.Scan(&t.ID, &t.FamilyID, &t.UserID, &key, &t.Hash, &created, &exp, &used, &rev)
	t.KeyID = key.String
	t.CreatedAt, t.ExpiresAt, t.UsedAt, t.RevokedAt = fromMS(created), fromMS(exp), fromNull(used), fromNull(rev)
	return t, err
}

func (s *Store) CreateRefreshToken(ctx context.Context, t control.RefreshToken) error {
	_, err := s.db.Exec(ctx, `INSERT INTO edge_refresh_tokens (`+rtCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.FamilyID, t.UserID, nullStr(t.KeyID), t.Hash, ms(t.CreatedAt), ms(t.ExpiresAt), nullMS(t.UsedAt), nullMS(t.RevokedAt))
	return conflict(err, "refresh token")
}

func (s *Store) UseRefreshToken(ctx context.Context, hash string, at time.Time) (control.RefreshToken, error) {
	var t control.RefreshToken
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		t, err = scanRT(tx.QueryRow(ctx, `UPDATE edge_refresh_tokens SET used_at = ?
			WHERE token_hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?
			RETURNING `+rtCols, ms(at), hash, ms(at)))
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		t, err = scanRT(tx.QueryRow(ctx, `SELECT `+rtCols+` FROM edge_refresh_tokens WHERE token_hash = ?`, hash))
		if err != nil {
			return notFound(err, "refresh token")
		}
		if !t.UsedAt.IsZero() || !t.RevokedAt.IsZero() {
			return fmt.Errorf("refresh token reused: %w", control.ErrConflict)
		}
		return fmt.Errorf("refresh token expired: %w", control.ErrNotFound)
	})
	return t, err
}

func (s *Store) RevokeRefreshFamily(ctx context.Context, familyID string, at time.Time) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE edge_refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL`, ms(at), familyID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE edge_login_sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, ms(at), familyID)
		return err
	})
}

// RevokedSessions returns the login sessions revoked after since.
func (s *Store) RevokedSessions(ctx context.Context, since time.Time) ([]control.RevokedSession, error) {
	rows, err := s.db.Query(ctx, `SELECT id, revoked_at FROM edge_login_sessions WHERE revoked_at > ? ORDER BY revoked_at`, ms(since))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []control.RevokedSession
	for rows.Next() {
		var r control.RevokedSession
		var at int64
		if err := rows.Scan(&r.ID, &at); err != nil {
			return nil, err
		}
		r.RevokedAt = fromMS(at)
		out = append(out, r)
	}
	return out, rows.Err()
}

// ---- login sessions ----

const lsCols = `id, user_id, key_id, method, client_ip, user_agent, created_at, last_used_at, expires_at, revoked_at`

func scanLS(row interface{ Scan(...any) error }) (control.LoginSession, error) {
	var l control.LoginSession
	var key sql.NullString
	var created, used, exp int64
	var rev sql.NullInt64
	err := row.Scan(&l.ID, &l.UserID, &key, &l.Method, &l.ClientIP, &l.UserAgent, &created, &used, &exp, &rev)
	l.KeyID = key.String
	l.CreatedAt, l.LastUsedAt, l.ExpiresAt, l.RevokedAt = fromMS(created), fromMS(used), fromMS(exp), fromNull(rev)
	return l, err
}

func (s *Store) CreateLoginSession(ctx context.Context, l control.LoginSession) error {
	_, err := s.db.Exec(ctx, `INSERT INTO edge_login_sessions (`+lsCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		l.ID, l.UserID, nullStr(l.KeyID), l.Method, l.ClientIP, l.UserAgent, ms(l.CreatedAt), ms(l.LastUsedAt), ms(l.ExpiresAt), nullMS(l.RevokedAt))
	return conflict(err, "login session")
}

func (s *Store) LoginSession(ctx context.Context, id string) (control.LoginSession, error) {
	l, err := scanLS(s.db.QueryRow(ctx, `SELECT `+lsCols+` FROM edge_login_sessions WHERE id = ?`, id))
	return l, notFound(err, "login session")
}

func (s *Store) TouchLoginSession(ctx context.Context, id string, at, expires time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE edge_login_sessions SET last_used_at = ?, expires_at = ? WHERE id = ?`, ms(at), ms(expires), id)
	return err
}

func (s *Store) ListLoginSessions(ctx context.Context, userID string, now time.Time) ([]control.LoginSession, error) {
	rows, err := s.db.Query(ctx, `SELECT `+lsCols+` FROM edge_login_sessions
		WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? ORDER BY created_at, id`, userID, ms(now))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []control.LoginSession
	for rows.Next() {
		l, err := scanLS(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

func (s *Store) KeySessions(ctx context.Context, keyID string, now time.Time) ([]string, error) {
	return s.strings(ctx, `SELECT id FROM edge_login_sessions WHERE key_id = ? AND expires_at > ?`, keyID, ms(now))
}

func (s *Store) AddDeviceSession(ctx context.Context, deviceID, sessionID string) error {
	_, err := s.db.Exec(ctx, `INSERT INTO edge_device_sessions (device_id, session_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, deviceID, sessionID)
	return err
}

func (s *Store) DeviceSessions(ctx context.Context, deviceID string) ([]string, error) {
	return s.strings(ctx, `SELECT session_id FROM edge_device_sessions WHERE device_id = ? ORDER BY session_id`, deviceID)
}

// strings runs a query returning one text column.
func (s *Store) strings(ctx context.Context, q string, args ...any) ([]string, error) {
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ---- devices ----

const devCols = `id, user_id, hardware_uuid, name, platform, created_at, last_seen, exit_consent, public_key, dns_name, key_set_at, key_expired_at, tags`

func scanDevice(row interface{ Scan(...any) error }) (control.Device, error) {
	var d control.Device
	var created int64
	var seen sql.NullInt64
	var key sql.NullString
	var keySet, keyExpired sql.NullInt64
	var tags string
	err := row.Scan(&d.ID, &d.UserID, &d.HardwareUUID, &d.Name, &d.Platform, &created, &seen, &d.ExitConsent, &key, &d.DNSName, &keySet, &keyExpired, &tags)
	if tags != "" {
		d.Tags = strings.Split(tags, ",")
	}
	d.CreatedAt, d.LastSeen, d.PublicKey = fromMS(created), fromNull(seen), key.String
	d.KeySetAt, d.KeyExpiredAt = fromNull(keySet), fromNull(keyExpired)
	return d, err
}

func (s *Store) RegisterDevice(ctx context.Context, d control.Device, maxDevices int) (control.Device, bool, error) {
	var out control.Device
	var created bool
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := tx.LockKey(ctx, "edge.devices."+d.UserID); err != nil {
			return err
		}
		existing, err := scanDevice(tx.QueryRow(ctx, `SELECT `+devCols+` FROM edge_devices WHERE user_id = ? AND hardware_uuid = ?`, d.UserID, d.HardwareUUID))
		if err == nil {
			if (d.Name != "" && d.Name != existing.Name) || (d.Platform != "" && d.Platform != existing.Platform) ||
				(d.PublicKey != "" && d.PublicKey != existing.PublicKey) {
				if d.Name != "" {
					existing.Name = d.Name
				}
				if d.Platform != "" {
					existing.Platform = d.Platform
				}
				newKey := d.PublicKey != "" && d.PublicKey != existing.PublicKey
				if newKey {
					existing.PublicKey, existing.KeySetAt, existing.KeyExpiredAt = d.PublicKey, keySetAt(d), time.Time{}
				}
				if _, err := tx.Exec(ctx, `UPDATE edge_devices SET name = ?, platform = ?, public_key = ?, key_set_at = ?, key_expired_at = ? WHERE id = ?`,
					existing.Name, existing.Platform, nullStr(existing.PublicKey), nullMS(existing.KeySetAt), nullMS(existing.KeyExpiredAt), existing.ID); err != nil {
					return conflict(err, "device public key")
				}
				if newKey {
					if err := bumpEpoch(ctx, tx); err != nil {
						return err
					}
				}
			}
			out = existing
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if maxDevices > 0 {
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM edge_devices WHERE user_id = ?`, d.UserID).Scan(&n); err != nil {
				return err
			}
			if n >= maxDevices {
				return fmt.Errorf("%d devices: %w", n, control.ErrLimit)
			}
		}
		if d.PublicKey != "" {
			d.KeySetAt = keySetAt(d)
		} else {
			d.KeySetAt = time.Time{}
		}
		d.KeyExpiredAt = time.Time{}
		if _, err := tx.Exec(ctx, `INSERT INTO edge_devices (`+devCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			d.ID, d.UserID, d.HardwareUUID, d.Name, d.Platform, ms(d.CreatedAt), nullMS(d.LastSeen), d.ExitConsent, nullStr(d.PublicKey), d.DNSName,
			nullMS(d.KeySetAt), nil, strings.Join(d.Tags, ",")); err != nil {
			return conflict(err, "device")
		}
		out, created = d, true
		return nil
	})
	return out, created, err
}

// keySetAt is when a registration records its new key: d.KeySetAt, or
// its creation time when the caller gave none, as stored (milliseconds).
func keySetAt(d control.Device) time.Time {
	if d.KeySetAt.IsZero() {
		return fromMS(ms(d.CreatedAt))
	}
	return fromMS(ms(d.KeySetAt))
}

// ExpireDeviceKey records the owner's expiry of the device's key.
func (s *Store) ExpireDeviceKey(ctx context.Context, id string, at time.Time) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var key sql.NullString
		if err := tx.QueryRow(ctx, `SELECT public_key FROM edge_devices WHERE id = ?`, id).Scan(&key); err != nil {
			return notFound(err, "device")
		}
		if !key.Valid {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE edge_devices SET key_expired_at = ? WHERE id = ?`, ms(at), id); err != nil {
			return err
		}
		return bumpEpoch(ctx, tx)
	})
}

// keyDeadlines is the end of every counted key's lifetime in a network
// with one: the networks' members whose device has a key the owner did
// not expire by hand.
const keyDeadlines = `FROM edge_networks n
	JOIN edge_memberships m ON m.network_id = n.id
	JOIN edge_devices d ON d.id = m.device_id
	WHERE n.key_expiry_ms > 0 AND d.key_set_at IS NOT NULL AND d.key_expired_at IS NULL`

// KeyExpiries returns the networks with a key lifetime ending in (after,
// until] and the first end after until, in two aggregate queries over the
// members of the networks that have a lifetime.
func (s *Store) KeyExpiries(ctx context.Context, after, until time.Time) ([]string, time.Time, error) {
	due, err := s.strings(ctx, `SELECT DISTINCT n.id `+keyDeadlines+`
		AND d.key_set_at + n.key_expiry_ms > ? AND d.key_set_at + n.key_expiry_ms <= ? ORDER BY n.id`, ms(after), ms(until))
	if err != nil {
		return nil, time.Time{}, err
	}
	var next sql.NullInt64
	if err := s.db.QueryRow(ctx, `SELECT MIN(d.key_set_at + n.key_expiry_ms) `+keyDeadlines+`
		AND d.key_set_at + n.key_expiry_ms > ?`, ms(until)).Scan(&next); err != nil {
		return nil, time.Time{}, err
	}
	return due, fromNull(next), nil
}

func (s *Store) DeviceByID(ctx context.Context, id string) (control.Device, error) {
	d, err := scanDevice(s.db.QueryRow(ctx, `SELECT `+devCols+` FROM edge_devices WHERE id = ?`, id))
	return d, notFound(err, "device")
}

func (s *Store) DeviceByHardware(ctx context.Context, userID, hw string) (control.Device, error) {
	d, err := scanDevice(s.db.QueryRow(ctx, `SELECT `+devCols+` FROM edge_devices WHERE user_id = ? AND hardware_uuid = ?`, userID, hw))
	return d, notFound(err, "device")
}

// DeviceBySession is DeviceByHardware that also reports, in the same
// query, whether the login session was recorded for the device
// (AddDeviceSession).
func (s *Store) DeviceBySession(ctx context.Context, userID, hw, sessionID string) (control.Device, bool, error) {
	var recorded bool
	d, err := scanDevice(withExtra{s.db.QueryRow(ctx, `SELECT `+devCols+`,
		EXISTS (SELECT 1 FROM edge_device_sessions ds WHERE ds.device_id = edge_devices.id AND ds.session_id = ?)
		FROM edge_devices WHERE user_id = ? AND hardware_uuid = ?`, sessionID, userID, hw), []any{&recorded}})
	return d, recorded, notFound(err, "device")
}

// withExtra scans the columns of a row's scanner and then extra ones.
type withExtra struct {
	row   interface{ Scan(...any) error }
	extra []any
}

func (w withExtra) Scan(dest ...any) error { return w.row.Scan(append(dest, w.extra...)...) }

func (s *Store) ListDevices(ctx context.Context, userID string) ([]control.Device, error) {
	q, args := `SELECT `+devCols+` FROM edge_devices ORDER BY created_at, id`, []any{}
	if userID != "" {
		q, args = `SELECT `+devCols+` FROM edge_devices WHERE user_id = ? ORDER BY created_at, id`, []any{userID}
	}
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanDevice)
}

func (s *Store) RenameDevice(ctx context.Context, id, name, dnsName string) error {
	res, err := s.db.Exec(ctx, `UPDATE edge_devices SET name = ?, dns_name = ? WHERE id = ?`, name, dnsName, id)
	return mustAffect(res, err, "device")
}

// SetDeviceTags replaces a device's tags (valid, sorted and without
// commas: see control.ParseTags).
func (s *Store) SetDeviceTags(ctx context.Context, id string, tags []string) error {
	res, err := s.db.Exec(ctx, `UPDATE edge_devices SET tags = ? WHERE id = ?`, strings.Join(tags, ","), id)
	return mustAffect(res, err, "device")
}

// DeleteDevice removes the device, its memberships (freeing their
// addresses) and every exit-node selection that pointed at it, and rotates
// the secret of every network it was a member of.
func (s *Store) DeleteDevice(ctx context.Context, id string, rotate func(networkID string) string) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		rows, err := tx.Query(ctx, `SELECT network_id FROM edge_memberships WHERE device_id = ? ORDER BY network_id`, id)
		if err != nil {
			return err
		}
		var nets []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			nets = append(nets, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		// Memberships first: deleting them waits for a concurrent
		// SelectExitNode holding them FOR SHARE, and the clearing below then
		// sees (and undoes) the selection it made.
		if _, err := tx.Exec(ctx, `DELETE FROM edge_memberships WHERE device_id = ?`, id); err != nil {
			return err
		}
		for _, n := range nets {
			if err := rotateSecret(ctx, tx, n, rotate(n)); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE edge_memberships SET exit_node_id = NULL WHERE exit_node_id = ?`, id); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `DELETE FROM edge_devices WHERE id = ?`, id)
		if err := mustAffect(res, err, "device"); err != nil {
			return err
		}
		return bumpEpoch(ctx, tx)
	})
}

// FlushPresence writes a batch of heartbeats. Older values never overwrite
// newer ones, so replicas may flush in any order.
func (s *Store) FlushPresence(ctx context.Context, seen []control.Presence) error {
	const batch = 500
	for len(seen) > 0 {
		n := min(batch, len(seen))
		chunk := seen[:n]
		seen = seen[n:]
		err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
			for _, p := range chunk {
				if _, err := tx.Exec(ctx, `UPDATE edge_devices SET last_seen = ?, exit_consent = ?
					WHERE id = ? AND (last_seen IS NULL OR last_seen <= ?)`, ms(p.At), p.ExitConsent, p.DeviceID, ms(p.At)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
