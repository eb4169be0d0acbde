package ollama

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// EncodeOptions tune requests for one upstream.
type EncodeOptions struct {
	// Native passes the client's unknown fields and options
	// (Request.Extra) through: set only when the client spoke Ollama.
	Native bool
}

// EncodeRequest renders a canonical request for an Ollama upstream's
// POST /api/chat. stream is always sent explicitly.
func EncodeRequest(r *llm.Request, model string, opts EncodeOptions) ([]byte, error) {
	stream := r.Stream
	out := ChatRequest{Model: model, Stream: &stream}
	o := Options{Temperature: r.Temperature, TopP: r.TopP, TopK: r.TopK, NumPredict: r.MaxTokens, Stop: r.Stop, Seed: r.Seed,
		PresencePenalty: r.PresencePenalty, FrequencyPenalty: r.FrequencyPenalty}
	ob, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	if extra := r.Extra["options"]; opts.Native && !isNull(extra) {
		ob, err = mergeObjects(ob, extra)
		if err != nil {
			return nil, invalid("options: must be an object")
		}
	}
	if string(ob) != "{}" {
		out.Options = ob
	}
	if rf := r.ResponseFormat; rf != nil {
		switch rf.Type {
		case "json_object":
			out.Format = json.RawMessage(`"json"`)
		case "json_schema":
			if isNull(rf.Schema) {
				out.Format = json.RawMessage(`"json"`)
			} else {
				out.Format = rf.Schema
			}
		}
	}
	if rs := r.Reasoning; rs != nil {
		out.Think = encodeThink(rs, model, opts.Native)
	}
	for _, t := range r.Tools {
		params := t.Parameters
		if isNull(params) {
			params = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out.Tools = append(out.Tools, Tool{Type: "function", Function: ToolFunction{Name: t.Name, Description: t.Description, Parameters: params}})
	}
	if len(r.System) > 0 {
		m := Message{Role: "system", Content: joinText(r.System, llm.PartText, "\n\n")}
		images, err := encodeImages(r.System)
		if err != nil {
			return nil, err
		}
		m.Images = images
		out.Messages = append(out.Messages, m)
	}
	for i, m := range r.Messages {
		switch m.Role {
		case llm.RoleTool:
			for _, p := range m.Parts {
				if p.ToolResult == nil {
					continue
				}
				tr := p.ToolResult
				images, err := encodeImages(tr.Content)
				if err != nil {
					return nil, err
				}
				name := tr.Name
				if name == "" {
					name = callName(r.Messages[:i], tr.CallID)
				}
				out.Messages = append(out.Messages, Message{Role: "tool", Content: joinText(tr.Content, llm.PartText, "\n\n"), Images: images,
					ToolName: name, ToolCallID: tr.CallID})
			}
		case llm.RoleAssistant:
			msg := Message{Role: "assistant", Content: joinText(m.Parts, llm.PartText, ""), Thinking: joinText(m.Parts, llm.PartThinking, "")}
			for _, p := range m.Parts {
				switch {
				case p.Type == llm.PartToolCall && p.ToolCall != nil:
					msg.ToolCalls = append(msg.ToolCalls, ToolCall{ID: p.ToolCall.ID, Function: ToolCallFunction{Index: len(msg.ToolCalls),
						Name: p.ToolCall.Name, Arguments: argumentsObject(p.ToolCall.Arguments)}})
				case p.Type == llm.PartImage || p.Type == llm.PartAudio || p.Type == llm.PartFile:
					return nil, invalid("messages[%d]: %s content in an assistant message cannot be sent to an Ollama provider", i, p.Type)
				}
			}
			out.Messages = append(out.Messages, msg)
		default:
			images, err := encodeImages(m.Parts)
			if err != nil {
				return nil, err
			}
			out.Messages = append(out.Messages, Message{Role: "user", Content: joinText(m.Parts, llm.PartText, "\n\n"), Images: images})
		}
	}
	b, err := json.Marshal(out)
	if err != nil || !opts.Native || len(r.Extra) == 0 {
		return b, err
	}
	extra := map[string]json.RawMessage{}
	for k, v := range r.Extra {
		if k != "options" {
			extra[k] = v
		}
	}
	eb, _ := json.Marshal(extra)
	return mergeObjects(b, eb)
}

// mergeObjects adds the keys of extra that base lacks.
func mergeObjects(base, extra []byte) ([]byte, error) {
	var b, e map[string]json.RawMessage
	if err := json.Unmarshal(base, &b); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(extra, &e); err != nil {
		return nil, err
	}
	if b == nil {
		b = map[string]json.RawMessage{}
	}
	for k, v := range e {
		if _, set := b[k]; !set {
			b[k] = v
		}
	}
	return json.Marshal(b)
}

// encodeThink maps reasoning onto think. Ollama accepts effort levels only
// for gpt-oss models, so other dialects' clients get true instead.
func encodeThink(rs *llm.Reasoning, model string, native bool) json.RawMessage {
	if !rs.Enabled {
		return json.RawMessage("false")
	}
	level := ""
	switch rs.Effort {
	case "minimal", "low":
		level = "low"
	case "medium":
		level = "medium"
	case "high", "xhigh":
		level = "high"
	}
	if level != "" && (native || strings.Contains(strings.ToLower(model), "gpt-oss")) {
		return json.RawMessage(strconv.Quote(level))
	}
	return json.RawMessage("true")
}

// encodeImages renders the images of parts as base64; other media cannot
// be sent to Ollama.
func encodeImages(parts []llm.Part) ([]string, error) {
	var out []string
	for _, p := range parts {
		switch p.Type {
		case llm.PartImage:
			if p.Media == nil || len(p.Media.Data) == 0 {
				return nil, invalid("an image URL cannot be sent to an Ollama provider: send the image inline (base64)")
			}
			out = append(out, base64.StdEncoding.EncodeToString(p.Media.Data))
		case llm.PartAudio, llm.PartFile:
			return nil, invalid("content of type %s cannot be sent to an Ollama provider", p.Type)
		}
	}
	return out, nil
}

// callName finds the function name of an earlier call.
func callName(msgs []llm.Message, id string) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		for _, p := range msgs[i].Parts {
			if p.ToolCall != nil && p.ToolCall.ID == id {
				return p.ToolCall.Name
			}
		}
	}
	return ""
}

