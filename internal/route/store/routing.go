package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

// ---- gateway API keys ----

// APIKey is a gateway key; only its hash is stored. Its policy (allowed
// providers and models, request and token limits) and budget are enforced
// by route/limits.
type APIKey struct {
	ID            string
	Name          string
	Prefix        string // the first characters, for display
	Hash          string // auth.TokenHash of the raw key
	AllowedModels []string
	CreatedAt     time.Time
	LastUsedAt    time.Time // zero: never

	AllowedProviders []string
	Limits           KeyLimits
	Kind             string    // KindManaged or KindRegistered
	Provider         string    // registered keys: the backing provider, may be ""
	AccountID        string    // registered keys: the account, may be ""
	IdempotencyKey   string    // registered keys: the issuing request's idempotency key
	ExpiresAt        time.Time // zero: never
	RevokedAt        time.Time // zero: live
	Budget           *Budget   // nil: no budget
	Scopes           []string  // what the key may do beyond /v1 (ScopeIssue, ScopeManage, ScopeMCP)
	IssuerID         string    // registered keys: the key that issued it, "" for the management login
}

// ScopeIssue lets a key issue registered keys within its own policy,
// limits and budget, and list and revoke those it issued.
const ScopeIssue = "issue"

// ScopeManage lets a key call the management API under /api/ (as the
// dashboard login may); ScopeMCP lets it use the MCP transports.
const (
	ScopeManage = "manage"
	ScopeMCP    = "mcp"
)

const keyColumns = `k.id, k.name, k.prefix, k.key_hash, k.allowed_models, k.created_at, k.last_used_at,
	k.allowed_providers, k.rpm, k.rpd, k.tpm, k.tpd, k.kind, k.provider, k.account_id, k.idempotency_key, k.expires_at, k.revoked_at,
	k.scopes, k.issuer_id, b.hourly_usd, b.daily_usd, b.weekly_usd, b.monthly_usd, b.warning_threshold, b.reset_interval, b.reset_time, b.updated_at`

const keyFrom = ` FROM route_api_keys k LEFT JOIN route_key_budgets b ON b.key_id = k.id`

func scanKey(row scanner) (APIKey, error) {
	var k APIKey
	var allowed, providers, scopes string
	var created int64
	var used, expires, revoked sql.NullInt64
	var hourly, daily, weekly, monthly, warn sql.NullFloat64
	var interval, resetTime sql.NullString
	var updated sql.NullInt64
	if err := row.Scan(&k.ID, &k.Name, &k.Prefix, &k.Hash, &allowed, &created, &used,
		&providers, &k.Limits.RPM, &k.Limits.RPD, &k.Limits.TPM, &k.Limits.TPD, &k.Kind, &k.Provider, &k.AccountID, &k.IdempotencyKey,
		&expires, &revoked, &scopes, &k.IssuerID, &hourly, &daily, &weekly, &monthly, &warn, &interval, &resetTime, &updated); err != nil {
		return k, err
	}
	k.CreatedAt, k.LastUsedAt = fromMS(created), fromNull(used)
	k.ExpiresAt, k.RevokedAt = fromNull(expires), fromNull(revoked)
	if updated.Valid {
		k.Budget = &Budget{KeyID: k.ID, HourlyUSD: hourly.Float64, DailyUSD: daily.Float64, WeeklyUSD: weekly.Float64,
			MonthlyUSD: monthly.Float64, WarningThreshold: warn.Float64, ResetInterval: interval.String, ResetTime: resetTime.String,
			UpdatedAt: fromMS(updated.Int64)}
	}
	if err := fromJSON(providers, &k.AllowedProviders); err != nil {
		return k, err
	}
	if err := fromJSON(scopes, &k.Scopes); err != nil {
		return k, err
	}
	return k, fromJSON(allowed, &k.AllowedModels)
}

// APIKeys lists the gateway keys (revoked ones too), oldest first.
func (s *Store) APIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.db.Query(ctx, `SELECT `+keyColumns+keyFrom+` ORDER BY k.created_at, k.id`)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanKey)
}

// CreateAPIKey stores a key (its hash) and its budget, if any.
func (s *Store) CreateAPIKey(ctx context.Context, k APIKey) error {
	return s.write(ctx, func(tx *sqldb.Tx) error { return insertKey(ctx, tx, k) })
}

// DeleteAPIKey removes a key.
func (s *Store) DeleteAPIKey(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM route_key_budgets WHERE key_id = ?`, id); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `DELETE FROM route_api_keys WHERE id = ?`, id)
		return mustAffect(res, err, "api key "+id)
	})
}

// TouchAPIKeys records that the keys were used at t. It does not bump the
// epoch: usage times change no routing.
func (s *Store) TouchAPIKeys(ctx context.Context, ids []string, t time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		for _, id := range ids {
			if _, err := tx.Exec(ctx, `UPDATE route_api_keys SET last_used_at = ? WHERE id = ?`, ms(t), id); err != nil {
				return err
			}
		}
		return nil
	})
}

// ---- aliases ----

// Alias maps a model name to another.
type Alias struct {
	Name      string
	Target    string
	CreatedAt time.Time
}

// Aliases lists the stored aliases by name.
func (s *Store) Aliases(ctx context.Context) ([]Alias, error) {
	rows, err := s.db.Query(ctx, `SELECT name, target, created_at FROM route_aliases ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, func(r scanner) (Alias, error) {
		var a Alias
		var created int64
		err := r.Scan(&a.Name, &a.Target, &created)
		a.CreatedAt = fromMS(created)
		return a, err
	})
}

