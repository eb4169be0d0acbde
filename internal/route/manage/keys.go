package manage

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/store"
)

// ---- gateway API keys ----

// registerKeys adds the gateway key routes: management of keys and
// their policy (behind the dashboard login), registered keys and the quota
// check (a gateway API key, or the dashboard login).
func (m *Manager) registerKeys(mux *http.ServeMux, guarded func(string, httpx.HandlerFunc)) {
	guarded("GET /api/keys", m.listKeys)
	guarded("POST /api/keys", m.createKey)
	guarded("GET /api/keys/{id}", m.getKey)
	guarded("PATCH /api/keys/{id}", m.patchKey)
	guarded("DELETE /api/keys/{id}", m.deleteKey)
	guarded("GET /api/settings/registered-keys", m.getRegisteredSettings)
	guarded("PUT /api/settings/registered-keys", m.putRegisteredSettings)

	keyed := func(pattern string, h httpx.HandlerFunc) { mux.Handle(pattern, noStore(m.gatewayAuth(h))) }
	keyed("GET /api/v1/registered-keys", m.listRegistered)
	keyed("POST /api/v1/registered-keys", m.issueRegistered)
	keyed("GET /api/v1/registered-keys/{id}", m.getRegistered)
	keyed("DELETE /api/v1/registered-keys/{id}", m.revokeRegistered)
	keyed("POST /api/v1/registered-keys/{id}/revoke", m.revokeRegistered)
	keyed("GET /v1/quotas/check", m.quotaCheck)
}

// Refresh reloads the stored state (keys, their policy and budgets) at
// once, for packages that change it through the store (route/limits).
func (m *Manager) Refresh(ctx context.Context) error { return m.reload(ctx, false) }

// gatewayAuth admits requests carrying a gateway API key (a config key or
// a live stored key) as a Bearer token or x-api-key (no web page can
// send one); without one, the management checks and login apply.
func (m *Manager) gatewayAuth(h httpx.HandlerFunc) httpx.HandlerFunc {
	guarded := m.checked(m.guard(h), jsonTypes)
	return func(w http.ResponseWriter, r *http.Request) error {
		raw := r.Header.Get("x-api-key")
		if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			raw = strings.TrimSpace(a[7:])
		}
		if raw == "" {
			return guarded(w, r)
		}
		sum := sha256.Sum256([]byte(raw))
		for _, k := range m.opt.Route.APIKeys {
			ks := sha256.Sum256([]byte(k.Reveal()))
			if subtle.ConstantTimeCompare(sum[:], ks[:]) == 1 {
				return h(w, r)
			}
		}
		if _, ok := m.keys.Lookup(r.Context(), raw); ok {
			return h(w, r)
		}
		return httpx.Unauthorized("invalid API key")
	}
}

// ---- gateway API keys ----

type keyJSON struct {
	ID               string   `json:"id"`
	Name             string   `json:"name"`
	Key              string   `json:"key,omitempty"`
	Prefix           string   `json:"prefix"`
	Kind             string   `json:"kind"`
	AllowedModels    []string `json:"allowed_models"`
	AllowedProviders []string `json:"allowed_providers"`
	RPM              int64    `json:"rpm"`
	RPD              int64    `json:"rpd"`
	TPM              int64    `json:"tpm"`
	TPD              int64    `json:"tpd"`
	Budget           any      `json:"budget"`
	CreatedAt        any      `json:"created_at"`
	LastUsedAt       any      `json:"last_used_at"`
	RevokedAt        any      `json:"revoked_at,omitempty"`
	ExpiresAt        any      `json:"expires_at,omitempty"`
}

func toKeyJSON(k store.APIKey) keyJSON {
	out := keyJSON{ID: k.ID, Name: k.Name, Prefix: k.Prefix, Kind: k.Kind, AllowedModels: k.AllowedModels,
		AllowedProviders: k.AllowedProviders, RPM: k.Limits.RPM, RPD: k.Limits.RPD, TPM: k.Limits.TPM, TPD: k.Limits.TPD,
		CreatedAt: k.CreatedAt}
	if out.AllowedModels == nil {
		out.AllowedModels = []string{}
	}
	if out.AllowedProviders == nil {
		out.AllowedProviders = []string{}
	}
	if out.Kind == "" {
		out.Kind = store.KindManaged
	}
	if !k.LastUsedAt.IsZero() {
		out.LastUsedAt = k.LastUsedAt
	}
	if !k.RevokedAt.IsZero() {
		out.RevokedAt = k.RevokedAt
	}
	if !k.ExpiresAt.IsZero() {
		out.ExpiresAt = k.ExpiresAt
	}
	if b := k.Budget; b != nil {
		out.Budget = map[string]any{"hourlyLimitUsd": b.HourlyUSD, "dailyLimitUsd": b.DailyUSD, "weeklyLimitUsd": b.WeeklyUSD,
			"monthlyLimitUsd": b.MonthlyUSD, "warningThreshold": b.WarningThreshold, "resetInterval": b.ResetInterval, "resetTime": b.ResetTime}
	}
	return out
}

