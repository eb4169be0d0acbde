package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/omniedge/omni/internal/platform/sqldb"
)

// Key kinds.
const (
	KindManaged    = "managed"    // created with POST /api/keys
	KindRegistered = "registered" // issued with POST /api/v1/registered-keys
)

// ErrQuota is returned when issuing a registered key would exceed the
// account's quota.
var ErrQuota = errors.New("quota exceeded")

// KeyLimits are a key's request and token limits; 0 is unlimited.
type KeyLimits struct {
	RPM, RPD int64 // requests per minute, per day
	TPM, TPD int64 // tokens per minute, per day
}

// Budget is a key's spending limit in USD per period; 0 is no limit for
// that period.
type Budget struct {
	KeyID            string
	HourlyUSD        float64
	DailyUSD         float64
	WeeklyUSD        float64
	MonthlyUSD       float64
	WarningThreshold float64 // fraction of a limit at which the budget warns
	ResetInterval    string  // daily, weekly, monthly, or "" (the longest period with a limit)
	ResetTime        string  // HH:MM UTC at which periods start
	UpdatedAt        time.Time
}

// Spend is the settled spend of one key in one budget window.
type Spend struct {
	KeyID       string
	Period      string    // hourly, daily, weekly, monthly
	WindowStart time.Time // when the window began
	Micros      int64     // USD × 1e6
}

func insertKey(ctx context.Context, tx *sqldb.Tx, k APIKey) error {
	if k.AllowedModels == nil {
		k.AllowedModels = []string{}
	}
	if k.AllowedProviders == nil {
		k.AllowedProviders = []string{}
	}
	if k.Kind == "" {
		k.Kind = KindManaged
	}
	if k.Scopes == nil {
		k.Scopes = []string{}
	}
	_, err := tx.Exec(ctx, `INSERT INTO route_api_keys (id, name, prefix, key_hash, allowed_models, created_at,
		allowed_providers, rpm, rpd, tpm, tpd, kind, provider, account_id, idempotency_key, expires_at, scopes, issuer_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Name, k.Prefix, k.Hash, toJSON(k.AllowedModels), ms(k.CreatedAt),
		toJSON(k.AllowedProviders), k.Limits.RPM, k.Limits.RPD, k.Limits.TPM, k.Limits.TPD, k.Kind, k.Provider, k.AccountID,
		k.IdempotencyKey, nullMS(k.ExpiresAt), toJSON(k.Scopes), k.IssuerID)
	if err != nil {
		return conflict(err, "api key "+k.ID)
	}
	if k.Budget != nil {
		b := *k.Budget
		b.KeyID = k.ID
		return upsertBudget(ctx, tx, b)
	}
	return nil
}

func nullMS(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return ms(t)
}

// APIKey returns one key.
func (s *Store) APIKey(ctx context.Context, id string) (APIKey, error) {
	k, err := scanKey(s.db.QueryRow(ctx, `SELECT `+keyColumns+keyFrom+` WHERE k.id = ?`, id))
	return k, notFound(err, "api key "+id)
}

// APIKeyByHash returns the key whose raw value hashes (auth.TokenHash)
// to hash, revoked and expired ones too.
func (s *Store) APIKeyByHash(ctx context.Context, hash string) (APIKey, error) {
	k, err := scanKey(s.db.QueryRow(ctx, `SELECT `+keyColumns+keyFrom+` WHERE k.key_hash = ?`, hash))
	return k, notFound(err, "api key")
}

// UpdateAPIKey replaces a key's name, policy (allowed models and
// providers, limits) and scopes.
func (s *Store) UpdateAPIKey(ctx context.Context, k APIKey) error {
	if k.AllowedModels == nil {
		k.AllowedModels = []string{}
	}
	if k.AllowedProviders == nil {
		k.AllowedProviders = []string{}
	}
	if k.Scopes == nil {
		k.Scopes = []string{}
	}
	return s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE route_api_keys SET name = ?, allowed_models = ?, allowed_providers = ?,
			rpm = ?, rpd = ?, tpm = ?, tpd = ?, scopes = ? WHERE id = ?`,
			k.Name, toJSON(k.AllowedModels), toJSON(k.AllowedProviders), k.Limits.RPM, k.Limits.RPD, k.Limits.TPM, k.Limits.TPD,
			toJSON(k.Scopes), k.ID)
		return mustAffect(res, err, "api key "+k.ID)
	})
}

// RevokeAPIKey marks a key revoked at t; it stays listed. Revoking a
// revoked key changes nothing.
func (s *Store) RevokeAPIKey(ctx context.Context, id string, t time.Time) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE route_api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, ms(t), id)
		return mustAffect(res, err, "api key "+id)
	})
}

