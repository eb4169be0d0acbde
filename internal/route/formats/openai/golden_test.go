package openai

import (
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/route/formats/formattest"
)

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
			compat, err := EncodeRequest(req, "upstream-model", EncodeOptions{LegacyMaxTokens: true})
			if err != nil {
				t.Fatal(err)
			}
			formattest.Golden(t, "testdata/golden/requests/"+name+".compatible.json", formattest.Reindent(t, compat))
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
			r, err := DecodeResponse(formattest.Testdata(t, name+".json"))
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

// Upstream streams → canonical events → client SSE (with and without
// include_usage).
func TestGoldenStreams(t *testing.T) {
	for _, name := range []string{"parallel_tools", "text", "error_midstream"} {
		t.Run(name, func(t *testing.T) {
			evs := formattest.Events(t, NewStreamDecoder(io.NopCloser(bytes.NewReader(formattest.Testdata(t, name+".sse")))))
			formattest.Golden(t, "testdata/golden/streams/"+name+".events.jsonl", formattest.JSONL(t, evs))
			for _, usage := range []bool{true, false} {
				var out bytes.Buffer
				enc := NewStreamEncoder(&out, usage, 1753470020)
				formattest.Encode(t, enc, evs)
				suffix := ".client.sse"
				if !usage {
					suffix = ".client-nousage.sse"
				}
				formattest.Golden(t, "testdata/golden/streams/"+name+suffix, out.Bytes())
			}
		})
	}
}
