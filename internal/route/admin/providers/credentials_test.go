package providers_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Pointing a stored provider somewhere else (base URL, type or headers)
// would send its stored key there. A request that does so without giving
// the credentials again — a stolen or forged request, or a slip — is
// refused; the operator either re-enters them or says keep_credentials.
func TestProviderMoveNeedsItsCredentialsAgain(t *testing.T) {
	legit, attacker := newUpstream(t, "legit"), newUpstream(t, "attacker")
	e := newEnv(t, nil)
	e.Login()
	const secret = "sk-legit-provider-key-4242"
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{
		"id": "acme", "type": "openai", "base_url": legit.URL, "api_key": secret, "models": []string{"gpt-4o"},
		"headers": map[string]string{"X-Team": "blue"},
	})
	for _, change := range []map[string]any{
		{"base_url": attacker.URL},
		{"baseUrl": attacker.URL},
		{"base_url": attacker.URL, "models": []string{"gpt-4o", "o3"}},
		{"type": "openai-compatible", "base_url": attacker.URL},
		{"type": "openai-compatible"},
		{"headers": map[string]string{"X-Team": "red"}},
		{"base_url": attacker.URL, "keep_credentials": false},
	} {
		msg := e.WantError(http.StatusBadRequest, "PUT", "/api/providers/acme", change)
		if !strings.Contains(msg, "keep_credentials") || !strings.Contains(msg, "api_key") {
			t.Fatalf("%v: message %q does not say how to proceed", change, msg)
		}
		e.WantError(http.StatusBadRequest, "PATCH", "/api/providers/acme", change)
	}
	if got := e.ChatText("acme/gpt-4o"); got != "hi from legit" {
		t.Fatalf("chat answered %q", got)
	}
	if auths, _ := attacker.Calls(); len(auths) != 0 {
		t.Fatalf("the attacker's upstream received %q", auths)
	}
	// Unchanged values and other fields need nothing.
	e.Want(http.StatusOK, "PUT", "/api/providers/acme", map[string]any{"base_url": legit.URL, "type": "openai", "models": []string{"gpt-4o", "o3"}, "enabled": true,
		"headers": map[string]string{"X-Team": "blue"}})

	// Credentials given again: the new place gets only the new key.
	e.Want(http.StatusOK, "PUT", "/api/providers/acme", map[string]any{"base_url": attacker.URL, "api_key": "sk-for-the-new-place-0001"})
	e.ChatText("acme/gpt-4o")
	if auths, _ := attacker.Calls(); len(auths) != 1 || auths[0] != "Bearer sk-for-the-new-place-0001" {
		t.Fatalf("the new upstream received %q", auths)
	}
	// keep_credentials moves them deliberately.
	e.Want(http.StatusOK, "PUT", "/api/providers/acme", map[string]any{"base_url": legit.URL, "keep_credentials": true})
	e.ChatText("acme/gpt-4o")
	if auths, _ := legit.Calls(); auths[len(auths)-1] != "Bearer sk-for-the-new-place-0001" {
		t.Fatalf("after keep_credentials the upstream received %q", auths)
	}
	// A provider whose only credential is a header is protected the same way.
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{
		"id": "hdr", "type": "openai", "base_url": legit.URL, "models": []string{"m"},
		"headers": map[string]string{"Authorization": "Bearer hdr-only-secret-5555"},
	})
	e.WantError(http.StatusBadRequest, "PUT", "/api/providers/hdr", map[string]any{"base_url": attacker.URL})
	// Echoing the masked value read back is keeping it, not giving it.
	masked := e.Want(http.StatusOK, "GET", "/api/providers/hdr", nil).Object(t)["headers"].(map[string]any)["Authorization"].(string)
	e.WantError(http.StatusBadRequest, "PUT", "/api/providers/hdr", map[string]any{"base_url": attacker.URL, "headers": map[string]string{"Authorization": masked}})
	e.Want(http.StatusOK, "PUT", "/api/providers/hdr", map[string]any{"headers": map[string]string{"Authorization": masked, "X-Extra": "1"}, "keep_credentials": true})
	e.ChatText("hdr/m")
	if auths, _ := legit.Calls(); auths[len(auths)-1] != "Bearer hdr-only-secret-5555" {
		t.Fatalf("the masked echo replaced the header: upstream received %q", auths[len(auths)-1])
	}
	if auths, _ := attacker.Calls(); len(auths) != 1 {
		t.Fatalf("the attacker's upstream received %q", auths)
	}
}

