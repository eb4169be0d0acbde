package adapter

import (
	"context"
	"net/http"
	"strings"

	"github.com/omniedge/omni/internal/route/llm"
	"github.com/omniedge/omni/internal/route/provider"
)

// Single is embedded by the client of a provider type that serves one
// modality beyond chat (rerank, transcription, web search, generation
// jobs, a local image engine): the connection's address and credentials,
// and the router.Adapter methods Chat and Stream, which answer 400 saying
// what the type serves instead.
type Single struct {
	Type     string
	BaseURL  string // without a trailing slash
	APIKey   string
	HTTP     *http.Client
	Headers  map[string]string
	Provider string
	serves   string
}

// NewSingle is the connection cfg of a provider type typ whose base URL
// is base unless cfg names one; serves ends the 400 a chat routed to it
// gets ("rerank only: POST /v1/rerank").
func NewSingle(typ string, cfg provider.Config, base, serves string) Single {
	if cfg.BaseURL != "" {
		base = cfg.BaseURL
	}
	return Single{Type: typ, BaseURL: strings.TrimRight(base, "/"), APIKey: cfg.APIKey, HTTP: cfg.HTTP, Headers: cfg.Headers,
		Provider: cfg.ID, serves: serves}
}

func (s *Single) notChat() error {
	return &llm.Error{Status: http.StatusBadRequest, Type: llm.ErrInvalidRequest, Provider: s.Provider,
		Message: "provider " + s.Provider + " (type " + s.Type + ") serves " + s.serves}
}

// Chat implements router.Adapter: the type does not chat.
func (s *Single) Chat(context.Context, *llm.Request, string) (*llm.Response, error) {
	return nil, s.notChat()
}

// Stream implements router.Adapter: the type does not chat.
func (s *Single) Stream(context.Context, *llm.Request, string) (llm.Stream, error) {
	return nil, s.notChat()
}
