package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/omniedge/omni/internal/platform/auth"
	"github.com/omniedge/omni/internal/platform/testenv"
)

// TestStoredResponsesAcrossReplicas runs two `omni serve route`
// processes on one PostgreSQL database, with and without a shared Redis:
// a response stored through one replica is continued
// (previous_response_id), read and deleted through the other, and
// another gateway key sees none of it on either.
func TestStoredResponsesAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	for _, withRedis := range []bool{true, false} {
		name := "database"
		if withRedis {
			name = "redis"
		}
		t.Run(name, func(t *testing.T) { storedResponsesAcrossReplicas(t, withRedis) })
	}
}

func storedResponsesAcrossReplicas(t *testing.T, withRedis bool) {
	dsn := testenv.Postgres(t)
	if dsn == "" {
		return
	}
	// The upstream records how many messages each call carried.
	var mu sync.Mutex
	var sizes []int
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Messages []json.RawMessage `json:"messages"`
		}
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &body)
		mu.Lock()
		sizes = append(sizes, len(body.Messages))
		n := len(sizes)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"c%d","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"answer %d"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}`, n, n)
	}))
	t.Cleanup(up.Close)
	config := filepath.Join(t.TempDir(), "omni.yaml")
	const keyA, keyB = "sk-gateway-key-a", "sk-gateway-key-b"
	conf := fmt.Sprintf(`route:
  require_api_key: true
  api_keys: [%s, %s]
  providers:
    - id: oa
      type: openai
      base_url: %s/v1
      api_keys: [sk-upstream]
      models: [m]
`, keyA, keyB, up.URL)
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	shared := []string{"--database", dsn, "--master-key", base64.StdEncoding.EncodeToString(auth.RandomBytes(32))}
	if withRedis {
		_, prefix := testenv.Redis(t)
		if prefix == "" {
			return
		}
		shared = append(shared, "--redis", testenv.RedisURL(), "--redis-prefix", prefix)
	}
	a := startRoute(t, "replica A", config, shared)
	b := startRoute(t, "replica B", config, shared)

	bearer := func(key string) []string { return []string{"Authorization", "Bearer " + key} }
	first := do(t, http.DefaultClient, "POST", a.url+"/v1/responses", map[string]any{
		"model": "oa/m", "store": true, "input": "remember the number 7",
	}, bearer(keyA)...)
	id, _ := first.body["id"].(string)
	if first.status != 200 || id == "" {
		t.Fatalf("create on A: %d %v", first.status, first.body)
	}
	next := func(key string) answer {
		return do(t, http.DefaultClient, "POST", b.url+"/v1/responses", map[string]any{
			"model": "oa/m", "previous_response_id": id, "input": "which number?",
		}, bearer(key)...)
	}

	// Another key: as if the response did not exist, on either replica.
	if r := next(keyB); r.status != 400 || fmt.Sprint(r.body["error"].(map[string]any)["code"]) != "previous_response_not_found" {
		t.Fatalf("key B continued key A's response on B: %d %v", r.status, r.body)
	}
	for _, rep := range []*replica{a, b} {
		if r := do(t, http.DefaultClient, "GET", rep.url+"/v1/responses/"+id, nil, bearer(keyB)...); r.status != 404 {
			t.Fatalf("key B read key A's response: %d %v", r.status, r.body)
		}
		if r := do(t, http.DefaultClient, "DELETE", rep.url+"/v1/responses/"+id, nil, bearer(keyB)...); r.status != 404 {
			t.Fatalf("key B deleted key A's response: %d %v", r.status, r.body)
		}
	}

	// Its key continues it on B: the upstream gets the first turn too.
	if r := next(keyA); r.status != 200 {
		t.Fatalf("continue on B: %d %v", r.status, r.body)
	}
	mu.Lock()
	got := append([]int(nil), sizes...)
	mu.Unlock()
	if len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Fatalf("messages per upstream call %v, want [1 3] (user; user, assistant, user)", got)
	}
	if r := do(t, http.DefaultClient, "GET", b.url+"/v1/responses/"+id, nil, bearer(keyA)...); r.status != 200 || r.body["id"] != id {
		t.Fatalf("GET on B: %d %v", r.status, r.body)
	}
	if r := do(t, http.DefaultClient, "DELETE", b.url+"/v1/responses/"+id, nil, bearer(keyA)...); r.status != 200 || r.body["deleted"] != true {
		t.Fatalf("DELETE on B: %d %v", r.status, r.body)
	}
	if r := do(t, http.DefaultClient, "GET", a.url+"/v1/responses/"+id, nil, bearer(keyA)...); r.status != 404 {
		t.Fatalf("GET on A after the delete on B: %d %v", r.status, r.body)
	}
}