func (m *Manager) listKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := m.store.APIKeys(r.Context())
	if err != nil {
		return err
	}
	out := make([]keyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, toKeyJSON(k))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"keys": out})
	return nil
}

func (m *Manager) getKey(w http.ResponseWriter, r *http.Request) error {
	k, err := m.store.APIKey(r.Context(), r.PathValue("id"))
	if err != nil {
		return storeError(err)
	}
	httpx.WriteJSON(w, http.StatusOK, toKeyJSON(k))
	return nil
}

// keyPolicy is the policy part of POST and PATCH /api/keys; absent fields
// are left unchanged by PATCH.
type keyPolicy struct {
	Name             *string   `json:"name"`
	AllowedModels    *[]string `json:"allowed_models"`
	AllowedProviders *[]string `json:"allowed_providers"`
	RPM              *int64    `json:"rpm"`
	RPD              *int64    `json:"rpd"`
	TPM              *int64    `json:"tpm"`
	TPD              *int64    `json:"tpd"`
}

// apply checks p and applies it to k.
func (p keyPolicy) apply(k *store.APIKey) error {
	if p.Name != nil {
		n := strings.TrimSpace(*p.Name)
		if n == "" || len(n) > 100 {
			return httpx.BadRequest(`"name" is required (at most 100 characters)`)
		}
		k.Name = n
	}
	if p.AllowedModels != nil {
		for _, pat := range *p.AllowedModels {
			if err := checkPattern(pat, "allowed_models"); err != nil {
				return err
			}
		}
		k.AllowedModels = *p.AllowedModels
	}
	if p.AllowedProviders != nil {
		for _, id := range *p.AllowedProviders {
			if id == "" || len(id) > 64 {
				return httpx.BadRequest(`"allowed_providers" holds provider ids (1 to 64 characters)`)
			}
		}
		k.AllowedProviders = *p.AllowedProviders
	}
	for _, f := range []struct {
		name string
		v    *int64
		dst  *int64
	}{{"rpm", p.RPM, &k.Limits.RPM}, {"rpd", p.RPD, &k.Limits.RPD}, {"tpm", p.TPM, &k.Limits.TPM}, {"tpd", p.TPD, &k.Limits.TPD}} {
		if f.v == nil {
			continue
		}
		if *f.v < 0 {
			return httpx.BadRequest("%q must be 0 (unlimited) or more", f.name)
		}
		*f.dst = *f.v
	}
	return nil
}

func (m *Manager) createKey(w http.ResponseWriter, r *http.Request) error {
	var b keyPolicy
	if err := decode(w, r, &b); err != nil {
		return err
	}
	if b.Name == nil {
		return httpx.BadRequest(`"name" is required (at most 100 characters)`)
	}
	raw := auth.RandomToken("sk-omni-", 32)
	k := store.APIKey{ID: store.NewID("key_"), Prefix: raw[:12], Hash: auth.TokenHash(raw), Kind: store.KindManaged,
		CreatedAt: m.clock.Now().UTC().Truncate(1e6)}
	if err := b.apply(&k); err != nil {
		return err
	}
	err := m.store.CreateAPIKey(r.Context(), k)
	return m.change(w, r, http.StatusCreated, func() any {
		out := toKeyJSON(k)
		out.Key = raw
		return out
	}, err)
}

func (m *Manager) patchKey(w http.ResponseWriter, r *http.Request) error {
	var b keyPolicy
	if err := decode(w, r, &b); err != nil {
		return err
	}
	k, err := m.store.APIKey(r.Context(), r.PathValue("id"))
	if err != nil {
		return storeError(err)
	}
	if err := b.apply(&k); err != nil {
		return err
	}
	err = m.store.UpdateAPIKey(r.Context(), k)
	return m.change(w, r, http.StatusOK, func() any { return toKeyJSON(k) }, err)
}

func (m *Manager) deleteKey(w http.ResponseWriter, r *http.Request) error {
	return m.change(w, r, http.StatusNoContent, nil, m.store.DeleteAPIKey(r.Context(), r.PathValue("id")))
}

