package matrix

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/omniedge/omni/internal/route/formats/anthropic"
	"github.com/omniedge/omni/internal/route/formats/gemini"
	"github.com/omniedge/omni/internal/route/formats/ollama"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/formats/responses"
	"github.com/omniedge/omni/internal/route/formats/upstreamhttp"
	"github.com/omniedge/omni/internal/route/llm"
)

// cannedRT answers every request with one body: the stream when the
// request asked for one (upstreamhttp.Streamed), else the whole answer.
type cannedRT struct {
	whole, stream []byte
	streamType    string
}

func (rt *cannedRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	b, ct := rt.whole, "application/json"
	if bytes.Contains([]byte(r.URL.RawQuery), []byte("alt=sse")) || r.Header.Get("X-Bench-Stream") == "1" {
		b, ct = rt.stream, rt.streamType
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {ct}},
		Body: io.NopCloser(bytes.NewReader(b)), Request: r}, nil
}

// chatter is the part of a provider adapter the router calls.
type chatter interface {
	Chat(ctx context.Context, r *llm.Request, model string) (*llm.Response, error)
	Stream(ctx context.Context, r *llm.Request, model string) (llm.Stream, error)
}

// BenchmarkAdapters measures each provider adapter's Chat and Stream over
// an instant upstream that answers the parallel-tools scenario in its own
// format, through a Bounded client as the gateway's: the allocations per
// call are the adapter's own cost (compare them across a change).
func BenchmarkAdapters(b *testing.B) {
	canon := load[llm.Response](b, "response_parallel_tools.json")
	req := load[llm.Request](b, "request_tool_loop.json")
	byName := map[string]format{}
	for _, f := range formats {
		byName[f.name] = f
	}
	clients := map[string]func(hc *http.Client) chatter{
		"openai": func(hc *http.Client) chatter {
			return &openai.Client{BaseURL: "http://up.test/v1", APIKey: "k", HTTP: hc, Provider: "p"}
		},
		"anthropic": func(hc *http.Client) chatter {
			return &anthropic.Client{BaseURL: "http://up.test", APIKey: "k", HTTP: hc, Provider: "p"}
		},
		"gemini": func(hc *http.Client) chatter {
			return &gemini.Client{BaseURL: "http://up.test/v1beta", APIKey: "k", HTTP: hc, Provider: "p"}
		},
		"ollama": func(hc *http.Client) chatter {
			return &ollama.Client{BaseURL: "http://up.test", HTTP: hc, Provider: "p"}
		},
		"responses": func(hc *http.Client) chatter {
			return &responses.Client{BaseURL: "http://up.test/v1", APIKey: "k", HTTP: hc, Provider: "p"}
		},
	}
	for _, name := range []string{"anthropic", "gemini", "ollama", "openai", "responses"} {
		f := byName[name]
		whole, err := f.encodeResponse(canon)
		if err != nil {
			b.Fatal(err)
		}
		var stream bytes.Buffer
		enc := f.newEncoder(&stream)
		for _, ev := range llm.Events(canon) {
			if err := enc.Encode(ev); err != nil {
				b.Fatal(err)
			}
		}
		if err := enc.Close(); err != nil {
			b.Fatal(err)
		}
		ct := "text/event-stream"
		if name == "ollama" {
			ct = "application/x-ndjson"
		}
		rt := &cannedRT{whole: whole, stream: stream.Bytes(), streamType: ct}
		hc := upstreamhttp.Bounded(&http.Client{Transport: rt}, upstreamhttp.Limits{})
		c := clients[name](hc)
		b.Run(name+"/chat", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := c.Chat(context.Background(), req, "m"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/stream", func(b *testing.B) {
			b.ReportAllocs()
			// The canned transport tells a stream request by a header the
			// adapter does not send: mark it through the adapter's Headers.
			streamHC := upstreamhttp.Bounded(&http.Client{Transport: streamMarker{rt}}, upstreamhttp.Limits{})
			sc := clients[name](streamHC)
			for i := 0; i < b.N; i++ {
				s, err := sc.Stream(context.Background(), req, "m")
				if err != nil {
					b.Fatal(err)
				}
				for {
					ev, err := s.Next()
					if err != nil {
						b.Fatal(err)
					}
					if ev.Type == llm.EventError {
						b.Fatal(ev.Err)
					}
					if ev.Type == llm.EventStop {
						break
					}
				}
				s.Close()
			}
		})
	}
}

// streamMarker marks every request it passes on as a stream request.
type streamMarker struct{ rt *cannedRT }

func (m streamMarker) RoundTrip(r *http.Request) (*http.Response, error) {
	r.Header.Set("X-Bench-Stream", "1")
	return m.rt.RoundTrip(r)
}
