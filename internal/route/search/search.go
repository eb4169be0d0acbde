// Package search is the gateway's web search modality: GET /v1/search
// (the configured search providers and what each honours), POST
// /v1/search (one normalized request and one normalized answer, run
// through the pipeline's operation path — pipeline.Engine.Do: key
// policy, RPM/RPD limits, budgets priced per 1,000 searches, usage
// records of modality search, breakers and fallback — answered from the
// gateway's response cache within its TTL and coalesced when identical
// searches of one gateway key run at once) and GET /v1/search/analytics
// (per provider: requests, errors, cache hits, latency, per replica). Its
// provider types are SearXNG, Tavily, Brave, Exa and Serper, each
// translated from the normalized request and to the normalized answer.
// Requests are capped before anything is routed and upstream answers are
// read and kept within caps.
package search

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// The caps of a search, checked before it is routed or applied to what
// an upstream answers: neither a key holder nor an upstream can make the
// gateway hold, send or pay for more.
const (
	// MaxBody bounds the request body.
	MaxBody = 64 << 10
	// MaxQueryBytes bounds the query (Brave takes 400 characters).
	MaxQueryBytes = 1000
	// MaxResults is the most results one search asks for and answers;
	// DefaultResults is asked when the request says nothing.
	MaxResults     = 20
	DefaultResults = 10
	// MaxDomains bounds include_domains and exclude_domains each.
	MaxDomains = 20
	// MaxUpstreamBody bounds the upstream answer read.
	MaxUpstreamBody = 4 << 20
	// MaxTitleBytes, MaxContentBytes and MaxURLBytes bound each result's
	// fields (longer titles and contents are cut, longer URLs dropped);
	// MaxAnswerBytes the answer, MaxImages the image URLs.
	MaxTitleBytes   = 1 << 10
	MaxContentBytes = 8 << 10
	MaxURLBytes     = 4 << 10
	MaxAnswerBytes  = 16 << 10
	MaxImages       = 20
	// MaxCacheEntry bounds an answer kept in the response cache (larger
	// ones are answered, not kept).
	MaxCacheEntry = 512 << 10
	// DefaultModel is the model part of a search provider's target when
	// the request names only the provider ("tavily" is "tavily/search").
	DefaultModel = "search"
)

// Request is a search in the normalized shape every provider type is
// translated from.
type Request struct {
	Query          string   `json:"query"`
	MaxResults     int      `json:"max_results"`
	Depth          string   `json:"search_depth,omitempty"` // basic, advanced (Tavily)
	Topic          string   `json:"topic,omitempty"`        // general, news, finance
	IncludeDomains []string `json:"include_domains,omitempty"`
	ExcludeDomains []string `json:"exclude_domains,omitempty"`
	TimeRange      string   `json:"time_range,omitempty"` // day, week, month, year
	Country        string   `json:"country,omitempty"`    // ISO 3166-1 alpha-2
	Language       string   `json:"language,omitempty"`   // ISO 639-1, optionally with a region
	SafeSearch     string   `json:"safe_search,omitempty"`
	IncludeAnswer  bool     `json:"include_answer,omitempty"`
	IncludeImages  bool     `json:"include_images,omitempty"`
	// Now is when the search runs (time ranges given as dates); it is
	// not part of what the cache keys.
	Now time.Time `json:"-"`
	// Fresh asks for an upstream call of this request: the cache is
	// neither read nor written and nothing is coalesced
	// (X-OmniRoute-No-Cache: true).
	Fresh bool `json:"-"`
}

// Hit is one result in the normalized shape.
type Hit struct {
	Title         string   `json:"title"`
	URL           string   `json:"url"`
	Content       string   `json:"content"`
	Score         *float64 `json:"score"` // null when the provider ranks without scores
	PublishedDate string   `json:"published_date,omitempty"`
}

