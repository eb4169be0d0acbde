package resilience

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/platform/httpx"
)

const maxBody = 64 << 10

// Register adds the management routes through route (the management
// API's guarded registration).
func (t *Tracker) Register(route func(pattern string, h httpx.HandlerFunc)) {
	route("GET /api/resilience", t.getResilience)
	route("PATCH /api/resilience", t.patchResilience)
	route("POST /api/resilience/reset", t.postReset)
	route("GET /api/resilience/model-cooldowns", t.getLockouts)
	route("DELETE /api/resilience/model-cooldowns", t.deleteLockouts)
	route("GET /api/rate-limits", t.getRateLimits)
	route("GET /api/rate-limit", t.getRateLimit)
}

type overview struct {
	Settings Settings        `json:"settings"`
	Breakers []BreakerStatus `json:"breakers"`
	Queue    queueStatus     `json:"queue"`
	Shared   bool            `json:"shared"`
}

type queueStatus struct {
	Waiting   int64 `json:"waiting"`
	Size      int   `json:"size"`
	MaxWaitMS int64 `json:"max_wait_ms"`
}

func (t *Tracker) overview() overview {
	s := t.Settings()
	return overview{Settings: s, Breakers: t.Breakers(), Shared: t.Shared(),
		Queue: queueStatus{Waiting: t.Waiting(), Size: s.QueueSize, MaxWaitMS: s.QueueMaxWaitMS}}
}

func (t *Tracker) getResilience(w http.ResponseWriter, r *http.Request) error {
	httpx.WriteJSON(w, http.StatusOK, t.overview())
	return nil
}

// patch holds the fields a PATCH may change; absent ones keep their value.
type patch struct {
	BreakerThreshold *int   `json:"breaker_threshold"`
	BreakerCooloffMS *int64 `json:"breaker_cooloff_ms"`
	CooldownBaseMS   *int64 `json:"cooldown_base_ms"`
	CooldownMaxMS    *int64 `json:"cooldown_max_ms"`
	LockoutEnabled   *bool  `json:"lockout_enabled"`
	LockoutMS        *int64 `json:"lockout_ms"`
	QueueSize        *int   `json:"queue_size"`
	QueueMaxWaitMS   *int64 `json:"queue_max_wait_ms"`
}

// decodeStrict decodes a JSON object and refuses unknown fields, so a
// misspelt setting is a 400 rather than silently ignored.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := httpx.ReadBody(w, r, maxBody)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return httpx.BadRequest("invalid JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return httpx.BadRequest("invalid JSON body: trailing data")
	}
	return nil
}

func (t *Tracker) patchResilience(w http.ResponseWriter, r *http.Request) error {
	var p patch
	if err := decodeStrict(w, r, &p); err != nil {
		return err
	}
	s := t.Settings()
	set := func(dst *int64, v *int64) {
		if v != nil {
			*dst = *v
		}
	}
	if p.BreakerThreshold != nil {
		s.BreakerThreshold = *p.BreakerThreshold
	}
	set(&s.BreakerCooloffMS, p.BreakerCooloffMS)
	set(&s.CooldownBaseMS, p.CooldownBaseMS)
	set(&s.CooldownMaxMS, p.CooldownMaxMS)
	if p.LockoutEnabled != nil {
		s.LockoutEnabled = *p.LockoutEnabled
	}
	set(&s.LockoutMS, p.LockoutMS)
	if p.QueueSize != nil {
		s.QueueSize = *p.QueueSize
	}
	set(&s.QueueMaxWaitMS, p.QueueMaxWaitMS)
	if err := t.SetSettings(r.Context(), s); err != nil {
		var ie *InvalidError
		if errors.As(err, &ie) {
			return httpx.BadRequest("%s", ie.Error())
		}
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, t.overview())
	return nil
}

// optionalBody is true when the request carries a body to decode.
func optionalBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
}

func (t *Tracker) postReset(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Provider string `json:"provider"`
		All      bool   `json:"all"`
	}
	if optionalBody(r) {
		if err := decodeStrict(w, r, &body); err != nil {
			return err
		}
	}
	sc := Scope{Breakers: true, Provider: body.Provider}
	if body.All || body.Provider != "" {
		sc.Cooldowns, sc.Lockouts = true, true
	}
	n := t.Reset(r.Context(), sc)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"reset": n, "breakers": t.Breakers()})
	return nil
}

func (t *Tracker) getLockouts(w http.ResponseWriter, r *http.Request) error {
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"enabled": t.Settings().LockoutEnabled, "lockouts": t.Lockouts()})
	return nil
}

func (t *Tracker) deleteLockouts(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Provider string `json:"provider"`
		Model    string `json:"model"`
		All      bool   `json:"all"`
	}
	if err := decodeStrict(w, r, &body); err != nil {
		return err
	}
	var sc Scope
	switch {
	case body.All && body.Provider == "" && body.Model == "":
		sc = Scope{Lockouts: true}
	case !body.All && body.Provider != "" && body.Model != "":
		sc = Scope{Lockouts: true, Provider: body.Provider, Model: body.Model}
	default:
		return httpx.BadRequest(`body must be {"provider": …, "model": …} or {"all": true}`)
	}
	n := t.Reset(r.Context(), sc)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"cleared": n})
	return nil
}

func (t *Tracker) getRateLimits(w http.ResponseWriter, r *http.Request) error {
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"connections": t.Cooldowns(), "breakers": t.Breakers()})
	return nil
}

type layer struct {
	Statuses []int  `json:"statuses"` // upstream statuses that count (0: transport failure or timeout)
	Scope    string `json:"scope"`
}

func (t *Tracker) getRateLimit(w http.ResponseWriter, r *http.Request) error {
	s := t.Settings()
	httpx.WriteJSON(w, http.StatusOK, map[string]any{
		"breaker": map[string]any{"layer": layer{Statuses: []int{0, 408, 500, 502, 503, 504}, Scope: "provider"},
			"threshold": s.BreakerThreshold, "cooloff_ms": s.BreakerCooloffMS},
		"cooldown": map[string]any{"layer": layer{Statuses: []int{0, 401, 408, 429, 500, 502, 503, 504}, Scope: "connection"},
			"base_ms": s.CooldownBaseMS, "max_ms": s.CooldownMaxMS, "honours_retry_after": true},
		"lockout": map[string]any{"layer": layer{Statuses: []int{404, 429}, Scope: "provider, connection, model"},
			"enabled": s.LockoutEnabled, "duration_ms": s.LockoutMS},
		"queue":  queueStatus{Waiting: t.Waiting(), Size: s.QueueSize, MaxWaitMS: s.QueueMaxWaitMS},
		"shared": t.Shared(),
	})
	return nil
}
