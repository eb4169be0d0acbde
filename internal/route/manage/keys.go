package manage

import (
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/store"
)

// ---- gateway API keys ----

type keyJSON struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Key           string   `json:"key,omitempty"`
	Prefix        string   `json:"prefix"`
	AllowedModels []string `json:"allowed_models"`
	CreatedAt     any      `json:"created_at"`
	LastUsedAt    any      `json:"last_used_at"`
}

func toKeyJSON(k store.APIKey) keyJSON {
	out := keyJSON{ID: k.ID, Name: k.Name, Prefix: k.Prefix, AllowedModels: k.AllowedModels, CreatedAt: k.CreatedAt}
	if out.AllowedModels == nil {
		out.AllowedModels = []string{}
	}
	if !k.LastUsedAt.IsZero() {
		out.LastUsedAt = k.LastUsedAt
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

func (m *Manager) createKey(w http.ResponseWriter, r *http.Request) error {
	var b struct {
		Name          string   `json:"name"`
		AllowedModels []string `json:"allowed_models"`
	}
	if err := decode(w, r, &b); err != nil {
		return err
	}
	b.Name = strings.TrimSpace(b.Name)
	if b.Name == "" || len(b.Name) > 100 {
		return httpx.BadRequest(`"name" is required (at most 100 characters)`)
	}
	for _, p := range b.AllowedModels {
		if err := checkPattern(p, "allowed_models"); err != nil {
			return err
		}
	}
	raw := auth.RandomToken("sk-omni-", 32)
	k := store.APIKey{ID: store.NewID("key_"), Name: b.Name, Prefix: raw[:12], Hash: auth.TokenHash(raw),
		AllowedModels: b.AllowedModels, CreatedAt: m.clock.Now().UTC().Truncate(1e6)}
	err := m.store.CreateAPIKey(r.Context(), k)
	return m.change(w, r, http.StatusCreated, func() any {
		out := toKeyJSON(k)
		out.Key = raw
		return out
	}, err)
}

func (m *Manager) deleteKey(w http.ResponseWriter, r *http.Request) error {
	return m.change(w, r, http.StatusNoContent, nil, m.store.DeleteAPIKey(r.Context(), r.PathValue("id")))
}
