// Package keys serves the gateway API keys under /api/keys: stored keys
// with their policy, limits and scopes; registered keys issued under
// /api/v1/registered-keys by a stored key with the issue scope (or the
// dashboard login), within the issuer's own policy, and their quotas;
// and /v1/quotas/check.
package keys

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/ratelimit"
	"github.com/omniedge/omni/internal/route/admin"
	"github.com/omniedge/omni/internal/route/events"
	"github.com/omniedge/omni/internal/route/store"
)

// Store is what the key endpoints need from the route store.
type Store interface {
	APIKeys(ctx context.Context) ([]store.APIKey, error)
	APIKey(ctx context.Context, id string) (store.APIKey, error)
	CreateAPIKey(ctx context.Context, k store.APIKey) error
	UpdateAPIKey(ctx context.Context, k store.APIKey) error
	DeleteAPIKey(ctx context.Context, id string) error
	RevokeAPIKey(ctx context.Context, id string, t time.Time) error
	IssueRegisteredKey(ctx context.Context, k store.APIKey, max, perIssuer int, now time.Time) (store.APIKey, bool, error)
	LiveRegisteredKeys(ctx context.Context, issuerID, provider, accountID string, now time.Time) (int, error)
	Setting(ctx context.Context, key string) (string, bool, error)
	SetSetting(ctx context.Context, key, value string) error
}

// KeySet finds stored gateway keys from memory (the routing state's).
type KeySet interface {
	Lookup(ctx context.Context, raw string) (string, bool)
	Key(id string) (store.APIKey, bool)
}

// AuthIssuer is who may call the registered-key routes, as the route
// list names it.
const AuthIssuer = "issuing gateway key, management session or key (manage)"

// Options configure the key endpoints.
type Options struct {
	Store      Store           // required
	Guard      *admin.Guard    // required
	Keys       KeySet          // required
	State      admin.Reloader  // installs every change (the routing state)
	ConfigKeys []config.Secret // the configuration file's gateway keys, which may not issue
	Clock      clock.Clock
	Events     events.Publisher // hears key.created and key.revoked (nil: none)
}

// Service serves the gateway key endpoints.
type Service struct {
	opt     Options
	store   Store
	guard   *admin.Guard
	keys    KeySet
	state   admin.Reloader
	clock   clock.Clock
	limiter ratelimit.Limiter
}

// New builds the key endpoints.
func New(opt Options) *Service {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	opt.Events = events.Or(opt.Events)
	return &Service{opt: opt, store: opt.Store, guard: opt.Guard, keys: opt.Keys, state: opt.State, clock: opt.Clock,
		limiter: ratelimit.NewMemory(opt.Clock)}
}

// Register adds the gateway key routes to mux: management of keys and
// their policy (behind the dashboard login), registered keys and the quota
// check (a stored key with the issue scope, or the dashboard login).
func (s *Service) Register(mux admin.Mux) {
	guarded := s.guard.Guarded(mux)
	guarded("GET /api/keys", s.listKeys)
	guarded("POST /api/keys", s.createKey)
	guarded("GET /api/keys/{id}", s.getKey)
	guarded("PATCH /api/keys/{id}", s.patchKey)
	guarded("DELETE /api/keys/{id}", s.deleteKey)
	guarded("GET /api/settings/registered-keys", s.getRegisteredSettings)
	guarded("PUT /api/settings/registered-keys", s.putRegisteredSettings)

	keyed := func(pattern string, h httpx.HandlerFunc) {
		mux.Handle(pattern, httpx.WithAuth(AuthIssuer, admin.NoStore(s.issuerAuth(h))))
	}
	keyed("GET /api/v1/registered-keys", s.listRegistered)
	keyed("POST /api/v1/registered-keys", s.issueRegistered)
	keyed("GET /api/v1/registered-keys/{id}", s.getRegistered)
	keyed("DELETE /api/v1/registered-keys/{id}", s.revokeRegistered)
	keyed("POST /api/v1/registered-keys/{id}/revoke", s.revokeRegistered)
	keyed("GET /v1/quotas/check", s.quotaCheck)
}

