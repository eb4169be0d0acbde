package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// ToolInfo is a tool as GET /api/mcp/tools lists it.
type ToolInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	InputSchema any    `json:"inputSchema"`
	// Scopes a management key must hold to call the tool (the dashboard
	// login holds every scope).
	Scopes []string `json:"scopes"`
	// Phase is "read" (reads the gateway's state) or "act" (does work
	// through the gateway: a chat is routed, billed and recorded).
	Phase string `json:"phase"`
	// AuditLevel is what the audit log keeps of a call: "basic" (the
	// call, its caller, outcome and masked arguments) or "full" (the
	// same, and the call's answer summary, for calls that act).
	AuditLevel string `json:"auditLevel"`
	// SourceEndpoints are the gateway endpoints whose data or behaviour
	// the tool gives.
	SourceEndpoints []string `json:"sourceEndpoints"`
}

// toolError is a failure the caller is told about (the tool's answer
// marked isError), not an internal error.
type toolError struct{ msg string }

func (e toolError) Error() string { return e.msg }

func failf(format string, args ...any) error { return toolError{fmt.Sprintf(format, args...)} }

// tool is one tool: what it says about itself and how it is added to a
// session's server.
type tool struct {
	info ToolInfo
	add  func(s *Server, srv *sdk.Server, transport string, c Caller)
}

// define makes a tool whose arguments decode into In (the input schema
// is In's) and whose run returns the answer, encoded as JSON.
func define[In any](info ToolInfo, run func(ctx context.Context, s *Server, c Caller, in In) (any, error)) tool {
	schema, err := jsonschema.For[In](nil)
	if err != nil {
		panic(fmt.Sprintf("mcp: schema of %s: %v", info.Name, err))
	}
	info.InputSchema = schema
	t := tool{info: info}
	t.add = func(s *Server, srv *sdk.Server, transport string, c Caller) {
		sdk.AddTool(srv, &sdk.Tool{Name: info.Name, Description: info.Description, InputSchema: schema},
			func(ctx context.Context, req *sdk.CallToolRequest, in In) (*sdk.CallToolResult, any, error) {
				start := s.opt.Clock.Now()
				var out any
				err := allowed(info, c)
				if err == nil {
					out, err = run(ctx, s, c, in)
				}
				s.record(info, transport, c, req.Params.Arguments, start, err)
				if err != nil {
					var te toolError
					if !errors.As(err, &te) {
						s.opt.Log.Warn("mcp: tool failed", "tool", info.Name, "err", err)
						err = toolError{"the gateway could not complete the call; see its log"}
					}
					return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: err.Error()}}}, nil, nil
				}
				b, err := json.Marshal(out)
				if err != nil {
					return nil, nil, err
				}
				return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(b)}}, StructuredContent: out}, nil, nil
			})
	}
	return t
}

// allowed refuses a caller lacking one of the tool's scopes.
func allowed(info ToolInfo, c Caller) error {
	for _, sc := range info.Scopes {
		if !c.may(sc) {
			return failf("this key lacks the %q scope that %s needs", sc, info.Name)
		}
	}
	return nil
}

// Tools are the server's tools, as GET /api/mcp/tools lists them.
func (s *Server) Tools() []ToolInfo {
	out := make([]ToolInfo, len(catalog))
	for i, t := range catalog {
		out[i] = t.info
	}
	return out
}

func (s *Server) addTools(srv *sdk.Server, transport string, c Caller) {
	for _, t := range catalog {
		t.add(s, srv, transport, c)
	}
}

// The caps of the tools' arguments.
const (
	maxMessages       = 64
	maxMessageChars   = 64 << 10
	maxChatAnswer     = 1 << 20
	maxChatOutputToks = 32768
)

type noIn struct{}

type listModelsIn struct {
	Kind string `json:"kind,omitempty" jsonschema:"only models of this kind: chat, embedding, image, combo, alias …"`
}

type chatMessage struct {
	Role    string `json:"role" jsonschema:"system, user or assistant"`
	Content string `json:"content"`
}

type chatIn struct {
	Model     string        `json:"model" jsonschema:"a model the gateway lists (provider/model, an alias or a combo)"`
	Messages  []chatMessage `json:"messages" jsonschema:"the conversation, at most 64 messages"`
	MaxTokens int           `json:"maxTokens,omitempty" jsonschema:"the most tokens of the answer"`
	KeyID     string        `json:"keyId,omitempty" jsonschema:"the gateway key id to chat as (dashboard login only; a management key chats as itself)"`
}

