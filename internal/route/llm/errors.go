package llm

import (
	"fmt"
	"net/http"
	"time"
)

// ErrorType classifies an error the way every dialect can express it.
type ErrorType string

// Error types (Anthropic's names; OpenAI's map onto them).
const (
	ErrInvalidRequest  ErrorType = "invalid_request_error"
	ErrAuthentication  ErrorType = "authentication_error"
	ErrPermission      ErrorType = "permission_error"
	ErrNotFound        ErrorType = "not_found_error"
	ErrRequestTooLarge ErrorType = "request_too_large"
	ErrRateLimit       ErrorType = "rate_limit_error"
	ErrServer          ErrorType = "api_error"
	ErrOverloaded      ErrorType = "overloaded_error"
	ErrTimeout         ErrorType = "timeout_error"
)

// Error is a failure from an upstream or from the gateway, with enough
// detail for fallback decisions and for each dialect's error body.
type Error struct {
	Status     int           `json:"status"`
	Type       ErrorType     `json:"type"`
	Code       string        `json:"code,omitempty"`
	Message    string        `json:"message"`
	Provider   string        `json:"provider,omitempty"`
	RetryAfter time.Duration `json:"retry_after,omitempty"`
	// InStream marks an error that arrived inside a 200 stream.
	InStream bool `json:"in_stream,omitempty"`
	// Attempts lists what the gateway tried before giving up, when it
	// tried more than one place; error bodies carry it beside the
	// dialect's own error object.
	Attempts []Attempt `json:"attempts,omitempty"`
}

// Attempt is one try of a request, as reported to the client.
type Attempt struct {
	Target     string `json:"target"` // provider/model
	Connection string `json:"connection,omitempty"`
	Status     int    `json:"status"`
	Error      string `json:"error,omitempty"`
	ElapsedMS  int64  `json:"elapsed_ms"`
}

func (e *Error) Error() string {
	if e.Provider != "" {
		return fmt.Sprintf("%s: %d %s: %s", e.Provider, e.Status, e.Type, e.Message)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message)
}

// Retryable reports whether another target may succeed where this one
// failed: connection-level failures, 408, 429 and 5xx.
func (e *Error) Retryable() bool {
	switch {
	case e.Status == 0, e.Status == http.StatusRequestTimeout, e.Status == http.StatusTooManyRequests, e.Status >= 500:
		return true
	case e.Type == ErrOverloaded, e.Type == ErrRateLimit, e.Type == ErrTimeout:
		return true
	}
	return false
}

// TypeForStatus maps an HTTP status to an error type.
func TypeForStatus(status int) ErrorType {
	switch {
	case status == http.StatusBadRequest, status == http.StatusUnprocessableEntity:
		return ErrInvalidRequest
	case status == http.StatusUnauthorized:
		return ErrAuthentication
	case status == http.StatusForbidden:
		return ErrPermission
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusRequestEntityTooLarge:
		return ErrRequestTooLarge
	case status == http.StatusTooManyRequests:
		return ErrRateLimit
	case status == http.StatusRequestTimeout, status == http.StatusGatewayTimeout:
		return ErrTimeout
	case status == 529, status == http.StatusServiceUnavailable:
		return ErrOverloaded
	}
	return ErrServer
}
