package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/logging"
	"github.com/omniedge/omni/internal/platform/testenv"
	routeapp "github.com/omniedge/omni/internal/route/app"
)

// npmUpstream is an OpenAI-format provider answering every chat request
// with "Hello from upstream." (11 prompt, 7 completion tokens), streamed
// or not, and every embedding request with one 3-dimensional vector per
// input.
func npmUpstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Stream bool            `json:"stream"`
			Input  json.RawMessage `json:"input"`
		}
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &body)
		if strings.HasSuffix(r.URL.Path, "/embeddings") {
			var inputs []string
			if json.Unmarshal(body.Input, &inputs) != nil {
				inputs = []string{""}
			}
			var data []string
			for i := range inputs {
				data = append(data, fmt.Sprintf(`{"object":"embedding","index":%d,"embedding":[0.5,-0.25,0.125]}`, i))
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"object":"list","data":[%s],"model":"e","usage":{"prompt_tokens":2,"total_tokens":2}}`, strings.Join(data, ","))
			return
		}
		if !body.Stream {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, c := range []string{
			`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hello "},"finish_reason":null}]}`,
			`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"from upstream."},"finish_reason":null}]}`,
			`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
			`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}`,
		} {
			fmt.Fprintf(w, "data: %s\n\n", c)
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The official npm clients (ollama, openai, @anthropic-ai/sdk,
// @google/genai, pinned in npm/package-lock.json) against the gateway:
// each call of npm/sdk.mjs must parse the gateway's answer and see the
// upstream's text and usage. Needs node and `npm ci` in npm/ (.ci/run
// does it); skipped without them unless OMNI_TEST_STRICT=1.
func TestNPMClients(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Unavailable(t, "node is not installed")
	}
	dir, _ := filepath.Abs("npm")
	for _, m := range []string{"ollama", "openai", "@anthropic-ai/sdk", "@google/genai"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", m, "package.json")); err != nil {
			testenv.Unavailable(t, "npm module %s is not installed: run npm ci in %s", m, dir)
		}
	}
	const key = "omni-npm-test-key"
	up := npmUpstream(t)
	cfg := config.Default()
	cfg.Route = config.RouteConfig{APIKeys: []config.Secret{key}, RequireAPIKey: true,
		Providers: []config.RouteProvider{{ID: "oa", Type: "openai", BaseURL: up.URL, APIKeys: []config.Secret{"sk-up"},
			Models: []string{"gpt-4o", "text-embedding-3-small"}}}}
	a, err := routeapp.New(&cfg, nil, clock.Real{}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(httpx.Wrap(a.API, logging.Discard(), nil))
	t.Cleanup(gw.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "sdk.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OMNI_BASE_URL="+gw.URL, "OMNI_KEY="+key, "OMNI_CHAT_MODEL=oa/gpt-4o", "OMNI_EMBED_MODEL=oa/text-embedding-3-small")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("node sdk.mjs: %v\n%s", err, stderr.String())
	}
	// The result is the last line: clients may log lines of their own.
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	raw = []byte(lines[len(lines)-1])
	var got map[string]map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("script output %q: %v", raw, err)
	}
	result := func(name string) map[string]any {
		t.Helper()
		r, ok := got[name]
		if !ok {
			t.Fatalf("%s: no result in %s", name, raw)
		}
		if e, ok := r["error"]; ok && name != "ollama.pull" {
			t.Fatalf("%s failed: %v (status %v)", name, e, r["status"])
		}
		return r
	}
	// Every chat-like call: the whole text and the upstream's usage.
	for name, usage := range map[string][2]string{
		"ollama.chat": {"prompt_eval_count", "eval_count"}, "ollama.chatStream": {"prompt_eval_count", "eval_count"},
		"ollama.generate": {"prompt_eval_count", "eval_count"}, "ollama.generateStream": {"prompt_eval_count", "eval_count"},
		"openai.chat": {"prompt_tokens", "completion_tokens"}, "openai.chatStream": {"prompt_tokens", "completion_tokens"},
		"anthropic.chat": {"input_tokens", "output_tokens"}, "anthropic.chatStream": {"input_tokens", "output_tokens"},
		"genai.chat": {"prompt_tokens", "completion_tokens"}, "genai.chatStream": {"prompt_tokens", "completion_tokens"},
	} {
		r := result(name)
		if r["text"] != "Hello from upstream." || r[usage[0]] != float64(11) || r[usage[1]] != float64(7) {
			t.Errorf("%s: %v", name, r)
		}
		if strings.HasPrefix(name, "ollama.") && r["done"] != true {
			t.Errorf("%s: not done: %v", name, r)
		}
	}
	if r := result("ollama.show"); r["family"] != "oa" || r["architecture"] != "gateway" || fmt.Sprint(r["capabilities"]) != "[completion tools]" {
		t.Errorf("show: %v", r)
	}
	for _, name := range []string{"ollama.ps", "ollama.list"} {
		if r := result(name); fmt.Sprint(r["names"]) != "[oa/gpt-4o oa/text-embedding-3-small]" {
			t.Errorf("%s: %v", name, r)
		}
	}
	if r := result("ollama.embed"); r["vectors"] != float64(2) || r["dims"] != float64(3) {
		t.Errorf("embed: %v", r)
	}
	if r := result("ollama.pull"); r["status"] != float64(501) || !strings.Contains(fmt.Sprint(r["error"]), "the gateway does not pull models") {
		t.Errorf("pull: %v", r)
	}
}
