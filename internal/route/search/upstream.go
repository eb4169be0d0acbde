package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/adapter"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// The search provider types.
const (
	TypeSearXNG = "searxng" // GET {base}/search?q=…&format=json (self-hosted; no default base)
	TypeTavily  = "tavily"  // POST {base}/search, base https://api.tavily.com, Authorization: Bearer
	TypeBrave   = "brave"   // GET {base}/web/search, base https://api.search.brave.com/res/v1, X-Subscription-Token
	TypeExa     = "exa"     // POST {base}/search, base https://api.exa.ai, x-api-key
	TypeSerper  = "serper"  // POST {base}/search, base https://google.serper.dev, X-API-KEY
)

// Types lists the search provider types.
func Types() []string { return []string{TypeSearXNG, TypeTavily, TypeBrave, TypeExa, TypeSerper} }

var defaultBase = map[string]string{
	TypeTavily: "https://api.tavily.com",
	TypeBrave:  "https://api.search.brave.com/res/v1",
	TypeExa:    "https://api.exa.ai",
	TypeSerper: "https://google.serper.dev",
}

// Capabilities is what a provider type honours of a request. A request
// asking for a filter its provider cannot apply is not sent there (the
// next target is tried); the answer and images are given when the
// provider has them.
type Capabilities struct {
	MaxResults  int      `json:"max_results"`
	TimeRange   bool     `json:"time_range"`
	Domains     bool     `json:"domains"`
	Country     bool     `json:"country"`
	Language    bool     `json:"language"`
	SafeSearch  bool     `json:"safe_search"`
	SearchDepth bool     `json:"search_depth"`
	Topics      []string `json:"topics"`
	Answer      bool     `json:"answer"`
	Images      bool     `json:"images"`
}

var capabilities = map[string]Capabilities{
	TypeSearXNG: {MaxResults: MaxResults, TimeRange: true, Language: true, SafeSearch: true, Topics: []string{"general", "news"}},
	TypeTavily: {MaxResults: MaxResults, TimeRange: true, Domains: true, SearchDepth: true,
		Topics: []string{"general", "news", "finance"}, Answer: true, Images: true},
	TypeBrave:  {MaxResults: MaxResults, TimeRange: true, Domains: true, Country: true, Language: true, SafeSearch: true, Topics: []string{"general"}},
	TypeExa:    {MaxResults: MaxResults, TimeRange: true, Domains: true, Topics: []string{"general"}},
	TypeSerper: {MaxResults: MaxResults, TimeRange: true, Domains: true, Country: true, Language: true, Topics: []string{"general"}, Answer: true},
}

// CapabilitiesOf returns what provider type typ honours; ok is false for
// a type that is no search provider.
func CapabilitiesOf(typ string) (Capabilities, bool) {
	c, ok := capabilities[typ]
	return c, ok
}

