// Package providers serves the gateway's providers under /api/providers
// and /api/provider-models: stored providers (config-declared ones are
// read-only), their sealed credentials, connection tests against the
// upstream, and custom models with their kind and visibility. Every
// change is installed at once through the routing state.
package providers

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/admin"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
	"github.com/omniedge/omni/internal/route/routing"
	"github.com/omniedge/omni/internal/route/store"
)

// Store is what the provider endpoints need from the route store.
type Store interface {
	Provider(ctx context.Context, id string) (store.Provider, error)
	CreateProvider(ctx context.Context, p store.Provider) error
	UpdateProvider(ctx context.Context, p store.Provider, replaceCredentials bool) error
	DeleteProvider(ctx context.Context, id string) error
	AddCredential(ctx context.Context, providerID string, c store.Credential) (store.Credential, error)
	DeleteCredential(ctx context.Context, providerID, id string) error
	AddProviderModel(ctx context.Context, m store.ProviderModel) error
	UpdateProviderModel(ctx context.Context, m store.ProviderModel) error
	DeleteProviderModel(ctx context.Context, provider, model string) error
}

// State is the live routing state the endpoints read and reload.
type State interface {
	Snapshot() *routing.Snapshot
	Reload(ctx context.Context) error
	Adapter(p *routing.Provider, key string) (router.Adapter, error)
	Types() []string
}

// Options configure the provider endpoints.
type Options struct {
	Store Store        // required
	Guard *admin.Guard // required
	State State        // required
	// ProviderChanged, when set, is told after a stored provider was
	// updated or deleted or gained or lost a credential, so that what was
	// learnt about its old configuration (breakers, cooldowns, lockouts)
	// can be forgotten.
	ProviderChanged func(ctx context.Context, provider string)
	Clock           clock.Clock
}

// Service serves the provider endpoints.
type Service struct {
	opt   Options
	store Store
	guard *admin.Guard
	state State
	clock clock.Clock
}

// New builds the provider endpoints.
func New(opt Options) *Service {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	return &Service{opt: opt, store: opt.Store, guard: opt.Guard, state: opt.State, clock: opt.Clock}
}

// Register adds the provider routes to mux, behind the login.
func (s *Service) Register(mux admin.Mux) {
	guarded := s.guard.Guarded(mux)
	guarded("GET /api/providers", s.listProviders)
	guarded("POST /api/providers", s.createProvider)
	guarded("POST /api/providers/validate", s.validateProvider)
	guarded("GET /api/providers/{id}", s.getProvider)
	guarded("PUT /api/providers/{id}", s.updateProvider)
	guarded("PATCH /api/providers/{id}", s.updateProvider)
	guarded("DELETE /api/providers/{id}", s.deleteProvider)
	guarded("POST /api/providers/{id}/test", s.testProvider)
	guarded("GET /api/providers/{id}/models", s.providerUpstreamModels)
	guarded("POST /api/providers/{id}/credentials", s.addCredential)
	guarded("DELETE /api/providers/{id}/credentials/{cid}", s.deleteCredential)

	guarded("GET /api/provider-models", s.listProviderModels)
	guarded("POST /api/provider-models", s.addProviderModel)
	guarded("PATCH /api/provider-models", s.patchProviderModel)
	guarded("PUT /api/provider-models", s.patchProviderModel)
	guarded("DELETE /api/provider-models", s.deleteProviderModel)
}

// Model kinds.
var modelKinds = provider.Kinds()

func compatibleURL(id string) string { return provider.Compatible[id] }

var providerIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// credInput is one credential in a request: a bare key string or an
// object {"api_key"|"key", "label", "priority", "enabled"}.
type credInput struct {
	Key      string `json:"api_key"`
	Key2     string `json:"key"`
	Label    string `json:"label"`
	Priority int    `json:"priority"`
	Enabled  *bool  `json:"enabled"`
}

func (c *credInput) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = credInput{Key: s}
		return nil
	}
	type plain credInput
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return errors.New("a credential is a key string or an object with \"api_key\"")
	}
	*c = credInput(p)
	return nil
}

