package proxies

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations is the module's schema (product Product), one directory per
// dialect.
func Migrations() fs.FS {
	return sqldb.Sub(migrations, "migrations")
}

// Product is the name the schema's migrations are recorded under.
const Product = "route_proxies"

// KeyPurpose is the DeriveKey purpose of the key sealing proxy credentials.
const KeyPurpose = "route outbound proxy credentials"

// Store errors (wrapped).
var (
	errNotFound = errors.New("not found")
	errConflict = errors.New("already exists")
	errInUse    = errors.New("in use")
	errFull     = errors.New("full")
)

// Proxy is one outbound proxy. Username and Password are plaintext in
// memory only; the database holds them sealed.
type Proxy struct {
	ID, Name, Type, Host string
	Port                 int
	Username, Password   string
	Notes                string
	// Unreadable is set when the sealed credentials cannot be opened
	// (the master key changed): the proxy is not used.
	Unreadable           bool
	CreatedAt, UpdatedAt time.Time
}

// Assignment places a proxy on a scope: global (ScopeID ""), a provider
// (its id) or a connection (a stored credential's id).
type Assignment struct {
	Scope, ScopeID, ProxyID string
	UpdatedAt               time.Time
}

// Store keeps proxies, their assignments and health sums in SQL. Every
// change of a proxy or an assignment bumps the route store's epoch in
// its transaction, so every replica's routing state reloads with it.
type Store struct {
	db     *sqldb.DB
	sealer *auth.Sealer
	now    func() time.Time
}

// NewStore returns the store over db (whose schema Migrations holds),
// sealing credentials under a key derived from masterKey.
func NewStore(db *sqldb.DB, masterKey []byte, now func() time.Time) (*Store, error) {
	if len(masterKey) < 32 {
		return nil, errors.New("proxies: master key shorter than 32 bytes")
	}
	s, err := auth.NewSealer(auth.DeriveKey(masterKey, KeyPurpose))
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, sealer: s, now: now}, nil
}

// secret is what is sealed of a proxy.
type secret struct {
	Username string `json:"u,omitempty"`
	Password string `json:"p,omitempty"`
}

func (s *Store) seal(p Proxy) string {
	if p.Username == "" && p.Password == "" {
		return ""
	}
	b, _ := json.Marshal(secret{p.Username, p.Password})
	return s.sealer.Seal(b, []byte("proxy:"+p.ID))
}

const cols = `id, name, type, host, port, auth, notes, created_at, updated_at`

func (s *Store) scan(row sqldb.Scanner) (Proxy, error) {
	var p Proxy
	var sealed string
	var created, updated int64
	if err := row.Scan(&p.ID, &p.Name, &p.Type, &p.Host, &p.Port, &sealed, &p.Notes, &created, &updated); err != nil {
		return p, err
	}
	p.CreatedAt, p.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	if sealed != "" {
		var sc secret
		pt, err := s.sealer.Open(sealed, []byte("proxy:"+p.ID))
		if err != nil || json.Unmarshal(pt, &sc) != nil {
			p.Unreadable = true
		} else {
			p.Username, p.Password = sc.Username, sc.Password
		}
	}
	return p, nil
}

// bump marks the routing state changed (route store's epoch).
func bump(ctx context.Context, tx *sqldb.Tx) error {
	_, err := tx.Exec(ctx, `UPDATE route_epoch SET value = value + 1 WHERE id = 1`)
	return err
}

// List returns every proxy by name.
func (s *Store) List(ctx context.Context) ([]Proxy, error) {
	rows, err := s.db.Query(ctx, `SELECT `+cols+` FROM gateway_proxies ORDER BY name, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Proxy
	for rows.Next() {
		p, err := s.scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Get returns one proxy.
func (s *Store) Get(ctx context.Context, id string) (Proxy, error) {
	p, err := s.scan(s.db.QueryRow(ctx, `SELECT `+cols+` FROM gateway_proxies WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("proxy %q: %w", id, errNotFound)
	}
	return p, err
}

// Create stores a new proxy (p.ID set by the caller), refusing a name
// taken or more than max proxies.
func (s *Store) Create(ctx context.Context, p Proxy, max int) error {
	now := s.now().UnixMilli()
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := tx.LockKey(ctx, "gateway_proxies"); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_proxies`).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return fmt.Errorf("at most %d proxies: %w", max, errFull)
		}
		_, err := tx.Exec(ctx, `INSERT INTO gateway_proxies (`+cols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.ID, p.Name, p.Type, p.Host, p.Port, s.seal(p), p.Notes, now, now)
		if sqldb.IsUniqueViolation(err) {
			return fmt.Errorf("a proxy named %q: %w", p.Name, errConflict)
		}
		if err != nil {
			return err
		}
		return bump(ctx, tx)
	})
}

// Update rewrites a proxy's fields.
func (s *Store) Update(ctx context.Context, p Proxy) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE gateway_proxies SET name = ?, type = ?, host = ?, port = ?, auth = ?, notes = ?, updated_at = ? WHERE id = ?`,
			p.Name, p.Type, p.Host, p.Port, s.seal(p), p.Notes, s.now().UnixMilli(), p.ID)
		if sqldb.IsUniqueViolation(err) {
			return fmt.Errorf("a proxy named %q: %w", p.Name, errConflict)
		}
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return fmt.Errorf("proxy %q: %w", p.ID, errNotFound)
		}
		return bump(ctx, tx)
	})
}