// unsupported names the first filter of req that c cannot apply, "" when
// it can apply them all.
func (c Capabilities) unsupported(req *Request) string {
	switch {
	case req.TimeRange != "" && !c.TimeRange:
		return "time_range"
	case (len(req.IncludeDomains) > 0 || len(req.ExcludeDomains) > 0) && !c.Domains:
		return "include_domains/exclude_domains"
	case req.Country != "" && !c.Country:
		return "country"
	case req.Language != "" && !c.Language:
		return "language"
	case req.SafeSearch != "" && !c.SafeSearch:
		return "safe_search"
	case req.Topic != "" && req.Topic != "general" && !contains(c.Topics, req.Topic):
		return "topic " + req.Topic
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Upstreams is the search provider types as a gateway module (it needs
// nothing built, so it comes with the formats at the top of the list).
func Upstreams() feature.Module {
	return feature.Module{Name: "search-upstreams", Package: "route/search", Providers: Register}
}

// Register adds the searxng, tavily, brave, exa and serper provider types.
func Register(reg *provider.Registry) {
	for _, typ := range Types() {
		reg.Register(typ, func(cfg provider.Config) (router.Adapter, error) { return NewClient(typ, cfg) })
	}
}

// NewClient returns the client of one connection of a search provider
// type. SearXNG is self-hosted: it needs a base URL.
func NewClient(typ string, cfg provider.Config) (*Client, error) {
	base := cfg.BaseURL
	if base == "" {
		base = defaultBase[typ]
	}
	if base == "" {
		return nil, fmt.Errorf("provider %q of type %s needs a base_url (the instance's address)", cfg.ID, typ)
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	cfg.BaseURL, cfg.HTTP = base, hc
	return &Client{adapter.NewSingle(typ, cfg, base, "web search only: POST /v1/search")}, nil
}

// Client calls one search upstream (Type). It is a router.Adapter that
// serves search only: chat requests routed to it are a 400.
type Client struct {
	adapter.Single
}

// ModelKind implements provider.Kinded: a search provider's models
// search.
func (c *Client) ModelKind() string { return provider.KindSearch }

// DefaultModel implements provider.DefaultModeled: a search names no
// model ("tv/search").
func (c *Client) DefaultModel() string { return "search" }

// Capabilities implements Searcher.
func (c *Client) Capabilities() Capabilities { return capabilities[c.Type] }

// Search implements Searcher: req in the upstream's wire format, its
// answer read up to MaxUpstreamBody bytes and normalized.
func (c *Client) Search(ctx context.Context, model string, req *Request) (*Result, error) {
	hr, err := c.request(ctx, req)
	if err != nil {
		return nil, err
	}
	adapter.SetHeaders(hr.Header, c.Headers)
	switch c.Type {
	case TypeTavily, TypeSearXNG:
		adapter.SetKey(hr.Header, "Authorization", "Bearer ", c.APIKey)
	case TypeBrave:
		adapter.SetKey(hr.Header, "X-Subscription-Token", "", c.APIKey)
	case TypeExa:
		adapter.SetKey(hr.Header, "x-api-key", "", c.APIKey)
	case TypeSerper:
		adapter.SetKey(hr.Header, "X-API-KEY", "", c.APIKey)
	}
	resp, err := upstreamhttp.Send(c.HTTP, hr, c.Provider, decodeError)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxUpstreamBody+1))
	if err == nil && len(raw) > MaxUpstreamBody {
		err = fmt.Errorf("the upstream answer is larger than %d bytes", MaxUpstreamBody)
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, upstreamhttp.Unreadable(c.Provider, &llm.Error{Status: http.StatusBadGateway, Message: err.Error()})
	}
	res, err := c.decode(raw, req)
	if err != nil {
		return nil, upstreamhttp.Unreadable(c.Provider, &llm.Error{Status: http.StatusBadGateway, Message: "not a " + c.Type + " search answer: " + err.Error()})
	}
	res.trim(req.MaxResults)
	return res, nil
}

// timeRanges maps the normalized time range to each upstream's value.
var (
	braveFreshness = map[string]string{"day": "pd", "week": "pw", "month": "pm", "year": "py"}
	serperTBS      = map[string]string{"day": "qdr:d", "week": "qdr:w", "month": "qdr:m", "year": "qdr:y"}
	rangeDays      = map[string]int{"day": 1, "week": 7, "month": 31, "year": 366}
	searxSafe      = map[string]string{"off": "0", "moderate": "1", "strict": "2"}
)

// siteQuery adds domain filters to a query as the site: operators Google
// (Serper) and Brave document; domains are validated hostnames, so they
// add nothing else to the query.
func siteQuery(req *Request) string {
	q := req.Query
	if len(req.IncludeDomains) > 0 {
		sites := make([]string, len(req.IncludeDomains))
		for i, d := range req.IncludeDomains {
			sites[i] = "site:" + d
		}
		q += " (" + strings.Join(sites, " OR ") + ")"
	}
	for _, d := range req.ExcludeDomains {
		q += " -site:" + d
	}
	return q
}

func (c *Client) request(ctx context.Context, req *Request) (*http.Request, error) {
	post := func(path string, body any) (*http.Request, error) {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		return adapter.NewRequest(ctx, c.Provider, http.MethodPost, c.BaseURL+path, b, "application/json")
	}
	get := func(path string, q url.Values) (*http.Request, error) {
		return adapter.NewRequest(ctx, c.Provider, http.MethodGet, c.BaseURL+path+"?"+q.Encode(), nil, "application/json")
	}
	switch c.Type {
	case TypeSearXNG:
		q := url.Values{"q": {req.Query}, "format": {"json"}}
		if req.TimeRange != "" {
			q.Set("time_range", req.TimeRange)
		}
		if req.Language != "" {
			q.Set("language", req.Language)
		}
		if req.SafeSearch != "" {
			q.Set("safesearch", searxSafe[req.SafeSearch])
		}
		if req.Topic == "news" {
			q.Set("categories", "news")
		}
		return get("/search", q)
	case TypeTavily:
		body := map[string]any{"query": req.Query, "max_results": req.MaxResults}
		if req.Depth != "" {
			body["search_depth"] = req.Depth
		}
		if req.Topic != "" {
			body["topic"] = req.Topic
		}
		if req.TimeRange != "" {
			body["time_range"] = req.TimeRange
		}
		if len(req.IncludeDomains) > 0 {
			body["include_domains"] = req.IncludeDomains
		}
		if len(req.ExcludeDomains) > 0 {
			body["exclude_domains"] = req.ExcludeDomains
		}
		if req.IncludeAnswer {
			body["include_answer"] = true
		}
		if req.IncludeImages {
			body["include_images"] = true
		}
		return post("/search", body)
	case TypeBrave:
		q := url.Values{"q": {siteQuery(req)}, "count": {strconv.Itoa(req.MaxResults)}}
		if f := braveFreshness[req.TimeRange]; f != "" {
			q.Set("freshness", f)
		}
		if req.Country != "" {
			q.Set("country", strings.ToUpper(req.Country))
		}
		if req.Language != "" {
			q.Set("search_lang", req.Language)
		}
		if req.SafeSearch != "" {
			q.Set("safesearch", req.SafeSearch)
		}
		return get("/web/search", q)
	case TypeExa:
		body := map[string]any{"query": req.Query, "numResults": req.MaxResults,
			"contents": map[string]any{"text": map[string]any{"maxCharacters": MaxContentBytes}}}
		if len(req.IncludeDomains) > 0 {
			body["includeDomains"] = req.IncludeDomains
		}
		if len(req.ExcludeDomains) > 0 {
			body["excludeDomains"] = req.ExcludeDomains
		}
		if d := rangeDays[req.TimeRange]; d > 0 {
			body["startPublishedDate"] = req.Now.UTC().AddDate(0, 0, -d).Format(time.RFC3339)
		}
		return post("/search", body)
	case TypeSerper:
		body := map[string]any{"q": siteQuery(req), "num": req.MaxResults}
		if t := serperTBS[req.TimeRange]; t != "" {
			body["tbs"] = t
		}
		if req.Country != "" {
			body["gl"] = strings.ToLower(req.Country)
		}
		if req.Language != "" {
			body["hl"] = req.Language
		}
		return post("/search", body)
	}
	return nil, fmt.Errorf("search: unknown provider type %q", c.Type)
}

// The upstreams' answers, as much of them as the normalized shape uses.
type (
	searxAnswer struct {
		Results []struct {
			Title         string   `json:"title"`
			URL           string   `json:"url"`
			Content       string   `json:"content"`
			Score         *float64 `json:"score"`
			PublishedDate *string  `json:"publishedDate"`
		} `json:"results"`
		Answers []json.RawMessage `json:"answers"`
	}
	tavilyAnswer struct {
		Answer  *string           `json:"answer"`
		Images  []json.RawMessage `json:"images"` // URLs, or {url, description} objects
		Results []struct {
			Title         string   `json:"title"`
			URL           string   `json:"url"`
			Content       string   `json:"content"`
			Score         *float64 `json:"score"`
			PublishedDate string   `json:"published_date"`
		} `json:"results"`
	}
	braveAnswer struct {
		Web *struct {
			Results []struct {
				Title       string `json:"title"`
				URL         string `json:"url"`
				Description string `json:"description"`
				PageAge     string `json:"page_age"`
			} `json:"results"`
		} `json:"web"`
	}
	exaAnswer struct {
		Results []struct {
			Title         string   `json:"title"`
			URL           string   `json:"url"`
			Text          string   `json:"text"`
			Summary       string   `json:"summary"`
			Highlights    []string `json:"highlights"`
			Score         *float64 `json:"score"`
			PublishedDate string   `json:"publishedDate"`
		} `json:"results"`
	}
	serperAnswer struct {
		AnswerBox *struct {
			Answer  string `json:"answer"`
			Snippet string `json:"snippet"`
		} `json:"answerBox"`
		Organic []struct {
			Title   string `json:"title"`
			Link    string `json:"link"`
			Snippet string `json:"snippet"`
			Date    string `json:"date"`
		} `json:"organic"`
	}
)

var errNoResults = errors.New(`no "results" list`)

// markup is the emphasis Brave puts in its descriptions (<strong>).
var markup = regexp.MustCompile(`</?(strong|b|em)>`)

func (c *Client) decode(raw []byte, req *Request) (*Result, error) {
	res := &Result{Results: []Hit{}}
	add := func(title, u, content string, score *float64, published string) {
		if len(res.Results) < MaxResults {
			if h, ok := hit(title, u, content, score, published); ok {
				res.Results = append(res.Results, h)
			}
		}
	}
	switch c.Type {
	case TypeSearXNG:
		var a searxAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		if a.Results == nil {
			return nil, errNoResults
		}
		for _, r := range a.Results {
			p := ""
			if r.PublishedDate != nil {
				p = *r.PublishedDate
			}
			add(r.Title, r.URL, r.Content, r.Score, p)
		}
	case TypeTavily:
		var a tavilyAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		if a.Results == nil {
			return nil, errNoResults
		}
		for _, r := range a.Results {
			add(r.Title, r.URL, r.Content, r.Score, r.PublishedDate)
		}
		if a.Answer != nil && req.IncludeAnswer {
			res.Answer = clip(*a.Answer, MaxAnswerBytes)
		}
		if req.IncludeImages {
			for _, im := range a.Images {
				var u string
				if json.Unmarshal(im, &u) != nil {
					var o struct {
						URL string `json:"url"`
					}
					_ = json.Unmarshal(im, &o)
					u = o.URL
				}
				if webURL(u) && len(res.Images) < MaxImages {
					res.Images = append(res.Images, u)
				}
			}
		}
	case TypeBrave:
		var a braveAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		if a.Web != nil { // no web results: Brave leaves "web" out
			for _, r := range a.Web.Results {
				add(r.Title, r.URL, markup.ReplaceAllString(r.Description, ""), nil, r.PageAge)
			}
		}
	case TypeExa:
		var a exaAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		if a.Results == nil {
			return nil, errNoResults
		}
		for _, r := range a.Results {
			content := r.Text
			if content == "" {
				content = r.Summary
			}
			if content == "" {
				content = strings.Join(r.Highlights, " … ")
			}
			add(r.Title, r.URL, content, r.Score, r.PublishedDate)
		}
	case TypeSerper:
		var a serperAnswer
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		for _, r := range a.Organic {
			add(r.Title, r.Link, r.Snippet, nil, r.Date)
		}
		if b := a.AnswerBox; b != nil && req.IncludeAnswer {
			ans := b.Answer
			if ans == "" {
				ans = b.Snippet
			}
			res.Answer = clip(ans, MaxAnswerBytes)
		}
	}
	return res, nil
}

// hit is one result, its fields capped; a result without an http(s) URL
// is dropped (a hostile upstream's javascript: link goes no further).
func hit(title, u, content string, score *float64, published string) (Hit, bool) {
	if !webURL(u) {
		return Hit{}, false
	}
	h := Hit{Title: clip(title, MaxTitleBytes), URL: u, Content: clip(content, MaxContentBytes), PublishedDate: clip(published, 64)}
	if score != nil {
		s := *score
		h.Score = &s
	}
	return h, true
}

// webURL reports an absolute http(s) URL of at most MaxURLBytes.
func webURL(s string) bool {
	if s == "" || len(s) > MaxURLBytes {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// clip cuts s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// decodeError reads the upstreams' error bodies: Tavily's
// {"detail":{"error"}}, Brave's {"error":{"detail"}}, Exa's and Serper's
// {"error"} or {"message"}, and whatever SearXNG's proxy answers.
func decodeError(status int, _ http.Header, body []byte) *llm.Error {
	var e struct {
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
		Error   json.RawMessage `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil {
		for _, raw := range []json.RawMessage{e.Error, e.Detail} {
			if msg != "" || len(raw) == 0 {
				continue
			}
			var s string
			if json.Unmarshal(raw, &s) == nil {
				msg = s
				continue
			}
			var o struct {
				Error   string `json:"error"`
				Detail  string `json:"detail"`
				Message string `json:"message"`
			}
			if json.Unmarshal(raw, &o) == nil {
				msg = o.Error + o.Detail + o.Message
			}
		}
		if msg == "" {
			msg = e.Message
		}
	}
	if msg == "" {
		msg = upstreamhttp.StatusText(status)
	}
	return &llm.Error{Status: status, Type: llm.TypeForStatus(status), Message: clip(msg, 1000)}
}
