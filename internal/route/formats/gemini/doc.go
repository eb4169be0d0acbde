// Package gemini is the Gemini API (generativelanguage) wire format: the
// inbound dialect (a client speaking POST /v1beta/models/{model}:
// generateContent, :streamGenerateContent, :countTokens, :embedContent and
// :batchEmbedContents, translated to and from the canonical model in
// route/llm) and the outbound adapter (canonical requests sent to a
// Gemini upstream, its answers translated back). Every translation goes
// through llm; this package imports no other format package.
//
// Inbound (client → canonical → client):
//   - DecodeRequest turns a body into an llm.Request (the model comes from
//     the URL); every failure is an *llm.Error 400 naming the field.
//     snake_case keys are accepted as well as camelCase. Role "model" is
//     the assistant; a user turn's functionResponse parts become one
//     RoleTool message each, the turn's other parts user messages around
//     them in order. functionCall parts without ids get ids minted from
//     their position; a functionResponse pairs with its call by id, else
//     with the first unanswered call of the same name in the latest model
//     turn, and ToolResult.Name is always set. The response object becomes
//     the result text as compact JSON; {"error": …} alone marks a failure.
//     Gemini's OpenAPI-subset schemas (parameters, responseSchema) are
//     turned into JSON Schema (lower-case types, nullable as a "null"
//     type); parametersJsonSchema and responseJsonSchema are kept as is.
//     thinkingBudget maps to Reasoning.BudgetTokens (0 turns thinking off,
//     -1 means the model's default), thinkingLevel to Effort,
//     includeThoughts to Summary "auto". candidateCount above 1 is
//     refused. safetySettings, cachedContent, unknown generationConfig
//     fields and non-function tools go to Request.Extra and reach only
//     Gemini upstreams.
//   - EncodeResponse and StreamEncoder write what Gemini SDKs expect: one
//     candidate, parts with thought and thoughtSignature (signatures that
//     are not base64, which the SDKs cannot parse, are left out), tool
//     use reported as STOP, usage with promptTokenCount including cached
//     tokens and candidatesTokenCount excluding thoughts. The stream
//     encoder writes SSE (alt=sse) or Gemini's JSON-array form, sends a
//     function call whole once its arguments are complete, and puts
//     finishReason and usageMetadata on the last chunk.
//   - EncodeError writes Google's {"error":{code,message,status}}.
//
// Outbound (canonical → upstream → canonical): EncodeRequest,
// DecodeResponse, NewStreamDecoder, DecodeError and Client, which sends
// the credential as x-goog-api-key and the model in the URL. Rules:
//   - System parts become systemInstruction; tool results become
//     functionResponse parts (id and name) of a user turn; consecutive
//     turns of one role are merged and empty text is dropped. Result text
//     that is a JSON object is sent as the response object, other text as
//     {"result": text} ({"error": text} for failures).
//   - Tool schemas are sent as parametersJsonSchema and JSON output
//     schemas as responseJsonSchema (full JSON Schema, no sanitizing).
//   - Thinking parts are sent back, with signatures, only for Gemini
//     clients; the signature Gemini puts on a functionCall part rides on
//     the canonical tool-call part's Signature and is sent back on it.
//     The first function call of a model turn that has no signature
//     (history from another provider) carries Google's documented
//     "skip_thought_signature_validator" value.
//   - Reasoning: a budget is sent as thinkingBudget, an effort as
//     thinkingLevel for Gemini clients and as a budget otherwise, by the
//     request's mapping (llm.Request.EffortBudgets; by default
//     minimal/low 1024, medium 4096, high 16384), xhigh as 24576 or
//     high's when above; disabled
//     reasoning is thinkingBudget 0; includeThoughts is set for other
//     dialects' clients that enable reasoning.
//   - Answers: consecutive text (or thought) parts merge into one
//     canonical part unless a signature closed it; calls without ids get
//     ids minted from the response id and their position, the same in
//     streams and whole responses. finishReason STOP with calls is tool
//     use; MAX_TOKENS max tokens; SAFETY, RECITATION, BLOCKLIST,
//     PROHIBITED_CONTENT, SPII and the like content filter;
//     MALFORMED_FUNCTION_CALL an error stop. A blocked prompt, or a
//     filter finish before any content, is an *llm.Error 400 whose Code is
//     the reason (in a stream: an Error event, InStream).
//   - Usage: canonical InputTokens = promptTokenCount −
//     cachedContentTokenCount (+ toolUsePromptTokenCount), CacheReadTokens
//     = cachedContentTokenCount, OutputTokens = candidatesTokenCount +
//     thoughtsTokenCount, ReasoningTokens = thoughtsTokenCount; the
//     encoder inverts this exactly.
//   - Errors: Google's status names refine the HTTP status
//     (RESOURCE_EXHAUSTED rate limit, UNAVAILABLE overloaded); a 400 with
//     reason API_KEY_INVALID is an authentication failure (the router then
//     tries the next key); RetryInfo.retryDelay and Retry-After set
//     RetryAfter. An error object inside a 200 stream is an Error event.
package gemini