// Result is an upstream's answer, normalized.
type Result struct {
	Results []Hit    `json:"results"`
	Answer  string   `json:"answer,omitempty"`
	Images  []string `json:"images,omitempty"`
}

func (r *Result) trim(n int) {
	if n > 0 && len(r.Results) > n {
		r.Results = r.Results[:n]
	}
}

// Searcher is the capability of a provider adapter that searches the web
// (this package's Client).
type Searcher interface {
	Search(ctx context.Context, model string, req *Request) (*Result, error)
	Capabilities() Capabilities
}

// Configured is a search provider of the gateway: its id and type.
type Configured struct {
	ID, Type string
}

// Options configure a Service.
type Options struct {
	// Ops is the gateway transport.
	Ops feature.Operations
	// Providers lists the enabled search providers, in the order a
	// search naming none tries them.
	Providers func() []Configured
	// Policy is the key policy: the provider list and a search naming
	// no provider leave out the providers the caller's key may not use
	// (nil: all are listed and tried).
	Policy feature.ModelPolicy
	// Cache is the gateway's response cache (nil: searches are not
	// cached, only coalesced).
	Cache pipeline.Cache
	Clock clock.Clock
}

// Service serves the search endpoints over the gateway's operations.
type Service struct {
	opt     Options
	flights flights
	stats   *analytics
}

// New returns the search endpoints.
func New(opt Options) *Service {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Providers == nil {
		opt.Providers = func() []Configured { return nil }
	}
	return &Service{opt: opt, flights: flights{m: map[string]*flight{}}, stats: newAnalytics(opt.Clock.Now())}
}

// Module is the search endpoints as a gateway feature; its provider types
// come with Upstreams.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:    "search",
		Package: "route/search",
		Routes:  s.Register,
	}
}

// Register adds GET and POST /v1/search and GET /v1/search/analytics to
// mux; each takes a gateway key.
func (s *Service) Register(mux feature.Mux) {
	mux.Handle("GET /v1/search", s.opt.Ops.Body(1, s.list))
	mux.Handle("POST /v1/search", s.opt.Ops.JSON(MaxBody, s.search))
	mux.Handle("GET /v1/search/analytics", s.opt.Ops.Body(1, s.analytics))
}

// providers lists the configured search providers.
func (s *Service) providers() []Configured {
	var out []Configured
	for _, p := range s.opt.Providers() {
		if _, ok := CapabilitiesOf(p.Type); ok {
			out = append(out, p)
		}
	}
	return out
}

type providerInfo struct {
	ID           string       `json:"id"`
	Object       string       `json:"object"`
	Type         string       `json:"type"`
	Model        string       `json:"model"`
	Default      bool         `json:"default"`
	Capabilities Capabilities `json:"capabilities"`
}

// permitted lists the search providers the key of ctx may use.
func (s *Service) permitted(ctx context.Context) []Configured {
	all := s.providers()
	if s.opt.Policy == nil {
		return all
	}
	var out []Configured
	for _, p := range all {
		if s.opt.Policy.PermitsModel(ctx, p.ID+"/"+DefaultModel) == nil {
			out = append(out, p)
		}
	}
	return out
}

func (s *Service) list(w http.ResponseWriter, r *http.Request, _ feature.RunOp) error {
	out := struct {
		Object string         `json:"object"`
		Data   []providerInfo `json:"data"`
	}{Object: "list", Data: []providerInfo{}}
	for i, p := range s.permitted(r.Context()) {
		c, _ := CapabilitiesOf(p.Type)
		out.Data = append(out.Data, providerInfo{ID: p.ID, Object: "search.provider", Type: p.Type, Model: p.ID + "/" + DefaultModel,
			Default: i == 0, Capabilities: c})
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// request is the client's body.
type request struct {
	Query          *string  `json:"query"`
	Provider       string   `json:"provider"`
	Model          string   `json:"model"`
	MaxResults     *int     `json:"max_results"`
	SearchDepth    string   `json:"search_depth"`
	Topic          string   `json:"topic"`
	IncludeDomains []string `json:"include_domains"`
	ExcludeDomains []string `json:"exclude_domains"`
	TimeRange      string   `json:"time_range"`
	Country        string   `json:"country"`
	Language       string   `json:"language"`
	SafeSearch     string   `json:"safe_search"`
	IncludeAnswer  bool     `json:"include_answer"`
	IncludeImages  bool     `json:"include_images"`
}

func invalid(code, format string, a ...any) *llm.Error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Code: code, Message: fmt.Sprintf(format, a...)}
}

