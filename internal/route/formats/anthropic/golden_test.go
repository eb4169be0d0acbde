package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/route/formats/formattest"
	"github.com/omniedge/omni/internal/route/llm"
)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fixtures(t *testing.T, pattern string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures match %s", pattern)
	}
	out := map[string]string{}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))] = f
	}
	return out
}

// TestGoldenInboundRequests: client request → canonical (golden) →
// upstream request and count_tokens request for a client that spoke
// Anthropic (golden); decoding that upstream request again gives the
// same canonical request.
func TestGoldenInboundRequests(t *testing.T) {
	for name, path := range fixtures(t, "requests/*.json") {
		t.Run(name, func(t *testing.T) {
			req, err := DecodeRequest(readFile(t, path))
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/requests/"+name+".canonical.json", formattest.Indent(t, req))
			out, err := EncodeRequest(req, req.Model, EncodeOptions{Native: true})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/requests/"+name+".upstream.json", formattest.Reindent(t, out))
			count, err := encodeCountTokens(req, req.Model, EncodeOptions{Native: true})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/requests/"+name+".count.json", formattest.Reindent(t, count))

			again, err := DecodeRequest(out)
			if err != nil {
				t.Fatalf("re-decoding the upstream request: %v", err)
			}
			if !reflect.DeepEqual(again, req) {
				t.Errorf("Anthropic → canonical → Anthropic → canonical changed the request:\n got %s\nwant %s",
					formattest.Indent(t, again), formattest.Indent(t, req))
			}
		})
	}
}

// TestGoldenCanonicalRequests: canonical requests as other dialects
// produce them → upstream request and count_tokens request (golden).
func TestGoldenCanonicalRequests(t *testing.T) {
	for name, path := range fixtures(t, "canonical/*.json") {
		t.Run(name, func(t *testing.T) {
			var req llm.Request
			if err := json.Unmarshal(readFile(t, path), &req); err != nil {
				t.Fatal(err)
			}
			out, err := EncodeRequest(&req, "claude-sonnet-4-5-20250929", EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/canonical/"+name+".upstream.json", formattest.Reindent(t, out))
			count, err := encodeCountTokens(&req, "claude-sonnet-4-5-20250929", EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/canonical/"+name+".count.json", formattest.Reindent(t, count))
		})
	}
}

// TestGoldenResponses: upstream answer → canonical (golden) → client
// answer (golden).
func TestGoldenResponses(t *testing.T) {
	for name, path := range fixtures(t, "responses/*.json") {
		t.Run(name, func(t *testing.T) {
			resp, err := DecodeResponse(readFile(t, path))
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/responses/"+name+".canonical.json", formattest.Indent(t, resp))
			out, err := EncodeResponse(resp)
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/responses/"+name+".client.json", formattest.Reindent(t, out))
		})
	}
}

func decodeSSE(t testing.TB, b []byte) []llm.Event {
	t.Helper()
	return formattest.Events(t, NewStreamDecoder(io.NopCloser(bytes.NewReader(b))))
}

func encodeSSE(t testing.TB, evs []llm.Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := NewStreamEncoder(&buf)
	formattest.Encode(t, enc, evs)
	return buf.Bytes()
}

// TestGoldenStreams: upstream SSE → canonical events (golden JSONL) →
// client SSE (golden). Complete streams also survive client SSE →
// canonical unchanged, and the events are well formed.
func TestGoldenStreams(t *testing.T) {
	for name, path := range fixtures(t, "streams/*.sse") {
		t.Run(name, func(t *testing.T) {
			evs := decodeSSE(t, readFile(t, path))
			formattest.Golden(t, "testdata/golden/streams/"+name+".events.jsonl", formattest.JSONL(t, evs))
			out := encodeSSE(t, evs)
			formattest.Golden(t, "testdata/golden/streams/"+name+".client.sse", out)

			acc := llm.NewAccumulator()
			for i, ev := range evs {
				if err := acc.Add(ev); err != nil {
					if ev.Type != llm.EventError || i != len(evs)-1 {
						t.Fatalf("event %d %+v: %v", i, ev, err)
					}
				}
			}
			if last := evs[len(evs)-1]; last.Type == llm.EventStop {
				if again := decodeSSE(t, out); !reflect.DeepEqual(again, evs) {
					t.Errorf("client SSE decodes to different events:\n%s", formattest.JSONL(t, again))
				}
			}
		})
	}
}

// compactArgs rewrites tool-call arguments compactly: a stream carries
// the upstream's argument text verbatim (with its spaces), a JSON answer
// is compacted when decoded.
func compactArgs(t *testing.T, r *llm.Response) {
	t.Helper()
	for i, p := range r.Content {
		if p.ToolCall != nil {
			var buf bytes.Buffer
			if err := json.Compact(&buf, p.ToolCall.Arguments); err != nil {
				t.Fatalf("arguments %s: %v", p.ToolCall.Arguments, err)
			}
			tc := *p.ToolCall
			tc.Arguments = buf.Bytes()
			r.Content[i].ToolCall = &tc
		}
	}
}

// TestStreamCollectEqualsResponse: the streamed and the non-streamed
// fixtures of the same answer fold into the same canonical response, and
// replaying that response through the encoder and decoder keeps it.
func TestStreamCollectEqualsResponse(t *testing.T) {
	streams := fixtures(t, "streams/*.sse")
	n := 0
	for name, rpath := range fixtures(t, "responses/*.json") {
		spath, ok := streams[name]
		if !ok {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			want, err := DecodeResponse(readFile(t, rpath))
			if err != nil {
				t.Fatal(err)
			}
			got, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(readFile(t, spath)))))
			if err != nil {
				t.Fatal(err)
			}
			compactArgs(t, got)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("collected stream differs from the response:\n got %s\nwant %s", formattest.Indent(t, got), formattest.Indent(t, want))
			}

			replayed, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(encodeSSE(t, llm.Events(want))))))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(replayed, want) {
				t.Fatalf("Events → client SSE → canonical differs:\n got %s\nwant %s", formattest.Indent(t, replayed), formattest.Indent(t, want))
			}
		})
	}
	if n < 3 {
		t.Fatalf("only %d stream/response pairs", n)
	}
}

func TestStreamErrorsAreTyped(t *testing.T) {
	evs := decodeSSE(t, readFile(t, "testdata/streams/overloaded.sse"))
	last := evs[len(evs)-1]
	if last.Type != llm.EventError || last.Err == nil {
		t.Fatalf("last event %+v", last)
	}
	if e := last.Err; e.Status != 529 || e.Type != llm.ErrOverloaded || !e.InStream || !e.Retryable() || e.Message != "upstream stream failed: Overloaded" {
		t.Fatalf("error %+v", e)
	}
	_, err := llm.Collect(&llm.SliceStream{Events: evs})
	var le *llm.Error
	if !errors.As(err, &le) || le.Type != llm.ErrOverloaded {
		t.Fatalf("Collect: %v", err)
	}

	evs = decodeSSE(t, readFile(t, "testdata/streams/truncated.sse"))
	last = evs[len(evs)-1]
	if last.Type != llm.EventError || last.Err.Status != 502 || !last.Err.InStream || !last.Err.Retryable() {
		t.Fatalf("truncated: last event %+v", last)
	}
}