func (c credInput) credential(i int) (store.Credential, error) {
	key := c.Key
	if key == "" {
		key = c.Key2
	}
	if strings.TrimSpace(key) == "" || len(key) > 4096 || strings.ContainsAny(key, "\r\n") {
		return store.Credential{}, httpx.BadRequest("credential %d: the key must be a non-empty single line", i+1)
	}
	if len(c.Label) > 100 {
		return store.Credential{}, httpx.BadRequest("credential %d: the label is longer than 100 characters", i+1)
	}
	enabled := c.Enabled == nil || *c.Enabled
	return store.Credential{Label: c.Label, APIKey: key, Priority: c.Priority, Enabled: enabled}, nil
}

// providerBody is a create or update request; absent fields are left
// unchanged by an update.
type providerBody struct {
	ID       string             `json:"id"`
	Type     *string            `json:"type"`
	BaseURL  *string            `json:"base_url"`
	BaseURL2 *string            `json:"baseUrl"`
	APIKey   *string            `json:"api_key"`
	APIKeys  *[]credInput       `json:"api_keys"`
	Headers  *map[string]string `json:"headers"`
	Models   *[]string          `json:"models"`
	Enabled  *bool              `json:"enabled"`
	// KeepCredentials lets an update that points the provider elsewhere
	// (base URL, type, headers) keep its stored credentials.
	KeepCredentials bool `json:"keep_credentials"`
}

// apply merges b into p and returns whether credentials were given.
func (b *providerBody) apply(p *store.Provider) (bool, error) {
	if b.Type != nil {
		p.Type = strings.TrimSpace(*b.Type)
	}
	if b.BaseURL == nil {
		b.BaseURL = b.BaseURL2
	}
	if b.BaseURL != nil {
		p.BaseURL = strings.TrimSpace(*b.BaseURL)
	}
	if b.Headers != nil {
		p.Headers = *b.Headers
	}
	if b.Models != nil {
		p.Models = *b.Models
	}
	if b.Enabled != nil {
		p.Enabled = *b.Enabled
	}
	if p.Type == "" {
		return false, httpx.BadRequest(`"type" is required`)
	}
	for k, v := range p.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") || strings.ContainsAny(v, "\r\n") {
			return false, httpx.BadRequest("header %q is not a valid HTTP header", k)
		}
	}
	seen := map[string]bool{}
	for _, mdl := range p.Models {
		if strings.TrimSpace(mdl) == "" || strings.ContainsAny(mdl, " \t\r\n") || len(mdl) > 200 {
			return false, httpx.BadRequest("model %q must be a non-empty name without spaces", mdl)
		}
		if seen[mdl] {
			return false, httpx.BadRequest("model %q is listed twice", mdl)
		}
		seen[mdl] = true
	}
	if b.APIKey != nil && b.APIKeys != nil {
		return false, httpx.BadRequest(`give "api_key" or "api_keys", not both`)
	}
	var in []credInput
	switch {
	case b.APIKey != nil:
		in = []credInput{{Key: *b.APIKey}}
	case b.APIKeys != nil:
		in = *b.APIKeys
	default:
		return false, nil
	}
	if len(in) > 100 {
		return false, httpx.BadRequest("at most 100 credentials per provider")
	}
	p.Credentials = nil
	for i, c := range in {
		cred, err := c.credential(i)
		if err != nil {
			return false, err
		}
		p.Credentials = append(p.Credentials, cred)
	}
	return true, nil
}

// check builds an adapter for every credential, which validates the type
// and the base URL.
func (s *Service) check(p store.Provider) error {
	ps := &routing.Provider{ID: p.ID, Type: p.Type, BaseURL: p.BaseURL, Headers: p.Headers, Enabled: true}
	keys := []string{""}
	if len(p.Credentials) > 0 {
		keys = keys[:0]
		for _, c := range p.Credentials {
			keys = append(keys, c.APIKey)
		}
	}
	for _, k := range keys {
		if _, err := s.state.Adapter(ps, k); err != nil {
			return httpx.BadRequest("%s", err.Error())
		}
	}
	return nil
}