// issuerAuth admits requests carrying a live stored key that holds the
// issue scope (as a Bearer token or x-api-key), which then sees and
// revokes only the keys it issued (no web page can send one); without a
// key, the management checks and the dashboard login apply, which sees and
// may do everything, as does a management key (the manage scope without
// issue, as a Bearer token). Other gateway keys — stored
// without the scope, registered, or from the configuration file — are
// refused (403).
func (s *Service) issuerAuth(h httpx.HandlerFunc) httpx.HandlerFunc {
	guarded := s.guard.Protect(h)
	return func(w http.ResponseWriter, r *http.Request) error {
		raw := r.Header.Get("x-api-key")
		if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			raw = strings.TrimSpace(a[7:])
		}
		if raw == "" {
			return guarded(w, r)
		}
		if id, ok := s.keys.Lookup(r.Context(), raw); ok {
			k, _ := s.keys.Key(id)
			if k.Kind != store.KindRegistered && !slices.Contains(k.Scopes, store.ScopeIssue) && slices.Contains(k.Scopes, store.ScopeManage) {
				if _, bearer := admin.BearerToken(r); bearer {
					return guarded(w, r) // a management key acts as the login does
				}
			}
			if k.Kind == store.KindRegistered || !slices.Contains(k.Scopes, store.ScopeIssue) {
				return httpx.Forbidden("key %s may not manage registered keys: that needs a key with the %q scope, or the management login",
					k.Name, store.ScopeIssue)
			}
			ctx := context.WithValue(r.Context(), issuerKey{}, k)
			ctx = admin.WithActor(ctx, admin.Actor{Kind: admin.ActorKey, ID: k.ID, Name: k.Name, Addr: httpx.ClientIP(r, s.guard.TrustProxy())})
			return s.guard.Audited(h)(w, r.WithContext(ctx))
		}
		sum := sha256.Sum256([]byte(raw))
		for _, k := range s.opt.ConfigKeys {
			ks := sha256.Sum256([]byte(k.Reveal()))
			if subtle.ConstantTimeCompare(sum[:], ks[:]) == 1 {
				return httpx.Forbidden("configuration-file keys may not manage registered keys: use a stored key with the %q scope, or the management login",
					store.ScopeIssue)
			}
		}
		return httpx.Unauthorized("invalid API key")
	}
}

type issuerKey struct{}

// issuerOf returns the key a registered-key request acts as; ok is false
// for the management login.
func issuerOf(ctx context.Context) (store.APIKey, bool) {
	k, ok := ctx.Value(issuerKey{}).(store.APIKey)
	return k, ok
}

// Scopes a key may hold: issue (registered keys), manage (the management
// API), mcp (the MCP transports).
var knownScopes = []string{store.ScopeIssue, store.ScopeManage, store.ScopeMCP}

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
	Scopes           []string `json:"scopes"`
	IssuerID         string   `json:"issuer_id,omitempty"`
}

