package keys_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/config"
)

func TestKeysGateV1(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Route.RequireAPIKey = true
		c.Route.APIKeys = []config.Secret{"config-key-1"}
	})
	e.Login()
	e.WantError(http.StatusBadRequest, "POST", "/api/keys", map[string]string{"name": " "})
	r := e.Want(http.StatusCreated, "POST", "/api/keys", map[string]string{"name": "ci"}).Object(t)
	raw, _ := r["key"].(string)
	id, _ := r["id"].(string)
	prefix, _ := r["prefix"].(string)
	if !strings.HasPrefix(raw, "sk-omni-") || len(raw) < 40 || id == "" || !strings.HasPrefix(raw, prefix) || r["created_at"] == nil {
		t.Fatalf("created key = %v", r)
	}

	list := e.Want(http.StatusOK, "GET", "/api/keys", nil)
	if strings.Contains(string(list.Body), raw) || strings.Contains(string(list.Body), raw[12:]) || !strings.Contains(string(list.Body), prefix) {
		t.Fatalf("key list leaks the key or lacks its prefix: %s", list.Body)
	}
	var n int
	if err := e.DB.QueryRow(context.Background(), `SELECT COUNT(*) FROM route_api_keys WHERE key_hash = ? OR prefix = ?`, raw, raw).Scan(&n); err != nil || n != 0 {
		t.Fatalf("raw key stored (%d rows, %v)", n, err)
	}

	e.WantError(http.StatusUnauthorized, "GET", "/v1/models", nil)
	e.WantError(http.StatusUnauthorized, "GET", "/v1/models", nil, bearer("sk-omni-not-a-key")...)
	e.Want(http.StatusOK, "GET", "/v1/models", nil, bearer(raw)...)
	e.Want(http.StatusOK, "GET", "/v1/models", nil, "x-api-key", raw)
	e.Want(http.StatusOK, "GET", "/v1/models", nil, bearer("config-key-1")...)

	e.Want(http.StatusNoContent, "DELETE", "/api/keys/"+id, nil)
	e.WantError(http.StatusNotFound, "DELETE", "/api/keys/"+id, nil)
	e.WantError(http.StatusUnauthorized, "GET", "/v1/models", nil, bearer(raw)...)
	e.Want(http.StatusOK, "GET", "/v1/models", nil, bearer("config-key-1")...)
}

func TestBadInputIs4xx(t *testing.T) {
	e := newEnv(t, nil)
	e.Login()
	cases := []struct {
		status       int
		method, path string
		body         any
	}{
		{400, "POST", "/api/keys", map[string]any{"name": 5}},
		{400, "POST", "/api/keys", map[string]any{"name": "k", "allowed_models": []string{"["}}},
	}
	for _, c := range cases {
		e.WantError(c.status, c.method, c.path, c.body)
	}
}
