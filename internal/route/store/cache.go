package store

import (
	"context"
	"errors"
	"time"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

// CacheGet returns the cached value under key unless it expired by now.
func (s *Store) CacheGet(ctx context.Context, key string, now time.Time) ([]byte, time.Time, bool, error) {
	var v string
	var exp int64
	err := s.db.QueryRow(ctx, `SELECT value, expires_at FROM route_cache WHERE key = ? AND expires_at > ?`, key, ms(now)).Scan(&v, &exp)
	if errors.Is(err, sqldb.ErrNoRows) {
		return nil, time.Time{}, false, nil
	}
	if err != nil {
		return nil, time.Time{}, false, err
	}
	return []byte(v), fromMS(exp), true, nil
}

// CachePut stores value under key until expires, then keeps the table
// bounded: expired rows are deleted and, beyond maxRows (0: no bound),
// the oldest rows go.
func (s *Store) CachePut(ctx context.Context, key string, value []byte, now, expires time.Time, maxRows int) error {
	_, err := s.db.Exec(ctx, `INSERT INTO route_cache (key, value, created_at, expires_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, created_at = excluded.created_at, expires_at = excluded.expires_at`,
		key, string(value), ms(now), ms(expires))
	if err != nil {
		return err
	}
	if _, err := s.db.Exec(ctx, `DELETE FROM route_cache WHERE expires_at <= ?`, ms(now)); err != nil {
		return err
	}
	if maxRows <= 0 {
		return nil
	}
	var n int
	if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM route_cache`).Scan(&n); err != nil {
		return err
	}
	if n <= maxRows {
		return nil
	}
	_, err = s.db.Exec(ctx, `DELETE FROM route_cache WHERE key IN
		(SELECT key FROM route_cache ORDER BY created_at, key LIMIT ?)`, n-maxRows)
	return err
}

// CacheCount returns the number of unexpired cached values.
func (s *Store) CacheCount(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM route_cache WHERE expires_at > ?`, ms(now)).Scan(&n)
	return n, err
}

// CacheClear deletes every cached value and returns how many there were.
func (s *Store) CacheClear(ctx context.Context) (int, error) {
	res, err := s.db.Exec(ctx, `DELETE FROM route_cache`)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