// ---- registered keys ----

// SettingRegisteredPerAccount is the setting holding the most live
// registered keys one (provider, accountId) may hold.
const SettingRegisteredPerAccount = "registered_keys_per_account"

// DefaultRegisteredPerAccount is that quota when none is set.
const DefaultRegisteredPerAccount = 10

func (m *Manager) registeredQuota(ctx context.Context) (int, error) {
	v, ok, err := m.store.Setting(ctx, SettingRegisteredPerAccount)
	if err != nil || !ok {
		return DefaultRegisteredPerAccount, err
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return DefaultRegisteredPerAccount, nil
	}
	return n, nil
}

func (m *Manager) getRegisteredSettings(w http.ResponseWriter, r *http.Request) error {
	n, err := m.registeredQuota(r.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"maxKeysPerAccount": n})
	return nil
}

func (m *Manager) putRegisteredSettings(w http.ResponseWriter, r *http.Request) error {
	var b struct {
		Max *int `json:"maxKeysPerAccount"`
	}
	if err := decode(w, r, &b); err != nil {
		return err
	}
	if b.Max == nil || *b.Max < 0 || *b.Max > 1_000_000 {
		return httpx.BadRequest(`"maxKeysPerAccount" must be 0 (no limit) to 1000000`)
	}
	if err := m.store.SetSetting(r.Context(), SettingRegisteredPerAccount, strconv.Itoa(*b.Max)); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"maxKeysPerAccount": *b.Max})
	return nil
}

