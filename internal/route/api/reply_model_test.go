package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/routetest"
)

// fixtureUpstream answers every request with a provider type's recorded
// text answer, streamed when asked.
func fixtureUpstream(t *testing.T, u matrixUpstream) *httptest.Server {
	js, stream := fixture(t, u.textJSON), fixture(t, u.textStream)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var probe struct {
			Stream *bool `json:"stream"`
		}
		_ = json.Unmarshal(body, &probe)
		if strings.Contains(r.URL.Path, ":streamGenerateContent") || probe.Stream != nil && *probe.Stream {
			w.Header().Set("Content-Type", u.streamType)
			w.Write(stream)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(js)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// replyDialect sends one chat request in a client dialect.
type replyDialect struct {
	name string
	send func(t *testing.T, gw, model string, stream bool) routetest.Resp
}

func replyDialects() []replyDialect {
	hdr := []string{"Authorization", "Bearer " + gatewayKey}
	post := func(t *testing.T, url string, body any) routetest.Resp {
		return routetest.Send(t, http.DefaultClient, "POST", url, body, hdr...)
	}
	user := []map[string]any{{"role": "user", "content": "hi"}}
	return []replyDialect{
		{"openai chat", func(t *testing.T, gw, m string, s bool) routetest.Resp {
			return post(t, gw+"/v1/chat/completions", map[string]any{"model": m, "messages": user, "stream": s})
		}},
		{"anthropic messages", func(t *testing.T, gw, m string, s bool) routetest.Resp {
			return post(t, gw+"/v1/messages", map[string]any{"model": m, "max_tokens": 100, "messages": user, "stream": s})
		}},
		{"responses", func(t *testing.T, gw, m string, s bool) routetest.Resp {
			return post(t, gw+"/v1/responses", map[string]any{"model": m, "input": "hi", "stream": s, "store": false})
		}},
		{"gemini", func(t *testing.T, gw, m string, s bool) routetest.Resp {
			body := map[string]any{"contents": []map[string]any{{"role": "user", "parts": []map[string]any{{"text": "hi"}}}}}
			if s {
				return post(t, gw+"/v1beta/models/"+m+":streamGenerateContent?alt=sse", body)
			}
			return post(t, gw+"/v1beta/models/"+m+":generateContent", body)
		}},
		{"ollama", func(t *testing.T, gw, m string, s bool) routetest.Resp {
			return post(t, gw+"/api/chat", map[string]any{"model": m, "messages": user, "stream": s})
		}},
	}
}

// replyObjects splits an answer into its JSON objects: the body, each SSE
// data line, or each NDJSON line.
func replyObjects(t *testing.T, r routetest.Resp) []map[string]any {
	t.Helper()
	var out []map[string]any
	add := func(b []byte) {
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("not a JSON object: %q: %v", b, err)
		}
		out = append(out, v)
	}
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "text/event-stream") && !strings.HasPrefix(ct, "application/x-ndjson") {
		add(r.Body)
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if strings.HasPrefix(ct, "text/event-stream") {
			data, ok := bytes.CutPrefix(line, []byte("data:"))
			if !ok || string(bytes.TrimSpace(data)) == "[DONE]" {
				continue
			}
			line = bytes.TrimSpace(data)
		}
		if len(bytes.TrimSpace(line)) > 0 {
			add(line)
		}
	}
	return out
}

// replyModels returns every model name an answer object carries: OpenAI
// and Ollama's model, Anthropic's message.model (message_start), the
// Responses response.model, Gemini's modelVersion.
func replyModels(obj map[string]any) []any {
	var out []any
	if v, ok := obj["model"]; ok {
		out = append(out, v)
	}
	if v, ok := obj["modelVersion"]; ok {
		out = append(out, v)
	}
	for _, k := range []string{"message", "response"} {
		if inner, ok := obj[k].(map[string]any); ok {
			if v, ok := inner["model"]; ok {
				out = append(out, v)
			}
		}
	}
	return out
}

// A reply is named after the model the client asked for, in every
// dialect, streamed or not, whatever provider type answered and whatever
// name it gave: a provider/model id, an alias or a combo comes back as
// sent. The target that answered is in X-OmniRoute-Model.
func TestReplyModelIsTheNameAsked(t *testing.T) {
	for _, u := range matrixUpstreams {
		up := fixtureUpstream(t, u)
		gw := gateway(t, config.RouteConfig{
			Providers: []config.RouteProvider{{ID: "up", Type: u.typ, BaseURL: up.URL, APIKeys: []config.Secret{"k"}}},
			Aliases:   map[string]string{"fast": "up/" + u.model},
			Combos:    []config.RouteCombo{{Name: "team", Strategy: "priority", Targets: []string{"nowhere/x", "up/" + u.model}}},
		})
		for _, d := range replyDialects() {
			for _, stream := range []bool{false, true} {
				for _, name := range []string{"up/" + u.model, "fast", "team"} {
					r := d.send(t, gw.URL, name, stream)
					what := u.typ + " upstream, " + d.name + ", stream " + map[bool]string{false: "off", true: "on"}[stream] + ", model " + name
					if r.Status != http.StatusOK {
						t.Errorf("%s: %d %s", what, r.Status, r.Body)
						continue
					}
					if got := r.Header.Get("X-OmniRoute-Model"); got != "up/"+u.model {
						t.Errorf("%s: %s %q, want %q", what, "X-OmniRoute-Model", got, "up/"+u.model)
					}
					seen := 0
					for _, obj := range replyObjects(t, r) {
						for _, m := range replyModels(obj) {
							seen++
							if m != name {
								t.Errorf("%s: reply names model %v, want %q", what, m, name)
							}
						}
					}
					if seen == 0 {
						t.Errorf("%s: no model in the reply %s", what, r.Body)
					}
				}
			}
		}
	}
}
