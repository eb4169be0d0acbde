// Package ollama is the Ollama wire format: the inbound dialect (a client
// speaking POST /api/chat, /api/generate, /api/embed, /api/embeddings,
// /api/show, GET /api/tags, /api/ps and /api/version, translated to and
// from the canonical model in route/llm) and the
// outbound adapter (canonical requests sent to an Ollama server, or to
// ollama.com and proxies in front of one, its answers translated back).
//
// Every translation goes through llm; this package imports no other
// format package.
//
// Inbound (client → canonical → client):
//   - DecodeRequest turns a client body into an llm.Request; every failure
//     is an *llm.Error 400 naming the field. stream defaults to true (an
//     absent stream means a streamed answer, as in Ollama). System messages
//     are collected, in order, in Request.System. Images are base64 (a
//     data: URL prefix is tolerated) and their MIME type is sniffed.
//     format "json" is ResponseFormat json_object, a schema object is
//     json_schema; think true/false/"low"/"medium"/"high" is Reasoning;
//     options temperature, top_p, top_k, num_predict (MaxTokens), stop,
//     seed, presence_penalty and frequency_penalty map to the canonical
//     fields. Other options (num_ctx, …) and top-level fields (keep_alive,
//     …) are kept in Request.Extra and sent only to an Ollama upstream.
//   - Tool calls without an id get "call_<n>", n counting the tool calls
//     of the conversation (skipping ids the conversation already uses), so
//     the same history always yields the same ids; ids sent are kept
//     verbatim. A tool message answers a tool call of an earlier assistant
//     message: the one its tool_call_id names, else the first unanswered
//     call named tool_name, else the first unanswered call. A tool message
//     that answers nothing is a 400.
//   - EncodeResponse writes one object with done:true; StreamEncoder writes
//     NDJSON, one object per line: text and thinking deltas as
//     message.content and message.thinking, each tool call whole (argument
//     fragments are buffered until the part stops), and a final done:true
//     object with done_reason ("stop", or "length" at max tokens),
//     prompt_eval_count (prompt tokens, cache traffic included), eval_count
//     and durations measured by the gateway. A failure after the first line
//     is an {"error":"…"} line. Responses name the model as the client
//     asked for it, as Ollama echoes the request's model.
//   - DecodeGenerateRequest turns /api/generate into a one-message
//     conversation: prompt and images are the user message, system the
//     system prompt; format, options, think as for chat. template and raw
//     are ignored, context (Ollama's token ids) is checked and ignored, a
//     suffix is a 400; a request without a prompt only loads (or, with
//     keep_alive 0, unloads) the model. EncodeGenerateResponseTimed and
//     NewGenerateStreamEncoder write the same answers as for chat with the
//     text in response (and thinking), never a context.
//   - EncodeShow and EncodePS describe gateway models as far as the
//     gateway knows them (ModelCard: name, family, kind); the legacy
//     /api/embeddings takes one prompt and answers one float64 vector.
//
// Outbound (canonical → upstream → canonical): EncodeRequest,
// DecodeResponse, NewStreamDecoder, DecodeError and Client.
//   - System parts become one system message; tool results become role
//     tool messages with tool_name and tool_call_id; images are sent inline
//     as base64 (an image URL cannot be fetched by Ollama and is a 400, as
//     are audio and file parts). Thinking parts go back as message.thinking.
//   - max_tokens is options.num_predict; ResponseFormat json_schema is
//     format:<schema>, json_object is format:"json". Reasoning maps to
//     think: false when disabled, an effort level ("low", "medium", "high";
//     minimal → low, xhigh → high) when the client spoke Ollama or the model
//     is a gpt-oss model (Ollama rejects levels for other models), true
//     otherwise.
//   - Tool-call arguments are canonical JSON object text; they become an
//     object, and text that is not a JSON object is wrapped as
//     {"_invalid_arguments": "<the text>"} rather than dropped.
//   - Answers: prompt_eval_count is InputTokens and eval_count OutputTokens
//     (Ollama reports no cache counts). Tool calls without ids get
//     "call_<n>", n continuing the count of the request's tool calls, so the
//     ids match what DecodeRequest mints for the same history. done_reason
//     "length" is StopMaxTokens; anything else is StopEnd, or StopToolUse
//     when the answer holds tool calls. An {"error":…} line inside a 200
//     stream is an EventError (*llm.Error, InStream), and a stream that ends
//     without done:true is an error too.
package ollama
