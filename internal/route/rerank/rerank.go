// Package rerank is the gateway's rerank modality: POST /v1/rerank in the
// Cohere/Voyage shape (model, query, documents as strings or objects
// with text, top_n or Voyage's top_k, return_documents), run through the
// pipeline's operation path (pipeline.Engine.Do: key policy, limits,
// budgets priced per 1,000 documents or per Cohere search unit, usage
// records counting documents, fallback across an alias's or combo's
// targets), and the rerank upstreams as provider types: Cohere
// (/v2/rerank), Voyage (/v1/rerank) and Jina (/v1/rerank). Requests are
// capped (documents, query and document sizes, top_n) before anything
// is routed.
package rerank

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// The caps of a rerank request, checked before it is routed: a key
// holder cannot make the gateway hold, send or pay for more.
const (
	// MaxDocuments is the most documents one request ranks (Cohere and
	// Voyage take 1,000).
	MaxDocuments = 1000
	// MaxQueryBytes bounds the query.
	MaxQueryBytes = 32 << 10
	// MaxDocumentBytes bounds each document.
	MaxDocumentBytes = 64 << 10
	// MaxBody bounds the request body.
	MaxBody = 8 << 20
)

// Reranker is the capability of a provider adapter that ranks documents
// (this package's Client; route/router's Operation asks for it).
type Reranker interface {
	Rerank(ctx context.Context, model string, req *llm.RerankRequest) (*llm.RerankResponse, error)
}

// Service serves POST /v1/rerank over the gateway's operations.
type Service struct {
	ops feature.Operations
}

// New returns the rerank endpoint over ops (the gateway transport).
func New(ops feature.Operations) *Service { return &Service{ops: ops} }

// Module is the rerank endpoint as a gateway feature; its provider types
// come with Upstreams.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:    "rerank",
		Package: "route/rerank",
		Routes:  s.Register,
	}
}

// Register adds POST /v1/rerank to mux; it takes a gateway key.
func (s *Service) Register(mux feature.Mux) {
	mux.Handle("POST /v1/rerank", s.ops.JSON(MaxBody, s.rerank))
}

// request is the client's body: Cohere's and Voyage's fields.
type request struct {
	Model           string            `json:"model"`
	Query           *string           `json:"query"`
	Documents       []json.RawMessage `json:"documents"`
	TopN            *int              `json:"top_n"`
	TopK            *int              `json:"top_k"` // Voyage's name of top_n
	ReturnDocuments bool              `json:"return_documents"`
}

// document is a document given as an object (Cohere v1, Jina).
type document struct {
	Text *string `json:"text"`
}

func invalid(code, format string, a ...any) *llm.Error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Code: code, Message: fmt.Sprintf(format, a...)}
}

// decode validates a client's rerank request against the caps.
func decode(body []byte, contentType string) (string, *llm.RerankRequest, error) {
	var in request
	if err := httpx.DecodeJSONBytes(body, &in, contentType); err != nil {
		return "", nil, err
	}
	if in.Model == "" {
		return "", nil, invalid("missing_model", `"model" is required`)
	}
	if in.Query == nil || *in.Query == "" {
		return "", nil, invalid("missing_query", `"query" is required and may not be empty`)
	}
	if len(*in.Query) > MaxQueryBytes || !utf8.ValidString(*in.Query) {
		return "", nil, invalid("query_too_long", `"query" must be UTF-8 text of at most %d bytes`, MaxQueryBytes)
	}
	if len(in.Documents) == 0 {
		return "", nil, invalid("missing_documents", `"documents" is required: a non-empty array of strings or objects with "text"`)
	}
	if len(in.Documents) > MaxDocuments {
		return "", nil, invalid("too_many_documents", `"documents" has %d documents; at most %d are ranked in one request`, len(in.Documents), MaxDocuments)
	}
	req := &llm.RerankRequest{Query: *in.Query, Documents: make([]string, len(in.Documents)), ReturnDocuments: in.ReturnDocuments}
	for i, raw := range in.Documents {
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			var d document
			if err := json.Unmarshal(raw, &d); err != nil || d.Text == nil {
				return "", nil, invalid("invalid_document", `documents[%d] must be a string or an object with a "text" string`, i)
			}
			text = *d.Text
		}
		if len(text) > MaxDocumentBytes {
			return "", nil, invalid("document_too_long", `documents[%d] is longer than %d bytes`, i, MaxDocumentBytes)
		}
		req.Documents[i] = text
	}
	top := in.TopN
	if top == nil {
		top = in.TopK
	}
	if top != nil {
		if *top < 1 || *top > MaxDocuments {
			return "", nil, invalid("invalid_top_n", `"top_n" must be 1 to %d`, MaxDocuments)
		}
		req.TopN = min(*top, len(req.Documents)) // more than there are is all of them
	}
	return in.Model, req, nil
}

