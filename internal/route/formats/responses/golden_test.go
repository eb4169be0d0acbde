package responses

import (
	"bytes"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/route/formats/formattest"
	"github.com/omniedge/omni/internal/route/llm"
)

// testMeta is the response skeleton the gateway would build for a plain
// request.
func testMeta(t *testing.T) Response {
	in, err := DecodeRequest([]byte(`{"model":"openai/gpt-4.1","input":"hi","tools":[{"type":"function","name":"get_weather"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	m := in.Echo
	m.ID, m.CreatedAt = "resp_gw0001", 1755444170
	return m
}

// Client requests → canonical → upstream request.
func TestGoldenRequests(t *testing.T) {
	files, _ := filepath.Glob("testdata/requests/*.json")
	if len(files) < 4 {
		t.Fatalf("request fixtures: %v", files)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			in, err := DecodeRequest(formattest.Testdata(t, "requests/"+name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/requests/"+name+".canonical.json", formattest.Indent(t, struct {
				Request            *llm.Request `json:"request"`
				Instructions       int          `json:"instructions"`
				PreviousResponseID string       `json:"previous_response_id,omitempty"`
				Store              bool         `json:"store"`
			}{in.Request, in.Instructions, in.PreviousResponseID, in.Store}))
			up, err := EncodeRequest(in.Request, "upstream-model", EncodeOptions{Native: true})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/requests/"+name+".upstream.json", formattest.Reindent(t, up))
			var sent map[string]any
			if err := json.Unmarshal(up, &sent); err != nil {
				t.Fatal(err)
			}
			if sent["store"] != false || sent["previous_response_id"] != nil {
				t.Fatalf("upstream must get store:false and no previous_response_id: %s", up)
			}
			// Decoding our own upstream request gives the same conversation.
			again, err := DecodeRequest(up)
			if err != nil {
				t.Fatal(err)
			}
			if len(again.Request.Messages) != len(in.Request.Messages) || len(again.Request.Tools) != len(in.Request.Tools) {
				t.Fatalf("re-decoded request lost messages or tools: %d/%d %d/%d", len(again.Request.Messages), len(in.Request.Messages),
					len(again.Request.Tools), len(in.Request.Tools))
			}
			// A request from another dialect never carries Responses extras.
			foreign, err := EncodeRequest(in.Request, "upstream-model", EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var fm map[string]json.RawMessage
			if err := json.Unmarshal(foreign, &fm); err != nil {
				t.Fatal(err)
			}
			for k := range in.Request.Extra {
				if _, sent := fm[k]; sent && k != "include" && k != ExtraBuiltinTools {
					t.Fatalf("extra %q sent for a foreign client: %s", k, foreign)
				}
			}
			var tools []json.RawMessage
			_ = json.Unmarshal(fm["tools"], &tools)
			if len(tools) != len(in.Request.Tools) {
				t.Fatalf("built-in tools sent for a foreign client: %s", fm["tools"])
			}
		})
	}
}

// Upstream responses → canonical → client response object.
func TestGoldenResponses(t *testing.T) {
	for _, name := range []string{"text", "parallel_tools", "reasoning", "incomplete"} {
		t.Run(name, func(t *testing.T) {
			r, err := DecodeResponse(formattest.Testdata(t, name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/responses/"+name+".canonical.json", formattest.Indent(t, r))
			out, err := EncodeResponse(testMeta(t), r)
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

func encodeAll(t *testing.T, meta Response, evs []llm.Event) []byte {
	t.Helper()
	var out bytes.Buffer
	enc := NewStreamEncoder(&out, meta)
	formattest.Encode(t, enc, evs)
	return out.Bytes()
}

// Upstream streams → canonical events → client SSE.
func TestGoldenStreams(t *testing.T) {
	for _, name := range []string{"text", "parallel_tools", "reasoning", "error_midstream", "failed"} {
		t.Run(name, func(t *testing.T) {
			evs := decodeAll(t, formattest.Testdata(t, name+".sse"))
			formattest.Golden(t, "testdata/golden/streams/"+name+".events.jsonl", formattest.JSONL(t, evs))
			formattest.Golden(t, "testdata/golden/streams/"+name+".client.sse", encodeAll(t, testMeta(t), evs))
		})
	}
}