type usageIn struct {
	Period   string `json:"period,omitempty" jsonschema:"1h, 24h (default), 7d or 30d"`
	APIKeyID string `json:"apiKeyId,omitempty" jsonschema:"only this gateway key's usage"`
}

type budgetIn struct {
	APIKeyID string `json:"apiKeyId,omitempty" jsonschema:"only this gateway key's budget"`
}

var periods = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour}

// catalog is every tool, in the order they are listed.
var catalog = []tool{
	define(ToolInfo{Name: "omniroute_list_models", Phase: "read", AuditLevel: "basic", Scopes: []string{ScopeMCP},
		Description:     "List the models this gateway routes (providers' models, aliases, combos), optionally of one kind.",
		SourceEndpoints: []string{"GET /v1/models"}}, listModels),
	define(ToolInfo{Name: "omniroute_chat", Phase: "act", AuditLevel: "full", Scopes: []string{ScopeMCP},
		Description:     "Send a chat completion through the gateway's router (key policy, limits, budget, fallback and usage records apply) and return the answer.",
		SourceEndpoints: []string{"POST /v1/chat/completions"}}, chat),
	define(ToolInfo{Name: "omniroute_usage_summary", Phase: "read", AuditLevel: "basic", Scopes: []string{ScopeMCP},
		Description:     "Sum the gateway's requests, errors, tokens and cost over a period, for every key or one key.",
		SourceEndpoints: []string{"GET /api/usage/history"}}, usageSummary),
	define(ToolInfo{Name: "omniroute_provider_health", Phase: "read", AuditLevel: "basic", Scopes: []string{ScopeMCP},
		Description:     "Show the providers' circuit breakers, connection cooldowns and model lockouts.",
		SourceEndpoints: []string{"GET /api/resilience", "GET /api/resilience/model-cooldowns"}}, providerHealth),
	define(ToolInfo{Name: "omniroute_budget_status", Phase: "read", AuditLevel: "basic", Scopes: []string{ScopeMCP},
		Description:     "Show the USD budgets of the gateway keys: limits, spend and what remains in each period.",
		SourceEndpoints: []string{"GET /api/usage/budget"}}, budgetStatus),
	define(ToolInfo{Name: "omniroute_list_keys", Phase: "read", AuditLevel: "basic", Scopes: []string{ScopeMCP, ScopeManage},
		Description:     "List the gateway keys: id, name, masked prefix, scopes, dates. Never a key's secret.",
		SourceEndpoints: []string{"GET /api/keys"}}, listKeys),
}

var errNotServed = toolError{"this gateway does not serve that (no store or the feature is off)"}

func listModels(_ context.Context, s *Server, _ Caller, in listModelsIn) (any, error) {
	if s.opt.Sources.Models == nil {
		return nil, errNotServed
	}
	out := []Model{}
	for _, m := range s.opt.Sources.Models() {
		if in.Kind == "" || m.Kind == in.Kind {
			out = append(out, m)
		}
	}
	return map[string]any{"models": out, "count": len(out)}, nil
}

// chatKey is the gateway key a chat runs as: a management key's own; for
// the dashboard login the key it names, or none (the gateway then serves
// it as a local client without a key, which it does only while keys are
// not required).
func (s *Server) chatKey(c Caller, asked string) (string, error) {
	if c.Kind == "key" {
		if asked != "" && asked != c.KeyID {
			return "", failf("a key chats as itself: keyId must be empty or %q", c.KeyID)
		}
		return c.KeyID, nil
	}
	if asked == "" {
		return "", nil
	}
	if s.opt.Sources.KeyLive == nil || !s.opt.Sources.KeyLive(asked) {
		return "", failf("no live gateway key %q", asked)
	}
	return asked, nil
}