var (
	hostname = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	country  = regexp.MustCompile(`^[a-z]{2}$`)
	language = regexp.MustCompile(`^[a-z]{2,3}(-[a-z0-9]{2,4})?$`)
	name     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	ranges   = map[string]string{"day": "day", "d": "day", "week": "week", "w": "week", "month": "month", "m": "month", "year": "year", "y": "year"}
)

func oneOf(field, v string, allowed ...string) error {
	if v == "" || contains(allowed, v) {
		return nil
	}
	return invalid("invalid_"+field, "%q must be one of %s", field, strings.Join(allowed, ", "))
}

func domains(field string, in []string) ([]string, error) {
	if len(in) > MaxDomains {
		return nil, invalid("too_many_domains", "%q lists %d domains; at most %d are taken", field, len(in), MaxDomains)
	}
	out := make([]string, 0, len(in))
	for i, d := range in {
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if len(d) > 253 || !hostname.MatchString(d) {
			return nil, invalid("invalid_domain", "%s[%d] must be a domain name such as example.com", field, i)
		}
		out = append(out, d)
	}
	return out, nil
}

// decode validates a client's search request against the caps; it
// returns the provider or model the client named (both may be empty).
func decode(body []byte, contentType string) (provider, model string, req *Request, err error) {
	var in request
	if err := httpx.DecodeJSONBytes(body, &in, contentType); err != nil {
		return "", "", nil, err
	}
	if in.Query == nil || strings.TrimSpace(*in.Query) == "" {
		return "", "", nil, invalid("missing_query", `"query" is required and may not be empty`)
	}
	if len(*in.Query) > MaxQueryBytes || !utf8.ValidString(*in.Query) {
		return "", "", nil, invalid("query_too_long", `"query" must be UTF-8 text of at most %d bytes`, MaxQueryBytes)
	}
	req = &Request{Query: strings.TrimSpace(*in.Query), MaxResults: DefaultResults, IncludeAnswer: in.IncludeAnswer, IncludeImages: in.IncludeImages}
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > MaxResults {
			return "", "", nil, invalid("invalid_max_results", `"max_results" must be 1 to %d`, MaxResults)
		}
		req.MaxResults = *in.MaxResults
	}
	if in.Provider != "" && !name.MatchString(in.Provider) {
		return "", "", nil, invalid("invalid_provider", `"provider" must be a provider id (letters, digits, ".", "_", "-"; at most 64)`)
	}
	if len(in.Model) > 256 {
		return "", "", nil, invalid("invalid_model", `"model" is longer than 256 bytes`)
	}
	if in.Provider != "" && in.Model != "" {
		return "", "", nil, invalid("provider_and_model", `give "provider" or "model", not both`)
	}
	req.Depth, req.Topic = in.SearchDepth, in.Topic
	req.SafeSearch = strings.ToLower(in.SafeSearch)
	if err := oneOf("search_depth", req.Depth, "basic", "advanced"); err != nil {
		return "", "", nil, err
	}
	if err := oneOf("topic", req.Topic, "general", "news", "finance"); err != nil {
		return "", "", nil, err
	}
	if err := oneOf("safe_search", req.SafeSearch, "off", "moderate", "strict"); err != nil {
		return "", "", nil, err
	}
	if in.TimeRange != "" {
		if req.TimeRange = ranges[strings.ToLower(in.TimeRange)]; req.TimeRange == "" {
			return "", "", nil, invalid("invalid_time_range", `"time_range" must be one of day, week, month, year`)
		}
	}
	if req.Country = strings.ToLower(in.Country); req.Country != "" && !country.MatchString(req.Country) {
		return "", "", nil, invalid("invalid_country", `"country" must be a two-letter country code (ISO 3166-1)`)
	}
	if req.Language = strings.ToLower(in.Language); req.Language != "" && !language.MatchString(req.Language) {
		return "", "", nil, invalid("invalid_language", `"language" must be a language code such as "en" or "pt-br"`)
	}
	if req.IncludeDomains, err = domains("include_domains", in.IncludeDomains); err != nil {
		return "", "", nil, err
	}
	if req.ExcludeDomains, err = domains("exclude_domains", in.ExcludeDomains); err != nil {
		return "", "", nil, err
	}
	return in.Provider, in.Model, req, nil
}

