// Package formattest holds what the tests of the wire-format packages
// share: golden files (rewritten with -update), JSON indentation, fuzz
// seeds and the checks the fuzz targets make of requests and streams.
// Only tests import it.
//
// Golden files are regenerated with
//
//	go test ./internal/route/formats/<format> -update
//
// and the diff reviewed.
package formattest

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/route/llm"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// Golden compares got with the file at path, or with -update writes got
// there.
func Golden(t testing.TB, path string, got []byte) {
	t.Helper()
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
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it after review)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// Testdata is the content of testdata/name.
func Testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Names are the base names, without extension, of the files matching
// testdata/pattern; there must be one at least.
func Names(t testing.TB, pattern string) []string {
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

// Indent is v as indented JSON with a final newline.
func Indent(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// Reindent is the JSON text raw indented, with a final newline.
func Reindent(t testing.TB, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		t.Fatalf("invalid JSON %s: %v", raw, err)
	}
	return append(b.Bytes(), '\n')
}

// JSONL is one JSON line per event.
func JSONL(t testing.TB, evs []llm.Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, ev := range evs {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// maxEvents bounds the events read from one stream: a decoder that yields
// more does not end.
const maxEvents = 1 << 16

// Events drains and closes s, failing on anything but io.EOF.
func Events(t testing.TB, s llm.Stream) []llm.Event {
	t.Helper()
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
		if len(evs) > maxEvents {
			t.Fatal("stream does not end")
		}
	}
}

// Encoder is what every format's stream encoder offers.
type Encoder interface {
	Encode(llm.Event) error
	Close() error
}

// Encode writes evs with enc and closes it, failing on any error.
func Encode(t testing.TB, enc Encoder, evs []llm.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := enc.Encode(ev); err != nil {
			t.Fatalf("encode %+v: %v", ev, err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
}

// AddSeeds adds every file matching testdata/pattern to f's corpus.
func AddSeeds(f *testing.F, pattern string) {
	files, _ := filepath.Glob(filepath.Join("testdata", pattern))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// CheckDecodeError fails t unless err, from decoding a client request, is
// an invalid-request llm.Error with status 400 and a message.
func CheckDecodeError(t testing.TB, err error) {
	t.Helper()
	var le *llm.Error
	if !errors.As(err, &le) || le.Status != http.StatusBadRequest || le.Type != llm.ErrInvalidRequest || le.Message == "" {
		t.Fatalf("error %#v", err)
	}
}

// CheckBadRequest fails t unless err, from the step what, is an
// llm.Error with status 400.
func CheckBadRequest(t testing.TB, what string, err error) {
	t.Helper()
	var le *llm.Error
	if !errors.As(err, &le) || le.Status != http.StatusBadRequest {
		t.Fatalf("%s: %#v", what, err)
	}
}

// CheckStream drains s, which must yield a well-formed canonical stream
// (the accumulator accepts every event and the stream ends with Stop) or
// one that ends with a single in-stream Error event, and no more than
// limit events. It returns the events.
func CheckStream(t testing.TB, s llm.Stream, limit int) []llm.Event {
	t.Helper()
	defer s.Close()
	acc := llm.NewAccumulator()
	var evs []llm.Event
	for {
		ev, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if len(evs) > 0 {
			if last := evs[len(evs)-1].Type; last == llm.EventError || last == llm.EventStop {
				t.Fatalf("event %+v after %s", ev, last)
			}
		}
		if len(evs) > limit {
			t.Fatal("decoder does not terminate")
		}
		evs = append(evs, ev)
		if ev.Type == llm.EventError {
			if ev.Err == nil || !ev.Err.InStream {
				t.Fatalf("error event %+v", ev)
			}
			continue
		}
		if err := acc.Add(ev); err != nil {
			t.Fatalf("malformed canonical event %+v: %v", ev, err)
		}
	}
	if len(evs) == 0 {
		t.Fatal("no events: a stream must end with Stop or Error")
	}
	if evs[len(evs)-1].Type == llm.EventStop {
		if _, err := acc.Response(); err != nil {
			t.Fatal(err)
		}
	}
	return evs
}
