package policies

import (
	"errors"
	"net/http"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/feature"
)

// maxBody bounds a policy's request body (256 entries of 256 characters
// in each list fit).
const maxBody = 512 << 10

// Register adds the management routes through guarded (the dashboard
// session or a management key).
func (s *Service) Register(guarded feature.Registrar) {
	guarded("GET /api/policies", s.list)
	guarded("POST /api/policies", s.create)
	guarded("GET /api/policies/{id}", s.get)
	guarded("PUT /api/policies/{id}", s.update)
	guarded("DELETE /api/policies/{id}", s.delete)
}

// body is a policy as a client sends it; a field left out keeps its
// value on PUT (its default on POST).
type body struct {
	Name        *string   `json:"name"`
	Enabled     *bool     `json:"enabled"`
	Kind        *string   `json:"kind"`
	Keys        *[]string `json:"keys"`
	Providers   *[]string `json:"providers"`
	Models      *[]string `json:"models"`
	Priority    *int      `json:"priority"`
	Description *string   `json:"description"`
}

func (b *body) apply(p *Policy) {
	set := func(dst *[]string, src *[]string) {
		if src != nil {
			*dst = append([]string{}, (*src)...)
		}
	}
	if b.Name != nil {
		p.Name = *b.Name
	}
	if b.Enabled != nil {
		p.Enabled = *b.Enabled
	}
	if b.Kind != nil {
		p.Kind = *b.Kind
	}
	set(&p.Keys, b.Keys)
	set(&p.Providers, b.Providers)
	set(&p.Models, b.Models)
	if b.Priority != nil {
		p.Priority = *b.Priority
	}
	if b.Description != nil {
		p.Description = *b.Description
	}
}

func (s *Service) decode(w http.ResponseWriter, r *http.Request, p *Policy) error {
	var b body
	if err := httpx.DecodeJSON(w, r, &b, maxBody); err != nil {
		return err
	}
	b.apply(p)
	if err := p.validate(s.opt.Known); err != nil {
		var iv *invalid
		if errors.As(err, &iv) {
			e := httpx.BadRequest("%s", err.Error())
			e.Code = "invalid_policy"
			return e
		}
		return err
	}
	return nil
}

// storeError maps the store's errors to HTTP errors.
func storeError(err error) error {
	switch {
	case errors.Is(err, errNotFound):
		return httpx.NotFound("%s", err.Error())
	case errors.Is(err, errConflict):
		return httpx.Conflict("%s", err.Error())
	case errors.Is(err, errFull):
		return httpx.Errorf(http.StatusBadRequest, "too_many_policies", "%s", err.Error())
	}
	return err
}

// changed installs what was just written, then answers.
func (s *Service) changed(w http.ResponseWriter, r *http.Request, status int, v any, err error) error {
	if err != nil {
		return storeError(err)
	}
	if err := s.Load(r.Context()); err != nil {
		return err
	}
	if v == nil {
		w.WriteHeader(status)
		return nil
	}
	httpx.WriteJSON(w, status, v)
	return nil
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.opt.Store.List(r.Context())
	if err != nil {
		return err
	}
	if ps == nil {
		ps = []Policy{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"policies": ps})
	return nil
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	p, err := s.opt.Store.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return storeError(err)
	}
	httpx.WriteJSON(w, http.StatusOK, p)
	return nil
}

func (s *Service) create(w http.ResponseWriter, r *http.Request) error {
	p := Policy{Enabled: true, Keys: []string{}, Providers: []string{}, Models: []string{}}
	if err := s.decode(w, r, &p); err != nil {
		return err
	}
	p, err := s.opt.Store.Create(r.Context(), p, s.opt.Clock.Now())
	return s.changed(w, r, http.StatusCreated, p, err)
}

func (s *Service) update(w http.ResponseWriter, r *http.Request) error {
	p, err := s.opt.Store.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return storeError(err)
	}
	if err := s.decode(w, r, &p); err != nil {
		return err
	}
	p, err = s.opt.Store.Update(r.Context(), p, s.opt.Clock.Now())
	return s.changed(w, r, http.StatusOK, p, err)
}

func (s *Service) delete(w http.ResponseWriter, r *http.Request) error {
	return s.changed(w, r, http.StatusNoContent, nil, s.opt.Store.Delete(r.Context(), r.PathValue("id")))
}
