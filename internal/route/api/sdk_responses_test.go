package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/omniedge/omni/internal/platform/config"
)

// respUpstream is one fake provider type with its recorded fixtures.
type respUpstream struct {
	name, typ           string
	toolsJSON, toolsSSE string
	textJSON, textSSE   string
	firstCallID         string
	input, cached, out  int64 // expected usage of the tools turn
}

var respUpstreams = []respUpstream{
	{"openai", "openai", "openai/testdata/parallel_tools.json", "openai/testdata/parallel_tools.sse", "openai/testdata/text.json", "openai/testdata/text.sse",
		"call_Qm3vT8bN1xY5kR2pL7sW9dF0", 2048, 1536, 61},
	{"anthropic", "anthropic", "anthropic/testdata/responses/parallel_tools.json", "anthropic/testdata/streams/parallel_tools.sse",
		"anthropic/testdata/responses/text.json", "anthropic/testdata/streams/text.sse", "toolu_01A09q90qw90lq917835lq9", 472 + 248 + 2156, 2156, 139},
	{"openai-responses", "openai-responses", "responses/testdata/parallel_tools.json", "responses/testdata/parallel_tools.sse",
		"responses/testdata/text.json", "responses/testdata/text.sse", "call_Qm3vT8bN1xY5kR2pL7sW9dF0", 2048, 1536, 61},
}

// toolsThenText answers the first call with the tool-call fixture and
// later ones with the text fixture, as JSON or SSE as asked.
func toolsThenText(t *testing.T, u respUpstream) func(http.ResponseWriter, map[string]any, int) {
	tools := replyFixture(t, u.toolsJSON, u.toolsSSE)
	text := replyFixture(t, u.textJSON, u.textSSE)
	return func(w http.ResponseWriter, body map[string]any, n int) {
		if n == 1 {
			tools(w, body, n)
			return
		}
		text(w, body, n)
	}
}

func responsesClient(gw string) openai.Client {
	return openai.NewClient(ooption.WithBaseURL(gw+"/v1/"), ooption.WithAPIKey(gatewayKey), ooption.WithMaxRetries(0))
}

var respWeather = responses.ToolUnionParam{OfFunction: &responses.FunctionToolParam{
	Name:        "get_weather",
	Description: openai.String("Current weather for a location"),
	Parameters:  map[string]any{"type": "object", "properties": map[string]any{"location": map[string]any{"type": "string"}}, "required": []string{"location"}},
	Strict:      openai.Bool(false),
}}

func firstTurn() []responses.ResponseInputItemUnionParam {
	return []responses.ResponseInputItemUnionParam{
		responses.ResponseInputItemParamOfMessage("Answer in one sentence.", responses.EasyInputMessageRoleSystem),
		responses.ResponseInputItemParamOfMessage("Weather in Paris and Oslo?", responses.EasyInputMessageRoleUser),
	}
}

func toolOutputs(calls []responses.ResponseFunctionToolCall) []responses.ResponseInputItemUnionParam {
	var out []responses.ResponseInputItemUnionParam
	for i, c := range calls {
		it := responses.ResponseInputItemParamOfFunctionCallOutput([]string{"18°C, clear", "4°C, snow"}[i%2])
		it.OfFunctionCallOutput.CallID = openai.String(c.CallID)
		out = append(out, it)
	}
	return out
}

// asInput turns a response's output back into input items.
func asInput(r *responses.Response) []responses.ResponseInputItemUnionParam {
	var items []responses.ResponseInputItemUnionParam
	for _, o := range r.Output {
		switch o.Type {
		case "message":
			m := o.AsMessage().ToParam()
			items = append(items, responses.ResponseInputItemUnionParam{OfOutputMessage: &m})
		case "function_call":
			fc := o.AsFunctionCall().ToParam()
			items = append(items, responses.ResponseInputItemUnionParam{OfFunctionCall: &fc})
		case "reasoning":
			rs := o.AsReasoning().ToParam()
			items = append(items, responses.ResponseInputItemUnionParam{OfReasoning: &rs})
		}
	}
	return items
}

