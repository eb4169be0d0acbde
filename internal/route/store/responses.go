package store

import (
	"context"
	"errors"
	"time"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

// ResponseCaps bound the stored Responses conversations: per owner (a
// gateway key) and in total, in rows and in bytes.
type ResponseCaps struct {
	MaxPerOwner   int
	MaxOwnerBytes int64
	Max           int
	MaxTotalBytes int64
}

// ResponseGet returns owner's conversation id unless it expired by now.
func (s *Store) ResponseGet(ctx context.Context, owner, id string, now time.Time) ([]byte, bool, error) {
	var v string
	err := s.db.QueryRow(ctx, `SELECT value FROM route_responses WHERE owner = ? AND id = ? AND expires_at > ?`,
		owner, id, ms(now)).Scan(&v)
	if errors.Is(err, sqldb.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return []byte(v), true, nil
}

// ResponsePut stores owner's conversation id until expires, in one
// transaction that also deletes the expired rows and then, oldest first,
// the owner's rows beyond its caps and everyone's beyond the totals. The
// new row is never among them: the caller keeps it within every cap.
func (s *Store) ResponsePut(ctx context.Context, owner, id string, value []byte, now, expires time.Time, caps ResponseCaps) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		// One writer at a time keeps the counts exact across replicas.
		if err := tx.LockKey(ctx, "route.responses"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM route_responses WHERE expires_at <= ?`, ms(now)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO route_responses (owner, id, value, size, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (owner, id) DO UPDATE SET value = excluded.value, size = excluded.size,
			created_at = excluded.created_at, expires_at = excluded.expires_at`,
			owner, id, string(value), len(value), ms(now), ms(expires)); err != nil {
			return err
		}
		if err := evictResponses(ctx, tx, `WHERE owner = ?`, []any{owner}, owner, id, caps.MaxPerOwner, caps.MaxOwnerBytes); err != nil {
			return err
		}
		return evictResponses(ctx, tx, ``, nil, owner, id, caps.Max, caps.MaxTotalBytes)
	})
}

// evictResponses deletes the oldest rows matching where (but never
// owner's id) until at most maxRows rows of at most maxBytes remain.
func evictResponses(ctx context.Context, tx *sqldb.Tx, where string, args []any, owner, id string, maxRows int, maxBytes int64) error {
	var n int
	var size int64
	if err := tx.QueryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(size), 0) FROM route_responses `+where, args...).Scan(&n, &size); err != nil {
		return err
	}
	for n > maxRows || size > maxBytes {
		cond := `WHERE NOT (owner = ? AND id = ?)`
		if where != "" {
			cond = where + ` AND NOT (owner = ? AND id = ?)`
		}
		var o, i string
		var sz int64
		err := tx.QueryRow(ctx, `SELECT owner, id, size FROM route_responses `+cond+` ORDER BY created_at, owner, id LIMIT 1`,
			append(append([]any{}, args...), owner, id)...).Scan(&o, &i, &sz)
		if errors.Is(err, sqldb.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM route_responses WHERE owner = ? AND id = ?`, o, i); err != nil {
			return err
		}
		n, size = n-1, size-sz
	}
	return nil
}

// ResponseDelete deletes owner's conversation id and reports whether it
// was stored and not expired by now.
func (s *Store) ResponseDelete(ctx context.Context, owner, id string, now time.Time) (bool, error) {
	var exp int64
	found := false
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		err := tx.QueryRow(ctx, `DELETE FROM route_responses WHERE owner = ? AND id = ? RETURNING expires_at`, owner, id).Scan(&exp)
		if errors.Is(err, sqldb.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	return found && exp > ms(now), err
}

// ResponseSweep deletes the conversations expired by now and returns
// how many.
func (s *Store) ResponseSweep(ctx context.Context, now time.Time) (int, error) {
	res, err := s.db.Exec(ctx, `DELETE FROM route_responses WHERE expires_at <= ?`, ms(now))
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
