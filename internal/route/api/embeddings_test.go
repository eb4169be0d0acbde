package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/omniedge/omni/internal/platform/config"
)

const embeddingReply = `{"object":"list","data":[{"object":"embedding","index":1,"embedding":[0.5,-0.25,0.125]},{"object":"embedding","index":0,"embedding":[1.5,2.5,-3.5]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":9,"total_tokens":9}}`

func TestEmbeddings(t *testing.T) {
	failing := newUpstream(t, replyStatus(503, `{"error":{"message":"unavailable","type":"server_error","param":null,"code":null}}`))
	good := newUpstream(t, func(w http.ResponseWriter, body map[string]any, _ int) {
		w.Header().Set("Content-Type", "application/json")
		if in, _ := body["input"].([]any); len(in) == 1 {
			w.Write([]byte(`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[1.5,2.5,-3.5]}],"model":"m","usage":{"prompt_tokens":2,"total_tokens":2}}`))
			return
		}
		w.Write([]byte(embeddingReply)) // two vectors, out of order
	})
	gw := gateway(t, config.RouteConfig{
		Providers: []config.RouteProvider{
			{ID: "down", Type: "openai", BaseURL: failing.URL, APIKeys: []config.Secret{"k1"}},
			{ID: "oa", Type: "openai", BaseURL: good.URL, APIKeys: []config.Secret{"k2"}},
			{ID: "claude", Type: "anthropic", BaseURL: good.URL, APIKeys: []config.Secret{"k3"}},
		},
		Combos: []config.RouteCombo{{Name: "embed", Targets: []string{"down/text-embedding-3-small", "oa/text-embedding-3-small"}}},
	})
	c := openAIClient(gw.URL)
	resp, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{Model: "embed",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"first", "second"}}, EncodingFormat: openai.EmbeddingNewParamsEncodingFormatFloat})
	if err != nil {
		t.Fatal(err)
	}
	// Fallback past the 503, and vectors back in input order.
	if failing.calls() != 1 || len(resp.Data) != 2 || resp.Data[0].Embedding[0] != 1.5 || resp.Data[1].Embedding[2] != 0.125 || resp.Usage.PromptTokens != 9 {
		t.Fatalf("embeddings: %+v (failing called %d)", resp, failing.calls())
	}
	if good.bodies[0]["encoding_format"] != "float" {
		t.Fatalf("upstream asked for %v", good.bodies[0]["encoding_format"])
	}

	// base64 (the npm SDK's default): little-endian float32.
	body, _ := json.Marshal(map[string]any{"model": "oa/text-embedding-3-small", "input": "first", "encoding_format": "base64"})
	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/v1/embeddings", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+gatewayKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		Data []struct{ Embedding string } `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != 200 {
		t.Fatalf("base64 response: %d %v", res.StatusCode, err)
	}
	raw, err := base64.StdEncoding.DecodeString(out.Data[0].Embedding)
	if err != nil || len(raw) != 12 || math.Float32frombits(binary.LittleEndian.Uint32(raw[4:])) != 2.5 {
		t.Fatalf("base64 vector %q: %v", out.Data[0].Embedding, err)
	}

	// A provider that cannot embed answers a clear 400, and bad input is a 400.
	for _, b := range []string{`{"model":"claude/x","input":"a"}`, `{"model":"oa/x","input":[1,2]}`, `{"model":"oa/x","input":"a","encoding_format":"hex"}`} {
		req, _ := http.NewRequest(http.MethodPost, gw.URL+"/v1/embeddings", bytes.NewReader([]byte(b)))
		req.Header.Set("Authorization", "Bearer "+gatewayKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", b, res.StatusCode)
		}
	}
}
