package gemini

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/omniedge/omni/internal/route/formats/formattest"
	"github.com/omniedge/omni/internal/route/llm"
)

// Client requests → canonical (golden) → upstream request and
// :countTokens request for the same client (golden); decoding that
// upstream request gives the same turns.
func TestGoldenRequests(t *testing.T) {
	for _, name := range formattest.Names(t, "requests/*.json") {
		t.Run(name, func(t *testing.T) {
			req, err := DecodeRequest("gemini-2.5-flash", formattest.Testdata(t, "requests/"+name+".json"), false)
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/requests/"+name+".canonical.json", formattest.Indent(t, req))
			up, err := EncodeRequest(req, EncodeOptions{Native: true})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/requests/"+name+".upstream.json", formattest.Reindent(t, up))
			count, err := encodeCountTokens(req, "models/gemini-2.5-flash", EncodeOptions{Native: true})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/requests/"+name+".count.json", formattest.Reindent(t, count))
			again, err := DecodeRequest("gemini-2.5-flash", up, false)
			if err != nil {
				t.Fatalf("re-decoding the upstream request: %v", err)
			}
			if a, b := formattest.Indent(t, again.Messages), formattest.Indent(t, req.Messages); !bytes.Equal(a, b) {
				t.Errorf("Gemini → canonical → Gemini → canonical changed the turns:\n got %s\nwant %s", a, b)
			}
			if len(again.Tools) != len(req.Tools) || len(again.System) != len(req.System) {
				t.Errorf("re-decoded request lost tools or system parts")
			}
		})
	}
}

// Canonical requests as other dialects produce them → upstream request
// and :countTokens request (golden).
func TestGoldenCanonicalRequests(t *testing.T) {
	for _, name := range formattest.Names(t, "canonical/*.json") {
		t.Run(name, func(t *testing.T) {
			var req llm.Request
			if err := json.Unmarshal(formattest.Testdata(t, "canonical/"+name+".json"), &req); err != nil {
				t.Fatal(err)
			}
			up, err := EncodeRequest(&req, EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/canonical/"+name+".upstream.json", formattest.Reindent(t, up))
			count, err := encodeCountTokens(&req, "models/gemini-2.5-flash", EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/canonical/"+name+".count.json", formattest.Reindent(t, count))
		})
	}
}

// Upstream responses → canonical (golden) → client response (golden).
func TestGoldenResponses(t *testing.T) {
	for _, name := range []string{"parallel_tools", "text", "thinking"} {
		t.Run(name, func(t *testing.T) {
			r, err := DecodeResponse(formattest.Testdata(t, "responses/"+name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/responses/"+name+".canonical.json", formattest.Indent(t, r))
			out, err := EncodeResponse(r)
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/responses/"+name+".client.json", formattest.Reindent(t, out))
		})
	}
}

func decodeAll(t *testing.T, sse []byte) []llm.Event {
	t.Helper()
	return formattest.Events(t, NewStreamDecoder(io.NopCloser(bytes.NewReader(sse))))
}

// Upstream streams → canonical events (golden) → client SSE and JSON
// array streams (golden).
func TestGoldenStreams(t *testing.T) {
	for _, name := range formattest.Names(t, "streams/*.sse") {
		t.Run(name, func(t *testing.T) {
			evs := decodeAll(t, formattest.Testdata(t, "streams/"+name+".sse"))
			formattest.Golden(t, "testdata/golden/streams/"+name+".events.jsonl", formattest.JSONL(t, evs))
			for _, array := range []bool{false, true} {
				var out bytes.Buffer
				enc := NewStreamEncoder(&out)
				suffix := ".client.sse"
				if array {
					enc, suffix = NewArrayStreamEncoder(&out), ".client-array.json"
				}
				formattest.Encode(t, enc, evs)
				if array {
					var chunks []json.RawMessage
					if err := json.Unmarshal(out.Bytes(), &chunks); err != nil || len(chunks) == 0 {
						t.Fatalf("array stream is not a JSON array: %v\n%s", err, out.Bytes())
					}
				}
				formattest.Golden(t, "testdata/golden/streams/"+name+suffix, out.Bytes())
			}
		})
	}
}