func chat(ctx context.Context, s *Server, c Caller, in chatIn) (any, error) {
	if s.opt.Sources.Dispatch == nil {
		return nil, errNotServed
	}
	if strings.TrimSpace(in.Model) == "" {
		return nil, failf("model is required")
	}
	if len(in.Messages) == 0 || len(in.Messages) > maxMessages {
		return nil, failf("messages must hold 1 to %d messages", maxMessages)
	}
	for i, m := range in.Messages {
		switch m.Role {
		case "system", "user", "assistant":
		default:
			return nil, failf("messages[%d].role must be system, user or assistant", i)
		}
		if len(m.Content) > maxMessageChars {
			return nil, failf("messages[%d].content is longer than %d bytes", i, maxMessageChars)
		}
	}
	if in.MaxTokens < 0 || in.MaxTokens > maxChatOutputToks {
		return nil, failf("maxTokens must be from 0 to %d", maxChatOutputToks)
	}
	keyID, err := s.chatKey(c, in.KeyID)
	if err != nil {
		return nil, err
	}
	body := map[string]any{"model": in.Model, "messages": in.Messages}
	if in.MaxTokens > 0 {
		body["max_tokens"] = in.MaxTokens
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	ans, err := s.opt.Sources.Dispatch.Dispatch(ctx, keyID, http.MethodPost, "/v1/chat/completions", raw, maxChatAnswer)
	if err != nil {
		return nil, failf("the chat was not served: %v", err)
	}
	if ans.Status != http.StatusOK {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(ans.Body, &e)
		if e.Error.Message == "" {
			e.Error.Message = http.StatusText(ans.Status)
		}
		return nil, failf("the gateway answered %d: %s", ans.Status, e.Error.Message)
	}
	var out struct {
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			Prompt     int64 `json:"prompt_tokens"`
			Completion int64 `json:"completion_tokens"`
			Total      int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(ans.Body, &out); err != nil || len(out.Choices) == 0 {
		return nil, failf("the gateway's answer could not be read")
	}
	return map[string]any{"model": out.Model, "content": out.Choices[0].Message.Content, "finishReason": out.Choices[0].FinishReason,
		"usage":     map[string]int64{"inputTokens": out.Usage.Prompt, "outputTokens": out.Usage.Completion, "totalTokens": out.Usage.Total},
		"requestId": ans.RequestID}, nil
}

// ownKey is the key whose data a caller asks for: a key without the
// manage scope sees only its own.
func ownKey(c Caller, asked string) (string, error) {
	if c.may(ScopeManage) {
		return asked, nil
	}
	if asked != "" && asked != c.KeyID {
		return "", failf("this key may read only its own data (apiKeyId %q)", c.KeyID)
	}
	return c.KeyID, nil
}

func usageSummary(ctx context.Context, s *Server, c Caller, in usageIn) (any, error) {
	if s.opt.Sources.Usage == nil {
		return nil, errNotServed
	}
	if in.Period == "" {
		in.Period = "24h"
	}
	span, ok := periods[in.Period]
	if !ok {
		return nil, failf("period must be 1h, 24h, 7d or 30d")
	}
	key, err := ownKey(c, in.APIKeyID)
	if err != nil {
		return nil, err
	}
	now := s.opt.Clock.Now().UTC()
	totals, err := s.opt.Sources.Usage(ctx, now.Add(-span), key)
	if err != nil {
		return nil, err
	}
	return map[string]any{"period": in.Period, "from": now.Add(-span), "to": now, "apiKeyId": key, "totals": totals}, nil
}

func providerHealth(ctx context.Context, s *Server, _ Caller, _ noIn) (any, error) {
	if s.opt.Sources.Health == nil {
		return nil, errNotServed
	}
	return s.opt.Sources.Health(ctx)
}

func budgetStatus(ctx context.Context, s *Server, c Caller, in budgetIn) (any, error) {
	if s.opt.Sources.Budgets == nil {
		return nil, errNotServed
	}
	key, err := ownKey(c, in.APIKeyID)
	if err != nil {
		return nil, err
	}
	b, err := s.opt.Sources.Budgets(ctx, key)
	if err != nil {
		return nil, err
	}
	return map[string]any{"budgets": b}, nil
}

func listKeys(ctx context.Context, s *Server, _ Caller, _ noIn) (any, error) {
	if s.opt.Sources.Keys == nil {
		return nil, errNotServed
	}
	keys, err := s.opt.Sources.Keys(ctx)
	if err != nil {
		return nil, err
	}
	if keys == nil {
		keys = []Key{}
	}
	return map[string]any{"keys": keys, "count": len(keys)}, nil
}
