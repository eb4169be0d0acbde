package a2a

import (
	"net/http"
	"slices"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/feature"
)

// maxListLimit is the largest page of GET /api/a2a/tasks.
const maxListLimit = 200

// RegisterAdmin adds the management helpers under /api/a2a/, behind the
// management login: they show every key's tasks.
func (s *Service) RegisterAdmin(a feature.Admin) {
	a.Guarded("GET /api/a2a/status", s.status)
	a.Guarded("GET /api/a2a/tasks", s.list)
	a.Guarded("POST /api/a2a/tasks", s.createREST)
	a.Guarded("GET /api/a2a/tasks/{id}", s.getREST)
	a.Guarded("POST /api/a2a/tasks/{id}/cancel", s.cancelREST)
}

func (s *Service) status(w http.ResponseWriter, r *http.Request) error {
	on, err := s.enabled(r.Context())
	if err != nil {
		return err
	}
	total, byState, bySkill := s.tasks.stats()
	c := s.card(r)
	ids := make([]string, len(c.Skills))
	for i, sk := range c.Skills {
		ids[i] = sk.ID
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{
		"enabled": on,
		"tasks":   map[string]any{"total": total, "byState": byState, "bySkill": bySkill},
		"card": map[string]any{"name": c.Name, "version": c.Version, "protocolVersion": c.ProtocolVersion,
			"url": c.URL, "streaming": c.Capabilities.Streaming, "skills": ids},
	})
	return nil
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	state := q.Get("state")
	if state == "cancelled" {
		state = StateCanceled
	}
	if state != "" && !slices.Contains(States, state) {
		return httpx.BadRequest(`"state" must be one of submitted, working, completed, failed, canceled (or cancelled)`)
	}
	skill := q.Get("skill")
	if skill != "" && !knownSkill(skill) {
		return httpx.BadRequest("unknown skill %q", truncate(skill, 64))
	}
	limit, err := httpx.QueryInt(r, "limit", 50, maxListLimit)
	if err != nil {
		return err
	}
	offset, err := httpx.QueryInt(r, "offset", 0, 1_000_000)
	if err != nil {
		return err
	}
	tasks, total := s.tasks.list(state, skill, limit, offset)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"tasks": tasks, "total": total, "limit": limit, "offset": offset})
	return nil
}

func (s *Service) createREST(http.ResponseWriter, *http.Request) error {
	return httpx.Errorf(http.StatusNotImplemented, "not_implemented",
		"tasks are created through JSON-RPC: POST /a2a with method message/send")
}

func (s *Service) getREST(w http.ResponseWriter, r *http.Request) error {
	t, owner, ok := s.tasks.get("", r.PathValue("id"), true)
	if !ok {
		return httpx.NotFound("no task %q", truncate(r.PathValue("id"), 128))
	}
	httpx.WriteJSON(w, http.StatusOK, entry{Task: t, Owner: owner})
	return nil
}

func (s *Service) cancelREST(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	t, err := s.tasks.cancelTask("", id, true)
	switch {
	case err == errNotCancelable:
		return httpx.Conflict("task %q has finished and cannot be canceled", truncate(id, 128))
	case err != nil:
		return httpx.NotFound("no task %q", truncate(id, 128))
	}
	_, owner, _ := s.tasks.get("", id, true)
	httpx.WriteJSON(w, http.StatusOK, entry{Task: t, Owner: owner})
	return nil
}
