package anthropic

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"

	"github.com/omniedge/omni/internal/route/llm"
)

// newMessageID mints an id for answers whose upstream gave none.
func newMessageID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "msg_gw" + hex.EncodeToString(b[:])
}

// responseBlocks converts the content of a canonical answer. Parts an
// assistant message cannot hold (media, tool results) are left out.
func responseBlocks(parts []llm.Part) (blocks []ContentBlock, tools bool) {
	blocks = []ContentBlock{}
	for _, p := range parts {
		switch p.Type {
		case llm.PartText:
			blocks = append(blocks, ContentBlock{Type: BlockText, Text: p.Text})
		case llm.PartThinking:
			blocks = append(blocks, ContentBlock{Type: BlockThinking, Thinking: p.Text, Signature: p.Signature})
		case llm.PartRedactedThinking:
			blocks = append(blocks, ContentBlock{Type: BlockRedactedThinking, Data: p.Data})
		case llm.PartToolCall:
			if p.ToolCall == nil {
				continue
			}
			tools = true
			blocks = append(blocks, ContentBlock{Type: BlockToolUse, ID: p.ToolCall.ID, Name: p.ToolCall.Name,
				Input: inputObject(p.ToolCall.Arguments)})
		}
	}
	return blocks, tools
}

// EncodeResponse writes a canonical answer as an Anthropic message object.
// Tool-call arguments become input objects (see the package doc for empty
// and malformed arguments); usage is split the Anthropic way.
func EncodeResponse(r *llm.Response) ([]byte, error) {
	blocks, tools := responseBlocks(r.Content)
	id := r.ID
	if id == "" {
		id = newMessageID()
	}
	stop := stopReasonOut(r.StopReason, tools)
	var seq *string
	if r.StopSequence != "" {
		s := r.StopSequence
		seq = &s
	}
	return json.Marshal(Response{ID: id, Type: "message", Role: "assistant", Model: r.Model, Content: blocks,
		StopReason: &stop, StopSequence: seq, Usage: usageOut(r.Usage)})
}

// EncodeCountTokens writes the answer of /v1/messages/count_tokens.
func EncodeCountTokens(inputTokens int) []byte {
	b, _ := json.Marshal(CountTokensResponse{InputTokens: inputTokens})
	return b
}

// errorStatus is the status an Anthropic client should see for e: 502
// when none is known (a connection failure), 529 for overloaded.
func errorStatus(e *llm.Error) int {
	switch {
	case e.Type == llm.ErrOverloaded:
		return 529
	case e.Status == 0:
		return http.StatusBadGateway
	}
	return e.Status
}

func errorDetail(e *llm.Error, status int) ErrorDetail {
	t := e.Type
	if t == "" {
		t = llm.TypeForStatus(status)
	}
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	if msg == "" {
		msg = string(t)
	}
	return ErrorDetail{Type: string(t), Message: msg}
}

// EncodeError renders e as an Anthropic error body and its status. Status
// 0 (connection failure) becomes 502; overloaded becomes 529, which
// Anthropic SDKs retry. Setting Retry-After from e.RetryAfter is the
// caller's job.
func EncodeError(e *llm.Error) (status int, body []byte) {
	if e == nil {
		e = &llm.Error{Type: llm.ErrServer}
	}
	status = errorStatus(e)
	body, _ = json.Marshal(ErrorResponse{Type: "error", Error: errorDetail(e, status)})
	return status, body
}