func toKeyJSON(k store.APIKey) keyJSON {
	out := keyJSON{ID: k.ID, Name: k.Name, Prefix: k.Prefix, Kind: k.Kind, AllowedModels: k.AllowedModels,
		AllowedProviders: k.AllowedProviders, RPM: k.Limits.RPM, RPD: k.Limits.RPD, TPM: k.Limits.TPM, TPD: k.Limits.TPD,
		CreatedAt: k.CreatedAt, Scopes: k.Scopes, IssuerID: k.IssuerID}
	if out.AllowedModels == nil {
		out.AllowedModels = []string{}
	}
	if out.Scopes == nil {
		out.Scopes = []string{}
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

func (s *Service) listKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.store.APIKeys(r.Context())
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

func (s *Service) getKey(w http.ResponseWriter, r *http.Request) error {
	k, err := s.store.APIKey(r.Context(), r.PathValue("id"))
	if err != nil {
		return admin.StoreError(err)
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
	Scopes           *[]string `json:"scopes"`
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
			if err := admin.CheckPattern(pat, "allowed_models"); err != nil {
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
	if p.Scopes != nil {
		scopes := []string{}
		for _, sc := range *p.Scopes {
			if !slices.Contains(knownScopes, sc) {
				return httpx.BadRequest(`"scopes" may hold %q only`, strings.Join(knownScopes, `", "`))
			}
			if !slices.Contains(scopes, sc) {
				scopes = append(scopes, sc)
			}
		}
		if len(scopes) > 0 && k.Kind == store.KindRegistered {
			return httpx.BadRequest(`"scopes": a registered key holds none (issued keys issue nothing)`)
		}
		k.Scopes = scopes
	}
	return nil
}

func (s *Service) createKey(w http.ResponseWriter, r *http.Request) error {
	var b keyPolicy
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	if b.Name == nil {
		return httpx.BadRequest(`"name" is required (at most 100 characters)`)
	}
	raw := auth.RandomToken("sk-omni-", 32)
	k := store.APIKey{ID: store.NewID("key_"), Prefix: raw[:12], Hash: auth.TokenHash(raw), Kind: store.KindManaged,
		CreatedAt: s.clock.Now().UTC().Truncate(1e6)}
	if err := b.apply(&k); err != nil {
		return err
	}
	err := s.store.CreateAPIKey(r.Context(), k)
	if err == nil {
		s.publish(r.Context(), events.KeyCreated, k)
	}
	return admin.Change(w, r, s.state, http.StatusCreated, func() any {
		out := toKeyJSON(k)
		out.Key = raw
		return out
	}, err)
}

func (s *Service) patchKey(w http.ResponseWriter, r *http.Request) error {
	var b keyPolicy
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	k, err := s.store.APIKey(r.Context(), r.PathValue("id"))
	if err != nil {
		return admin.StoreError(err)
	}
	if err := b.apply(&k); err != nil {
		return err
	}
	err = s.store.UpdateAPIKey(r.Context(), k)
	return admin.Change(w, r, s.state, http.StatusOK, func() any { return toKeyJSON(k) }, err)
}

func (s *Service) deleteKey(w http.ResponseWriter, r *http.Request) error {
	k, err := s.store.APIKey(r.Context(), r.PathValue("id"))
	if err == nil {
		err = s.store.DeleteAPIKey(r.Context(), k.ID)
	}
	if err == nil {
		s.publish(r.Context(), events.KeyRevoked, k)
	}
	return admin.Change(w, r, s.state, http.StatusNoContent, nil, err)
}

// KeyEvent is the data of a key.created or key.revoked event: which key,
// never its value.
type KeyEvent struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Prefix   string `json:"prefix"`
	Kind     string `json:"kind"`
	IssuerID string `json:"issuerId,omitempty"`
}

func (s *Service) publish(ctx context.Context, typ string, k store.APIKey) {
	s.opt.Events.Publish(ctx, events.Event{Type: typ, At: s.clock.Now(),
		Data: KeyEvent{ID: k.ID, Name: k.Name, Prefix: k.Prefix, Kind: string(k.Kind), IssuerID: k.IssuerID}})
}

// ---- registered keys ----

// SettingRegisteredPerAccount is the setting holding the most live
// registered keys one (provider, accountId) may hold.
const SettingRegisteredPerAccount = "registered_keys_per_account"

// DefaultRegisteredPerAccount is that quota when none is set.
const DefaultRegisteredPerAccount = 10

// SettingRegisteredPerIssuer holds the most live registered keys one
// issuing key may hold; SettingRegisteredIssueRate how many it may issue
// a minute.
const (
	SettingRegisteredPerIssuer = "registered_keys_per_issuer"
	SettingRegisteredIssueRate = "registered_keys_issue_rate"
)

// Their defaults when unset.
const (
	DefaultRegisteredPerIssuer = 1000
	DefaultRegisteredIssueRate = 30
)

// registeredSettings are the registered-key quotas, by their JSON names.
var registeredSettings = []struct {
	json, setting string
	def, max      int
}{
	{"maxKeysPerAccount", SettingRegisteredPerAccount, DefaultRegisteredPerAccount, 1_000_000},
	{"maxKeysPerIssuer", SettingRegisteredPerIssuer, DefaultRegisteredPerIssuer, 1_000_000},
	{"issuesPerMinute", SettingRegisteredIssueRate, DefaultRegisteredIssueRate, 100_000},
}

// intSetting reads a numeric setting; def when unset or unreadable.
func (s *Service) intSetting(ctx context.Context, name string, def int) (int, error) {
	v, ok, err := s.store.Setting(ctx, name)
	if err != nil || !ok {
		return def, err
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return def, nil
	}
	return n, nil
}

func (s *Service) registeredQuota(ctx context.Context) (int, error) {
	return s.intSetting(ctx, SettingRegisteredPerAccount, DefaultRegisteredPerAccount)
}

func (s *Service) getRegisteredSettings(w http.ResponseWriter, r *http.Request) error {
	out := map[string]any{}
	for _, rs := range registeredSettings {
		n, err := s.intSetting(r.Context(), rs.setting, rs.def)
		if err != nil {
			return err
		}
		out[rs.json] = n
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) putRegisteredSettings(w http.ResponseWriter, r *http.Request) error {
	var b map[string]*int
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	set := 0
	for _, rs := range registeredSettings {
		v, ok := b[rs.json]
		if !ok {
			continue
		}
		if v == nil || *v < 0 || *v > rs.max {
			return httpx.BadRequest("%q must be 0 (no limit) to %d", rs.json, rs.max)
		}
		set++
	}
	if set == 0 || set != len(b) {
		return httpx.BadRequest(`name "maxKeysPerAccount", "maxKeysPerIssuer" or "issuesPerMinute" (and nothing else)`)
	}
	for _, rs := range registeredSettings {
		if v, ok := b[rs.json]; ok {
			if err := s.store.SetSetting(r.Context(), rs.setting, strconv.Itoa(*v)); err != nil {
				return err
			}
		}
	}
	return s.getRegisteredSettings(w, r)
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
	// The key's own policy and limits (an issuer's are inherited).
	AllowedModels    []string `json:"allowedModels,omitempty"`
	AllowedProviders []string `json:"allowedProviders,omitempty"`
	RPM              int64    `json:"rpm,omitempty"`
	RPD              int64    `json:"rpd,omitempty"`
	TPM              int64    `json:"tpm,omitempty"`
	TPD              int64    `json:"tpd,omitempty"`
	IssuerID         string   `json:"issuerId,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (s *Service) toRegistered(k store.APIKey) registeredJSON {
	out := registeredJSON{ID: k.ID, Name: k.Name, KeyPrefix: k.Prefix + "…", Provider: k.Provider, AccountID: k.AccountID,
		Status: "active", ExpiresAt: timePtr(k.ExpiresAt), RevokedAt: timePtr(k.RevokedAt), CreatedAt: k.CreatedAt,
		LastUsedAt: timePtr(k.LastUsedAt), AllowedModels: k.AllowedModels, AllowedProviders: k.AllowedProviders,
		RPM: k.Limits.RPM, RPD: k.Limits.RPD, TPM: k.Limits.TPM, TPD: k.Limits.TPD, IssuerID: k.IssuerID}
	switch {
	case !k.RevokedAt.IsZero():
		out.Status = "revoked"
	case !k.ExpiresAt.IsZero() && !s.clock.Now().Before(k.ExpiresAt):
		out.Status = "expired"
	}
	if k.Budget != nil {
		out.DailyBudget, out.HourlyBudget = k.Budget.DailyUSD, k.Budget.HourlyUSD
	}
	return out
}

func (s *Service) listRegistered(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.store.APIKeys(r.Context())
	if err != nil {
		return err
	}
	issuer, byKey := issuerOf(r.Context())
	provider, account := r.URL.Query().Get("provider"), r.URL.Query().Get("accountId")
	out := []registeredJSON{}
	for _, k := range keys {
		if k.Kind != store.KindRegistered || (provider != "" && k.Provider != provider) || (account != "" && k.AccountID != account) ||
			byKey && k.IssuerID != issuer.ID {
			continue
		}
		out = append(out, s.toRegistered(k))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"keys": out, "total": len(out)})
	return nil
}

// registered returns a registered key the caller may see: any for the
// management login, an issuer's own otherwise (others are not found).
func (s *Service) registered(ctx context.Context, id string) (store.APIKey, error) {
	k, err := s.store.APIKey(ctx, id)
	if err != nil {
		return k, admin.StoreError(err)
	}
	issuer, byKey := issuerOf(ctx)
	if k.Kind != store.KindRegistered || byKey && k.IssuerID != issuer.ID {
		return store.APIKey{}, httpx.NotFound("no registered key %q", id)
	}
	return k, nil
}

func (s *Service) getRegistered(w http.ResponseWriter, r *http.Request) error {
	k, err := s.registered(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, s.toRegistered(k))
	return nil
}

func (s *Service) revokeRegistered(w http.ResponseWriter, r *http.Request) error {
	k, err := s.registered(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	err = s.store.RevokeAPIKey(r.Context(), k.ID, s.clock.Now().UTC().Truncate(time.Millisecond))
	if err == nil {
		s.publish(r.Context(), events.KeyRevoked, k)
		k, err = s.store.APIKey(r.Context(), k.ID)
	}
	return admin.Change(w, r, s.state, http.StatusOK, func() any { return s.toRegistered(k) }, err)
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

// issueBody is POST /api/v1/registered-keys.
type issueBody struct {
	Name             string    `json:"name"`
	Provider         string    `json:"provider"`
	AccountID        string    `json:"accountId"`
	IdempotencyKey   string    `json:"idempotencyKey"`
	ExpiresAt        string    `json:"expiresAt"`
	DailyBudget      *float64  `json:"dailyBudget"`
	HourlyBudget     *float64  `json:"hourlyBudget"`
	AllowedModels    *[]string `json:"allowedModels"`
	AllowedProviders *[]string `json:"allowedProviders"`
	RPM              *int64    `json:"rpm"`
	RPD              *int64    `json:"rpd"`
	TPM              *int64    `json:"tpm"`
	TPD              *int64    `json:"tpd"`
}

func (s *Service) issueRegistered(w http.ResponseWriter, r *http.Request) error {
	var b issueBody
	if err := admin.Decode(w, r, &b); err != nil {
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
	now := s.clock.Now().UTC().Truncate(time.Millisecond)
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
	if err := (keyPolicy{AllowedModels: b.AllowedModels, AllowedProviders: b.AllowedProviders, RPM: b.RPM, RPD: b.RPD, TPM: b.TPM,
		TPD: b.TPD}).apply(&k); err != nil {
		return err
	}
	perIssuer := 0
	if issuer, byKey := issuerOf(r.Context()); byKey {
		if err := withinIssuer(&k, issuer, b); err != nil {
			return err
		}
		if err := s.issueAllowed(r.Context(), issuer); err != nil {
			return err
		}
		k.IssuerID = issuer.ID
		var err error
		if perIssuer, err = s.intSetting(r.Context(), SettingRegisteredPerIssuer, DefaultRegisteredPerIssuer); err != nil {
			return err
		}
	}
	raw := auth.RandomToken("sk-omni-", 32)
	k.Prefix, k.Hash = raw[:12], auth.TokenHash(raw)
	quota, err := s.registeredQuota(r.Context())
	if err != nil {
		return err
	}
	got, created, err := s.store.IssueRegisteredKey(r.Context(), k, quota, perIssuer, now)
	if errors.Is(err, store.ErrQuota) {
		return &httpx.Error{Status: http.StatusTooManyRequests, Code: "quota_exceeded", Message: err.Error()}
	}
	status := http.StatusCreated
	if created && err == nil {
		s.publish(r.Context(), events.KeyCreated, got)
	}
	if !created {
		status = http.StatusOK // the earlier issue with this idempotency key; its raw key is not shown again
	}
	return admin.Change(w, r, s.state, status, func() any {
		out := s.toRegistered(got)
		if created {
			out.Key = raw
		}
		return out
	}, err)
}

// issueAllowed bounds how fast one issuing key issues registered keys
// (the issuesPerMinute setting, 0: no bound), in this replica: a burst of
// a minute's worth, then evenly.
func (s *Service) issueAllowed(ctx context.Context, issuer store.APIKey) error {
	n, err := s.intSetting(ctx, SettingRegisteredIssueRate, DefaultRegisteredIssueRate)
	if err != nil || n <= 0 {
		return err
	}
	d, err := s.limiter.Allow(ctx, "issue:"+issuer.ID, ratelimit.Limit{Rate: float64(n) / 60, Burst: n})
	if err != nil {
		return err
	}
	if !d.Allowed {
		return &httpx.Error{Status: http.StatusTooManyRequests, Code: "rate_limited", RetryAfter: d.RetryAfter,
			Message: fmt.Sprintf("key %s issued its %d registered keys of the last minute; retry later", issuer.Name, n)}
	}
	return nil
}

// withinIssuer holds a key an issuer is issuing to the issuer's own
// policy, limits and budget: what the request names must lie within them
// (else 403), and what it leaves out is the issuer's. The key's use also
// counts against the issuer's limits and budget (route/limits).
func withinIssuer(k *store.APIKey, issuer store.APIKey, b issueBody) error {
	beyond := func(format string, a ...any) error {
		return httpx.Forbidden("issuer key %s may not issue %s: beyond its own", issuer.Name, fmt.Sprintf(format, a...))
	}
	if len(issuer.AllowedModels) > 0 {
		if b.AllowedModels == nil || len(k.AllowedModels) == 0 {
			k.AllowedModels = slices.Clone(issuer.AllowedModels)
		}
		for _, p := range k.AllowedModels {
			if !coveredBy(p, issuer.AllowedModels) {
				return beyond("a key for models %q (it may use %s)", p, strings.Join(issuer.AllowedModels, ", "))
			}
		}
	}
	if len(issuer.AllowedProviders) > 0 && (b.AllowedProviders == nil || len(k.AllowedProviders) == 0) {
		k.AllowedProviders = slices.Clone(issuer.AllowedProviders)
	}
	for _, p := range append(slices.Clone(k.AllowedProviders), k.Provider) {
		if p != "" && !providerAllowed(p, issuer) {
			return beyond("a key for provider %q", p)
		}
	}
	for _, f := range []struct {
		name      string
		asked     *int64
		own, mine *int64
	}{{"rpm", b.RPM, &issuer.Limits.RPM, &k.Limits.RPM}, {"rpd", b.RPD, &issuer.Limits.RPD, &k.Limits.RPD},
		{"tpm", b.TPM, &issuer.Limits.TPM, &k.Limits.TPM}, {"tpd", b.TPD, &issuer.Limits.TPD, &k.Limits.TPD}} {
		if *f.own <= 0 {
			continue
		}
		if f.asked == nil {
			*f.mine = *f.own
		} else if *f.mine <= 0 || *f.mine > *f.own {
			return beyond("%s %d (its own is %d; 0 is unlimited)", f.name, *f.mine, *f.own)
		}
	}
	if ib := issuer.Budget; ib != nil {
		nb := *ib // what the request leaves out is the issuer's
		nb.KeyID = ""
		for _, f := range []struct {
			name  string
			asked *float64
			own   float64
			dst   *float64
		}{{"dailyBudget", b.DailyBudget, ib.DailyUSD, &nb.DailyUSD}, {"hourlyBudget", b.HourlyBudget, ib.HourlyUSD, &nb.HourlyUSD}} {
			if f.asked == nil || *f.asked == 0 {
				continue
			}
			if f.own > 0 && *f.asked > f.own {
				return beyond("a %s of $%g (its own is $%g)", f.name, *f.asked, f.own)
			}
			*f.dst = *f.asked
		}
		if k.Budget != nil {
			nb.UpdatedAt = k.Budget.UpdatedAt
		}
		k.Budget = &nb
	}
	return nil
}

// providerAllowed reports whether a key may use some model of provider p:
// p is among its allowed providers (if it has any), and one of its
// allowed-model patterns (if it has any) may name a model of p.
func providerAllowed(p string, k store.APIKey) bool {
	if len(k.AllowedProviders) > 0 && !slices.Contains(k.AllowedProviders, p) {
		return false
	}
	if len(k.AllowedModels) == 0 {
		return true
	}
	for _, q := range k.AllowedModels {
		prefix, _, qualified := strings.Cut(q, "/")
		if !qualified { // a bare model pattern may be served by any provider
			return true
		}
		if ok, _ := path.Match(prefix, p); ok {
			return true
		}
	}
	return false
}

// coveredBy reports whether the allowed-model pattern p allows nothing
// beyond patterns: it equals one of them, or is a plain name one of them
// matches.
func coveredBy(p string, patterns []string) bool {
	for _, q := range patterns {
		if p == q {
			return true
		}
		if !strings.ContainsAny(p, "*?[\\") {
			if ok, _ := path.Match(q, p); ok {
				return true
			}
		}
	}
	return false
}

// quotaCheck answers whether a registered key may be issued now for a
// provider and account: the caller's live keys for it against the
// per-account quota.
func (s *Service) quotaCheck(w http.ResponseWriter, r *http.Request) error {
	provider, account := r.URL.Query().Get("provider"), r.URL.Query().Get("accountId")
	if len(provider) > 64 || len(account) > 200 {
		return httpx.BadRequest(`"provider" or "accountId" is too long`)
	}
	quota, err := s.registeredQuota(r.Context())
	if err != nil {
		return err
	}
	issuer, _ := issuerOf(r.Context())
	n, err := s.store.LiveRegisteredKeys(r.Context(), issuer.ID, provider, account, s.clock.Now())
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
