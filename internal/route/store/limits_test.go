package store_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/store"
)

func TestKeyLimitsSQLite(t *testing.T) { testKeyLimits(t, openSQLite(t)) }

func TestKeyLimitsPostgres(t *testing.T) {
	testenv.Postgres(t)
	testKeyLimits(t, openPostgres(t))
}

func testKeyLimits(t *testing.T, s *store.Store) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	k := store.APIKey{ID: "key_1", Name: "ci", Prefix: "sk-omni-aaaa", Hash: "h1", CreatedAt: now,
		AllowedModels: []string{"gpt-*"}, AllowedProviders: []string{"oa"}, Limits: store.KeyLimits{RPM: 1, RPD: 2, TPM: 3, TPD: 4}}
	must(t, s.CreateAPIKey(ctx, k))
	got, err := s.APIKey(ctx, "key_1")
	must(t, err)
	if got.Kind != store.KindManaged || got.Limits != k.Limits || got.AllowedProviders[0] != "oa" || got.Budget != nil {
		t.Fatalf("key %+v", got)
	}
	got.Limits.RPM, got.AllowedProviders = 60, nil
	must(t, s.UpdateAPIKey(ctx, got))
	wantErr(t, s.UpdateAPIKey(ctx, store.APIKey{ID: "key_nope"}), store.ErrNotFound)

	b := store.Budget{KeyID: "key_1", DailyUSD: 5, WeeklyUSD: 30, WarningThreshold: 0.8, ResetInterval: "weekly", ResetTime: "06:30", UpdatedAt: now}
	must(t, s.SetBudget(ctx, b))
	b.DailyUSD = 6
	must(t, s.SetBudget(ctx, b))
	wantErr(t, s.SetBudget(ctx, store.Budget{KeyID: "key_nope", DailyUSD: 1, UpdatedAt: now}), store.ErrNotFound)
	got, err = s.APIKey(ctx, "key_1")
	must(t, err)
	if got.Limits.RPM != 60 || len(got.AllowedProviders) != 0 || got.Budget == nil || got.Budget.DailyUSD != 6 || got.Budget.ResetTime != "06:30" {
		t.Fatalf("updated key %+v budget %+v", got, got.Budget)
	}

	// Spend adds up per window.
	w := now.Truncate(24 * time.Hour)
	must(t, s.AddSpend(ctx, []store.Spend{{KeyID: "key_1", Period: "daily", WindowStart: w, Micros: 10}}))
	must(t, s.AddSpend(ctx, []store.Spend{{KeyID: "key_1", Period: "daily", WindowStart: w, Micros: 5},
		{KeyID: "key_1", Period: "daily", WindowStart: w.AddDate(0, 0, -40), Micros: 7}}))
	sp, err := s.Spends(ctx, now.AddDate(0, -1, 0))
	must(t, err)
	if len(sp) != 1 || sp[0].Micros != 15 || !sp[0].WindowStart.Equal(w) {
		t.Fatalf("spends %+v", sp)
	}

	// Registered keys: quota per account, idempotency, revocation, expiry.
	reg := func(id, idem string) store.APIKey {
		return store.APIKey{ID: id, Name: id, Prefix: "sk-omni-" + id, Hash: "h-" + id, CreatedAt: now, Provider: "oa", AccountID: "acct",
			IdempotencyKey: idem, Budget: &store.Budget{DailyUSD: 1, HourlyUSD: 0.5, UpdatedAt: now}}
	}
	r1, created, err := s.IssueRegisteredKey(ctx, reg("key_r1", "i1"), 2, 0, now)
	must(t, err)
	if !created || r1.Kind != store.KindRegistered || r1.Budget == nil || r1.Budget.HourlyUSD != 0.5 {
		t.Fatalf("issued %+v", r1)
	}
	again, created, err := s.IssueRegisteredKey(ctx, reg("key_r1b", "i1"), 2, 0, now)
	must(t, err)
	if created || again.ID != "key_r1" {
		t.Fatalf("idempotent issue %+v created %v", again, created)
	}
	r2 := reg("key_r2", "")
	r2.ExpiresAt = now.Add(time.Hour)
	_, _, err = s.IssueRegisteredKey(ctx, r2, 2, 0, now)
	must(t, err)
	_, _, err = s.IssueRegisteredKey(ctx, reg("key_r3", ""), 2, 0, now)
	wantErr(t, err, store.ErrQuota)
	n, err := s.LiveRegisteredKeys(ctx, "", "oa", "acct", now.Add(2*time.Hour)) // key_r2 expired
	must(t, err)
	if n != 1 {
		t.Fatalf("live keys after expiry %d", n)
	}
	must(t, s.RevokeAPIKey(ctx, "key_r1", now))
	must(t, s.RevokeAPIKey(ctx, "key_r1", now.Add(time.Minute))) // keeps the first time
	wantErr(t, s.RevokeAPIKey(ctx, "key_nope", now), store.ErrNotFound)
	r, err := s.APIKey(ctx, "key_r1")
	must(t, err)
	if !r.RevokedAt.Equal(now) {
		t.Fatalf("revoked at %v", r.RevokedAt)
	}
	n, err = s.LiveRegisteredKeys(ctx, "", "oa", "acct", now)
	must(t, err)
	if n != 1 {
		t.Fatalf("live keys after revoke %d", n)
	}

	// Concurrent issues never exceed the quota.
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			k := reg("key_c"+string(rune('a'+i)), "")
			k.AccountID = "busy"
			if _, _, err := s.IssueRegisteredKey(ctx, k, 3, 0, now); err == nil {
				ok.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if ok.Load() != 3 {
		t.Fatalf("%d concurrent issues succeeded with a quota of 3", ok.Load())
	}

	// Issuers: their scopes are kept; each has its own accounts, its own
	// idempotency keys and a cap on its live keys.
	issuer := store.APIKey{ID: "key_iss", Name: "iss", Prefix: "sk-omni-iss", Hash: "h-iss", CreatedAt: now, Scopes: []string{store.ScopeIssue}}
	must(t, s.CreateAPIKey(ctx, issuer))
	if got, err := s.APIKey(ctx, "key_iss"); err != nil || len(got.Scopes) != 1 || got.Scopes[0] != store.ScopeIssue {
		t.Fatalf("issuer %+v %v", got, err)
	}
	byIssuer := func(id, idem string) store.APIKey { k := reg(id, idem); k.IssuerID = "key_iss"; return k }
	first, created, err := s.IssueRegisteredKey(ctx, byIssuer("key_i1", "i1"), 2, 2, now) // the login's "acct" is full: not this issuer's
	must(t, err)
	if !created || first.IssuerID != "key_iss" {
		t.Fatalf("issued %+v (created %v)", first, created)
	}
	if again, created, err := s.IssueRegisteredKey(ctx, byIssuer("key_i1b", "i1"), 2, 2, now); err != nil || created || again.ID != "key_i1" {
		t.Fatalf("the issuer's own idempotency key: %+v %v %v", again, created, err)
	}
	other := byIssuer("key_i2", "")
	other.AccountID = "other"
	_, _, err = s.IssueRegisteredKey(ctx, other, 2, 2, now)
	must(t, err)
	third := byIssuer("key_i3", "")
	third.AccountID = "third"
	_, _, err = s.IssueRegisteredKey(ctx, third, 2, 2, now)
	wantErr(t, err, store.ErrQuota) // two live keys for this issuer in all
	if n, err := s.LiveRegisteredKeys(ctx, "key_iss", "oa", "acct", now); err != nil || n != 1 {
		t.Fatalf("the issuer's live keys for oa/acct: %d %v", n, err)
	}

	// Deleting a key drops its budget.
	must(t, s.DeleteAPIKey(ctx, "key_1"))
	keys, err := s.APIKeys(ctx)
	must(t, err)
	for _, k := range keys {
		if k.ID == "key_1" {
			t.Fatal("deleted key listed")
		}
	}
}