// ---- JSON ----

type credJSON struct {
	ID         string `json:"id"`
	Label      string `json:"label"`
	Key        string `json:"key"`
	Priority   int    `json:"priority"`
	Enabled    bool   `json:"enabled"`
	Unreadable bool   `json:"unreadable,omitempty"`
}

type providerJSON struct {
	ID          string            `json:"id"`
	Type        string            `json:"type"`
	BaseURL     string            `json:"base_url"`
	Headers     map[string]string `json:"headers"`
	Models      []string          `json:"models"`
	Enabled     bool              `json:"enabled"`
	Source      string            `json:"source"`
	Connections int               `json:"connections"`
	Credentials []credJSON        `json:"credentials"`
	CreatedAt   *time.Time        `json:"created_at,omitempty"`
	UpdatedAt   *time.Time        `json:"updated_at,omitempty"`
}

// mask shows enough of a key to recognise it: "sk-…abcd".
func mask(key string) string {
	if key == "" {
		return ""
	}
	if len(key) < 12 {
		return "…"
	}
	prefix := key[:3]
	if i := strings.IndexAny(key[:8], "-_"); i > 0 {
		prefix = key[:i+1]
	}
	return prefix + "…" + key[len(key)-4:]
}

func toProviderJSON(p *routing.Provider) providerJSON {
	out := providerJSON{ID: p.ID, Type: p.Type, BaseURL: p.BaseURL, Headers: map[string]string{}, Models: []string{},
		Enabled: p.Enabled, Source: p.Source, Credentials: []credJSON{}}
	if p.BaseURL == "" && p.Type == "openai-compatible" {
		out.BaseURL = compatibleURL(p.ID)
	}
	for k, v := range p.Headers {
		if store.SensitiveHeader(k) {
			v = mask(v)
		}
		out.Headers[k] = v
	}
	out.Models = append(out.Models, p.Models...)
	for _, c := range p.Credentials {
		out.Credentials = append(out.Credentials, credJSON{ID: c.ID, Label: c.Label, Key: mask(c.APIKey), Priority: c.Priority, Enabled: c.Enabled, Unreadable: c.Unreadable})
		if c.Enabled && !c.Unreadable {
			out.Connections++
		}
	}
	if len(p.Credentials) == 0 && p.Enabled {
		out.Connections = 1
	}
	if !p.Enabled {
		out.Connections = 0
	}
	if !p.CreatedAt.IsZero() {
		c, u := p.CreatedAt, p.UpdatedAt
		out.CreatedAt, out.UpdatedAt = &c, &u
	}
	return out
}

func (s *Service) lookupProvider(id string) (*routing.Provider, *routing.Snapshot, error) {
	snap := s.state.Snapshot()
	p := snap.ByID[id]
	if p == nil {
		return nil, snap, httpx.NotFound("provider %q not found", id)
	}
	return p, snap, nil
}

// ---- handlers ----

func (s *Service) listProviders(w http.ResponseWriter, r *http.Request) error {
	snap := s.state.Snapshot()
	out := make([]providerJSON, 0, len(snap.Providers))
	for _, p := range snap.Providers {
		out = append(out, toProviderJSON(p))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"providers": out, "types": s.state.Types()})
	return nil
}

func (s *Service) getProvider(w http.ResponseWriter, r *http.Request) error {
	p, _, err := s.lookupProvider(r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, toProviderJSON(p))
	return nil
}

func (s *Service) createProvider(w http.ResponseWriter, r *http.Request) error {
	var b providerBody
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	p, err := s.newProvider(&b)
	if err != nil {
		return err
	}
	if err := s.store.CreateProvider(r.Context(), p); err != nil {
		return admin.StoreError(err)
	}
	if err := s.state.Reload(r.Context()); err != nil {
		return err
	}
	return s.getProviderStatus(w, p.ID, http.StatusCreated)
}

