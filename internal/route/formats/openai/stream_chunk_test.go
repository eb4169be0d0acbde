package openai

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/route/llm"
)

func collectSSE(t *testing.T, sse string) (*llm.Response, error) {
	t.Helper()
	return llm.Collect(NewStreamDecoder(io.NopCloser(strings.NewReader(sse))))
}

// A field named "error" that is no error object does not spoil a chunk;
// an error object ends the stream; a chunk that is not JSON is reported.
func TestStreamChunkErrorField(t *testing.T) {
	const ok = `data: {"id":"c1","model":"m","error":"none","choices":[{"index":0,"delta":{"content":"hi"}}]}` + "\n\n" +
		`data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n"
	resp, err := collectSSE(t, ok)
	if err != nil || len(resp.Content) != 1 || resp.Content[0].Text != "hi" {
		t.Fatalf("odd error field: %+v, %v", resp, err)
	}
	const failed = `data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"hi"}}]}` + "\n\n" +
		`data: {"error":{"message":"slow down","type":"rate_limit_error"},"choices":"x"}` + "\n\n"
	var le *llm.Error
	if _, err := collectSSE(t, failed); !errors.As(err, &le) || le.Status != 429 || le.Message != "upstream stream failed: slow down" {
		t.Fatalf("error object: %v", err)
	}
	if _, err := collectSSE(t, "data: {not json\n\n"); !errors.As(err, &le) || le.Message != "upstream stream failed: a chunk was unreadable (not JSON)" {
		t.Fatalf("bad chunk: %v", err)
	}
}
