package responses

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/route/llm"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v (run go test -update to create it)", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs (go test -update rewrites it after review)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func indent(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func reindent(t *testing.T, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		t.Fatal(err)
	}
	return append(b.Bytes(), '\n')
}

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
			in, err := DecodeRequest(read(t, "requests/"+name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "requests/"+name+".canonical.json", indent(t, struct {
				Request            *llm.Request `json:"request"`
				Instructions       int          `json:"instructions"`
				PreviousResponseID string       `json:"previous_response_id,omitempty"`
				Store              bool         `json:"store"`
			}{in.Request, in.Instructions, in.PreviousResponseID, in.Store}))
			up, err := EncodeRequest(in.Request, "upstream-model", EncodeOptions{Native: true})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "requests/"+name+".upstream.json", reindent(t, up))
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
			r, err := DecodeResponse(read(t, name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "responses/"+name+".canonical.json", indent(t, r))
			out, err := EncodeResponse(testMeta(t), r)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "responses/"+name+".client.json", reindent(t, out))
		})
	}
}

func decodeAll(t *testing.T, sse []byte) []llm.Event {
	t.Helper()
	s := NewStreamDecoder(io.NopCloser(bytes.NewReader(sse)))
	var evs []llm.Event
	for {
		ev, err := s.Next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
}

func encodeAll(t *testing.T, meta Response, evs []llm.Event) []byte {
	t.Helper()
	var out bytes.Buffer
	enc := NewStreamEncoder(&out, meta)
	for _, ev := range evs {
		if err := enc.Encode(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// Upstream streams → canonical events → client SSE.
func TestGoldenStreams(t *testing.T) {
	for _, name := range []string{"text", "parallel_tools", "reasoning", "error_midstream", "failed"} {
		t.Run(name, func(t *testing.T) {
			evs := decodeAll(t, read(t, name+".sse"))
			var events bytes.Buffer
			for _, ev := range evs {
				b, _ := json.Marshal(ev)
				events.Write(append(b, '\n'))
			}
			golden(t, "streams/"+name+".events.jsonl", events.Bytes())
			golden(t, "streams/"+name+".client.sse", encodeAll(t, testMeta(t), evs))
		})
	}
}