// SetAlias creates or replaces an alias; created reports which.
func (s *Store) SetAlias(ctx context.Context, a Alias) (created bool, err error) {
	err = s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE route_aliases SET target = ? WHERE name = ?`, a.Target, a.Name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		created = true
		_, err = tx.Exec(ctx, `INSERT INTO route_aliases (name, target, created_at) VALUES (?, ?, ?)`, a.Name, a.Target, ms(s.now()))
		return conflict(err, "alias "+a.Name)
	})
	return created, err
}

// DeleteAlias removes an alias.
func (s *Store) DeleteAlias(ctx context.Context, name string) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM route_aliases WHERE name = ?`, name)
		return mustAffect(res, err, "alias "+name)
	})
}

// ---- combos ----

// Target is one "provider/model" of a combo.
type Target struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
	Weight   int    `json:"weight,omitempty"`
}

// Combo is a named list of targets tried by a strategy.
type Combo struct {
	Name      string
	Strategy  string
	Targets   []Target
	CreatedAt time.Time
	UpdatedAt time.Time
}

func scanCombo(r scanner) (Combo, error) {
	var c Combo
	var targets string
	var created, updated int64
	if err := r.Scan(&c.Name, &c.Strategy, &targets, &created, &updated); err != nil {
		return c, err
	}
	c.CreatedAt, c.UpdatedAt = fromMS(created), fromMS(updated)
	return c, fromJSON(targets, &c.Targets)
}

// Combos lists the stored combos by name.
func (s *Store) Combos(ctx context.Context) ([]Combo, error) {
	rows, err := s.db.Query(ctx, `SELECT name, strategy, targets, created_at, updated_at FROM route_combos ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanCombo)
}

// Combo returns one stored combo.
func (s *Store) Combo(ctx context.Context, name string) (Combo, error) {
	c, err := scanCombo(s.db.QueryRow(ctx, `SELECT name, strategy, targets, created_at, updated_at FROM route_combos WHERE name = ?`, name))
	return c, notFound(err, "combo "+name)
}

// CreateCombo stores a new combo.
func (s *Store) CreateCombo(ctx context.Context, c Combo) error {
	now := ms(s.now())
	return s.write(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO route_combos (name, strategy, targets, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
			c.Name, c.Strategy, toJSON(c.Targets), now, now)
		return conflict(err, "combo "+c.Name)
	})
}

// UpdateCombo replaces a stored combo's strategy and targets.
func (s *Store) UpdateCombo(ctx context.Context, c Combo) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE route_combos SET strategy = ?, targets = ?, updated_at = ? WHERE name = ?`,
			c.Strategy, toJSON(c.Targets), ms(s.now()), c.Name)
		return mustAffect(res, err, "combo "+c.Name)
	})
}

// DeleteCombo removes a combo.
func (s *Store) DeleteCombo(ctx context.Context, name string) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM route_combos WHERE name = ?`, name)
		return mustAffect(res, err, "combo "+name)
	})
}

// ---- model → combo mappings ----

// Mapping sends model names matching a glob pattern to a combo.
type Mapping struct {
	ID          string
	Pattern     string
	Combo       string
	Priority    int
	Enabled     bool
	Description string
	CreatedAt   time.Time
}

const mappingCols = `id, pattern, combo, priority, enabled, description, created_at`

func scanMapping(r scanner) (Mapping, error) {
	var m Mapping
	var created int64
	err := r.Scan(&m.ID, &m.Pattern, &m.Combo, &m.Priority, &m.Enabled, &m.Description, &created)
	m.CreatedAt = fromMS(created)
	return m, err
}

// Mappings lists the mappings by priority, then creation.
func (s *Store) Mappings(ctx context.Context) ([]Mapping, error) {
	rows, err := s.db.Query(ctx, `SELECT `+mappingCols+` FROM route_combo_mappings ORDER BY priority, created_at, id`)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, scanMapping)
}

// Mapping returns one mapping.
func (s *Store) Mapping(ctx context.Context, id string) (Mapping, error) {
	m, err := scanMapping(s.db.QueryRow(ctx, `SELECT `+mappingCols+` FROM route_combo_mappings WHERE id = ?`, id))
	return m, notFound(err, "mapping "+id)
}

// CreateMapping stores m (its id and creation time are filled when empty)
// and returns it.
func (s *Store) CreateMapping(ctx context.Context, m Mapping) (Mapping, error) {
	if m.ID == "" {
		m.ID = NewID("map_")
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = fromMS(ms(s.now()))
	}
	err := s.write(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO route_combo_mappings (`+mappingCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			m.ID, m.Pattern, m.Combo, m.Priority, m.Enabled, m.Description, ms(m.CreatedAt))
		return conflict(err, "mapping "+m.ID)
	})
	return m, err
}