// newProvider validates a create request.
func (s *Service) newProvider(b *providerBody) (store.Provider, error) {
	b.ID = strings.TrimSpace(b.ID)
	if !providerIDRe.MatchString(b.ID) {
		return store.Provider{}, httpx.BadRequest(`"id" must be 1-64 letters, digits, '.', '_' or '-' (it is the provider in provider/model)`)
	}
	if p := s.state.Snapshot().ByID[b.ID]; p != nil && p.Source == routing.SourceConfig {
		return store.Provider{}, httpx.Conflict("provider %q is declared in the configuration file", b.ID)
	}
	p := store.Provider{ID: b.ID, Enabled: true}
	if _, err := b.apply(&p); err != nil {
		return p, err
	}
	return p, s.check(p)
}

func (s *Service) getProviderStatus(w http.ResponseWriter, id string, status int) error {
	p, _, err := s.lookupProvider(id)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, status, toProviderJSON(p))
	return nil
}

// storedProvider returns a stored provider for a change, or the right
// error for config-declared and unknown ids.
func (s *Service) storedProvider(ctx context.Context, id string) (store.Provider, error) {
	if p := s.state.Snapshot().ByID[id]; p != nil && p.Source == routing.SourceConfig {
		return store.Provider{}, admin.ReadOnly("provider " + id)
	}
	p, err := s.store.Provider(ctx, id)
	return p, admin.StoreError(err)
}

func (s *Service) updateProvider(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	p, err := s.storedProvider(r.Context(), id)
	if err != nil {
		return err
	}
	var b providerBody
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	if b.ID != "" && b.ID != id {
		return httpx.BadRequest("a provider's id cannot change (%q in the body, %q in the path)", b.ID, id)
	}
	old := p
	old.Headers = maps.Clone(p.Headers)
	if b.Headers != nil {
		*b.Headers = unmask(*b.Headers, old.Headers)
	}
	replace, err := b.apply(&p)
	if err != nil {
		return err
	}
	if err := keepsSecrets(old, p, replace, b.KeepCredentials); err != nil {
		return err
	}
	if err := s.check(p); err != nil {
		return err
	}
	if err := s.store.UpdateProvider(r.Context(), p, replace); err != nil {
		return admin.StoreError(err)
	}
	if err := s.state.Reload(r.Context()); err != nil {
		return err
	}
	s.providerChanged(r.Context(), id)
	return s.getProviderStatus(w, id, http.StatusOK)
}

// unmask turns secret header values that are the masks shown by a read
// (a client sending back what it read) into the stored values.
func unmask(in, stored map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		if old, ok := stored[k]; ok && store.SensitiveHeader(k) && v != old && v == mask(old) {
			v = old
		}
		out[k] = v
	}
	return out
}

// keepsSecrets refuses an update that points a provider elsewhere (its
// type, base URL or headers change) while keeping its stored secrets —
// credentials not given again, or secret headers left as they were —
// unless the request says keep_credentials. A forged or stolen request,
// or a slip, thereby cannot send the stored keys to a new place.
func keepsSecrets(old, upd store.Provider, credsGiven, keep bool) error {
	if keep || old.Type == upd.Type && old.BaseURL == upd.BaseURL && maps.Equal(old.Headers, upd.Headers) {
		return nil
	}
	kept := len(old.Credentials) > 0 && !credsGiven
	for k, v := range upd.Headers {
		if store.SensitiveHeader(k) && old.Headers[k] == v {
			kept = true
		}
	}
	if !kept {
		return nil
	}
	return httpx.BadRequest(`changing "base_url", "type" or "headers" would send the stored credentials to the new configuration: ` +
		`give them again ("api_key" or "api_keys", and the values of secret headers) or set "keep_credentials": true`)
}

// providerChanged tells Options.ProviderChanged, if set.
func (s *Service) providerChanged(ctx context.Context, id string) {
	if s.opt.ProviderChanged != nil {
		s.opt.ProviderChanged(ctx, id)
	}
}

