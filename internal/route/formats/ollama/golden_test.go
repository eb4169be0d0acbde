package ollama

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/route/llm"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

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

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
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
		t.Fatalf("%s: %v", raw, err)
	}
	return append(b.Bytes(), '\n')
}

func names(t *testing.T, pattern string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("testdata", pattern))
	if len(files) == 0 {
		t.Fatalf("no fixtures match %s", pattern)
	}
	var out []string
	for _, f := range files {
		out = append(out, strings.TrimSuffix(filepath.Base(f), filepath.Ext(f)))
	}
	return out
}

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
	for _, name := range names(t, "requests/*.json") {
		t.Run(name, func(t *testing.T) {
			req, err := DecodeRequest(read(t, "requests/"+name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "requests/"+name+".canonical.json", indent(t, req))
			up, err := EncodeRequest(req, "upstream-model", EncodeOptions{Native: true})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "requests/"+name+".upstream.json", reindent(t, up))
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
			a, b := indent(t, again), indent(t, req)
			if !bytes.Equal(a, b) {
				t.Fatalf("re-decoded request differs:\n%s\nvs\n%s", a, b)
			}
		})
	}
}

// Canonical requests from other dialects → upstream request.
func TestGoldenCanonical(t *testing.T) {
	for _, name := range names(t, "canonical/*.json") {
		t.Run(name, func(t *testing.T) {
			var req llm.Request
			if err := json.Unmarshal(read(t, "canonical/"+name+".json"), &req); err != nil {
				t.Fatal(err)
			}
			up, err := EncodeRequest(&req, strings.TrimPrefix(req.Model, "local/"), EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "canonical/"+name+".upstream.json", reindent(t, up))
		})
	}
}

// Upstream responses → canonical → client response.
func TestGoldenResponses(t *testing.T) {
	for _, name := range names(t, "responses/*.json") {
		t.Run(name, func(t *testing.T) {
			r, err := DecodeResponse(read(t, "responses/"+name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "responses/"+name+".canonical.json", indent(t, r))
			out, err := EncodeResponseTimed(r, Timing{Total: 1500 * time.Millisecond, PromptEval: 100 * time.Millisecond, Eval: 1400 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "responses/"+name+".client.json", reindent(t, out))
		})
	}
}

func decodeAll(t *testing.T, s llm.Stream) []llm.Event {
	t.Helper()
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

// Upstream NDJSON streams → canonical events → client NDJSON.
func TestGoldenStreams(t *testing.T) {
	for _, name := range names(t, "streams/*.ndjson") {
		t.Run(name, func(t *testing.T) {
			evs := decodeAll(t, NewStreamDecoder(io.NopCloser(bytes.NewReader(read(t, "streams/"+name+".ndjson")))))
			var events bytes.Buffer
			for _, ev := range evs {
				b, _ := json.Marshal(ev)
				events.Write(append(b, '\n'))
			}
			golden(t, "streams/"+name+".events.jsonl", events.Bytes())
			var out bytes.Buffer
			enc := NewStreamEncoder(&out, "local/qwen3:8b", stepClock())
			for _, ev := range evs {
				if err := enc.Encode(ev); err != nil {
					t.Fatal(err)
				}
			}
			if err := enc.Close(); err != nil {
				t.Fatal(err)
			}
			golden(t, "streams/"+name+".client.ndjson", out.Bytes())
		})
	}
}