// IssueRegisteredKey stores a registered key unless the account
// (provider, account id) of its issuer (k.IssuerID; "" is the management
// login) already has max live keys, or the issuer perIssuer live keys in
// all (ErrQuota; <= 0: no limit). A key of the same issuer with the same
// non-empty idempotency key is returned instead (created false), whatever
// the quota.
func (s *Store) IssueRegisteredKey(ctx context.Context, k APIKey, max, perIssuer int, now time.Time) (_ APIKey, created bool, err error) {
	k.Kind = KindRegistered
	var existing string
	err = s.write(ctx, func(tx *sqldb.Tx) error {
		if err := tx.LockKey(ctx, "route-registered-keys"); err != nil {
			return err
		}
		if k.IdempotencyKey != "" {
			err := tx.QueryRow(ctx, `SELECT id FROM route_api_keys WHERE kind = ? AND issuer_id = ? AND idempotency_key = ?`,
				KindRegistered, k.IssuerID, k.IdempotencyKey).Scan(&existing)
			if err == nil {
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		if max > 0 {
			n, err := countLive(ctx, tx, k.IssuerID, k.Provider, k.AccountID, now)
			if err != nil {
				return err
			}
			if n >= max {
				return fmt.Errorf("%d live registered keys for provider %q account %q (at most %d): %w", n, k.Provider, k.AccountID, max, ErrQuota)
			}
		}
		if perIssuer > 0 && k.IssuerID != "" {
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM route_api_keys WHERE kind = ? AND issuer_id = ? AND revoked_at IS NULL
				AND (expires_at IS NULL OR expires_at > ?)`, KindRegistered, k.IssuerID, ms(now)).Scan(&n); err != nil {
				return err
			}
			if n >= perIssuer {
				return fmt.Errorf("the issuing key holds %d live registered keys (at most %d): %w", n, perIssuer, ErrQuota)
			}
		}
		return insertKey(ctx, tx, k)
	})
	if err != nil {
		return APIKey{}, false, err
	}
	if existing != "" {
		got, err := s.APIKey(ctx, existing)
		return got, false, err
	}
	got, err := s.APIKey(ctx, k.ID)
	return got, true, err
}

// LiveRegisteredKeys counts the registered keys an issuer ("" for the
// management login) issued for an account that are neither revoked nor
// expired at now.
func (s *Store) LiveRegisteredKeys(ctx context.Context, issuerID, provider, accountID string, now time.Time) (int, error) {
	var n int
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		n, err = countLive(ctx, tx, issuerID, provider, accountID, now)
		return err
	})
	return n, err
}

func countLive(ctx context.Context, tx *sqldb.Tx, issuerID, provider, accountID string, now time.Time) (int, error) {
	var n int
	err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM route_api_keys WHERE kind = ? AND issuer_id = ? AND provider = ? AND account_id = ?
		AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)`, KindRegistered, issuerID, provider, accountID, ms(now)).Scan(&n)
	return n, err
}

// SetBudget creates or replaces a key's budget; an unknown key is
// ErrNotFound.
func (s *Store) SetBudget(ctx context.Context, b Budget) error {
	return s.write(ctx, func(tx *sqldb.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM route_api_keys WHERE id = ?`, b.KeyID).Scan(&one); err != nil {
			return notFound(err, "api key "+b.KeyID)
		}
		return upsertBudget(ctx, tx, b)
	})
}

func upsertBudget(ctx context.Context, tx *sqldb.Tx, b Budget) error {
	_, err := tx.Exec(ctx, `INSERT INTO route_key_budgets (key_id, hourly_usd, daily_usd, weekly_usd, monthly_usd,
		warning_threshold, reset_interval, reset_time, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (key_id) DO UPDATE SET hourly_usd = excluded.hourly_usd, daily_usd = excluded.daily_usd,
		weekly_usd = excluded.weekly_usd, monthly_usd = excluded.monthly_usd, warning_threshold = excluded.warning_threshold,
		reset_interval = excluded.reset_interval, reset_time = excluded.reset_time, updated_at = excluded.updated_at`,
		b.KeyID, b.HourlyUSD, b.DailyUSD, b.WeeklyUSD, b.MonthlyUSD, b.WarningThreshold, b.ResetInterval, b.ResetTime, ms(b.UpdatedAt))
	return err
}

// AddSpend adds settled spend to the persisted windows (replicas each add
// their own share). It does not bump the epoch.
func (s *Store) AddSpend(ctx context.Context, spends []Spend) error {
	if len(spends) == 0 {
		return nil
	}
	return s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		for _, sp := range spends {
			if _, err := tx.Exec(ctx, `INSERT INTO route_key_spend (key_id, period, window_start, spent_micros) VALUES (?, ?, ?, ?)
				ON CONFLICT (key_id, period, window_start) DO UPDATE SET spent_micros = route_key_spend.spent_micros + excluded.spent_micros`,
				sp.KeyID, sp.Period, ms(sp.WindowStart), sp.Micros); err != nil {
				return err
			}
		}
		return nil
	})
}

// Spends returns the persisted spend of the windows that began at or
// after since.
func (s *Store) Spends(ctx context.Context, since time.Time) ([]Spend, error) {
	rows, err := s.db.Query(ctx, `SELECT key_id, period, window_start, spent_micros FROM route_key_spend WHERE window_start >= ?`, ms(since))
	if err != nil {
		return nil, err
	}
	return sqldb.Collect(rows, func(r scanner) (Spend, error) {
		var sp Spend
		var start int64
		err := r.Scan(&sp.KeyID, &sp.Period, &start, &sp.Micros)
		sp.WindowStart = fromMS(start)
		return sp, err
	})
}
