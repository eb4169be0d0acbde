package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/events"
	"github.com/omniedge/omni/internal/route/feature"
)

// maxBody bounds a webhook's JSON body.
const maxBody = 64 << 10

// Register adds the management routes through add (behind the
// management login).
func (s *Service) Register(add feature.Registrar) {
	add("GET /api/webhooks", s.list)
	add("POST /api/webhooks", s.create)
	add("GET /api/webhooks/{id}", s.get)
	add("PUT /api/webhooks/{id}", s.update)
	add("DELETE /api/webhooks/{id}", s.remove)
	add("POST /api/webhooks/{id}/test", s.test)
	add("GET /api/webhooks/{id}/deliveries", s.listDeliveries)
}

// Webhook is a webhook as the API shows it; Secret is masked
// ("whsec_abcd...") but in the answer that created or changed it.
type Webhook struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Secret      string    `json:"secret"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

func toJSON(h hookRow) Webhook {
	return Webhook{ID: h.ID, URL: h.URL, Events: h.Events, Secret: h.SecretPrefix + "...", Description: h.Description,
		CreatedAt: time.UnixMilli(h.CreatedAt).UTC(), UpdatedAt: time.UnixMilli(h.UpdatedAt).UTC()}
}

// body is a POST or PUT body; absent fields keep their value on PUT.
type body struct {
	URL         *string   `json:"url"`
	Events      *[]string `json:"events"`
	Secret      *string   `json:"secret"`
	Description *string   `json:"description"`
}

// checkURL accepts an absolute http(s) URL with a host.
func checkURL(raw string) error {
	if len(raw) > MaxURL {
		return httpx.BadRequest(`"url" is longer than %d bytes`, MaxURL)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return httpx.BadRequest(`"url" must be an absolute http or https URL with a host`)
	}
	if u.Fragment != "" {
		return httpx.BadRequest(`"url" must have no fragment`)
	}
	return nil
}

func checkEvents(evs []string) ([]string, error) {
	if len(evs) == 0 {
		return nil, httpx.BadRequest(`"events" must list at least one event type, or "*"`)
	}
	if len(evs) > MaxEvents {
		return nil, httpx.BadRequest(`"events" lists more than %d entries`, MaxEvents)
	}
	out := make([]string, 0, len(evs))
	seen := map[string]bool{}
	for _, e := range evs {
		if e != "*" && !events.Known(e) {
			return nil, httpx.BadRequest(`unknown event type %q: the types are %v, or "*" for all`, clip(e), events.Types)
		}
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out, nil
}

// apply validates b and sets its fields on h; a new secret is returned
// in full (once), else "".
func (s *Service) apply(h *hookRow, b body, creating bool) (string, error) {
	if b.URL != nil {
		if err := checkURL(*b.URL); err != nil {
			return "", err
		}
		h.URL = *b.URL
	} else if creating {
		return "", httpx.BadRequest(`"url" is required`)
	}
	if b.Events != nil {
		evs, err := checkEvents(*b.Events)
		if err != nil {
			return "", err
		}
		h.Events = evs
	} else if creating {
		h.Events = []string{"*"}
	}
	if b.Description != nil {
		if utf8.RuneCountInString(*b.Description) > MaxDescription {
			return "", httpx.BadRequest(`"description" is longer than %d characters`, MaxDescription)
		}
		h.Description = *b.Description
	}
	var secret string
	switch {
	case b.Secret != nil && *b.Secret != "":
		if _, err := secretKey(*b.Secret); err != nil {
			return "", httpx.BadRequest(`"secret": %v`, err)
		}
		secret = *b.Secret
	case creating || b.Secret != nil: // "" on PUT: a new secret
		secret = newSecret()
	}
	if secret != "" {
		h.Secret = s.sealer.Seal([]byte(secret), []byte(h.ID))
		h.SecretPrefix = secret[:len(secretPrefix)+4]
	}
	return secret, nil
}

func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	rows, err := s.st.hooks(r.Context())
	if err != nil {
		return err
	}
	out := make([]Webhook, 0, len(rows))
	for _, h := range rows {
		out = append(out, toJSON(h))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"data": out})
	return nil
}

func (s *Service) create(w http.ResponseWriter, r *http.Request) error {
	var b body
	if err := httpx.DecodeJSON(w, r, &b, maxBody); err != nil {
		return err
	}
	now := s.clk.Now().UnixMilli()
	h := hookRow{ID: auth.RandomToken("wh_", 9), CreatedAt: now, UpdatedAt: now}
	secret, err := s.apply(&h, b, true)
	if err != nil {
		return err
	}
	if err := s.st.create(r.Context(), h, MaxWebhooks); errors.Is(err, errTooMany) {
		return httpx.Conflict("there are %d webhooks already, the most the gateway keeps", MaxWebhooks)
	} else if err != nil {
		return err
	}
	if err := s.reload(r.Context()); err != nil {
		return err
	}
	out := toJSON(h)
	out.Secret = secret
	httpx.WriteJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Service) hook(ctx context.Context, id string) (hookRow, error) {
	h, err := s.st.hook(ctx, id)
	if errors.Is(err, errNotFound) {
		return h, httpx.NotFound("no webhook %q", clip(id))
	}
	return h, err
}

func (s *Service) get(w http.ResponseWriter, r *http.Request) error {
	h, err := s.hook(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, toJSON(h))
	return nil
}

func (s *Service) update(w http.ResponseWriter, r *http.Request) error {
	var b body
	if err := httpx.DecodeJSON(w, r, &b, maxBody); err != nil {
		return err
	}
	h, err := s.hook(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	secret, err := s.apply(&h, b, false)
	if err != nil {
		return err
	}
	h.UpdatedAt = s.clk.Now().UnixMilli()
	if err := s.st.update(r.Context(), h); errors.Is(err, errNotFound) {
		return httpx.NotFound("no webhook %q", clip(h.ID))
	} else if err != nil {
		return err
	}
	if err := s.reload(r.Context()); err != nil {
		return err
	}
	out := toJSON(h)
	if secret != "" {
		out.Secret = secret
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) remove(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.st.remove(r.Context(), id); errors.Is(err, errNotFound) {
		return httpx.NotFound("no webhook %q", clip(id))
	} else if err != nil {
		return err
	}
	if err := s.reload(r.Context()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// TestResult is the answer of POST /api/webhooks/{id}/test.
type TestResult struct {
	ID         string `json:"id"` // the webhook-id sent
	Delivered  bool   `json:"delivered"`
	Status     int    `json:"status,omitempty"` // the endpoint's HTTP status
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"durationMs"`
}