// changeProvider is change for a request that altered provider id.
func (s *Service) changeProvider(w http.ResponseWriter, r *http.Request, id string, status int, body func() any, err error) error {
	if err := admin.Change(w, r, s.state, status, body, err); err != nil {
		return err
	}
	s.providerChanged(r.Context(), id)
	return nil
}

func (s *Service) deleteProvider(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := s.storedProvider(r.Context(), id); err != nil {
		return err
	}
	return s.changeProvider(w, r, id, http.StatusNoContent, nil, s.store.DeleteProvider(r.Context(), id))
}

func (s *Service) addCredential(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	p, err := s.storedProvider(r.Context(), id)
	if err != nil {
		return err
	}
	var in credInput
	if err := admin.Decode(w, r, &in); err != nil {
		return err
	}
	c, err := in.credential(len(p.Credentials))
	if err != nil {
		return err
	}
	p.Credentials = []store.Credential{c}
	if err := s.check(p); err != nil {
		return err
	}
	c, err = s.store.AddCredential(r.Context(), id, c)
	return s.changeProvider(w, r, id, http.StatusCreated, func() any {
		return credJSON{ID: c.ID, Label: c.Label, Key: mask(c.APIKey), Priority: c.Priority, Enabled: c.Enabled}
	}, err)
}

func (s *Service) deleteCredential(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := s.storedProvider(r.Context(), id); err != nil {
		return err
	}
	return s.changeProvider(w, r, id, http.StatusNoContent, nil, s.store.DeleteCredential(r.Context(), id, r.PathValue("cid")))
}

// ---- live checks ----

// modelLister is the optional capability of adapters that list the
// upstream's models.
type modelLister interface {
	Models(ctx context.Context) ([]string, error)
}

type probeResult struct {
	OK        bool   `json:"ok"`
	LatencyMS int64  `json:"latency_ms"`
	Method    string `json:"method,omitempty"` // models or chat
	Model     string `json:"model,omitempty"`
	Error     string `json:"error,omitempty"`
}

// probe makes the smallest live call the adapter allows: a model listing,
// else a one-token chat with model (or the first declared model).
func (s *Service) probe(ctx context.Context, ad router.Adapter, model string, declared []string) probeResult {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := s.clock.Now()
	var res probeResult
	var err error
	if l, ok := ad.(modelLister); ok && model == "" {
		res.Method = "models"
		_, err = l.Models(ctx)
	} else {
		if model == "" && len(declared) > 0 {
			model = declared[0]
		}
		if model == "" {
			res.Error = `nothing to test with: this provider type cannot list models; pass {"model": "…"} or declare models`
			return res
		}
		res.Method, res.Model = "chat", model
		one := 1
		_, err = ad.Chat(ctx, &llm.Request{Model: model, MaxTokens: &one,
			Messages: []llm.Message{{Role: llm.RoleUser, Parts: []llm.Part{{Type: llm.PartText, Text: "ping"}}}}}, model)
	}
	res.LatencyMS = s.clock.Now().Sub(start).Milliseconds()
	if err != nil {
		res.Error = errorText(err)
		return res
	}
	res.OK = true
	return res
}

func errorText(err error) string {
	var le *llm.Error
	if errors.As(err, &le) {
		return le.Message // an upstream failure names the provider and its status (upstreamhttp)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "upstream did not answer in time"
	}
	return err.Error()
}

type probeBody struct {
	Model string `json:"model"`
}

// optionalBody decodes a body when there is one.
func optionalBody(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	b, err := httpx.ReadBody(w, r, admin.MaxBody)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return err
	}
	return httpx.DecodeJSONBytes(b, v, r.Header.Get("Content-Type"))
}

func (s *Service) testProvider(w http.ResponseWriter, r *http.Request) error {
	p, _, err := s.lookupProvider(r.PathValue("id"))
	if err != nil {
		return err
	}
	var b probeBody
	if err := optionalBody(w, r, &b); err != nil {
		return err
	}
	if b.Model == "" {
		b.Model = r.URL.Query().Get("model")
	}
	ad, err := s.firstAdapter(p)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, s.probe(r.Context(), ad, b.Model, p.Models))
	return nil
}

