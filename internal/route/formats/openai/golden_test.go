package openai

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

// Client requests → canonical → upstream request (as native and as a
// request from another dialect).
func TestGoldenRequests(t *testing.T) {
	files, _ := filepath.Glob("testdata/requests/*.json")
	if len(files) == 0 {
		t.Fatal("no request fixtures")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
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
			compat, err := EncodeRequest(req, "upstream-model", EncodeOptions{LegacyMaxTokens: true})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "requests/"+name+".compatible.json", reindent(t, compat))
			// Decoding our own upstream request gives the same canonical
			// request, up to the merged system prompt and the upstream model.
			again, err := DecodeRequest(up)
			if err != nil {
				t.Fatal(err)
			}
			if len(again.Messages) != len(req.Messages) || len(again.Tools) != len(req.Tools) {
				t.Fatalf("re-decoded request lost messages or tools: %d/%d %d/%d", len(again.Messages), len(req.Messages), len(again.Tools), len(req.Tools))
			}
		})
	}
}

// Upstream responses → canonical → client response.
func TestGoldenResponses(t *testing.T) {
	for _, name := range []string{"parallel_tools", "text"} {
		t.Run(name, func(t *testing.T) {
			r, err := DecodeResponse(read(t, name+".json"))
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

// Upstream streams → canonical events → client SSE (with and without
// include_usage).
func TestGoldenStreams(t *testing.T) {
	for _, name := range []string{"parallel_tools", "text", "error_midstream"} {
		t.Run(name, func(t *testing.T) {
			s := NewStreamDecoder(io.NopCloser(bytes.NewReader(read(t, name+".sse"))))
			var events bytes.Buffer
			var evs []llm.Event
			for {
				ev, err := s.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				evs = append(evs, ev)
				b, _ := json.Marshal(ev)
				events.Write(append(b, '\n'))
			}
			golden(t, "streams/"+name+".events.jsonl", events.Bytes())
			for _, usage := range []bool{true, false} {
				var out bytes.Buffer
				enc := NewStreamEncoder(&out, usage, 1753470020)
				for _, ev := range evs {
					if err := enc.Encode(ev); err != nil {
						t.Fatal(err)
					}
				}
				if err := enc.Close(); err != nil {
					t.Fatal(err)
				}
				suffix := ".client.sse"
				if !usage {
					suffix = ".client-nousage.sse"
				}
				golden(t, "streams/"+name+suffix, out.Bytes())
			}
		})
	}
}