type registeredJSON struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	Key          string     `json:"key,omitempty"`
	KeyPrefix    string     `json:"keyPrefix"`
	Provider     string     `json:"provider,omitempty"`
	AccountID    string     `json:"accountId,omitempty"`
	Status       string     `json:"status"` // active, revoked, expired
	DailyBudget  float64    `json:"dailyBudget,omitempty"`
	HourlyBudget float64    `json:"hourlyBudget,omitempty"`
	ExpiresAt    *time.Time `json:"expiresAt"`
	RevokedAt    *time.Time `json:"revokedAt"`
	CreatedAt    time.Time  `json:"createdAt"`
	LastUsedAt   *time.Time `json:"lastUsedAt"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (m *Manager) toRegistered(k store.APIKey) registeredJSON {
	out := registeredJSON{ID: k.ID, Name: k.Name, KeyPrefix: k.Prefix + "…", Provider: k.Provider, AccountID: k.AccountID,
		Status: "active", ExpiresAt: timePtr(k.ExpiresAt), RevokedAt: timePtr(k.RevokedAt), CreatedAt: k.CreatedAt,
		LastUsedAt: timePtr(k.LastUsedAt)}
	switch {
	case !k.RevokedAt.IsZero():
		out.Status = "revoked"
	case !k.ExpiresAt.IsZero() && !m.clock.Now().Before(k.ExpiresAt):
		out.Status = "expired"
	}
	if k.Budget != nil {
		out.DailyBudget, out.HourlyBudget = k.Budget.DailyUSD, k.Budget.HourlyUSD
	}
	return out
}

func (m *Manager) listRegistered(w http.ResponseWriter, r *http.Request) error {
	keys, err := m.store.APIKeys(r.Context())
	if err != nil {
		return err
	}
	provider, account := r.URL.Query().Get("provider"), r.URL.Query().Get("accountId")
	out := []registeredJSON{}
	for _, k := range keys {
		if k.Kind != store.KindRegistered || (provider != "" && k.Provider != provider) || (account != "" && k.AccountID != account) {
			continue
		}
		out = append(out, m.toRegistered(k))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"keys": out, "total": len(out)})
	return nil
}

func (m *Manager) registered(ctx context.Context, id string) (store.APIKey, error) {
	k, err := m.store.APIKey(ctx, id)
	if err != nil {
		return k, storeError(err)
	}
	if k.Kind != store.KindRegistered {
		return k, httpx.NotFound("no registered key %q", id)
	}
	return k, nil
}

func (m *Manager) getRegistered(w http.ResponseWriter, r *http.Request) error {
	k, err := m.registered(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, m.toRegistered(k))
	return nil
}

func (m *Manager) revokeRegistered(w http.ResponseWriter, r *http.Request) error {
	k, err := m.registered(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	err = m.store.RevokeAPIKey(r.Context(), k.ID, m.clock.Now().UTC().Truncate(time.Millisecond))
	if err == nil {
		k, err = m.store.APIKey(r.Context(), k.ID)
	}
	return m.change(w, r, http.StatusOK, func() any { return m.toRegistered(k) }, err)
}

func checkBudget(name string, v *float64) (float64, error) {
	if v == nil {
		return 0, nil
	}
	if *v < 0 || math.IsNaN(*v) || math.IsInf(*v, 0) || *v > 1e9 {
		return 0, httpx.BadRequest("%q must be a USD amount from 0 to 1e9", name)
	}
	return *v, nil
}

func (m *Manager) issueRegistered(w http.ResponseWriter, r *http.Request) error {
	var b struct {
		Name           string   `json:"name"`
		Provider       string   `json:"provider"`
		AccountID      string   `json:"accountId"`
		IdempotencyKey string   `json:"idempotencyKey"`
		ExpiresAt      string   `json:"expiresAt"`
		DailyBudget    *float64 `json:"dailyBudget"`
		HourlyBudget   *float64 `json:"hourlyBudget"`
	}
	if err := decode(w, r, &b); err != nil {
		return err
	}
	b.Name = strings.TrimSpace(b.Name)
	if b.Name == "" || len(b.Name) > 100 {
		return httpx.BadRequest(`"name" is required (at most 100 characters)`)
	}
	if len(b.Provider) > 64 || len(b.AccountID) > 200 || len(b.IdempotencyKey) > 200 {
		return httpx.BadRequest(`"provider" (64), "accountId" and "idempotencyKey" (200 characters) are too long`)
	}
	if k := r.Header.Get("Idempotency-Key"); b.IdempotencyKey == "" && len(k) <= 200 {
		b.IdempotencyKey = k
	}
	now := m.clock.Now().UTC().Truncate(time.Millisecond)
	k := store.APIKey{ID: store.NewID("key_"), Name: b.Name, Kind: store.KindRegistered, Provider: b.Provider,
		AccountID: b.AccountID, IdempotencyKey: b.IdempotencyKey, CreatedAt: now}
	if b.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339, b.ExpiresAt)
		if err != nil {
			return httpx.BadRequest(`"expiresAt" must be an RFC 3339 time`)
		}
		if !t.After(now) {
			return httpx.BadRequest(`"expiresAt" must be in the future`)
		}
		k.ExpiresAt = t.UTC().Truncate(time.Millisecond)
	}
	daily, err := checkBudget("dailyBudget", b.DailyBudget)
	if err != nil {
		return err
	}
	hourly, err := checkBudget("hourlyBudget", b.HourlyBudget)
	if err != nil {
		return err
	}
	if daily > 0 || hourly > 0 {
		k.Budget = &store.Budget{DailyUSD: daily, HourlyUSD: hourly, WarningThreshold: 0.8, ResetTime: "00:00", UpdatedAt: now}
	}
	raw := auth.RandomToken("sk-omni-", 32)
	k.Prefix, k.Hash = raw[:12], auth.TokenHash(raw)
	quota, err := m.registeredQuota(r.Context())
	if err != nil {
		return err
	}
	got, created, err := m.store.IssueRegisteredKey(r.Context(), k, quota, now)
	if errors.Is(err, store.ErrQuota) {
		return &httpx.Error{Status: http.StatusTooManyRequests, Code: "quota_exceeded", Message: err.Error()}
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK // the earlier issue with this idempotency key; its raw key is not shown again
	}
	return m.change(w, r, status, func() any {
		out := m.toRegistered(got)
		if created {
			out.Key = raw
		}
		return out
	}, err)
}

// quotaCheck answers whether a registered key may be issued now for a
// provider and account: live keys against the per-account quota.
func (m *Manager) quotaCheck(w http.ResponseWriter, r *http.Request) error {
	provider, account := r.URL.Query().Get("provider"), r.URL.Query().Get("accountId")
	if len(provider) > 64 || len(account) > 200 {
		return httpx.BadRequest(`"provider" or "accountId" is too long`)
	}
	quota, err := m.registeredQuota(r.Context())
	if err != nil {
		return err
	}
	n, err := m.store.LiveRegisteredKeys(r.Context(), provider, account, m.clock.Now())
	if err != nil {
		return err
	}
	out := map[string]any{"provider": provider, "accountId": account, "activeKeys": n, "maxKeys": quota, "allowed": true}
	if quota > 0 {
		out["remaining"] = max(0, quota-n)
		if n >= quota {
			out["allowed"] = false
			out["reason"] = fmt.Sprintf("account already holds %d live registered keys (at most %d)", n, quota)
		}
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}
