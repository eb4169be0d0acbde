// Package responses is the OpenAI Responses API wire format: the inbound
// dialect (a client speaking POST /v1/responses, translated to and from
// the canonical model in route/llm) and the outbound adapter (canonical
// requests sent to a Responses upstream — provider type
// "openai-responses" — and its answers translated back).
//
// Every translation goes through llm; this package imports no other
// format package.
//
// Inbound (client → canonical → client):
//   - DecodeRequest returns an Inbound: the canonical request plus what
//     the gateway acts on itself (previous_response_id, store, the number
//     of System parts that came from instructions, and the request
//     parameters the response object echoes). Every failure is an
//     *llm.Error 400 whose message starts with the field it is about.
//   - input is a string (one user message) or a list of items. Message
//     items with role system or developer join Request.System after the
//     instructions, in order; user items become user messages; assistant
//     messages, function_call and reasoning items that follow each other
//     form one assistant turn. function_call keeps call_id verbatim as the
//     tool-call id (the fc_ item id is not kept); each
//     function_call_output becomes one RoleTool message. A reasoning item
//     becomes a thinking part: its summary texts (joined by a blank line)
//     as the text and encrypted_content as the Signature, so it can be
//     sent back in tool loops.
//   - Built-in tools (web_search, file_search, …) are not rejected: they
//     are kept, raw, in Request.Extra[ExtraBuiltinTools] and reach only a
//     Responses upstream (see WithNative). item_reference items, uploaded
//     file ids and the conversation parameter are rejected with a 400, as
//     the gateway holds no files and keeps conversations only through
//     previous_response_id. Other unknown top-level fields (include,
//     truncation, service_tier, …) go to Request.Extra.
//   - Complete / EncodeResponse build the response object; NewStreamEncoder
//     writes the named SSE events with sequence numbers (see
//     StreamEncoder). Response and item ids are the gateway's own: the
//     caller sets the response id, item ids derive from it and the output
//     index (msg_…, fc_…, rs_…), identical streamed or not. Status is
//     completed, or incomplete with incomplete_details.reason
//     max_output_tokens or content_filter; a failure mid-stream is an
//     error event followed by response.failed. EncodeError writes
//     OpenAI's envelope {"error":{message,type,param,code}}.
//
// Outbound (canonical → upstream → canonical): EncodeRequest,
// DecodeResponse, NewStreamDecoder, DecodeError and Client (POST
// {base}/responses, Bearer key, default base https://api.openai.com/v1).
//   - The gateway owns conversation state: the upstream always gets
//     store:false and the whole conversation, never previous_response_id.
//   - System parts that are all text become instructions (joined by a
//     blank line); otherwise a leading system message item.
//   - Thinking parts with a signature become reasoning items (summary +
//     encrypted_content, no id); thinking without one came from a provider
//     whose reasoning the upstream cannot verify and is dropped, as is
//     redacted thinking. With reasoning enabled the request asks for
//     reasoning.encrypted_content and a summary ("auto" unless the client
//     chose), and a thinking budget maps to the effort whose budget in the
//     request's mapping is nearest (llm.EffortBudgets.Effort; by default
//     ≤2048 low, ≤8192 medium, else high).
//   - Stop sequences, seed, penalties and top_k have no Responses
//     equivalent and are not sent; audio is rejected with a 400.
//   - Extra fields are sent only when the client spoke Responses
//     (EncodeOptions.Native, or a context marked with WithNative); they
//     never override fields the encoder set, and built-in tools are
//     appended to the function tools.
//
// Usage: Responses input_tokens includes cached_tokens, canonical
// InputTokens excludes cache reads (CacheReadTokens), so input_tokens =
// InputTokens + CacheReadTokens + CacheWriteTokens on the way out and
// InputTokens = input_tokens − cached_tokens on the way in;
// output_tokens includes reasoning_tokens on both sides. A finished
// response with function calls is StopToolUse; incomplete
// max_output_tokens is StopMaxTokens; a refusal is StopRefusal.
package responses
