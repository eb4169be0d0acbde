package matrix

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/route/formats/formattest"
	"github.com/omniedge/omni/internal/route/llm"
)

// encoder is what every dialect's stream encoder offers.
type encoder interface {
	Encode(llm.Event) error
	Close() error
}

// format is one wire format seen from both sides: as a client dialect
// (decode requests, encode answers) and as a provider (encode requests,
// decode answers).
type format struct {
	name string
	// keepsIDs: tool-call ids survive the format.
	keepsIDs bool
	// thinking: thinking text and signatures survive in answers.
	thinking bool
	// cacheRead: cached input tokens are reported.
	cacheRead bool

	decodeRequest  func(body []byte) (*llm.Request, error)
	encodeResponse func(*llm.Response) ([]byte, error)
	newEncoder     func(io.Writer) encoder

	encodeRequest  func(r *llm.Request, model string) ([]byte, error)
	decodeResponse func([]byte) (*llm.Response, error)
	newDecoder     func(io.ReadCloser) llm.Stream
}

// formats is filled by one file per wire format.
var formats []format

func sortedFormats() []format {
	out := append([]format(nil), formats...)
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func load[T any](t testing.TB, name string) *T {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	v := new(T)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

var requestScenarios = []string{"tool_loop", "simple_stream"}
var responseScenarios = []string{"parallel_tools", "text", "max_tokens"}

// A client of dialect D sends the scenario (as D's own encoder writes it);
// the gateway decodes it and encodes it for provider P.
func TestRequestPairs(t *testing.T) {
	for _, sc := range requestScenarios {
		canon := load[llm.Request](t, "request_"+sc+".json")
		for _, d := range sortedFormats() {
			body, err := d.encodeRequest(canon, "client-model")
			if err != nil {
				t.Fatalf("%s: writing the %s client request: %v", sc, d.name, err)
			}
			in, err := d.decodeRequest(body)
			if err != nil {
				t.Fatalf("%s: %s dialect rejects its own request: %v\n%s", sc, d.name, err, body)
			}
			checkRequest(t, sc+"/"+d.name, canon, in, d)
			for _, p := range sortedFormats() {
				up, err := p.encodeRequest(in, "upstream-model")
				if err != nil {
					t.Fatalf("%s: %s → %s: %v", sc, d.name, p.name, err)
				}
				formattest.Golden(t, fmt.Sprintf("testdata/golden/requests/%s.%s-to-%s.json", sc, d.name, p.name), formattest.Reindent(t, up))
				back, err := p.decodeRequest(up)
				if err != nil {
					t.Fatalf("%s: %s → %s: the upstream request does not parse as %s: %v", sc, d.name, p.name, p.name, err)
				}
				checkRequest(t, sc+"/"+d.name+"-to-"+p.name, canon, back, p, d)
			}
		}
	}
}

// checkRequest asserts what every pair must keep: the system prompt, the
// turns' text, the tool calls and their results, images and the sampling
// limits.
func checkRequest(t *testing.T, where string, want, got *llm.Request, via ...format) {
	t.Helper()
	// Formats with one system slot join the prompts; the words must stay.
	if g, w := strings.Fields(partsText(got.System)), strings.Fields(partsText(want.System)); !reflect.DeepEqual(g, w) {
		t.Errorf("%s: system %q, want %q", where, g, w)
	}
	var wantCalls, gotCalls []llm.ToolCall
	var wantResults, gotResults []string
	var wantImages, gotImages int
	var wantText, gotText []string
	walk := func(msgs []llm.Message, calls *[]llm.ToolCall, results *[]string, images *int, text *[]string) {
		for _, m := range msgs {
			for _, p := range m.Parts {
				switch p.Type {
				case llm.PartToolCall:
					*calls = append(*calls, *p.ToolCall)
				case llm.PartToolResult:
					*results = append(*results, p.ToolResult.CallID+"="+partsText(p.ToolResult.Content))
				case llm.PartImage:
					*images++
				case llm.PartText:
					if p.Text != "" {
						*text = append(*text, p.Text)
					}
				}
			}
		}
	}
	walk(want.Messages, &wantCalls, &wantResults, &wantImages, &wantText)
	walk(got.Messages, &gotCalls, &gotResults, &gotImages, &gotText)
	ids := true
	for _, f := range via {
		ids = ids && f.keepsIDs
	}
	if len(gotCalls) != len(wantCalls) {
		t.Fatalf("%s: %d tool calls, want %d", where, len(gotCalls), len(wantCalls))
	}
	for i := range wantCalls {
		if gotCalls[i].Name != wantCalls[i].Name || !jsonEqual(gotCalls[i].Arguments, wantCalls[i].Arguments) {
			t.Errorf("%s: tool call %d = %s(%s), want %s(%s)", where, i, gotCalls[i].Name, gotCalls[i].Arguments, wantCalls[i].Name, wantCalls[i].Arguments)
		}
		if ids && gotCalls[i].ID != wantCalls[i].ID {
			t.Errorf("%s: tool call %d id %q, want %q", where, i, gotCalls[i].ID, wantCalls[i].ID)
		}
	}
	if len(gotResults) != len(wantResults) {
		t.Fatalf("%s: tool results %v, want %v", where, gotResults, wantResults)
	}
	for i := range wantResults {
		// Results must pair with their call, whatever ids the format uses.
		wantText := wantResults[i][strings.IndexByte(wantResults[i], '=')+1:]
		gotID, gotText, _ := strings.Cut(gotResults[i], "=")
		if gotText != wantText || gotID != gotCalls[i].ID {
			t.Errorf("%s: tool result %d = %q, want %q for call %q", where, i, gotResults[i], wantText, gotCalls[i].ID)
		}
	}
	if gotImages != wantImages {
		t.Errorf("%s: %d images, want %d", where, gotImages, wantImages)
	}
	if strings.Join(gotText, "|") != strings.Join(wantText, "|") {
		t.Errorf("%s: texts %q, want %q", where, gotText, wantText)
	}
	// A thinking budget at or above max_tokens raises max_tokens (both
	// count thinking), never lowers it.
	if want.MaxTokens != nil && (got.MaxTokens == nil || *got.MaxTokens < *want.MaxTokens ||
		want.Reasoning == nil && *got.MaxTokens != *want.MaxTokens) {
		t.Errorf("%s: max_tokens %v, want %d", where, got.MaxTokens, *want.MaxTokens)
	}
	if len(got.Tools) != len(want.Tools) {
		t.Errorf("%s: %d tools, want %d", where, len(got.Tools), len(want.Tools))
	}
}

// Provider P answers the scenario in its own format; the gateway decodes
// it and answers a client of dialect D.
func TestResponsePairs(t *testing.T) {
	for _, sc := range responseScenarios {
		canon := load[llm.Response](t, "response_"+sc+".json")
		for _, p := range sortedFormats() {
			up, err := p.encodeResponse(canon)
			if err != nil {
				t.Fatalf("%s: writing the %s upstream answer: %v", sc, p.name, err)
			}
			mid, err := p.decodeResponse(up)
			if err != nil {
				t.Fatalf("%s: %s adapter rejects its own format: %v\n%s", sc, p.name, err, up)
			}
			checkResponse(t, sc+"/"+p.name, canon, mid, p)
			for _, d := range sortedFormats() {
				out, err := d.encodeResponse(mid)
				if err != nil {
					t.Fatalf("%s: %s → %s: %v", sc, p.name, d.name, err)
				}
				formattest.Golden(t, fmt.Sprintf("testdata/golden/responses/%s.%s-to-%s.json", sc, p.name, d.name), formattest.Reindent(t, out))
				back, err := d.decodeResponse(out)
				if err != nil {
					t.Fatalf("%s: %s → %s: the client answer does not parse as %s: %v", sc, p.name, d.name, d.name, err)
				}
				checkResponse(t, sc+"/"+p.name+"-to-"+d.name, canon, back, p, d)
			}
		}
	}
}

// The same answers streamed, with text and arguments split into small
// fragments, through real wire bytes on both sides.
func TestStreamPairs(t *testing.T) {
	for _, sc := range responseScenarios {
		canon := load[llm.Response](t, "response_"+sc+".json")
		events := fragment(llm.Events(canon), 7)
		for _, p := range sortedFormats() {
			var up bytes.Buffer
			formattest.Encode(t, p.newEncoder(&up), events)
			mid, err := collect(p.newDecoder(io.NopCloser(bytes.NewReader(up.Bytes()))))
			if err != nil {
				t.Fatalf("%s: %s stream: %v\n%s", sc, p.name, err, up.Bytes())
			}
			for _, d := range sortedFormats() {
				var out bytes.Buffer
				formattest.Encode(t, d.newEncoder(&out), mid)
				formattest.Golden(t, fmt.Sprintf("testdata/golden/streams/%s.%s-to-%s.txt", sc, p.name, d.name), out.Bytes())
				back, err := llm.Collect(d.newDecoder(io.NopCloser(bytes.NewReader(out.Bytes()))))
				if err != nil {
					t.Fatalf("%s: %s → %s: the client stream does not parse as %s: %v\n%s", sc, p.name, d.name, d.name, err, out.Bytes())
				}
				checkResponse(t, sc+"/stream/"+p.name+"-to-"+d.name, canon, back, p, d)
			}
		}
	}
}

func collect(s llm.Stream) ([]llm.Event, error) {
	defer s.Close()
	var out []llm.Event
	for {
		ev, err := s.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

// fragment splits every text, thinking and argument delta into pieces of
// at most n bytes, as upstreams do.
func fragment(evs []llm.Event, n int) []llm.Event {
	var out []llm.Event
	for _, ev := range evs {
		if ev.Type != llm.EventDelta || ev.Delta.Signature != "" && ev.Delta.Text == "" {
			out = append(out, ev)
			continue
		}
		d := ev.Delta
		for _, s := range split(d.Text, n) {
			out = append(out, llm.Event{Type: llm.EventDelta, Index: ev.Index, Delta: llm.Delta{Text: s}})
		}
		for _, s := range split(d.Arguments, n) {
			out = append(out, llm.Event{Type: llm.EventDelta, Index: ev.Index, Delta: llm.Delta{Arguments: s}})
		}
		if d.Signature != "" {
			out = append(out, llm.Event{Type: llm.EventDelta, Index: ev.Index, Delta: llm.Delta{Signature: d.Signature}})
		}
	}
	return out
}

func split(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}

// checkResponse asserts what every pair must keep: the text, the tool
// calls, the stop reason and the usage; thinking and ids where both
// formats carry them.
func checkResponse(t *testing.T, where string, want, got *llm.Response, via ...format) {
	t.Helper()
	ids, thinking, cache := true, true, true
	for _, f := range via {
		ids, thinking, cache = ids && f.keepsIDs, thinking && f.thinking, cache && f.cacheRead
	}
	if got.Text() != want.Text() {
		t.Errorf("%s: text %q, want %q", where, got.Text(), want.Text())
	}
	gc, wc := got.ToolCalls(), want.ToolCalls()
	if len(gc) != len(wc) {
		t.Fatalf("%s: %d tool calls, want %d", where, len(gc), len(wc))
	}
	for i := range wc {
		if gc[i].Name != wc[i].Name || !jsonEqual(gc[i].Arguments, wc[i].Arguments) || ids && gc[i].ID != wc[i].ID {
			t.Errorf("%s: tool call %d = %+v, want %+v", where, i, gc[i], wc[i])
		}
		if gc[i].ID == "" {
			t.Errorf("%s: tool call %d has no id", where, i)
		}
	}
	if got.StopReason != want.StopReason {
		t.Errorf("%s: stop reason %q, want %q", where, got.StopReason, want.StopReason)
	}
	wu, gu := want.Usage, got.Usage
	if !cache {
		wu.InputTokens += wu.CacheReadTokens + wu.CacheWriteTokens
		wu.CacheReadTokens, wu.CacheWriteTokens = 0, 0
		gu.InputTokens += gu.CacheReadTokens + gu.CacheWriteTokens
		gu.CacheReadTokens, gu.CacheWriteTokens = 0, 0
	}
	if gu.InputTokens != wu.InputTokens || gu.OutputTokens != wu.OutputTokens || gu.CacheReadTokens != wu.CacheReadTokens {
		t.Errorf("%s: usage %+v, want %+v", where, got.Usage, want.Usage)
	}
	if thinking {
		if g, w := thinkingOf(got), thinkingOf(want); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: thinking %q, want %q", where, g, w)
		}
	}
}

func thinkingOf(r *llm.Response) []string {
	var out []string
	for _, p := range r.Content {
		if p.Type == llm.PartThinking {
			out = append(out, p.Text+"#"+p.Signature)
		}
	}
	return out
}

func partsText(ps []llm.Part) string {
	var b strings.Builder
	for _, p := range ps {
		if p.Type == llm.PartText && p.Text != "" {
			if b.Len() > 0 {
				b.WriteString("\n")
			}
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