// UpdateMapping replaces a mapping's fields.
func (s *Store) UpdateMapping(ctx context.Context, m Mapping) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE route_combo_mappings SET pattern = ?, combo = ?, priority = ?, enabled = ?, description = ? WHERE id = ?`,
			m.Pattern, m.Combo, m.Priority, m.Enabled, m.Description, m.ID)
		return mustAffect(res, err, "mapping "+m.ID)
	})
}

// DeleteMapping removes a mapping.
func (s *Store) DeleteMapping(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM route_combo_mappings WHERE id = ?`, id)
		return mustAffect(res, err, "mapping "+id)
	})
}

// ---- custom provider models ----

// ProviderModel is a model added to a provider's list, or a listed model
// marked hidden.
type ProviderModel struct {
	Provider  string
	Model     string
	Kind      string // chat, embedding, image
	Hidden    bool
	CreatedAt time.Time
}

// ProviderModels lists the custom models by provider and model.
func (s *Store) ProviderModels(ctx context.Context) ([]ProviderModel, error) {
	rows, err := s.db.Query(ctx, `SELECT provider, model, kind, hidden, created_at FROM route_provider_models ORDER BY provider, model`)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, func(r scanner) (ProviderModel, error) {
		var m ProviderModel
		var created int64
		err := r.Scan(&m.Provider, &m.Model, &m.Kind, &m.Hidden, &created)
		m.CreatedAt = fromMS(created)
		return m, err
	})
}

// AddProviderModel stores a custom model; an existing one is ErrConflict.
func (s *Store) AddProviderModel(ctx context.Context, m ProviderModel) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO route_provider_models (provider, model, kind, hidden, created_at) VALUES (?, ?, ?, ?, ?)`,
			m.Provider, m.Model, m.Kind, m.Hidden, ms(s.now()))
		return conflict(err, "model "+m.Provider+"/"+m.Model)
	})
}

// UpdateProviderModel changes a custom model's kind and visibility.
func (s *Store) UpdateProviderModel(ctx context.Context, m ProviderModel) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE route_provider_models SET kind = ?, hidden = ? WHERE provider = ? AND model = ?`,
			m.Kind, m.Hidden, m.Provider, m.Model)
		return mustAffect(res, err, "model "+m.Provider+"/"+m.Model)
	})
}

// DeleteProviderModel removes a custom model.
func (s *Store) DeleteProviderModel(ctx context.Context, provider, model string) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM route_provider_models WHERE provider = ? AND model = ?`, provider, model)
		return mustAffect(res, err, "model "+provider+"/"+model)
	})
}

// ---- pricing ----

// Price is an override in USD per million tokens for models matching a
// glob pattern.
type Price struct {
	Pattern    string
	Input      float64
	Output     float64
	CacheRead  float64
	CacheWrite float64
	MaxOutput  int // the most output tokens of one answer; 0: not set here
	// Unit and UnitPrice price a modality beyond chat in its own unit
	// (an llm.Unit): UnitPrice USD per Unit.Per() units (per 1,000
	// documents, per image …). Unit "" for a model priced in tokens only.
	Unit      string
	UnitPrice float64
	UpdatedAt time.Time
}

// Prices lists the overrides by pattern.
func (s *Store) Prices(ctx context.Context) ([]Price, error) {
	rows, err := s.db.Query(ctx, `SELECT pattern, input, output, cache_read, cache_write, max_output, unit, unit_price, updated_at FROM route_pricing ORDER BY pattern`)
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, func(r scanner) (Price, error) {
		var p Price
		var updated int64
		err := r.Scan(&p.Pattern, &p.Input, &p.Output, &p.CacheRead, &p.CacheWrite, &p.MaxOutput, &p.Unit, &p.UnitPrice, &updated)
		p.UpdatedAt = fromMS(updated)
		return p, err
	})
}

// SetPrice creates or replaces an override.
func (s *Store) SetPrice(ctx context.Context, p Price) error {
	now := ms(s.now())
	return s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE route_pricing SET input = ?, output = ?, cache_read = ?, cache_write = ?, max_output = ?, unit = ?, unit_price = ?,
			updated_at = ? WHERE pattern = ?`, p.Input, p.Output, p.CacheRead, p.CacheWrite, p.MaxOutput, p.Unit, p.UnitPrice, now, p.Pattern)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO route_pricing (pattern, input, output, cache_read, cache_write, max_output, unit, unit_price, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, p.Pattern, p.Input, p.Output, p.CacheRead, p.CacheWrite, p.MaxOutput, p.Unit, p.UnitPrice, now)
		return conflict(err, "price "+p.Pattern)
	})
}

// DeletePrice removes an override.
func (s *Store) DeletePrice(ctx context.Context, pattern string) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM route_pricing WHERE pattern = ?`, pattern)
		return mustAffect(res, err, "price "+pattern)
	})
}
