package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/route/formats/formattest"
	"github.com/omniedge/omni/internal/route/llm"
)

func compact(t *testing.T, s []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, s); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return b.String()
}

// A stream folds into the same response as its non-streamed counterpart.
func TestStreamMatchesResponse(t *testing.T) {
	for _, name := range []string{"parallel_tools", "text"} {
		want, err := DecodeResponse(formattest.Testdata(t, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(formattest.Testdata(t, name+".sse")))))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Text() != want.Text() || got.StopReason != want.StopReason || got.Usage != want.Usage || len(got.ToolCalls()) != len(want.ToolCalls()) {
			t.Fatalf("%s: stream %+v\nresponse %+v", name, got, want)
		}
		for i, tc := range got.ToolCalls() {
			w := want.ToolCalls()[i]
			if tc.ID != w.ID || tc.Name != w.Name || compact(t, tc.Arguments) != compact(t, w.Arguments) {
				t.Fatalf("%s: tool call %d: %+v vs %+v", name, i, tc, w)
			}
		}
	}
}

func TestStreamErrorsAndTruncation(t *testing.T) {
	_, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(formattest.Testdata(t, "error_midstream.sse")))))
	var le *llm.Error
	if !errors.As(err, &le) || !le.InStream || !strings.Contains(le.Message, "server had an error") {
		t.Fatalf("in-stream error: %v", err)
	}
	sse := formattest.Testdata(t, "text.sse")
	cut := sse[:bytes.Index(sse, []byte(`"stop"`))]
	cut = cut[:bytes.LastIndex(cut, []byte("data:"))]
	if _, err := llm.Collect(NewStreamDecoder(io.NopCloser(bytes.NewReader(cut)))); !errors.As(err, &le) || !le.Retryable() {
		t.Fatalf("truncated stream: %v", err)
	}
}

func TestDecodeRequestSystemMergeAndErrors(t *testing.T) {
	r, err := DecodeRequest([]byte(`{"model":"m","messages":[{"role":"system","content":"a"},{"role":"developer","content":[{"type":"text","text":"b"}]},
		{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}],
		"max_tokens":5,"stream":true,"stream_options":{"include_usage":true},"vendor_knob":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.System) != 2 || r.System[1].Text != "b" || *r.MaxTokens != 5 || !r.IncludeUsage || string(r.Extra["vendor_knob"]) != "1" {
		t.Fatalf("decoded %+v", r)
	}
	if img := r.Messages[0].Parts[1].Media; img == nil || img.MIMEType != "image/png" || len(img.Data) == 0 {
		t.Fatalf("data URL image: %+v", r.Messages[0].Parts[1])
	}
	for _, bad := range []string{`{}`, `{"model":"m"}`, `{"model":"m","messages":[{"role":"wizard","content":"x"}]}`,
		`{"model":"m","messages":[{"role":"tool","content":"x"}]}`, `{"model":"m","messages":[{"role":"user","content":5}]}`, `nope`} {
		_, err := DecodeRequest([]byte(bad))
		var le *llm.Error
		if !errors.As(err, &le) || le.Status != 400 {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestHasUnknownField(t *testing.T) {
	for body, want := range map[string]bool{
		`{"model":"m","messages":[{"role":"user","content":"a \"}, logprobs"}],"temperature":0.5}`: false,
		` { "model" : "m" , "stream" : true , "stop" : ["}", "]"] } `:                              false,
		`{"model":"m","logprobs":true}`:                                                            true,
		`{"model":"m","messages":[],"n":1}`:                                                        true,
		`{"mod\u0065l":"m"}`:                                                                       true,
		`{"model":{"x":[1,{"y":"}"}]},"top_k":3}`:                                                  true,
		`{}`: false,
	} {
		if got := hasUnknownField([]byte(body)); got != want {
			t.Errorf("hasUnknownField(%s) = %v, want %v", body, got, want)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":""}}]},{"role":"tool","tool_call_id":"c","content":"r"}]}`))
	f.Add([]byte(`{"model":"m","logprobs":true,"messages":[{"role":"user","content":"hi"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The fast key walk never misses an unknown field.
		var raw map[string]json.RawMessage
		if json.Unmarshal(b, &raw) == nil && !hasUnknownField(b) {
			for k := range raw {
				if !knownFields[k] {
					t.Fatalf("unknown field %q not seen in %s", k, b)
				}
			}
		}
		r, err := DecodeRequest(b)
		if err != nil {
			var le *llm.Error
			if !errors.As(err, &le) || le.Status != 400 {
				t.Fatalf("non-400 error: %v", err)
			}
			return
		}
		if _, err := EncodeRequest(r, "m", EncodeOptions{Native: true}); err != nil {
			var le *llm.Error
			if !errors.As(err, &le) {
				t.Fatalf("re-encoding a decoded request: %v", err)
			}
		}
	})
}

func FuzzStreamDecoder(f *testing.F) {
	f.Add(formattest.Testdata(f, "parallel_tools.sse"))
	f.Add(formattest.Testdata(f, "error_midstream.sse"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := NewStreamDecoder(io.NopCloser(bytes.NewReader(b)))
		acc := llm.NewAccumulator()
		for i := 0; i < 10000; i++ {
			ev, err := s.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("decoder returned %v instead of an error event", err)
			}
			if aerr := acc.Add(ev); aerr != nil && ev.Type != llm.EventError {
				// Interleaved tool-call fragments from a hostile upstream may
				// target a closed part; the accumulator must catch it.
				return
			}
		}
		t.Fatal("decoder did not terminate")
	})
}
