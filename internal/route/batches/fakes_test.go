package batches

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/clock"
	"github.com/omniedge/omni/internal/platform/httpx"
	"github.com/omniedge/omni/internal/platform/sqldb"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/feature"
	"github.com/omniedge/omni/internal/route/formats/openai"
	"github.com/omniedge/omni/internal/route/llm"
)

// memFiles is an in-memory Files: owner-scoped, as the files module is.
type memFiles struct {
	mu    sync.Mutex
	n     int
	files map[string]memFile
}

type memFile struct {
	owner, purpose, name string
	data                 []byte
}

func newMemFiles() *memFiles { return &memFiles{files: map[string]memFile{}} }

var errNoFile = errors.New("no such file")

func (m *memFiles) Open(_ context.Context, owner, id string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[id]
	if !ok || f.owner != owner {
		return nil, errNoFile
	}
	return io.NopCloser(bytes.NewReader(f.data)), nil
}

func (m *memFiles) Put(_ context.Context, owner, purpose, name string, r io.Reader) (string, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	id := fmt.Sprintf("file-%d", m.n)
	m.files[id] = memFile{owner: owner, purpose: purpose, name: name, data: b}
	return id, nil
}

func (m *memFiles) add(owner, content string) string {
	id, _ := m.Put(context.Background(), owner, "batch", "input.jsonl", strings.NewReader(content))
	return id
}

func (m *memFiles) get(t *testing.T, id string) memFile {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[id]
	if !ok {
		t.Fatalf("no file %q", id)
	}
	return f
}

// fakeGateway is a feature.Dispatcher answering like the gateway's chat
// endpoint; it counts every request it serves by the prompt it carries.
type fakeGateway struct {
	mu          sync.Mutex
	calls       map[string]int // prompt → times served
	keys        map[string]int // key id → requests
	inflight    int
	maxInflight int
	interactive int
	block       chan struct{} // when set, every request waits for it
	started     chan string   // prompts as they start (when set)
	status      map[string]int
}

func newFakeGateway() *fakeGateway {
	return &fakeGateway{calls: map[string]int{}, keys: map[string]int{}, status: map[string]int{}}
}

type chatBody struct {
	Model    string `json:"model"`
	Messages []struct {
		Content string `json:"content"`
	} `json:"messages"`
}

