package rerank

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/adapter"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/provider"
	"github.com/omniedge/omni/internal/route/router"
)

// The rerank provider types and their default base URLs (the rerank
// endpoint is {base}/rerank).
const (
	TypeCohere = "cohere" // POST {base}/rerank, base https://api.cohere.com/v2
	TypeVoyage = "voyage" // POST {base}/rerank, base https://api.voyageai.com/v1
	TypeJina   = "jina"   // POST {base}/rerank, base https://api.jina.ai/v1
)

var defaultBase = map[string]string{
	TypeCohere: "https://api.cohere.com/v2",
	TypeVoyage: "https://api.voyageai.com/v1",
	TypeJina:   "https://api.jina.ai/v1",
}

// Upstreams is the rerank provider types as a gateway module (it needs
// nothing built, so it comes with the formats at the top of the list).
func Upstreams() feature.Module {
	return feature.Module{Name: "rerank-upstreams", Package: "route/rerank", Providers: Register}
}

// Register adds the cohere, voyage and jina provider types.
func Register(reg *provider.Registry) {
	for _, typ := range []string{TypeCohere, TypeVoyage, TypeJina} {
		reg.Register(typ, func(cfg provider.Config) (router.Adapter, error) { return NewClient(typ, cfg), nil })
	}
}

// NewClient returns the client of one connection of a rerank provider type.
func NewClient(typ string, cfg provider.Config) *Client {
	return &Client{adapter.NewSingle(typ, cfg, defaultBase[typ], "rerank only: POST /v1/rerank")}
}

// Client calls a rerank upstream: Cohere, Voyage or Jina (Type). It is a
// router.Adapter that serves rerank only: chat requests routed to it are
// a 400.
type Client struct {
	adapter.Single
}

// ModelKind implements provider.Kinded: every model of a rerank
// upstream ranks documents.
func (c *Client) ModelKind() string { return provider.KindRerank }

// upstreamRequest is the body all three upstreams take; Voyage names
// top_n top_k, and Cohere's v2 API returns no documents (the gateway
// adds them from the request).
type upstreamRequest struct {
	Model           string   `json:"model"`
	Query           string   `json:"query"`
	Documents       []string `json:"documents"`
	TopN            int      `json:"top_n,omitempty"`
	TopK            int      `json:"top_k,omitempty"`
	ReturnDocuments *bool    `json:"return_documents,omitempty"`
}

// upstreamAnswer is what the three upstreams answer: Cohere and Jina
// list results, Voyage data; Cohere reports search units, Voyage and
// Jina tokens.
type upstreamAnswer struct {
	ID      string         `json:"id"`
	Results []upstreamRank `json:"results"`
	Data    []upstreamRank `json:"data"`
	Meta    struct {
		BilledUnits struct {
			SearchUnits *int64 `json:"search_units"`
		} `json:"billed_units"`
	} `json:"meta"`
	Usage struct {
		TotalTokens int `json:"total_tokens"`
	} `json:"usage"`
}

type upstreamRank struct {
	Index          *int     `json:"index"`
	RelevanceScore *float64 `json:"relevance_score"`
}

// Rerank implements Reranker.
func (c *Client) Rerank(ctx context.Context, model string, req *llm.RerankRequest) (*llm.RerankResponse, error) {
	body := upstreamRequest{Model: model, Query: req.Query, Documents: req.Documents}
	no := false
	switch c.Type {
	case TypeVoyage:
		body.TopK, body.ReturnDocuments = req.TopN, &no
	case TypeJina:
		body.TopN, body.ReturnDocuments = req.TopN, &no
	default:
		body.TopN = req.TopN
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	hr, err := adapter.NewRequest(ctx, c.Provider, http.MethodPost, c.BaseURL+"/rerank", b, "application/json")
	if err != nil {
		return nil, err
	}
	adapter.SetHeaders(hr.Header, c.Headers)
	adapter.SetKey(hr.Header, "Authorization", "Bearer ", c.APIKey)
	raw, err := adapter.Do(adapter.Conn{HTTP: c.HTTP, Provider: c.Provider, DecodeError: decodeError}, hr)
	if err != nil {
		return nil, err
	}
	var a upstreamAnswer
	unreadable := func(what string) error {
		return upstreamhttp.Unreadable(c.Provider, &llm.Error{Status: http.StatusBadGateway, Message: what})
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, unreadable("not a rerank answer")
	}
	ranks := a.Results
	if c.Type == TypeVoyage {
		ranks = a.Data
	}
	out := &llm.RerankResponse{ID: a.ID, Results: make([]llm.RerankResult, 0, len(ranks)), Usage: llm.Usage{InputTokens: a.Usage.TotalTokens}}
	for _, r := range ranks {
		if r.Index == nil || r.RelevanceScore == nil {
			return nil, unreadable("a result without index or relevance_score")
		}
		out.Results = append(out.Results, llm.RerankResult{Index: *r.Index, RelevanceScore: *r.RelevanceScore})
	}
	if su := a.Meta.BilledUnits.SearchUnits; su != nil {
		out.Billed = []llm.Quantity{{Unit: llm.UnitSearchUnit, N: *su}}
	}
	return out, nil
}

// decodeError reads the error bodies of the three upstreams: Cohere's
// {"message"}, Voyage's and Jina's {"detail"} (a string, or FastAPI's
// list of problems), and OpenAI-style {"error":{"message"}}.
func decodeError(status int, _ http.Header, body []byte) *llm.Error {
	var e struct {
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
		Error   struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil {
		switch {
		case e.Message != "":
			msg = e.Message
		case e.Error.Message != "":
			msg = e.Error.Message
		case len(e.Detail) > 0:
			var s string
			if json.Unmarshal(e.Detail, &s) == nil {
				msg = s
			} else {
				msg = string(e.Detail)
			}
		}
	}
	if msg == "" {
		msg = upstreamhttp.StatusText(status)
	}
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	return &llm.Error{Status: status, Type: llm.TypeForStatus(status), Message: msg}
}