// how says where an answer came from.
type how int

const (
	fresh     how = iota // an upstream call of this request
	cached               // the response cache
	coalesced            // another request's upstream call, made at the same time
)

// answer is what the attempt that succeeded stored.
type answer struct {
	res *Result
	how how
}

// op describes a search of req with model, for the key keyID, to the
// pipeline: one search unit is reserved; an answer from the cache or
// another request's call bills none. The answer is stored in *out.
func (s *Service) op(model, keyID string, req *Request, out *answer) *pipeline.Op {
	return &pipeline.Op{
		Modality: llm.ModalitySearch,
		Model:    model,
		Units:    []llm.Quantity{{Unit: llm.UnitSearch, N: 1}},
		Call: func(ctx context.Context, c router.Connection, t router.Target) (pipeline.OpUsage, error) {
			sr, ok := c.Adapter.(Searcher)
			if !ok {
				return pipeline.OpUsage{}, &router.UnsupportedError{Provider: t.Provider, What: "web search"}
			}
			if f := sr.Capabilities().unsupported(req); f != "" {
				return pipeline.OpUsage{}, &router.UnsupportedError{Provider: t.Provider, What: "web search with " + f}
			}
			res, h, err := s.fetch(ctx, sr, keyID, t, req)
			if err != nil {
				return pipeline.OpUsage{}, err
			}
			*out = answer{res: res, how: h}
			if h != fresh {
				return pipeline.OpUsage{Billed: []llm.Quantity{{Unit: llm.UnitSearch, N: 0}}}, nil
			}
			return pipeline.OpUsage{}, nil
		},
	}
}

// fetch answers req at target t from the cache, from a call of the same
// search running now, or from the upstream.
func (s *Service) fetch(ctx context.Context, sr Searcher, keyID string, t router.Target, req *Request) (*Result, how, error) {
	s.stats.enter(t.Provider)
	defer s.stats.leave(t.Provider)
	call := func() (*Result, error) {
		start := s.opt.Clock.Now()
		r, err := sr.Search(ctx, t.Model, req)
		s.stats.record(t.Provider, event{upstream: true, failed: err != nil, latency: s.opt.Clock.Now().Sub(start)})
		return r, err
	}
	if req.Fresh {
		r, err := call()
		return r, fresh, err
	}
	key := cacheKey(keyID, t, req)
	if r, ok := s.cacheGet(ctx, key); ok {
		s.stats.record(t.Provider, event{hit: true})
		return r, cached, nil
	}
	res, shared, err := s.flights.do(ctx, key, func() (*Result, error) {
		r, err := call()
		if err == nil {
			s.cachePut(ctx, key, t, r)
		}
		return r, err
	})
	if shared {
		s.stats.record(t.Provider, event{coalesced: true, failed: err != nil})
		return res, coalesced, err
	}
	return res, fresh, err
}

