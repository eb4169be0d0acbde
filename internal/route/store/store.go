// Package store keeps the OmniRoute gateway's managed state on SQLite or
// PostgreSQL through platform/sqldb, with its migrations embedded:
// providers and their credentials (sealed with AES-GCM under a key derived
// from the master key), gateway API keys (SHA-256 only), aliases, combos,
// model→combo mappings, custom provider models, price overrides, settings
// and dashboard sessions. The same code and test suite serve both dialects.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/route/store/migrations"
	"github.com/omniedge/omni/internal/route/store/usagestore"
)

// Errors returned (wrapped) by the store.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
)

// CredentialKeyPurpose is the DeriveKey purpose of the credential sealing key.
const CredentialKeyPurpose = "route provider credentials"

// Store is the SQL store of the gateway's managed state.
type Store struct {
	*usagestore.Table // usage records (route_usage, route_usage_hourly)
	db                *sqldb.DB
	sealer            *auth.Sealer
	now               func() time.Time
}

// New migrates db to the current OmniRoute schema and returns a store
// that seals credentials with a key derived from masterKey.
func New(ctx context.Context, db *sqldb.DB, masterKey []byte) (*Store, error) {
	if len(masterKey) < 32 {
		return nil, errors.New("route store: master key shorter than 32 bytes")
	}
	sealer, err := auth.NewSealer(auth.DeriveKey(masterKey, CredentialKeyPurpose))
	if err != nil {
		return nil, err
	}
	if err := sqldb.Migrate(ctx, db, "route", migrations.FS); err != nil {
		return nil, err
	}
	return &Store{Table: usagestore.New(db), db: db, sealer: sealer, now: time.Now}, nil
}

// DB returns the underlying database.
func (s *Store) DB() *sqldb.DB { return s.db }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNull(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMS(v.Int64)
}

func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return err
}

func conflict(err error, what string) error {
	if sqldb.IsUniqueViolation(err) {
		return fmt.Errorf("%s: %w", what, ErrConflict)
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
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic("route store: encode json: " + err.Error()) // only plain values are stored
	}
	return string(b)
}

func fromJSON(s string, v any) error {
	if s == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("route store: decode json column: %w", err)
	}
	return nil
}

// scanner is a row being read (sqldb.Scanner).
type scanner = sqldb.Scanner

// write runs fn in a transaction and bumps the epoch with it, so other
// replicas notice the change.
func (s *Store) write(ctx context.Context, fn func(*sqldb.Tx) error) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE route_epoch SET value = value + 1 WHERE id = 1`)
		return err
	})
}

// Epoch returns a number that changes whenever routing state changes.
func (s *Store) Epoch(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRow(ctx, `SELECT value FROM route_epoch WHERE id = 1`).Scan(&v)
	return v, err
}

// NewID returns a random id with prefix.
func NewID(prefix string) string { return auth.RandomToken(prefix, 9) }