// rowText is every column of every row of table as text.
func rowText(t *testing.T, e *env, table string) string {
	t.Helper()
	rows, err := e.DB.Query(context.Background(), `SELECT * FROM `+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out strings.Builder
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			fmt.Fprintf(&out, "%s=%s\n", cols[i], v)
		}
	}
	return out.String()
}

// Header values that are credentials are sealed at rest like API keys and
// masked when read back; the upstream still gets them.
func TestSensitiveProviderHeadersAreSealed(t *testing.T) {
	up := newUpstream(t, "up")
	e := newEnv(t, nil)
	e.Login()
	secrets := map[string]string{
		"Authorization":       "Bearer hdr-secret-auth-1111",
		"X-Goog-Api-Key":      "hdr-secret-goog-2222",
		"Cookie":              "session=hdr-secret-cookie-3333",
		"X-Org-Token":         "hdr-secret-token-4444",
		"api-key":             "hdr-secret-apikey-5555",
		"X-Client-Secret":     "hdr-secret-client-6666",
		"Proxy-Authorization": "Basic hdr-secret-proxy-7777",
	}
	headers := map[string]string{"X-Team": "blue"}
	for k, v := range secrets {
		headers[k] = v
	}
	r := e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "acme", "type": "openai", "base_url": up.URL, "models": []string{"m"}, "headers": headers})
	for _, body := range []string{string(r.Body), string(e.Want(http.StatusOK, "GET", "/api/providers/acme", nil).Body), string(e.Want(http.StatusOK, "GET", "/api/providers", nil).Body)} {
		for _, v := range secrets {
			if strings.Contains(body, v) || strings.Contains(body, v[len(v)-12:]) {
				t.Fatalf("a read shows %q: %s", v, body)
			}
		}
		if !strings.Contains(body, `"X-Team":"blue"`) {
			t.Fatalf("an ordinary header is hidden: %s", body)
		}
	}
	if stored := rowText(t, e, "route_providers"); strings.Contains(stored, "hdr-secret") || !strings.Contains(stored, "blue") {
		t.Fatalf("provider row at rest:\n%s", stored)
	}
	e.ChatText("acme/m")
	auths, _ := up.Calls()
	if len(auths) != 1 || auths[0] != secrets["Authorization"] {
		t.Fatalf("upstream received Authorization %q", auths)
	}
}

// A provider written before header values were sealed (or restored from
// such a backup) has its secret headers sealed when the gateway loads.
func TestPlaintextHeadersFromBeforeAreSealedOnLoad(t *testing.T) {
	up := newUpstream(t, "up")
	e := newEnv(t, nil)
	e.Login()
	if _, err := e.DB.Exec(context.Background(), `INSERT INTO route_providers (id, type, base_url, headers, models, enabled, created_at, updated_at)
		VALUES ('old', 'openai', ?, '{"Authorization":"Bearer old-plain-secret-9999","X-Team":"blue"}', '["m"]', TRUE, 1, 1)`, up.URL); err != nil {
		t.Fatal(err)
	}
	if err := e.App.State.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if stored := rowText(t, e, "route_providers"); strings.Contains(stored, "old-plain-secret") || !strings.Contains(stored, "blue") {
		t.Fatalf("provider row after load:\n%s", stored)
	}
	e.ChatText("old/m")
	if auths, _ := up.Calls(); len(auths) != 1 || auths[0] != "Bearer old-plain-secret-9999" {
		t.Fatalf("upstream received %q", auths)
	}
}