func (g *fakeGateway) Dispatch(ctx context.Context, keyID, method, path string, body []byte, maxAnswer int) (feature.Dispatched, error) {
	var in chatBody
	_ = json.Unmarshal(body, &in)
	prompt := ""
	if len(in.Messages) > 0 {
		prompt = in.Messages[0].Content
	}
	g.mu.Lock()
	g.calls[prompt]++
	g.keys[keyID]++
	g.inflight++
	g.maxInflight = max(g.maxInflight, g.inflight)
	block, started, status := g.block, g.started, g.status[prompt]
	g.mu.Unlock()
	defer func() { g.mu.Lock(); g.inflight--; g.mu.Unlock() }()
	if started != nil {
		started <- prompt
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return feature.Dispatched{}, ctx.Err()
		}
	}
	if method != http.MethodPost || path != "/v1/chat/completions" {
		return feature.Dispatched{Status: 404, RequestID: "req_x", Body: []byte(`{"error":{"message":"no route"}}`)}, nil
	}
	if status != 0 {
		return feature.Dispatched{Status: status, RequestID: "req_x", Body: []byte(`{"error":{"message":"upstream failed","type":"server_error"}}`)}, nil
	}
	ans := fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"echo %s"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`, in.Model, prompt)
	return feature.Dispatched{Status: 200, RequestID: "req_" + prompt, Body: []byte(ans)}, nil
}

func (g *fakeGateway) Background(h http.Handler) http.Handler { return h }

func (g *fakeGateway) Interactive() int { g.mu.Lock(); defer g.mu.Unlock(); return g.interactive }

func (g *fakeGateway) served(prompt string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[prompt]
}

func (g *fakeGateway) total() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, c := range g.calls {
		n += c
	}
	return n
}

// fakeOps is the gateway transport's side of the endpoints
// (feature.Operations): the key is the bearer token as it is (no key
// is keyless), errors are rendered in OpenAI's shape.
type fakeOps struct{}

type keyCtx struct{}

func (fakeOps) Body(maxBody int64, h feature.BodyHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			r = r.WithContext(context.WithValue(r.Context(), keyCtx{}, strings.TrimPrefix(a, "Bearer ")))
		}
		if maxBody > 0 {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		if err := h(w, r, nil); err != nil {
			var le *llm.Error
			var he *httpx.Error
			switch {
			case errors.As(err, &le):
			case errors.As(err, &he):
				le = &llm.Error{Status: he.Status, Type: llm.TypeForStatus(he.Status), Code: he.Code, Message: he.Message}
			default:
				le = &llm.Error{Status: 500, Type: llm.ErrServer, Message: "internal gateway error"}
			}
			status, b := openai.EncodeError(le)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			w.Write(b)
		}
	})
}

func (o fakeOps) JSON(maxBody int64, h feature.OpHandler) http.Handler {
	return o.Body(maxBody, func(w http.ResponseWriter, r *http.Request, run feature.RunOp) error {
		if r.Header.Get("Content-Type") != "application/json" {
			return &llm.Error{Status: 415, Type: llm.ErrInvalidRequest, Message: "the request body must be JSON"}
		}
		body, err := httpx.ReadBody(w, r, maxBody)
		if err != nil {
			return err
		}
		return h(w, r, body, run)
	})
}

func (fakeOps) KeyID(ctx context.Context) string { s, _ := ctx.Value(keyCtx{}).(string); return s }

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// env is the Batches API over a database, with its runner running.
type env struct {
	t     *testing.T
	db    *sqldb.DB
	files *memFiles
	gw    *fakeGateway
	clk   *clock.Fake
	svc   *Service
	srv   *httptest.Server
	stop  func()
}

// opener opens a fresh database, migrated; the same one for every call
// within a test when shared.
type opener func(t *testing.T) string

func sqliteDSN(t *testing.T) string { return filepath.Join(t.TempDir(), "omni.db") }

func postgresDSN(t *testing.T) string { return testenv.Postgres(t) }

func openDB(t *testing.T, dsn string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := sqldb.Migrate(context.Background(), db, Product, Migrations()); err != nil {
		t.Fatal(err)
	}
	return db
}

var t0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func newEnv(t *testing.T, dsn string, cfg Config, files *memFiles, gw *fakeGateway, clk *clock.Fake) *env {
	t.Helper()
	if cfg.Runner.Poll == 0 {
		cfg.Runner.Poll = 10 * time.Millisecond
	}
	if cfg.Runner.Lease == 0 {
		cfg.Runner.Lease = 40 * time.Millisecond // renewed (and stale lines looked for) every 10ms
	}
	if cfg.Runner.Drain == 0 {
		cfg.Runner.Drain = 50 * time.Millisecond
	}
	e := &env{t: t, db: openDB(t, dsn), files: files, gw: gw, clk: clk}
	e.svc = New(fakeOps{}, gw, NewStore(e.db), files, cfg, clk, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	mux := http.NewServeMux()
	e.svc.Register(mux)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.start()
	return e
}

// start runs the runner until stop or the test's end.
func (e *env) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.svc.Runner().Run(ctx) }()
	var once sync.Once
	e.stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(e.stop)
}

// do sends a request as key (none when "").
func (e *env) do(key, method, path string, body any) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatalf("%s %s: %d %s is not a JSON object", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

func (e *env) create(key, fileID string) map[string]any {
	e.t.Helper()
	status, b := e.do(key, "POST", "/v1/batches", map[string]any{"input_file_id": fileID, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
	if status != 200 {
		e.t.Fatalf("create: %d %v", status, b)
	}
	return b
}

func (e *env) get(key, id string) map[string]any {
	e.t.Helper()
	status, b := e.do(key, "GET", "/v1/batches/"+id, nil)
	if status != 200 {
		e.t.Fatalf("get: %d %v", status, b)
	}
	return b
}

// waitStatus polls the batch until it has status.
func (e *env) waitStatus(key, id, status string) map[string]any {
	e.t.Helper()
	var b map[string]any
	if _, ok := testenv.Poll(10*time.Second, func() bool {
		b = e.get(key, id)
		return b["status"] == status
	}); !ok {
		e.t.Fatalf("batch not %s within 10s: %v", status, b)
	}
	return b
}

// chatLine is one input line asking the chat endpoint about prompt.
func chatLine(customID, prompt string) string {
	b, _ := json.Marshal(map[string]any{"custom_id": customID, "method": "POST", "url": "/v1/chat/completions",
		"body": map[string]any{"model": "p/m", "messages": []any{map[string]any{"role": "user", "content": prompt}}}})
	return string(b)
}

func chatLines(n int) string {
	var sb strings.Builder
	for i := range n {
		sb.WriteString(chatLine(fmt.Sprintf("req-%d", i), fmt.Sprintf("p%d", i)))
		sb.WriteByte('\n')
	}
	return sb.String()
}

// fileLines returns a file's JSONL lines, decoded.
func (e *env) fileLines(id any) []outputLineT {
	e.t.Helper()
	s, ok := id.(string)
	if !ok {
		e.t.Fatalf("file id %v", id)
	}
	f := e.files.get(e.t, s)
	var out []outputLineT
	for _, l := range strings.Split(strings.TrimSuffix(string(f.data), "\n"), "\n") {
		var o outputLineT
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			e.t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, o)
	}
	return out
}

type outputLineT struct {
	ID       string  `json:"id"`
	CustomID *string `json:"custom_id"`
	Response *struct {
		StatusCode int             `json:"status_code"`
		RequestID  string          `json:"request_id"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func counts(b map[string]any) [3]int {
	c := b["request_counts"].(map[string]any)
	return [3]int{int(c["total"].(float64)), int(c["completed"].(float64)), int(c["failed"].(float64))}
}