// response is the normalized answer.
type response struct {
	Object   string   `json:"object"`
	Query    string   `json:"query"`
	Provider string   `json:"provider"`
	Model    string   `json:"model"`
	Results  []Hit    `json:"results"`
	Answer   string   `json:"answer,omitempty"`
	Images   []string `json:"images,omitempty"`
	Usage    usage    `json:"usage"`
}

type usage struct {
	// Searches is the upstream searches billed: 0 for an answer from the
	// cache or from an identical search running at the same time.
	Searches  int64 `json:"searches"`
	Cached    bool  `json:"cached"`
	Coalesced bool  `json:"coalesced,omitempty"`
}

func (s *Service) search(w http.ResponseWriter, r *http.Request, body []byte, run feature.RunOp) error {
	prov, model, req, err := decode(body, r.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	req.Now = s.opt.Clock.Now()
	req.Fresh = strings.EqualFold(r.Header.Get("X-OmniRoute-No-Cache"), "true")
	keyID := s.opt.Ops.KeyID(r.Context())
	var models []string
	switch {
	case prov != "":
		if !s.configured(prov) {
			return &llm.Error{Status: http.StatusNotFound, Type: llm.ErrNotFound, Code: "provider_not_found",
				Message: fmt.Sprintf("no search provider %q is configured (GET /v1/search lists them)", prov)}
		}
		models = []string{prov + "/" + DefaultModel}
	case model != "":
		if !strings.Contains(model, "/") && s.configured(model) {
			model += "/" + DefaultModel
		}
		models = []string{model}
	default:
		all := s.providers()
		if len(all) == 0 {
			return &llm.Error{Status: http.StatusNotFound, Type: llm.ErrNotFound, Code: "no_search_provider",
				Message: "no search provider is configured (types: " + strings.Join(Types(), ", ") + ")"}
		}
		for _, p := range s.permitted(r.Context()) {
			models = append(models, p.ID+"/"+DefaultModel)
		}
		if len(models) == 0 {
			return &llm.Error{Status: http.StatusForbidden, Type: llm.ErrPermission, Code: "model_not_allowed",
				Message: "no search provider is allowed for this API key"}
		}
	}
	var out answer
	var ans *pipeline.OpAnswer
	for i, m := range models {
		out = answer{}
		ans, err = run(s.op(m, keyID, req, &out))
		if err == nil || i == len(models)-1 || !nextProvider(err) {
			break
		}
	}
	if err != nil {
		return err
	}
	billed, _ := llm.Find(ans.Units, llm.UnitSearch)
	resp := response{Object: "search.result", Query: req.Query, Provider: ans.Target.Provider, Model: ans.Model,
		Results: out.res.Results, Answer: out.res.Answer, Images: out.res.Images,
		Usage: usage{Searches: billed, Cached: out.how == cached, Coalesced: out.how == coalesced}}
	if resp.Results == nil {
		resp.Results = []Hit{}
	}
	switch {
	case out.how == cached:
		w.Header().Set("X-OmniRoute-Cache", "HIT")
	case !req.Fresh:
		w.Header().Set("X-OmniRoute-Cache", "MISS")
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Service) configured(id string) bool {
	for _, p := range s.providers() {
		if p.ID == id {
			return true
		}
	}
	return false
}

// nextProvider reports whether a search that failed at one provider is
// worth trying at the next one of the default order: it reached the
// router (a gate's refusal is not) and failed there on the provider —
// unreachable, overloaded, refusing the provider's key, not allowed for
// the caller's key, or unable to apply a filter.
func nextProvider(err error) bool {
	attempts := router.AttemptsOf(err)
	if len(attempts) == 0 {
		return false
	}
	for _, a := range attempts {
		switch {
		case a.Status == 0, a.Status >= 500, a.Status == http.StatusTooManyRequests, a.Status == http.StatusRequestTimeout,
			a.Status == http.StatusUnauthorized, a.Status == http.StatusForbidden:
		case a.Status == http.StatusBadRequest && strings.Contains(a.Error, "does not serve"):
		default:
			return false
		}
	}
	return true
}