func functionCalls(r *responses.Response) []responses.ResponseFunctionToolCall {
	var calls []responses.ResponseFunctionToolCall
	for _, o := range r.Output {
		if o.Type == "function_call" {
			calls = append(calls, o.AsFunctionCall())
		}
	}
	return calls
}

// systemSlot is the upstream request's system prompt, whatever its format.
func systemSlot(t *testing.T, typ string, body map[string]any) string {
	t.Helper()
	var v any
	switch typ {
	case "openai":
		m := body["messages"].([]any)[0].(map[string]any)
		if m["role"] != "system" {
			t.Fatalf("first message is not the system prompt: %v", m)
		}
		v = m["content"]
	case "anthropic":
		v = body["system"]
	default:
		v = body["instructions"]
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// Responses client → each provider type: a parallel function-call turn,
// its results sent back once with previous_response_id and once as the
// full input; both reach the upstream as the same conversation.
func TestResponsesSDKToolRoundTrip(t *testing.T) {
	for _, u := range respUpstreams {
		t.Run(u.name, func(t *testing.T) {
			up := newUpstream(t, toolsThenText(t, u))
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "p", Type: u.typ, BaseURL: up.URL, APIKeys: []config.Secret{"sk-provider"}}}})
			c := responsesClient(gw.URL)
			ctx := context.Background()
			params := responses.ResponseNewParams{
				Model:        "p/gpt-4.1",
				Instructions: openai.String("You are a weather bot."),
				Input:        responses.ResponseNewParamsInputUnion{OfInputItemList: firstTurn()},
				Tools:        []responses.ToolUnionParam{respWeather},
			}
			first, err := c.Responses.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			calls := functionCalls(first)
			if first.Status != "completed" || !strings.HasPrefix(first.ID, "resp_") || len(calls) != 2 || calls[0].CallID != u.firstCallID ||
				calls[0].Name != "get_weather" || !strings.Contains(calls[1].Arguments, "Oslo") || !strings.HasPrefix(calls[0].ID, "fc_") {
				t.Fatalf("function calls: %s", first.RawJSON())
			}
			if first.Usage.InputTokens != u.input || first.Usage.InputTokensDetails.CachedTokens != u.cached || first.Usage.OutputTokens != u.out ||
				first.Usage.TotalTokens != u.input+u.out {
				t.Fatalf("usage: %+v", first.Usage)
			}
			sys := systemSlot(t, u.typ, up.bodies[0])
			if !strings.Contains(sys, "weather bot") || !strings.Contains(sys, "one sentence") || strings.Index(sys, "weather bot") > strings.Index(sys, "one sentence") {
				t.Fatalf("instructions and system message not in the system slot, in order: %s", sys)
			}

			// Continue with previous_response_id (instructions are resent,
			// as they are not carried over).
			second, err := c.Responses.New(ctx, responses.ResponseNewParams{
				Model:              "p/gpt-4.1",
				Instructions:       openai.String("You are a weather bot."),
				PreviousResponseID: openai.String(first.ID),
				Input:              responses.ResponseNewParamsInputUnion{OfInputItemList: toolOutputs(calls)},
				Tools:              []responses.ToolUnionParam{respWeather},
			})
			if err != nil {
				t.Fatal(err)
			}
			if second.OutputText() == "" || second.PreviousResponseID != first.ID || len(functionCalls(second)) != 0 {
				t.Fatalf("final answer: %s", second.RawJSON())
			}

			// The same turn with the whole conversation sent back and
			// nothing stored.
			full := append(firstTurn(), asInput(first)...)
			full = append(full, toolOutputs(calls)...)
			params.Input = responses.ResponseNewParamsInputUnion{OfInputItemList: full}
			params.Store = openai.Bool(false)
			third, err := c.Responses.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			if third.OutputText() != second.OutputText() {
				t.Fatalf("answers differ: %q vs %q", third.OutputText(), second.OutputText())
			}
			if !reflect.DeepEqual(up.bodies[1], up.bodies[2]) {
				a, _ := json.Marshal(up.bodies[1])
				b, _ := json.Marshal(up.bodies[2])
				t.Fatalf("previous_response_id and full input reached the upstream differently:\n%s\n%s", a, b)
			}
			body, _ := json.Marshal(up.bodies[1])
			for _, c := range calls {
				if strings.Count(string(body), c.CallID) != 2 { // the call and its result
					t.Fatalf("call %s not sent with its result: %s", c.CallID, body)
				}
			}
			for _, k := range up.keys {
				if k != "|Bearer sk-provider" && k != "sk-provider|" {
					t.Fatalf("upstream saw credentials %q; want only the provider key", k)
				}
				if strings.Contains(k, gatewayKey) {
					t.Fatal("gateway key reached the upstream")
				}
			}
			if u.typ == "openai-responses" {
				for _, b := range up.bodies {
					if b["store"] != false || b["previous_response_id"] != nil {
						t.Fatalf("Responses upstream must get store:false and the whole conversation: %v", b)
					}
				}
			}
			// Stored: retrievable; not stored: 404; deleted: gone.
			got, err := c.Responses.Get(ctx, second.ID, responses.ResponseGetParams{})
			if err != nil || got.ID != second.ID || got.OutputText() != second.OutputText() {
				t.Fatalf("get stored response: %v %+v", err, got)
			}
			var apiErr *openai.Error
			if _, err := c.Responses.Get(ctx, third.ID, responses.ResponseGetParams{}); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
				t.Fatalf("store:false response retrievable: %v", err)
			}
			if err := c.Responses.Delete(ctx, second.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Responses.Get(ctx, second.ID, responses.ResponseGetParams{}); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
				t.Fatalf("deleted response retrievable: %v", err)
			}
		})
	}
}