// Delete removes a proxy; one still assigned only with force, which
// removes its assignments too (their count is returned).
func (s *Store) Delete(ctx context.Context, id string, force bool) (int, error) {
	var detached int
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := tx.LockKey(ctx, "gateway_proxies"); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_proxy_assignments WHERE proxy_id = ?`, id).Scan(&n); err != nil {
			return err
		}
		if n > 0 && !force {
			return fmt.Errorf("proxy %q has %d assignments (force=1 removes them with it): %w", id, n, errInUse)
		}
		res, err := tx.Exec(ctx, `DELETE FROM gateway_proxies WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if k, err := res.RowsAffected(); err != nil || k == 0 {
			return fmt.Errorf("proxy %q: %w", id, errNotFound)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM gateway_proxy_assignments WHERE proxy_id = ?`, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM gateway_proxy_health WHERE proxy_id = ?`, id); err != nil {
			return err
		}
		detached = n
		return bump(ctx, tx)
	})
	return detached, err
}

// Filter narrows Assignments; empty fields match all.
type Filter struct{ ProxyID, Scope, ScopeID string }

// Assignments lists assignments by scope and scope id.
func (s *Store) Assignments(ctx context.Context, f Filter) ([]Assignment, error) {
	q := `SELECT scope, scope_id, proxy_id, updated_at FROM gateway_proxy_assignments WHERE 1 = 1`
	var args []any
	if f.ProxyID != "" {
		q += ` AND proxy_id = ?`
		args = append(args, f.ProxyID)
	}
	if f.Scope != "" {
		q += ` AND scope = ?`
		args = append(args, f.Scope)
	}
	if f.ScopeID != "" {
		q += ` AND scope_id = ?`
		args = append(args, f.ScopeID)
	}
	rows, err := s.db.Query(ctx, q+` ORDER BY scope, scope_id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Assignment
	for rows.Next() {
		var a Assignment
		var at int64
		if err := rows.Scan(&a.Scope, &a.ScopeID, &a.ProxyID, &at); err != nil {
			return nil, err
		}
		a.UpdatedAt = time.UnixMilli(at).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// Assign puts proxyID on each scope id of scope ("" clears them), in one
// transaction, refusing a proxy that does not exist or more than max
// assignments in all.
func (s *Store) Assign(ctx context.Context, scope string, ids []string, proxyID string, max int) error {
	now := s.now().UnixMilli()
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := tx.LockKey(ctx, "gateway_proxies"); err != nil {
			return err
		}
		if proxyID != "" {
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM gateway_proxies WHERE id = ?`, proxyID).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("proxy %q: %w", proxyID, errNotFound)
			}
			if err != nil {
				return err
			}
		}
		for _, id := range ids {
			if _, err := tx.Exec(ctx, `DELETE FROM gateway_proxy_assignments WHERE scope = ? AND scope_id = ?`, scope, id); err != nil {
				return err
			}
			if proxyID == "" {
				continue
			}
			if _, err := tx.Exec(ctx, `INSERT INTO gateway_proxy_assignments (scope, scope_id, proxy_id, updated_at) VALUES (?, ?, ?, ?)`,
				scope, id, proxyID, now); err != nil {
				return err
			}
		}
		if proxyID != "" {
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM gateway_proxy_assignments`).Scan(&n); err != nil {
				return err
			}
			if n > max {
				return fmt.Errorf("at most %d assignments: %w", max, errFull)
			}
		}
		return bump(ctx, tx)
	})
}

// healthRow is one proxy's sums over one hour.
type healthRow struct {
	ProxyID    string
	Hour       int64 // Unix hour
	OK, Failed int64
	LatencyMS  int64 // sum over OK
}

// AddHealth adds sums to the stored hours, and drops hours before
// keepFrom (Unix hour).
func (s *Store) AddHealth(ctx context.Context, rows []healthRow, keepFrom int64) error {
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		for _, r := range rows {
			if _, err := tx.Exec(ctx, `INSERT INTO gateway_proxy_health (proxy_id, hour, ok, failed, latency_ms) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (proxy_id, hour) DO UPDATE SET ok = gateway_proxy_health.ok + excluded.ok,
				failed = gateway_proxy_health.failed + excluded.failed, latency_ms = gateway_proxy_health.latency_ms + excluded.latency_ms`,
				r.ProxyID, r.Hour, r.OK, r.Failed, r.LatencyMS); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `DELETE FROM gateway_proxy_health WHERE hour < ?`, keepFrom)
		return err
	})
}

// Health sums each proxy's hours from fromHour (Unix hour) on.
func (s *Store) Health(ctx context.Context, fromHour int64) (map[string]healthRow, error) {
	rows, err := s.db.Query(ctx, `SELECT proxy_id, SUM(ok), SUM(failed), SUM(latency_ms) FROM gateway_proxy_health
		WHERE hour >= ? GROUP BY proxy_id`, fromHour)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]healthRow{}
	for rows.Next() {
		var r healthRow
		if err := rows.Scan(&r.ProxyID, &r.OK, &r.Failed, &r.LatencyMS); err != nil {
			return nil, err
		}
		out[r.ProxyID] = r
	}
	return out, rows.Err()
}

// cleanID reports ids made of the characters ids are made of.
func cleanID(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-#:", r))
	})
}