// Op describes a rerank of req with model to the pipeline; the answer of
// the attempt that succeeded is stored in *out.
func Op(model string, req *llm.RerankRequest, out **llm.RerankResponse) *pipeline.Op {
	// Voyage's and Jina's billed tokens: the query with each document.
	q := llm.EstimateTokens(req.Query)
	tokens := 0
	for _, d := range req.Documents {
		tokens += q + llm.EstimateTokens(d)
	}
	n := len(req.Documents)
	return &pipeline.Op{
		Modality:    llm.ModalityRerank,
		Model:       model,
		Units:       []llm.Quantity{{Unit: llm.UnitDocument, N: int64(n)}, {Unit: llm.UnitSearchUnit, N: llm.SearchUnits(n)}},
		InputTokens: tokens,
		Call: func(ctx context.Context, c router.Connection, t router.Target) (pipeline.OpUsage, error) {
			rr, ok := c.Adapter.(Reranker)
			if !ok {
				return pipeline.OpUsage{}, &router.UnsupportedError{Provider: t.Provider, What: "rerank"}
			}
			res, err := rr.Rerank(ctx, t.Model, req)
			if err != nil {
				return pipeline.OpUsage{}, err
			}
			if err := check(res, req, t.Provider); err != nil {
				return pipeline.OpUsage{}, err
			}
			*out = res
			return pipeline.OpUsage{Usage: res.Usage, Billed: res.Billed}, nil
		},
	}
}

// check refuses an upstream answer that names documents the request did
// not have (an unreadable answer, which the next target may fix).
func check(res *llm.RerankResponse, req *llm.RerankRequest, provider string) error {
	for _, r := range res.Results {
		if r.Index < 0 || r.Index >= len(req.Documents) {
			return &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Provider: provider,
				Message: provider + ": upstream answer unreadable: a result names a document the request did not have"}
		}
	}
	if req.TopN > 0 && len(res.Results) > req.TopN {
		res.Results = res.Results[:req.TopN]
	}
	return nil
}

// response is the answer in Cohere's shape, with the model and the
// tokens billed (Jina's usage) beside it.
type response struct {
	ID      string   `json:"id,omitempty"`
	Object  string   `json:"object"`
	Model   string   `json:"model"`
	Results []result `json:"results"`
	Meta    meta     `json:"meta"`
	Usage   usage    `json:"usage"`
}

type result struct {
	Index          int       `json:"index"`
	RelevanceScore float64   `json:"relevance_score"`
	Document       *docField `json:"document,omitempty"`
}

type docField struct {
	Text string `json:"text"`
}

type meta struct {
	BilledUnits billedUnits `json:"billed_units"`
}

type billedUnits struct {
	SearchUnits int64 `json:"search_units,omitempty"`
	Documents   int64 `json:"documents"`
}

type usage struct {
	TotalTokens int `json:"total_tokens"`
}

func (s *Service) rerank(w http.ResponseWriter, r *http.Request, body []byte, run feature.RunOp) error {
	model, req, err := decode(body, r.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	var res *llm.RerankResponse
	ans, err := run(Op(model, req, &res))
	if err != nil {
		return err
	}
	out := response{ID: res.ID, Object: "rerank", Model: model, Results: make([]result, len(res.Results)),
		Usage: usage{TotalTokens: ans.Usage.InputTokens}}
	out.Meta.BilledUnits.Documents, _ = llm.Find(ans.Units, llm.UnitDocument)
	if _, ok := llm.Find(res.Billed, llm.UnitSearchUnit); ok {
		out.Meta.BilledUnits.SearchUnits, _ = llm.Find(ans.Units, llm.UnitSearchUnit)
	}
	if ans.Usage.Estimated {
		out.Usage.TotalTokens = 0 // the upstream counted none
	}
	for i, rr := range res.Results {
		out.Results[i] = result{Index: rr.Index, RelevanceScore: rr.RelevanceScore}
		if req.ReturnDocuments {
			out.Results[i].Document = &docField{Text: req.Documents[rr.Index]}
		}
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}
