package ollama

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/route/formats/formattest"
	"github.com/omniedge/omni/internal/route/llm"
)

// stepClock returns a clock that advances 25ms on every reading, so the
// durations the stream encoder measures are deterministic and non-zero.
func stepClock() func() time.Time {
	t := time.Date(2026, 1, 14, 9, 30, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(25 * time.Millisecond)
		return t
	}
}

// Client requests → canonical → upstream request (as a native Ollama
// request, with the client's extra options and fields).
func TestGoldenRequests(t *testing.T) {
	for _, name := range formattest.Names(t, "requests/*.json") {
		t.Run(name, func(t *testing.T) {
			req, err := DecodeRequest(formattest.Testdata(t, "requests/"+name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/requests/"+name+".canonical.json", formattest.Indent(t, req))
			up, err := EncodeRequest(req, "upstream-model", EncodeOptions{Native: true})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/requests/"+name+".upstream.json", formattest.Reindent(t, up))
			// Our own upstream request decodes to the same conversation, up
			// to the system prompts merged into one message.
			again, err := DecodeRequest(up)
			if err != nil {
				t.Fatal(err)
			}
			again.Model, again.Extra = req.Model, req.Extra
			if len(req.System) > 0 {
				req.System = []llm.Part{{Type: llm.PartText, Text: joinText(req.System, llm.PartText, "\n\n")}}
			}
			a, b := formattest.Indent(t, again), formattest.Indent(t, req)
			if !bytes.Equal(a, b) {
				t.Fatalf("re-decoded request differs:\n%s\nvs\n%s", a, b)
			}
		})
	}
}

// Canonical requests from other dialects → upstream request.
func TestGoldenCanonical(t *testing.T) {
	for _, name := range formattest.Names(t, "canonical/*.json") {
		t.Run(name, func(t *testing.T) {
			var req llm.Request
			if err := json.Unmarshal(formattest.Testdata(t, "canonical/"+name+".json"), &req); err != nil {
				t.Fatal(err)
			}
			up, err := EncodeRequest(&req, strings.TrimPrefix(req.Model, "local/"), EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/canonical/"+name+".upstream.json", formattest.Reindent(t, up))
		})
	}
}

// Upstream responses → canonical → client response.
func TestGoldenResponses(t *testing.T) {
	for _, name := range formattest.Names(t, "responses/*.json") {
		t.Run(name, func(t *testing.T) {
			r, err := DecodeResponse(formattest.Testdata(t, "responses/"+name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/responses/"+name+".canonical.json", formattest.Indent(t, r))
			out, err := EncodeResponseTimed(r, Timing{Total: 1500 * time.Millisecond, PromptEval: 100 * time.Millisecond, Eval: 1400 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/responses/"+name+".client.json", formattest.Reindent(t, out))
		})
	}
}

// Upstream NDJSON streams → canonical events → client NDJSON.
func TestGoldenStreams(t *testing.T) {
	for _, name := range formattest.Names(t, "streams/*.ndjson") {
		t.Run(name, func(t *testing.T) {
			evs := formattest.Events(t, NewStreamDecoder(io.NopCloser(bytes.NewReader(formattest.Testdata(t, "streams/"+name+".ndjson")))))
			formattest.Golden(t, "testdata/golden/streams/"+name+".events.jsonl", formattest.JSONL(t, evs))
			var out bytes.Buffer
			enc := NewStreamEncoder(&out, "local/qwen3:8b", stepClock())
			formattest.Encode(t, enc, evs)
			formattest.Golden(t, "testdata/golden/streams/"+name+".client.ndjson", out.Bytes())
		})
	}
}

// /api/generate requests → canonical → upstream request (an Ollama
// upstream gets /api/chat with the prompt as the user's message).
func TestGoldenGenerateRequests(t *testing.T) {
	for _, name := range formattest.Names(t, "generate/*.json") {
		t.Run(name, func(t *testing.T) {
			req, mode, err := DecodeGenerateRequest(formattest.Testdata(t, "generate/"+name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if mode != "" {
				t.Fatalf("mode %q for a request with a prompt", mode)
			}
			formattest.Golden(t, "testdata/golden/generate/"+name+".canonical.json", formattest.Indent(t, req))
			up, err := EncodeRequest(req, "upstream-model", EncodeOptions{Native: true})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/generate/"+name+".upstream.json", formattest.Reindent(t, up))
		})
	}
}

// Upstream responses → canonical → /api/generate answer.
func TestGoldenGenerateResponses(t *testing.T) {
	for _, name := range formattest.Names(t, "responses/*.json") {
		t.Run(name, func(t *testing.T) {
			r, err := DecodeResponse(formattest.Testdata(t, "responses/"+name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			r.Model = "local/qwen3:8b"
			out, err := EncodeGenerateResponseTimed(r, Timing{Total: 1500 * time.Millisecond, PromptEval: 100 * time.Millisecond, Eval: 1400 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/responses/"+name+".generate.json", formattest.Reindent(t, out))
		})
	}
}

// Upstream NDJSON streams → canonical events → /api/generate NDJSON.
func TestGoldenGenerateStreams(t *testing.T) {
	for _, name := range formattest.Names(t, "streams/*.ndjson") {
		t.Run(name, func(t *testing.T) {
			evs := formattest.Events(t, NewStreamDecoder(io.NopCloser(bytes.NewReader(formattest.Testdata(t, "streams/"+name+".ndjson")))))
			var out bytes.Buffer
			enc := NewGenerateStreamEncoder(&out, "local/qwen3:8b", stepClock())
			formattest.Encode(t, enc, evs)
			formattest.Golden(t, "testdata/golden/streams/"+name+".generate.ndjson", out.Bytes())
		})
	}
}
