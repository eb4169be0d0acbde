// Package anthropic is the Anthropic Messages wire format: the inbound
// dialect (a client speaking POST /v1/messages and
// /v1/messages/count_tokens, translated to and from the canonical model in
// route/llm) and the outbound adapter (canonical requests sent to an
// Anthropic-compatible upstream, its answers translated back).
//
// Every translation goes through llm; this package imports no other
// format package. It may be imported by the gateway's HTTP handlers and by
// whatever assembles provider adapters.
//
// Inbound (client → canonical → client):
//   - DecodeRequest / DecodeCountTokens turn a client body into an
//     llm.Request; every failure is an *llm.Error 400 naming the field.
//     A user turn holding tool_result blocks becomes one canonical RoleTool
//     message per result (in order), with the user's other blocks kept as
//     user messages around them in their original order. ToolResult.Name
//     is filled from the matching tool_use so formats that pair by name
//     work. Top-level fields the model does not know go to Request.Extra;
//     a thinking config other than enabled/disabled (e.g. "adaptive") is
//     recorded as Reasoning{Enabled: true} and its raw JSON kept in
//     Extra["thinking"], so an Anthropic upstream receives it unchanged.
//   - EncodeResponse, StreamEncoder and EncodeError write what an
//     Anthropic SDK expects. When a response holds tool calls but claims
//     end_turn (a known failure of OpenAI upstreams) the stop reason is
//     reported as tool_use, since agent loops key on it.
//
// Outbound (canonical → upstream → canonical): EncodeRequest,
// DecodeResponse, NewStreamDecoder, DecodeError and Client. The rules that
// make a canonical request acceptable to Anthropic:
//   - System parts become system text blocks (cache_control kept); empty
//     text blocks are dropped everywhere, since Anthropic rejects them, and
//     a message left without blocks is dropped.
//   - RoleTool messages become tool_result blocks in a user message;
//     consecutive messages of the same Anthropic role are merged (the API
//     requires alternation), so all results answering one assistant turn
//     share one user message, in order. Inside a user message tool_result
//     blocks are moved before other blocks (stable), as the API requires.
//   - Thinking parts are sent back unchanged with their signature; thinking
//     without a signature (reasoning from another provider) cannot be
//     verified by Anthropic and is dropped.
//   - max_tokens defaults to EncodeOptions.DefaultMaxTokens (4096). A
//     reasoning effort maps to a budget by the request's mapping
//     (llm.Request.EffortBudgets, the gateway's thinking-budget setting;
//     by default minimal/low 1024, medium 4096, high 16384), xhigh to
//     32768 or high's when above; budgets are at least 1024 and max_tokens
//     is raised to budget+max_tokens when it is not above the budget.
//   - When thinking is on and the client did not speak Anthropic,
//     temperature, top_p and top_k are not sent (Anthropic rejects them
//     with thinking), and a forced tool choice (required or a named tool)
//     turns thinking off, since Anthropic rejects that combination and the
//     forced call is what the client asked for.
//   - For other dialects' clients a temperature above 1 (OpenAI allows up
//     to 2) is sent as 1, Anthropic's maximum.
//   - ResponseFormat has no native equivalent: json_schema and json_object
//     are expressed as a final system text block instructing the model to
//     answer with JSON (conforming to the schema). Nothing is rejected.
//   - Request.User becomes metadata.user_id. Seed, penalties and other
//     metadata have no Anthropic equivalent and are not sent.
//   - Request.Extra is sent only when the client spoke Anthropic
//     (EncodeOptions.Native, or a context marked with WithNative, which
//     the Anthropic handler sets; WithBeta forwards the client's
//     anthropic-beta flags the same way); extra
//     keys never override fields the encoder set, except Extra["thinking"]
//     described above.
//   - Audio parts and unknown roles are rejected with an *llm.Error 400.
//
// Tool-call arguments: canonical arguments are JSON object text. Whenever
// they must become an Anthropic input object (requests and responses),
// empty text becomes {}, and text that is not a JSON object (malformed
// JSON from an upstream, or a non-object) is wrapped as
// {"_invalid_arguments": "<the original text>"} so it stays visible to the
// model and the client instead of being silently replaced or failing the
// whole request.
package anthropic
