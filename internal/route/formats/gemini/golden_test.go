package gemini

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

// Golden files live in testdata/golden; regenerate them with
//
//	go test ./internal/route/formats/gemini -run Golden -update
//
// and review the diff.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

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
		t.Errorf("%s differs (go test -update rewrites it after review)\n--- got\n%s\n--- want\n%s", path, got, want)
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
		t.Fatalf("invalid JSON %s: %v", raw, err)
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

// Client requests → canonical (golden) → upstream request for the same
// client (golden); decoding that upstream request gives the same turns.
func TestGoldenRequests(t *testing.T) {
	for _, name := range names(t, "requests/*.json") {
		t.Run(name, func(t *testing.T) {
			req, err := DecodeRequest("gemini-2.5-flash", read(t, "requests/"+name+".json"), false)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "requests/"+name+".canonical.json", indent(t, req))
			up, err := EncodeRequest(req, EncodeOptions{Native: true})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "requests/"+name+".upstream.json", reindent(t, up))
			again, err := DecodeRequest("gemini-2.5-flash", up, false)
			if err != nil {
				t.Fatalf("re-decoding the upstream request: %v", err)
			}
			if a, b := indent(t, again.Messages), indent(t, req.Messages); !bytes.Equal(a, b) {
				t.Errorf("Gemini → canonical → Gemini → canonical changed the turns:\n got %s\nwant %s", a, b)
			}
			if len(again.Tools) != len(req.Tools) || len(again.System) != len(req.System) {
				t.Errorf("re-decoded request lost tools or system parts")
			}
		})
	}
}

// Canonical requests as other dialects produce them → upstream request.
func TestGoldenCanonicalRequests(t *testing.T) {
	for _, name := range names(t, "canonical/*.json") {
		t.Run(name, func(t *testing.T) {
			var req llm.Request
			if err := json.Unmarshal(read(t, "canonical/"+name+".json"), &req); err != nil {
				t.Fatal(err)
			}
			up, err := EncodeRequest(&req, EncodeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "canonical/"+name+".upstream.json", reindent(t, up))
		})
	}
}

// Upstream responses → canonical (golden) → client response (golden).
func TestGoldenResponses(t *testing.T) {
	for _, name := range []string{"parallel_tools", "text", "thinking"} {
		t.Run(name, func(t *testing.T) {
			r, err := DecodeResponse(read(t, "responses/"+name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "responses/"+name+".canonical.json", indent(t, r))
			out, err := EncodeResponse(r)
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
	defer s.Close()
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

// Upstream streams → canonical events (golden) → client SSE and JSON
// array streams (golden).
func TestGoldenStreams(t *testing.T) {
	for _, name := range names(t, "streams/*.sse") {
		t.Run(name, func(t *testing.T) {
			evs := decodeAll(t, read(t, "streams/"+name+".sse"))
			var events bytes.Buffer
			for _, ev := range evs {
				b, _ := json.Marshal(ev)
				events.Write(append(b, '\n'))
			}
			golden(t, "streams/"+name+".events.jsonl", events.Bytes())
			for _, array := range []bool{false, true} {
				var out bytes.Buffer
				enc := NewStreamEncoder(&out)
				suffix := ".client.sse"
				if array {
					enc, suffix = NewArrayStreamEncoder(&out), ".client-array.json"
				}
				for _, ev := range evs {
					if err := enc.Encode(ev); err != nil {
						t.Fatal(err)
					}
				}
				if err := enc.Close(); err != nil {
					t.Fatal(err)
				}
				if array {
					var chunks []json.RawMessage
					if err := json.Unmarshal(out.Bytes(), &chunks); err != nil || len(chunks) == 0 {
						t.Fatalf("array stream is not a JSON array: %v\n%s", err, out.Bytes())
					}
				}
				golden(t, "streams/"+name+suffix, out.Bytes())
			}
		})
	}
}
