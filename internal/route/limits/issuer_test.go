package limits_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func ids(t *testing.T, r resp) []string {
	t.Helper()
	var out []string
	for _, k := range r.Object(t)["keys"].([]any) {
		out = append(out, k.(map[string]any)["id"].(string))
	}
	return out
}

// Registered keys are issued only by the management login or by keys the
// operator gave the "issue" scope; an issued key stays within its
// issuer's policy, limits and budget, and issuers see and revoke only
// their own keys.
func TestRegisteredKeyIssuers(t *testing.T) {
	e := newEnv(t)
	const reg = "/api/v1/registered-keys"

	// Any other gateway key — stored without the scope, or from the config
	// file — may not issue, list, read or revoke.
	_, plain := e.createKey(map[string]any{"name": "plain"})
	for _, k := range []string{plain, "config-key-1"} {
		e.want(http.StatusForbidden, "POST", reg, map[string]any{"name": "x"}, bearer(k)...)
		e.want(http.StatusForbidden, "GET", reg, nil, bearer(k)...)
		e.want(http.StatusForbidden, "GET", "/v1/quotas/check?provider=a&accountId=x", nil, bearer(k)...)
	}
	e.want(http.StatusBadRequest, "POST", "/api/keys", map[string]any{"name": "x", "scopes": []string{"root"}})

	// Issuer A: models a/*, 2 requests a minute, $1 a day.
	aid, issuerA := e.createKey(map[string]any{"name": "issuer-a", "scopes": []string{"issue"}, "allowed_models": []string{"a/*"}, "rpm": 2})
	if got := e.want(http.StatusOK, "GET", "/api/keys/"+aid, nil).Object(t); len(got["scopes"].([]any)) != 1 || got["scopes"].([]any)[0] != "issue" {
		t.Fatalf("issuer key %v", got)
	}
	e.want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "a/m", "input": 1, "output": 2}) // $0.002 per answer
	e.want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": aid, "dailyLimitUsd": 1})

	// Nothing beyond its own policy, limits or budget.
	for _, b := range []map[string]any{
		{"name": "wide", "allowedModels": []string{"b/*"}},
		{"name": "wide", "allowedModels": []string{"*"}},
		{"name": "wide", "allowedProviders": []string{"b"}},
		{"name": "wide", "provider": "b", "accountId": "acct"},
		{"name": "fast", "rpm": 10},
		{"name": "fast", "rpm": 0}, // unlimited
		{"name": "rich", "dailyBudget": 5},
	} {
		if r := e.do("POST", reg, b, bearer(issuerA)...); r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), "issuer") {
			t.Fatalf("issuing %v beyond the issuer: %d %s", b, r.Status, r.Body)
		}
	}
	// Within it: what is not asked for is inherited.
	r := e.want(http.StatusCreated, "POST", reg, map[string]any{"name": "bot", "rpm": 1, "allowedModels": []string{"a/m"}}, bearer(issuerA)...).Object(t)
	kid, kraw := r["id"].(string), r["key"].(string)
	k := e.want(http.StatusOK, "GET", "/api/keys/"+kid, nil).Object(t)
	if k["rpm"].(float64) != 1 || k["allowed_models"].([]any)[0] != "a/m" || k["budget"] == nil ||
		k["budget"].(map[string]any)["dailyLimitUsd"].(float64) != 1 || len(k["scopes"].([]any)) != 0 {
		t.Fatalf("issued key %v", k)
	}
	e.want(http.StatusForbidden, "POST", "/v1/chat/completions", chat("b/m"), bearer(kraw)...)
	e.want(http.StatusOK, "POST", "/v1/chat/completions", chat("a/m"), bearer(kraw)...)
	e.want(http.StatusTooManyRequests, "POST", "/v1/chat/completions", chat("a/m"), bearer(kraw)...)
	// Its spend is its issuer's too: issuing keys does not multiply a budget.
	if s := e.spent(aid); s < 0.002 {
		t.Fatalf("issuer spent $%v after its key's $0.002 call", s)
	}
	// An issued key issues nothing.
	e.want(http.StatusForbidden, "POST", reg, map[string]any{"name": "grandchild"}, bearer(kraw)...)

	// Issuer B sees and revokes only its own keys, and its idempotency
	// keys are its own.
	_, issuerB := e.createKey(map[string]any{"name": "issuer-b", "scopes": []string{"issue"}})
	rb := e.want(http.StatusCreated, "POST", reg, map[string]any{"name": "b-bot", "idempotencyKey": "same"}, bearer(issuerB)...).Object(t)
	ra := e.want(http.StatusCreated, "POST", reg, map[string]any{"name": "a-bot", "idempotencyKey": "same"}, bearer(issuerA)...).Object(t)
	if ra["id"] == rb["id"] || ra["key"] == nil {
		t.Fatalf("issuer A got issuer B's key for the same idempotency key: %v", ra)
	}
	if got := ids(t, e.want(http.StatusOK, "GET", reg, nil, bearer(issuerB)...)); !slices.Equal(got, []string{rb["id"].(string)}) {
		t.Fatalf("issuer B lists %v", got)
	}
	if got := ids(t, e.want(http.StatusOK, "GET", reg, nil, bearer(issuerA)...)); len(got) != 2 || slices.Contains(got, rb["id"].(string)) {
		t.Fatalf("issuer A lists %v", got)
	}
	if got := ids(t, e.want(http.StatusOK, "GET", reg, nil)); len(got) != 3 { // the management login sees all
		t.Fatalf("the login lists %v", got)
	}
	e.want(http.StatusNotFound, "GET", reg+"/"+kid, nil, bearer(issuerB)...)
	e.want(http.StatusNotFound, "DELETE", reg+"/"+kid, nil, bearer(issuerB)...)
	e.want(http.StatusNotFound, "POST", reg+"/"+kid+"/revoke", nil, bearer(issuerB)...)
	if r := e.want(http.StatusOK, "GET", reg+"/"+kid, nil, bearer(issuerA)...).Object(t); r["status"] != "active" {
		t.Fatalf("after B's attempts: %v", r)
	}
	e.want(http.StatusOK, "DELETE", reg+"/"+kid, nil, bearer(issuerA)...)
	e.want(http.StatusUnauthorized, "POST", "/v1/chat/completions", chat("a/m"), bearer(kraw)...)
	e.want(http.StatusOK, "POST", reg+"/"+rb["id"].(string)+"/revoke", nil) // the login revokes any
}