// test sends a webhook.test event to the webhook now (not queued, not
// retried) and answers how it went.
func (s *Service) test(w http.ResponseWriter, r *http.Request) error {
	row, err := s.hook(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	key, err := s.openKey(row)
	if err != nil {
		return httpx.Errorf(http.StatusConflict, "secret_unreadable", "the webhook's secret cannot be opened with this master key: set a new secret")
	}
	now := s.clk.Now()
	body, _ := json.Marshal(payload{Type: "webhook.test", Timestamp: now.UTC(), Data: map[string]string{"webhookId": row.ID}})
	ctx, cancel := context.WithTimeout(r.Context(), TestTimeout)
	defer cancel()
	id := auth.RandomToken("msg_", 16)
	start := time.Now()
	status, err := s.send(ctx, &hook{ID: row.ID, URL: row.URL, Key: key}, id, body)
	res := TestResult{ID: id, Delivered: err == nil, Status: status, DurationMS: time.Since(start).Milliseconds()}
	if err != nil {
		res.Error = clip(err.Error())
	}
	httpx.WriteJSON(w, http.StatusOK, res)
	return nil
}

// Delivery is a delivery as the API shows it.
type Delivery struct {
	ID         string     `json:"id"`
	Event      string     `json:"event"`
	Status     string     `json:"status"` // pending, delivered, failed
	Attempts   int        `json:"attempts"`
	LastStatus int        `json:"lastStatus,omitempty"`
	LastError  string     `json:"lastError,omitempty"`
	NextAt     *time.Time `json:"nextAttemptAt,omitempty"` // while pending
	CreatedAt  time.Time  `json:"createdAt"`
	UpdatedAt  time.Time  `json:"updatedAt"`
}

// listDeliveries pages webhook id's deliveries, newest first:
// ?limit= (1–100, default 20) and ?after= the last id of the page before.
func (s *Service) listDeliveries(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := s.hook(r.Context(), id); err != nil {
		return err
	}
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return httpx.BadRequest(`"limit" must be a number from 1 to 100`)
		}
		limit = n
	}
	after := r.URL.Query().Get("after")
	if len(after) > 100 {
		return httpx.BadRequest(`"after" is not a delivery id`)
	}
	ds, err := s.st.deliveries(r.Context(), id, after, limit)
	if errors.Is(err, errNoDelivery) {
		return httpx.BadRequest(`"after" names no delivery of this webhook`)
	} else if err != nil {
		return err
	}
	more := len(ds) > limit
	ds = ds[:min(len(ds), limit)]
	out := make([]Delivery, 0, len(ds))
	for _, d := range ds {
		o := Delivery{ID: d.ID, Event: d.Event, Status: d.Status, Attempts: d.Attempts, LastStatus: d.LastStatus, LastError: d.LastError,
			CreatedAt: time.UnixMilli(d.CreatedAt).UTC(), UpdatedAt: time.UnixMilli(d.UpdatedAt).UTC()}
		if d.Status == statusPending {
			t := time.UnixMilli(d.NextAt).UTC()
			o.NextAt = &t
		}
		out = append(out, o)
	}
	res := map[string]any{"data": out, "hasMore": more}
	if more {
		res["nextAfter"] = ds[len(ds)-1].ID
	}
	httpx.WriteJSON(w, http.StatusOK, res)
	return nil
}