// requestMinter prepares an idMinter that continues the count of req's
// tool calls, so ids minted for an answer match those DecodeRequest would
// mint for the same history.
func requestMinter(req *llm.Request) *idMinter {
	m := &idMinter{used: map[string]bool{}}
	if req == nil {
		return m
	}
	for _, msg := range req.Messages {
		for _, p := range msg.Parts {
			if p.ToolCall != nil {
				m.n++
				m.used[p.ToolCall.ID] = true
			}
		}
	}
	return m
}

func upstreamError(msg string) *llm.Error {
	return &llm.Error{Status: http.StatusBadGateway, Type: llm.ErrServer, Message: msg}
}

// unreadable is the error for an answer that is not one.
func unreadable(msg string) *llm.Error { return upstreamhttp.Unreadable("", upstreamError(msg)) }

// DecodeResponse reads a non-streamed /api/chat answer. An upstream that
// streamed anyway (NDJSON) is folded.
func DecodeResponse(body []byte) (*llm.Response, error) {
	return decodeResponse(body, nil)
}

func decodeResponse(body []byte, mint *idMinter) (*llm.Response, error) {
	if mint == nil {
		mint = &idMinter{}
	}
	var in ChatResponse
	if err := json.Unmarshal(body, &in); err != nil {
		if bytes.Count(bytes.TrimSpace(body), []byte("\n")) > 0 {
			r, err := llm.Collect(newStreamDecoder(io.NopCloser(bytes.NewReader(body)), mint, ""))
			var le *llm.Error
			if err != nil && !errors.As(err, &le) {
				return nil, unreadable("not an Ollama chat answer")
			}
			return r, err
		}
		return nil, unreadable("not an Ollama chat answer")
	}
	var eb ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		e := upstreamError(eb.Error)
		if eb.Status >= 400 {
			e.Status, e.Type = eb.Status, llm.TypeForStatus(eb.Status)
		}
		return nil, e
	}
	r := &llm.Response{ID: responseID(in.CreatedAt), Model: in.Model, Created: in.CreatedAt.UTC(),
		Usage: llm.Usage{InputTokens: in.PromptEvalCount, OutputTokens: in.EvalCount}}
	if in.Message.Thinking != "" {
		r.Content = append(r.Content, llm.Part{Type: llm.PartThinking, Text: in.Message.Thinking})
	}
	if in.Message.Content != "" {
		r.Content = append(r.Content, llm.Part{Type: llm.PartText, Text: in.Message.Content})
	}
	for _, tc := range in.Message.ToolCalls {
		args, _ := argumentsText(tc.Function.Arguments)
		r.Content = append(r.Content, llm.Part{Type: llm.PartToolCall, ToolCall: &llm.ToolCall{ID: mint.next(tc.ID), Name: tc.Function.Name, Arguments: args}})
	}
	r.StopReason = stopReason(in.DoneReason, len(in.Message.ToolCalls) > 0)
	return r, nil
}

// DecodeError maps an upstream error response ({"error":"…"}; any other
// body is summarised by its status, upstreamhttp.StatusText).
func DecodeError(status int, header http.Header, body []byte) *llm.Error {
	e := &llm.Error{Status: status, Type: llm.TypeForStatus(status), Message: upstreamhttp.StatusText(status)}
	var eb ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		e.Message = eb.Error
	}
	if s, err := strconv.Atoi(header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// WithNative marks ctx as carrying a request from an Ollama-dialect
// client, so its unknown fields and options are passed through to Ollama
// upstreams.
func WithNative(ctx context.Context) context.Context {
	return llm.WithDialect(ctx, llm.DialectOllama)
}

// IsNative reports whether ctx was marked with WithNative.
func IsNative(ctx context.Context) bool {
	return llm.DialectOf(ctx) == llm.DialectOllama
}
