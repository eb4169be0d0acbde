package files_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

var ctx = context.Background()

// env is a gateway with the Files API over a fresh SQLite database and
// data directory.
type env struct {
	*admintest.Env
	data string
}

func newEnv(t *testing.T) *env {
	var data string
	e := admintest.NewEnv(t, func(c *config.Config) { data = c.DataDir })
	e.Login()
	return &env{Env: e, data: data}
}

// key creates a gateway key and returns its raw value.
func (e *env) key() string {
	e.T.Helper()
	r := e.Want(http.StatusCreated, "POST", "/api/keys", map[string]any{"name": "k"}).Object(e.T)
	return r["key"].(string)
}

func (e *env) client(key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(e.Srv.URL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// stored lists what the files directory holds.
func (e *env) stored() []string {
	e.T.Helper()
	entries, err := os.ReadDir(filepath.Join(e.data, "files"))
	if err != nil {
		e.T.Fatal(err)
	}
	var names []string
	for _, x := range entries {
		names = append(names, x.Name())
	}
	return names
}

func apiStatus(t *testing.T, err error) int {
	t.Helper()
	var ae *openai.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an API error", err)
	}
	return ae.StatusCode
}

// The official client uploads, lists, retrieves, downloads and deletes a
// file; the gateway answers in OpenAI's shapes.
func TestFilesWithOpenAIClient(t *testing.T) {
	e := newEnv(t)
	c := e.client(e.key())
	content := []byte(`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}` + "\n")
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(content), "input.jsonl", "application/jsonl"),
		Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(f.ID, "file-") || f.Bytes != int64(len(content)) || f.Filename != "input.jsonl" || f.Purpose != "batch" ||
		!strings.Contains(f.RawJSON(), `"status":"processed"`) || !strings.Contains(f.RawJSON(), `"object":"file"`) || f.CreatedAt == 0 || f.ExpiresAt != f.CreatedAt+30*24*3600 {
		t.Fatalf("file object %+v", f)
	}
	got, err := c.Files.Get(ctx, f.ID)
	if err != nil || got.ID != f.ID || got.Bytes != f.Bytes {
		t.Fatalf("get: %+v, %v", got, err)
	}
	page, err := c.Files.List(ctx, openai.FileListParams{})
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != f.ID {
		t.Fatalf("list: %+v, %v", page, err)
	}
	res, err := c.Files.Content(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.Equal(body, content) {
		t.Fatalf("content %q, want %q", body, content)
	}
	del, err := c.Files.Delete(ctx, f.ID)
	if err != nil || !del.Deleted || del.ID != f.ID {
		t.Fatalf("delete: %+v, %v", del, err)
	}
	if _, err := c.Files.Get(ctx, f.ID); apiStatus(t, err) != http.StatusNotFound {
		t.Fatalf("get after delete: %v", err)
	}
	if names := e.stored(); len(names) != 0 {
		t.Fatalf("storage after delete holds %v", names)
	}
}