// Streaming through the SDK: every event parses, sequence numbers count
// up, the SDK's accumulator rebuilds the response, and a streamed
// response can be continued with previous_response_id.
func TestResponsesSDKStreaming(t *testing.T) {
	for _, u := range respUpstreams {
		t.Run(u.name, func(t *testing.T) {
			up := newUpstream(t, toolsThenText(t, u))
			gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "p", Type: u.typ, BaseURL: up.URL, APIKeys: []config.Secret{"sk-provider"}}}})
			c := responsesClient(gw.URL)
			ctx := context.Background()
			collect := func(params responses.ResponseNewParams) *responses.Response {
				t.Helper()
				stream := c.Responses.NewStreaming(ctx, params)
				var acc responses.ResponseAccumulator
				var completed *responses.Response
				var seq int64 = -1
				for stream.Next() {
					ev := stream.Current()
					if ev.SequenceNumber != seq+1 {
						t.Fatalf("sequence %d after %d", ev.SequenceNumber, seq)
					}
					seq = ev.SequenceNumber
					var sev responses.ResponsesServerEventUnion
					if err := json.Unmarshal([]byte(ev.RawJSON()), &sev); err != nil {
						t.Fatal(err)
					}
					if err := acc.AddEvent(sev); err != nil {
						t.Fatalf("accumulating %s: %v", ev.RawJSON(), err)
					}
					if ev.Type == "response.completed" {
						r := ev.AsResponseCompleted().Response
						completed = &r
					}
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				if completed == nil {
					t.Fatal("no response.completed")
				}
				rebuilt, err := acc.ReconstructedResponse()
				if err != nil {
					t.Fatal(err)
				}
				snap := acc.Snapshot()
				if rebuilt.ID != completed.ID || len(rebuilt.Output) != len(completed.Output) || snap.OutputText() != completed.OutputText() {
					t.Fatalf("accumulated %+v\ncompleted %s", snap, completed.RawJSON())
				}
				for i, o := range snap.Output {
					if o.Type == "function_call" && o.Arguments != completed.Output[i].Arguments.OfString {
						t.Fatalf("streamed arguments %q, final %q", o.Arguments, completed.Output[i].Arguments.OfString)
					}
				}
				return completed
			}
			first := collect(responses.ResponseNewParams{
				Model:        "p/gpt-4.1",
				Instructions: openai.String("You are a weather bot."),
				Input:        responses.ResponseNewParamsInputUnion{OfInputItemList: firstTurn()},
				Tools:        []responses.ToolUnionParam{respWeather},
			})
			calls := functionCalls(first)
			if len(calls) != 2 || calls[0].CallID != u.firstCallID {
				t.Fatalf("streamed calls: %s", first.RawJSON())
			}
			for _, fc := range calls {
				var args map[string]any
				if err := json.Unmarshal([]byte(fc.Arguments), &args); err != nil || args["location"] == nil {
					t.Fatalf("arguments corrupted in streaming translation: %q", fc.Arguments)
				}
			}
			if first.Usage.InputTokens != u.input || first.Usage.InputTokensDetails.CachedTokens != u.cached || first.Usage.OutputTokens != u.out {
				t.Fatalf("streamed usage: %+v", first.Usage)
			}
			second := collect(responses.ResponseNewParams{
				Model:              "p/gpt-4.1",
				PreviousResponseID: openai.String(first.ID),
				Input:              responses.ResponseNewParamsInputUnion{OfInputItemList: toolOutputs(calls)},
			})
			if second.OutputText() == "" {
				t.Fatalf("second turn: %s", second.RawJSON())
			}
			body, _ := json.Marshal(up.bodies[1])
			if !strings.Contains(string(body), calls[1].CallID) || !strings.Contains(string(body), "Weather in Paris and Oslo?") || !strings.Contains(string(body), "one sentence") {
				t.Fatalf("stored streamed conversation not sent upstream: %s", body)
			}
			if strings.Contains(string(body), "weather bot") {
				t.Fatalf("instructions carried over to the next response: %s", body)
			}
		})
	}
}

