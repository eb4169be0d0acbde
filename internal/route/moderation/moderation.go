// Package moderation is the gateway's moderation modality: POST
// /v1/moderations in OpenAI's shape (input a string, an array of
// strings, or of text and image_url parts; model optional, default
// omni-moderation-latest), run through the pipeline's operation path
// (pipeline.Engine.Do: key policy, limits, budgets priced per 1,000
// inputs, usage records counting inputs, fallback across an alias's or
// combo's targets) to an OpenAI-format upstream (formats/openai's Client
// moderates), and answered in OpenAI's shape.
package moderation

import (
	"context"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/pipeline"
	"github.com/omniedge/omni/internal/route/router"
)

// DefaultModel is the model of a request that names none, as OpenAI's.
const DefaultModel = "omni-moderation-latest"

// MaxBody bounds the request body (images may come inline as data: URLs).
const MaxBody = 8 << 20

// Moderator is the capability of a provider adapter that classifies
// inputs (formats/openai's Client).
type Moderator interface {
	Moderate(ctx context.Context, model string, req *llm.ModerationRequest) (*llm.ModerationResponse, error)
}

// Resolver says whether a model name leads somewhere (the router).
type Resolver interface {
	Resolve(model string) ([]router.Target, string, error)
}

// Service serves POST /v1/moderations over the gateway's operations.
type Service struct {
	ops      feature.Operations
	resolver Resolver
}

// New returns the moderation endpoint over ops (the gateway transport);
// resolver lets a bare model name ("omni-moderation-latest") that is no
// alias or combo go to the provider named openai.
func New(ops feature.Operations, resolver Resolver) *Service {
	return &Service{ops: ops, resolver: resolver}
}

// Module is the moderation endpoint as a gateway feature.
func (s *Service) Module() feature.Module {
	return feature.Module{
		Name:    "moderation",
		Package: "route/moderation",
		Routes:  s.Register,
	}
}

// Register adds POST /v1/moderations to mux; it takes a gateway key.
func (s *Service) Register(mux feature.Mux) {
	mux.Handle("POST /v1/moderations", s.ops.JSON(MaxBody, s.moderate))
}

// model is the name the request is routed by: the client's, or
// DefaultModel; a bare name that leads nowhere goes to openai/<name>
// when that does.
func (s *Service) model(asked string) string {
	name := asked
	if name == "" {
		name = DefaultModel
	}
	if strings.Contains(name, "/") || s.resolver == nil {
		return name
	}
	if _, _, err := s.resolver.Resolve(name); err == nil {
		return name
	}
	if _, _, err := s.resolver.Resolve("openai/" + name); err == nil {
		return "openai/" + name
	}
	return name
}

// Op describes a moderation of req with model to the pipeline; the
// answer of the attempt that succeeded is stored in *out.
func Op(model string, req *llm.ModerationRequest, out **llm.ModerationResponse) *pipeline.Op {
	tokens := 0
	for _, in := range req.Inputs {
		tokens += llm.EstimateTokens(in.Text)
	}
	return &pipeline.Op{
		Modality:    llm.ModalityModeration,
		Model:       model,
		Units:       []llm.Quantity{{Unit: llm.UnitModeration, N: int64(len(req.Inputs))}},
		InputTokens: tokens,
		Call: func(ctx context.Context, c router.Connection, t router.Target) (pipeline.OpUsage, error) {
			m, ok := c.Adapter.(Moderator)
			if !ok {
				return pipeline.OpUsage{}, &router.UnsupportedError{Provider: t.Provider, What: "moderations"}
			}
			res, err := m.Moderate(ctx, t.Model, req)
			if err != nil {
				return pipeline.OpUsage{}, err
			}
			*out = res
			return pipeline.OpUsage{}, nil
		},
	}
}

func (s *Service) moderate(w http.ResponseWriter, r *http.Request, body []byte, run feature.RunOp) error {
	asked, req, err := openai.DecodeModerationRequest(body)
	if err != nil {
		return err
	}
	var res *llm.ModerationResponse
	if _, err := run(Op(s.model(asked), req, &res)); err != nil {
		return err
	}
	out, err := openai.EncodeModerationResponse(asked, res)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
	return nil
}
