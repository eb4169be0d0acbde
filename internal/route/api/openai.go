package api

import (
	"net/http"

	"github.com/omniedge/omni/internal/route/llm"
)

// openAIErrors renders errors in OpenAI's shape until the OpenAI format
// package provides its encoder.
func openAIErrors(w http.ResponseWriter, e *llm.Error) {
	status := e.Status
	if status == 0 {
		status = http.StatusBadGateway
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfter(e))
	}
	type detail struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	}
	var code *string
	if e.Code != "" {
		code = &e.Code
	}
	writeJSON(w, status, map[string]detail{"error": {Message: e.Message, Type: string(e.Type), Code: code}})
}

func (s *Server) registerOpenAI() {}
