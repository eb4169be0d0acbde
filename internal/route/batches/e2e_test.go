package batches_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	ooption "github.com/openai/openai-go/v3/option"

	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// gateway is a whole gateway (files and batches modules included) with
// its background loops running, an OpenAI provider "p" at an instant
// fake upstream, and two gateway keys; the second may use only model
// p/allowed.
type gateway struct {
	*admintest.Env
	up         *admintest.Upstream
	key1, key2 string
	id1        string
}

func openGateway(t *testing.T) *gateway {
	e := admintest.Running(t, nil)
	g := &gateway{Env: e, up: admintest.NewUpstream(t, "up")}
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "p", "type": "openai", "base_url": g.up.URL, "api_key": "sk-p-upstream-key"})
	k := e.Want(http.StatusCreated, "POST", "/api/keys", map[string]any{"name": "one"}).Object(t)
	g.key1, g.id1 = k["key"].(string), k["id"].(string)
	g.key2 = e.Want(http.StatusCreated, "POST", "/api/keys", map[string]any{"name": "two", "allowed_models": []string{"p/allowed"}}).Object(t)["key"].(string)
	return g
}

func (g *gateway) client(key string) openai.Client {
	return openai.NewClient(ooption.WithBaseURL(g.Srv.URL+"/v1/"), ooption.WithAPIKey(key), ooption.WithMaxRetries(0))
}

func chatInput(n int, model string) string {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, `{"custom_id":"req-%d","method":"POST","url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"hello %d"}]}}`+"\n", i, model, i)
	}
	return sb.String()
}