// firstAdapter builds the adapter of a provider's first usable credential.
func (s *Service) firstAdapter(p *routing.Provider) (router.Adapter, error) {
	key := ""
	if len(p.Credentials) > 0 {
		i := slices.IndexFunc(p.Credentials, func(c store.Credential) bool { return c.Enabled && !c.Unreadable })
		if i < 0 {
			return nil, httpx.BadRequest("provider %q has no enabled, readable credential", p.ID)
		}
		key = p.Credentials[i].APIKey
	}
	ad, err := s.state.Adapter(p, key)
	if err != nil {
		return nil, httpx.BadRequest("%s", err.Error())
	}
	return ad, nil
}

func (s *Service) validateProvider(w http.ResponseWriter, r *http.Request) error {
	var b struct {
		providerBody
		Model string `json:"model"`
	}
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	if b.ID == "" {
		b.ID = "validate"
	}
	if !providerIDRe.MatchString(b.ID) {
		return httpx.BadRequest(`"id" must be 1-64 letters, digits, '.', '_' or '-'`)
	}
	p := store.Provider{ID: b.ID, Enabled: true}
	if _, err := b.apply(&p); err != nil {
		return err
	}
	if err := s.check(p); err != nil {
		return err
	}
	ps := &routing.Provider{ID: p.ID, Type: p.Type, BaseURL: p.BaseURL, Headers: p.Headers, Models: p.Models, Enabled: true, Credentials: p.Credentials}
	ad, err := s.firstAdapter(ps)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, s.probe(r.Context(), ad, b.Model, p.Models))
	return nil
}

func (s *Service) providerUpstreamModels(w http.ResponseWriter, r *http.Request) error {
	p, snap, err := s.lookupProvider(r.PathValue("id"))
	if err != nil {
		return err
	}
	out := map[string]any{"provider": p.ID}
	ad, err := s.firstAdapter(p)
	if err == nil {
		if l, ok := ad.(modelLister); ok {
			ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
			ids, lerr := l.Models(ctx)
			cancel()
			if lerr == nil {
				sort.Strings(ids)
				out["source"], out["models"] = "upstream", ids
				httpx.WriteJSON(w, http.StatusOK, out)
				return nil
			}
			out["error"] = errorText(lerr)
		}
	}
	ids := []string{}
	for _, e := range snap.ProviderModels(p) {
		ids = append(ids, e.Model)
	}
	out["source"], out["models"] = "configured", ids
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// ---- custom models ----

type providerModelJSON struct {
	ID       string `json:"id"`
	Provider string `json:"provider"`
	Model    string `json:"model"`
	Kind     string `json:"kind"`
	Hidden   bool   `json:"hidden"`
	Source   string `json:"source"`
}

func (s *Service) listProviderModels(w http.ResponseWriter, r *http.Request) error {
	snap := s.state.Snapshot()
	want := r.URL.Query().Get("provider")
	if want != "" && snap.ByID[want] == nil {
		return httpx.NotFound("provider %q not found", want)
	}
	out := []providerModelJSON{}
	for _, p := range snap.Providers {
		if want != "" && p.ID != want {
			continue
		}
		for _, e := range snap.ProviderModels(p) {
			out = append(out, providerModelJSON{ID: p.ID + "/" + e.Model, Provider: p.ID, Model: e.Model, Kind: e.Kind, Hidden: e.Hidden, Source: e.Source})
		}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"models": out})
	return nil
}

type providerModelBody struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
	Kind     string `json:"kind"`
	Hidden   *bool  `json:"hidden"`
}

