package prompting

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/platform/httpx"
)

// maxBody caps a PUT body: a prompt of MaxPromptBytes escaped in JSON
// (up to six bytes a byte) and a full exclude_keys list fit.
const maxBody = 512 << 10

// Register adds the management routes through route (the management
// API's guarded registration).
func (s *Service) Register(route func(pattern string, h httpx.HandlerFunc)) {
	route("GET /api/settings/system-prompt", s.getSystemPrompt)
	route("PUT /api/settings/system-prompt", s.putSystemPrompt)
	route("GET /api/settings/thinking-budget", s.getThinkingBudget)
	route("PUT /api/settings/thinking-budget", s.putThinkingBudget)
}

// decodeStrict decodes one JSON object and refuses unknown fields, so a
// misspelt setting is a 400 rather than silently ignored.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := httpx.ReadBody(w, r, maxBody)
	if err != nil {
		return err
	}
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' {
		return httpx.BadRequest("invalid JSON body: expected an object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return httpx.BadRequest("invalid JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return httpx.BadRequest("invalid JSON body: trailing data")
	}
	return nil
}

// updateError renders a refused update.
func updateError(err error) error {
	var ie *InvalidError
	switch {
	case errors.As(err, &ie):
		return httpx.BadRequest("%s", ie.Error())
	case errors.Is(err, ErrConflict):
		return httpx.Conflict("%s", strings.TrimPrefix(err.Error(), "prompting: "))
	}
	return err
}

func (s *Service) getSystemPrompt(w http.ResponseWriter, r *http.Request) error {
	sp, _, err := s.readPrompt(r.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, sp)
	return nil
}

// promptPatch holds the fields a PUT may set; absent ones keep their
// value.
type promptPatch struct {
	Enabled     *bool     `json:"enabled"`
	Prompt      *string   `json:"prompt"`
	Mode        *string   `json:"mode"`
	ExcludeKeys *[]string `json:"exclude_keys"`
}

func (s *Service) putSystemPrompt(w http.ResponseWriter, r *http.Request) error {
	var p promptPatch
	if err := decodeStrict(w, r, &p); err != nil {
		return err
	}
	if p.ExcludeKeys != nil && len(*p.ExcludeKeys) > MaxExcludedKeys {
		return httpx.BadRequest("exclude_keys: %d entries, at most %d", len(*p.ExcludeKeys), MaxExcludedKeys)
	}
	sp, err := s.UpdateSystemPrompt(r.Context(), func(sp *SystemPrompt) {
		if p.Enabled != nil {
			sp.Enabled = *p.Enabled
		}
		if p.Prompt != nil {
			sp.Prompt = *p.Prompt
		}
		if p.Mode != nil {
			sp.Mode = *p.Mode
		}
		if p.ExcludeKeys != nil {
			sp.ExcludeKeys = append([]string{}, *p.ExcludeKeys...)
		}
	})
	if err != nil {
		return updateError(err)
	}
	httpx.WriteJSON(w, http.StatusOK, sp)
	return nil
}

func (s *Service) getThinkingBudget(w http.ResponseWriter, r *http.Request) error {
	tb, _, err := s.readBudget(r.Context())
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, tb)
	return nil
}

// budgetPatch holds the fields a PUT may set; absent ones (and absent
// efforts) keep their value.
type budgetPatch struct {
	Mode          *string `json:"mode"`
	DefaultBudget *int    `json:"default_budget"`
	Efforts       *struct {
		Minimal *int `json:"minimal"`
		Low     *int `json:"low"`
		Medium  *int `json:"medium"`
		High    *int `json:"high"`
	} `json:"efforts"`
}

func (s *Service) putThinkingBudget(w http.ResponseWriter, r *http.Request) error {
	var p budgetPatch
	if err := decodeStrict(w, r, &p); err != nil {
		return err
	}
	tb, err := s.UpdateThinkingBudget(r.Context(), func(tb *ThinkingBudget) {
		set := func(dst *int, v *int) {
			if v != nil {
				*dst = *v
			}
		}
		if p.Mode != nil {
			tb.Mode = *p.Mode
		}
		set(&tb.DefaultBudget, p.DefaultBudget)
		if e := p.Efforts; e != nil {
			set(&tb.Efforts.Minimal, e.Minimal)
			set(&tb.Efforts.Low, e.Low)
			set(&tb.Efforts.Medium, e.Medium)
			set(&tb.Efforts.High, e.High)
		}
	})
	if err != nil {
		return updateError(err)
	}
	httpx.WriteJSON(w, http.StatusOK, tb)
	return nil
}