func upload(t testing.TB, c openai.Client, content string) string {
	f, err := c.Files.New(context.Background(), openai.FileNewParams{
		File: openai.File(strings.NewReader(content), "input.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	return f.ID
}

func newBatch(t testing.TB, c openai.Client, fileID string) *openai.Batch {
	b, err := c.Batches.New(context.Background(), openai.BatchNewParams{InputFileID: fileID,
		Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatalf("batches.new: %v", err)
	}
	return b
}

// poll gets the batch until it has one of the final statuses (bounded).
func poll(t testing.TB, c openai.Client, id string) *openai.Batch {
	return pollEvery(t, c, id, 20*time.Millisecond)
}

func pollEvery(t testing.TB, c openai.Client, id string, every time.Duration) *openai.Batch {
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := c.Batches.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("batches.get: %v", err)
		}
		switch b.Status {
		case openai.BatchStatusCompleted, openai.BatchStatusFailed, openai.BatchStatusCancelled, openai.BatchStatusExpired:
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch still %s after 60s", b.Status)
		}
		time.Sleep(every) // polling interval, not an assertion
	}
}

func content(t testing.TB, c openai.Client, fileID string) string {
	r, err := c.Files.Content(context.Background(), fileID)
	if err != nil {
		t.Fatalf("files.content %s: %v", fileID, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// The official client uploads an input file, makes a batch, polls it to
// completed and downloads its output and error files; each line went
// through the gateway as the batch's key (to the upstream with the
// provider's key, in the usage records under the batch's key), a line
// that is not JSON is in the error file, and the rest ran.
func TestBatchThroughTheGateway(t *testing.T) {
	g := openGateway(t)
	c := g.client(g.key1)
	input := chatInput(3, "p/m") + "not json at all\n"
	b := newBatch(t, c, upload(t, c, input))
	if b.Object != "batch" || b.Status != openai.BatchStatusValidating || b.Endpoint != "/v1/chat/completions" {
		t.Fatalf("created %+v", b)
	}
	b = poll(t, c, b.ID)
	if b.Status != openai.BatchStatusCompleted || b.RequestCounts.Total != 4 || b.RequestCounts.Completed != 3 || b.RequestCounts.Failed != 1 {
		t.Fatalf("finished %s with %+v", b.Status, b.RequestCounts)
	}
	out := content(t, c, b.OutputFileID)
	if n := strings.Count(out, "\n"); n != 3 || strings.Count(out, `"hi from up`) != 3 || !strings.Contains(out, `"custom_id":"req-2"`) ||
		!strings.Contains(out, `"status_code":200`) {
		t.Fatalf("output file:\n%s", out)
	}
	errs := content(t, c, b.ErrorFileID)
	if !strings.Contains(errs, `"code":"invalid_json_line"`) || strings.Count(errs, "\n") != 1 {
		t.Fatalf("error file:\n%s", errs)
	}
	auths, _ := g.up.Calls()
	if len(auths) != 3 || auths[0] != "Bearer sk-p-upstream-key" {
		t.Fatalf("upstream calls %v", auths)
	}
	// The usage records name the batch's key.
	var logs []any
	testenv.Eventually(t, "the usage records of the lines", func() bool {
		logs = g.Want(http.StatusOK, "GET", "/api/usage/logs?limit=10", nil).Object(t)["logs"].([]any)
		return len(logs) >= 3
	})
	n := 0
	for _, l := range logs {
		if rec := l.(map[string]any); rec["apiKeyId"] == g.id1 && rec["endpoint"] == "/v1/chat/completions" {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d usage records of key one: %v", n, logs)
	}

	// Listing shows it; another key sees a 404.
	page, err := c.Batches.List(context.Background(), openai.BatchListParams{})
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != b.ID {
		t.Fatalf("list: %v %+v", err, page)
	}
	other := g.client(g.key2)
	var apiErr *openai.Error
	if _, err := other.Batches.Get(context.Background(), b.ID); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Fatalf("another key's get: %v", err)
	}
	if _, err := other.Batches.Cancel(context.Background(), b.ID); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Fatalf("another key's cancel: %v", err)
	}
	if _, err := other.Files.Content(context.Background(), b.OutputFileID); !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
		t.Fatalf("another key's output: %v", err)
	}
}

// A batch's lines pass the key's policy: a model the key may not use is
// refused line by line (403 in the error file), never sent upstream.
func TestBatchKeepsTheKeysPolicy(t *testing.T) {
	g := openGateway(t)
	c := g.client(g.key2)
	b := poll(t, c, newBatch(t, c, upload(t, c, chatInput(2, "p/m")+chatInput(1, "p/allowed"))).ID)
	if b.RequestCounts.Completed != 1 || b.RequestCounts.Failed != 2 {
		t.Fatalf("counts %+v", b.RequestCounts)
	}
	errs := content(t, c, b.ErrorFileID)
	if strings.Count(errs, `"status_code":403`) != 2 {
		t.Fatalf("error file:\n%s", errs)
	}
	if _, models := g.up.Calls(); len(models) != 1 || models[0] != "allowed" {
		t.Fatalf("upstream saw %v", models)
	}
}

// A batch's lines are charged to its key's budget like the key's own
// requests: once the spend passes the limit the rest are refused with
// budget_exceeded in the error file and never reach the upstream.
func TestBatchKeepsTheKeysBudget(t *testing.T) {
	g := openGateway(t)
	// $1 a token: the first answer alone spends more than the limit.
	g.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "p/*", "input": 1e6, "output": 1e6})
	g.Want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": g.id1, "dailyLimitUsd": 0.5})
	c := g.client(g.key1)
	b := poll(t, c, newBatch(t, c, upload(t, c, chatInput(6, "p/m"))).ID)
	if b.RequestCounts.Total != 6 || b.RequestCounts.Completed < 1 || b.RequestCounts.Failed < 1 ||
		b.RequestCounts.Completed+b.RequestCounts.Failed != 6 {
		t.Fatalf("counts %+v", b.RequestCounts)
	}
	if errs := content(t, c, b.ErrorFileID); strings.Count(errs, `budget_exceeded`) != int(b.RequestCounts.Failed) {
		t.Fatalf("error file:\n%s", errs)
	}
	if auths, _ := g.up.Calls(); len(auths) != int(b.RequestCounts.Completed) {
		t.Fatalf("the upstream answered %d lines, %d completed", len(auths), b.RequestCounts.Completed)
	}
}

// Cancelling through the client ends the batch cancelled.
func TestBatchCancel(t *testing.T) {
	g := openGateway(t)
	c := g.client(g.key1)
	b := newBatch(t, c, upload(t, c, chatInput(50, "p/m")))
	got, err := c.Batches.Cancel(context.Background(), b.ID)
	// Cancelling, or already cancelled when the runner was quicker.
	if err != nil || got.Status != openai.BatchStatusCancelling && got.Status != openai.BatchStatusCancelled {
		t.Fatalf("cancel: %v %+v", err, got)
	}
	if b = poll(t, c, b.ID); b.Status != openai.BatchStatusCancelled || b.CancelledAt == 0 {
		t.Fatalf("after cancel: %s", b.Status)
	}
	if auths, _ := g.up.Calls(); len(auths) >= 50 {
		t.Fatalf("every line ran (%d) after the cancel", len(auths))
	}
}

// A client presenting anything as a key that the gateway did not issue
// is refused, whatever batches are running (the dispatcher's credential
// is honoured only inside the process).
func TestBatchCredentialNotReachableFromTheNetwork(t *testing.T) {
	g := openGateway(t)
	c := g.client(g.key1)
	poll(t, c, newBatch(t, c, upload(t, c, chatInput(1, "p/m"))).ID)
	for _, key := range []string{"omni-dispatch-", "omni-dispatch-" + strings.Repeat("0", 64)} {
		if status := g.Do("POST", "/v1/chat/completions", admintest.Chat("p/m"), admintest.Bearer(key)...).Status; status != 401 {
			t.Fatalf("key %q: %d", key, status)
		}
	}
}