// target validates the provider and model of a custom-model request.
func (s *Service) modelTarget(b *providerModelBody) (*routing.Provider, *routing.Snapshot, error) {
	if b.Provider == "" {
		if p, mdl, ok := router.SplitModel(b.Model); ok && s.state.Snapshot().ByID[p] != nil {
			b.Provider, b.Model = p, mdl
		}
	}
	if b.Provider == "" || b.Model == "" {
		return nil, nil, httpx.BadRequest(`"provider" and "model" are required`)
	}
	if strings.ContainsAny(b.Model, " \t\r\n") || len(b.Model) > 200 {
		return nil, nil, httpx.BadRequest("model %q must be a name without spaces", b.Model)
	}
	if b.Kind != "" && !slices.Contains(modelKinds, b.Kind) {
		return nil, nil, httpx.BadRequest(`"kind" must be one of %s`, strings.Join(modelKinds, ", "))
	}
	p, snap, err := s.lookupProvider(b.Provider)
	return p, snap, err
}

func (s *Service) addProviderModel(w http.ResponseWriter, r *http.Request) error {
	var b providerModelBody
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	p, snap, err := s.modelTarget(&b)
	if err != nil {
		return err
	}
	for _, e := range snap.ProviderModels(p) {
		if e.Model == b.Model {
			return httpx.Conflict("model %s/%s is already listed; PATCH it to change its kind or visibility", p.ID, b.Model)
		}
	}
	pm := store.ProviderModel{Provider: p.ID, Model: b.Model, Kind: b.Kind, Hidden: b.Hidden != nil && *b.Hidden}
	if pm.Kind == "" {
		pm.Kind = "chat"
	}
	return admin.Change(w, r, s.state, http.StatusCreated, func() any {
		return providerModelJSON{ID: pm.Provider + "/" + pm.Model, Provider: pm.Provider, Model: pm.Model, Kind: pm.Kind, Hidden: pm.Hidden, Source: "custom"}
	}, s.store.AddProviderModel(r.Context(), pm))
}

func (s *Service) patchProviderModel(w http.ResponseWriter, r *http.Request) error {
	var b providerModelBody
	if err := admin.Decode(w, r, &b); err != nil {
		return err
	}
	p, snap, err := s.modelTarget(&b)
	if err != nil {
		return err
	}
	var cur *routing.ModelEntry
	for _, e := range snap.ProviderModels(p) {
		if e.Model == b.Model {
			cur = &e
			break
		}
	}
	if cur == nil {
		return httpx.NotFound("model %s/%s is not listed; POST it first", p.ID, b.Model)
	}
	pm := store.ProviderModel{Provider: p.ID, Model: b.Model, Kind: cur.Kind, Hidden: cur.Hidden}
	if b.Kind != "" {
		pm.Kind = b.Kind
	}
	if b.Hidden != nil {
		pm.Hidden = *b.Hidden
	}
	hasRow := slices.ContainsFunc(snap.Custom, func(c store.ProviderModel) bool { return c.Provider == p.ID && c.Model == b.Model })
	if hasRow {
		err = s.store.UpdateProviderModel(r.Context(), pm)
	} else {
		// A declared model gets a row that overrides its kind or visibility.
		err = s.store.AddProviderModel(r.Context(), pm)
	}
	return admin.Change(w, r, s.state, http.StatusOK, func() any {
		return providerModelJSON{ID: pm.Provider + "/" + pm.Model, Provider: pm.Provider, Model: pm.Model, Kind: pm.Kind, Hidden: pm.Hidden, Source: cur.Source}
	}, err)
}

func (s *Service) deleteProviderModel(w http.ResponseWriter, r *http.Request) error {
	b := providerModelBody{Provider: r.URL.Query().Get("provider"), Model: r.URL.Query().Get("model")}
	if b.Model == "" {
		if err := optionalBody(w, r, &b); err != nil {
			return err
		}
	}
	if b.Provider == "" || b.Model == "" {
		return httpx.BadRequest(`name the model: ?provider=…&model=… or a body {"provider","model"}`)
	}
	return admin.Change(w, r, s.state, http.StatusNoContent, nil, s.store.DeleteProviderModel(r.Context(), b.Provider, b.Model))
}
