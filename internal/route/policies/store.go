package policies

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the module's schema (product "route_policies"), one
// directory per dialect.
func Migrations() fs.FS {
	return sqldb.Sub(migrations, "migrations")
}

// Product is the name the schema's migrations are recorded under.
const Product = "route_policies"

// Store errors.
var (
	errNotFound = errors.New("no such policy")
	errConflict = errors.New("a policy with this name exists")
	errFull     = fmt.Errorf("there are %d policies already; delete one first", MaxPolicies)
)

// Store keeps the policies in SQL. Every write bumps the route store's
// epoch (route_epoch) in its transaction, the number every replica
// follows to install what another one changed.
type Store struct {
	db *sqldb.DB
}

// NewStore returns the store over db, whose schema Migrations holds (and
// whose route store schema holds route_epoch).
func NewStore(db *sqldb.DB) *Store { return &Store{db: db} }

const cols = `id, name, enabled, kind, keys, providers, models, priority, description, created_at, updated_at`

func scan(s sqldb.Scanner) (Policy, error) {
	var p Policy
	var keys, providers, models string
	var created, updated int64
	if err := s.Scan(&p.ID, &p.Name, &p.Enabled, &p.Kind, &keys, &providers, &models, &p.Priority, &p.Description, &created, &updated); err != nil {
		return p, err
	}
	for _, c := range []struct {
		raw string
		to  *[]string
	}{{keys, &p.Keys}, {providers, &p.Providers}, {models, &p.Models}} {
		if err := json.Unmarshal([]byte(c.raw), c.to); err != nil {
			return p, fmt.Errorf("policies: decode column of %s: %w", p.ID, err)
		}
		if *c.to == nil {
			*c.to = []string{}
		}
	}
	p.CreatedAt, p.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return p, nil
}

func list(l []string) string {
	if l == nil {
		l = []string{}
	}
	b, _ := json.Marshal(l) // strings always encode
	return string(b)
}

// Epoch is the route store's epoch.
func (s *Store) Epoch(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRow(ctx, `SELECT value FROM route_epoch WHERE id = 1`).Scan(&v)
	return v, err
}

// List returns every policy.
func (s *Store) List(ctx context.Context) ([]Policy, error) {
	rows, err := s.db.Query(ctx, `SELECT `+cols+` FROM gateway_policies ORDER BY priority DESC, name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Policy
	for rows.Next() {
		p, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Get returns one policy.
func (s *Store) Get(ctx context.Context, id string) (Policy, error) {
	p, err := scan(s.db.QueryRow(ctx, `SELECT `+cols+` FROM gateway_policies WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return p, errNotFound
	}
	return p, err
}

// write runs fn in a transaction and bumps the epoch with it.
func (s *Store) write(ctx context.Context, fn func(*sqldb.Tx) error) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE route_epoch SET value = value + 1 WHERE id = 1`)
		return err
	})
}

// Create stores p with a new id; at most MaxPolicies are kept.
func (s *Store) Create(ctx context.Context, p Policy, now time.Time) (Policy, error) {
	p.ID = auth.RandomToken("pol_", 9)
	p.CreatedAt, p.UpdatedAt = now.UTC().Truncate(time.Millisecond), now.UTC().Truncate(time.Millisecond)
	err := s.write(ctx, func(tx *sqldb.Tx) error {
		if err := tx.LockKey(ctx, "gateway_policies"); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_policies`).Scan(&n); err != nil {
			return err
		}
		if n >= MaxPolicies {
			return errFull
		}
		_, err := tx.Exec(ctx, `INSERT INTO gateway_policies (`+cols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.ID, p.Name, p.Enabled, p.Kind, list(p.Keys), list(p.Providers), list(p.Models), p.Priority, p.Description,
			p.CreatedAt.UnixMilli(), p.UpdatedAt.UnixMilli())
		if sqldb.IsUniqueViolation(err) {
			return errConflict
		}
		return err
	})
	return p, err
}

// Update replaces the policy with p's id.
func (s *Store) Update(ctx context.Context, p Policy, now time.Time) (Policy, error) {
	p.UpdatedAt = now.UTC().Truncate(time.Millisecond)
	err := s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE gateway_policies SET name = ?, enabled = ?, kind = ?, keys = ?, providers = ?, models = ?,
			priority = ?, description = ?, updated_at = ? WHERE id = ?`,
			p.Name, p.Enabled, p.Kind, list(p.Keys), list(p.Providers), list(p.Models), p.Priority, p.Description, p.UpdatedAt.UnixMilli(), p.ID)
		if sqldb.IsUniqueViolation(err) {
			return errConflict
		}
		return affected(res, err)
	})
	return p, err
}

// Delete removes a policy.
func (s *Store) Delete(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		return affected(tx.Exec(ctx, `DELETE FROM gateway_policies WHERE id = ?`, id))
	})
}

func affected(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return errNotFound
	}
	return nil
}
