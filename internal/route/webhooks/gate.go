package webhooks

import (
	"context"

	"github.com/omniedge/omni/internal/route/events"
	"github.com/omniedge/omni/internal/route/pipeline"
)

// gate publishes request.failed for every call that ends in an error
// (the refusals of the gates after it included; a client that went away
// is no failure). It admits every call, and when no webhook listens to
// request.failed it does not even watch the outcome.
type gate struct{ s *Service }

// statusClientGone is the outcome of a call whose client went away.
const statusClientGone = 499

// RequestFailed is the data of a request.failed event.
type RequestFailed struct {
	KeyID     string `json:"keyId,omitempty"`
	Endpoint  string `json:"endpoint"`
	Model     string `json:"model"`
	Provider  string `json:"provider,omitempty"`
	Status    int    `json:"status"`
	ErrorType string `json:"errorType,omitempty"`
	Code      string `json:"code,omitempty"`
	Message   string `json:"message,omitempty"`
	Attempts  int    `json:"attempts"`
}

// Admit implements pipeline.Gate.
func (g gate) Admit(ctx context.Context, c *pipeline.Call) (context.Context, func(pipeline.Outcome), error) {
	if !g.s.Subscribed(events.RequestFailed) {
		return ctx, nil, nil
	}
	keyID, endpoint, model := c.KeyID, c.Endpoint, c.Model
	return ctx, func(o pipeline.Outcome) {
		if o.Err == nil || o.Status == statusClientGone {
			return
		}
		d := RequestFailed{KeyID: keyID, Endpoint: endpoint, Model: model, Provider: o.Target.Provider, Status: o.Status,
			ErrorType: string(o.Err.Type), Code: o.Err.Code, Message: clip(o.Err.Message), Attempts: len(o.Attempts)}
		g.s.Publish(ctx, events.Event{Type: events.RequestFailed, At: g.s.clk.Now(), Data: d})
	}, nil
}