// An issuing key issues at most issuesPerMinute registered keys a minute
// and holds at most maxKeysPerIssuer live ones (settings), each refused
// with a 429 that says so; revoked registered keys leave the gateway's
// memory, which keeps live keys only.
func TestRegisteredKeyIssuingIsBounded(t *testing.T) {
	e := newEnv(t)
	const reg = "/api/v1/registered-keys"
	got := e.want(http.StatusOK, "PUT", "/api/settings/registered-keys",
		map[string]any{"maxKeysPerIssuer": 2, "issuesPerMinute": 4, "maxKeysPerAccount": 0}).Object(t)
	if got["maxKeysPerIssuer"].(float64) != 2 || got["issuesPerMinute"].(float64) != 4 || got["maxKeysPerAccount"].(float64) != 0 {
		t.Fatalf("settings %v", got)
	}
	e.want(http.StatusBadRequest, "PUT", "/api/settings/registered-keys", map[string]any{"maxKeysPerIssuer": -1})
	e.want(http.StatusBadRequest, "PUT", "/api/settings/registered-keys", map[string]any{"perIssuer": 1})
	_, issuer := e.createKey(map[string]any{"name": "issuer", "scopes": []string{"issue"}})
	issue := func(name string) resp { return e.do("POST", reg, map[string]any{"name": name}, bearer(issuer)...) }

	k1 := issue("k1")
	k2 := issue("k2")
	if k1.Status != http.StatusCreated || k2.Status != http.StatusCreated {
		t.Fatalf("issuing: %d %s, %d %s", k1.Status, k1.Body, k2.Status, k2.Body)
	}
	if r := issue("k3"); r.Status != http.StatusTooManyRequests || !strings.Contains(string(r.Body), "at most 2") {
		t.Fatalf("a third live key for an issuer of two: %d %s", r.Status, r.Body)
	}
	id1 := k1.Object(t)["id"].(string)
	if _, ok := e.app.State.Keys().Key(id1); !ok {
		t.Fatal("a live registered key is not in memory")
	}
	e.want(http.StatusOK, "DELETE", reg+"/"+id1, nil, bearer(issuer)...)
	if _, ok := e.app.State.Keys().Key(id1); ok {
		t.Fatal("a revoked registered key is still kept in memory")
	}
	e.want(http.StatusUnauthorized, "POST", "/v1/chat/completions", chat("a/m"), bearer(k1.Object(t)["key"].(string))...)
	// Its slot is free again …
	if r := issue("k3"); r.Status != http.StatusCreated {
		t.Fatalf("issuing after a revocation: %d %s", r.Status, r.Body)
	}
	// … but the issuer has used its four issues of the minute.
	e.want(http.StatusOK, "DELETE", reg+"/"+k2.Object(t)["id"].(string), nil, bearer(issuer)...)
	r := issue("k4")
	if r.Status != http.StatusTooManyRequests || !strings.Contains(string(r.Body), "rate_limited") || r.Header.Get("Retry-After") == "" {
		t.Fatalf("a fifth issue within a minute: %d %s", r.Status, r.Body)
	}
	// The management login is not rate-limited as an issuer.
	e.want(http.StatusCreated, "POST", reg, map[string]any{"name": "by-login"})
}