// An unknown previous_response_id is a 400 in OpenAI's shape, surfaced by
// the SDK, and no upstream is called.
func TestResponsesSDKUnknownPrevious(t *testing.T) {
	up := newUpstream(t, replyFixture(t, "responses/testdata/text.json", "responses/testdata/text.sse"))
	gw := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "p", Type: "openai-responses", BaseURL: up.URL, APIKeys: []config.Secret{"k"}}}})
	c := responsesClient(gw.URL)
	_, err := c.Responses.New(context.Background(), responses.ResponseNewParams{
		Model: "p/gpt-4.1", PreviousResponseID: openai.String("resp_x"),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("and then?")},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "previous_response_not_found" || apiErr.Param != "previous_response_id" ||
		apiErr.Type != "invalid_request_error" || apiErr.Message != "Previous response with id 'resp_x' not found." {
		t.Fatalf("error: %v", err)
	}
	// Built-in tools need a Responses upstream; a chat upstream refuses
	// them clearly instead of dropping them.
	chat := newUpstream(t, replyFixture(t, "openai/testdata/text.json", "openai/testdata/text.sse"))
	gw2 := gateway(t, config.RouteConfig{Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: chat.URL, APIKeys: []config.Secret{"k"}}}})
	c2 := responsesClient(gw2.URL)
	_, err = c2.Responses.New(context.Background(), responses.ResponseNewParams{
		Model: "oa/gpt-4.1", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("news?")},
		Tools: []responses.ToolUnionParam{{OfWebSearchPreview: &responses.WebSearchPreviewToolParam{Type: responses.WebSearchPreviewToolTypeWebSearchPreview}}},
	})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "tools" {
		t.Fatalf("built-in tool to a chat upstream: %v", err)
	}
	if up.calls() != 0 || chat.calls() != 0 {
		t.Fatal("an upstream was called for a rejected request")
	}
}
