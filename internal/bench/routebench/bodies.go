package main

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Requests and answers shared by the load harness and the in-process
// benchmarks: a realistic short chat turn, in each client dialect, and the
// OpenAI answer the instant upstream gives, whole or streamed.

const upstreamModel = "gpt-4o"

// gatewayModel is the provider/model id the generated configuration serves.
const gatewayModel = "bench/" + upstreamModel

const systemPrompt = "You are a concise assistant for a travel company. Answer in one sentence, give temperatures in Celsius, and never invent data you were not given."

const userPrompt = "What is the weather like in Paris and Oslo this afternoon? I am deciding which city to visit first on my trip next week."

// openAIRequest is the OpenAI Chat Completions body a client sends.
func openAIRequest(model string, stream bool) []byte {
	body := map[string]any{
		"model": model,
		"messages": []map[string]any{
			{"role": "system", "content": systemPrompt},
			{"role": "user", "content": userPrompt},
		},
		"temperature":           0.2,
		"max_completion_tokens": 256,
		"user":                  "user-7f3a9c",
	}
	if stream {
		body["stream"] = true
		body["stream_options"] = map[string]any{"include_usage": true}
	}
	return mustJSON(body)
}

// anthropicRequest is the same turn as an Anthropic Messages body.
func anthropicRequest(model string, stream bool) []byte {
	body := map[string]any{
		"model":       model,
		"system":      systemPrompt,
		"max_tokens":  256,
		"temperature": 0.2,
		"messages": []map[string]any{
			{"role": "user", "content": userPrompt},
		},
		"metadata": map[string]any{"user_id": "user-7f3a9c"},
	}
	if stream {
		body["stream"] = true
	}
	return mustJSON(body)
}

// completionJSON is the upstream's non-streaming answer.
var completionJSON = []byte(`{
  "id": "chatcmpl-BwP3aC2dE4fG6hJ8kL0mN2pQ4",
  "object": "chat.completion",
  "created": 1753470012,
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "Paris is 18°C and clear this afternoon while Oslo is 4°C with light snow, so Paris is the milder first stop.", "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}
  ],
  "usage": {"prompt_tokens": 61, "completion_tokens": 27, "total_tokens": 88, "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
  "service_tier": "default",
  "system_fingerprint": "fp_07871e2ad8"
}
`)

// streamChunks are the SSE events of the upstream's streamed answer: a role
// chunk, content chunks, the finish chunk, the usage chunk and [DONE]. The
// upstream flushes after each.
var streamChunks = func() [][]byte {
	head := `{"id":"chatcmpl-BwP4xY7zA1bC3dE5fG7hJ9kL1","object":"chat.completion.chunk","created":1753470020,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8",`
	chunk := func(delta, finish string) []byte {
		return []byte(fmt.Sprintf("data: %s\"choices\":[{\"index\":0,\"delta\":%s,\"logprobs\":null,\"finish_reason\":%s}],\"usage\":null}\n\n", head, delta, finish))
	}
	out := [][]byte{chunk(`{"role":"assistant","content":"","refusal":null}`, "null")}
	for _, t := range []string{"Paris is 18°C", " and clear this afternoon", " while Oslo is 4°C", " with light snow."} {
		out = append(out, chunk(`{"content":`+string(mustJSON(t))+`}`, "null"))
	}
	out = append(out, chunk(`{}`, `"stop"`))
	out = append(out, []byte("data: "+head+`"choices":[],"usage":{"prompt_tokens":61,"completion_tokens":27,"total_tokens":88,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`+"\n\n"))
	return append(out, []byte("data: [DONE]\n\n"))
}()

// streamBody is the whole streamed answer in one piece.
var streamBody = func() []byte {
	var b strings.Builder
	for _, c := range streamChunks {
		b.Write(c)
	}
	return []byte(b.String())
}()

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
