package cache

import (
	"net/http"

	"github.com/omniedge/omni/internal/platform/httpx"
)

// Handler serves the cache's management endpoints.
type Handler struct {
	Cache       *Cache
	Idempotency *Idempotency
}

// Stats is the body of GET /api/cache/stats.
type Stats struct {
	SemanticCache CacheStats       `json:"semanticCache"`
	Idempotency   IdempotencyStats `json:"idempotency"`
}

// IdempotencyStats describe an Idempotency.
type IdempotencyStats struct {
	ActiveKeys int   `json:"activeKeys"`
	WindowMs   int64 `json:"windowMs"`
}

// Cleared is the body of DELETE /api/cache/stats: what each layer held.
type Cleared struct {
	Cleared struct {
		Memory      int `json:"memory"`
		DB          int `json:"db"`
		Idempotency int `json:"idempotency"`
	} `json:"cleared"`
}

// Register adds GET and DELETE /api/cache/stats through route (the
// management API's guarded registration).
func (h *Handler) Register(route func(pattern string, h httpx.HandlerFunc)) {
	route("GET /api/cache/stats", h.stats)
	route("DELETE /api/cache/stats", h.clear)
}

func (h *Handler) stats(w http.ResponseWriter, r *http.Request) error {
	var s Stats
	if h.Cache != nil {
		cs, err := h.Cache.Stats(r.Context())
		if err != nil {
			return err
		}
		s.SemanticCache = cs
	}
	if h.Idempotency != nil {
		s.Idempotency = IdempotencyStats{ActiveKeys: h.Idempotency.ActiveKeys(), WindowMs: h.Idempotency.Window().Milliseconds()}
	}
	httpx.WriteJSON(w, http.StatusOK, s)
	return nil
}

func (h *Handler) clear(w http.ResponseWriter, r *http.Request) error {
	var c Cleared
	if h.Cache != nil {
		m, t, err := h.Cache.Clear(r.Context())
		if err != nil {
			return err
		}
		c.Cleared.Memory, c.Cleared.DB = m, t
	}
	if h.Idempotency != nil {
		c.Cleared.Idempotency = h.Idempotency.Clear(r.Context())
	}
	httpx.WriteJSON(w, http.StatusOK, c)
	return nil
}
