package dashboard_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/testenv/browser"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// logBuffer collects a gateway's log lines (for the setup token).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

var setupTokenRe = regexp.MustCompile(`setup_token=(\S+)`)

func (b *logBuffer) token(t *testing.T) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := setupTokenRe.FindAllStringSubmatch(b.buf.String(), -1)
	if len(m) == 0 {
		t.Fatal("no setup token in the log")
	}
	return m[len(m)-1][1]
}

// freshGateway is a gateway without a password: the dashboard starts at
// its first-run setup. It returns the setup token the log printed.
func freshGateway(t *testing.T) (*admintest.Env, string) {
	logs := &logBuffer{}
	e := admintest.NewEnvLog(t, func(c *config.Config) { c.Route.InitialPassword = "" }, slog.New(slog.NewTextHandler(logs, nil)))
	run(t, e)
	return e, logs.token(t)
}

// run runs the gateway's background loops (the usage writer) until t ends.
func run(_ *testing.T, e *admintest.Env) { e.Run() }

// streamWords is what the fake upstream streams, one word per chunk.
var streamWords = []string{"Hello", " from", " the", " fake", " upstream", "."}

// upstream is a fake OpenAI-compatible provider that streams its answer
// a word at a time with a pause between words (so a page showing the
// answer incrementally can be seen doing it), answers non-streaming
// calls at once, and fails with 500 while broken.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	broken bool
	pause  time.Duration
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{pause: 250 * time.Millisecond}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) setBroken(b bool) { u.mu.Lock(); u.broken = b; u.mu.Unlock() }

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	u.mu.Lock()
	broken := u.broken
	u.mu.Unlock()
	if r.URL.Path == "/models" || r.URL.Path == "/v1/models" {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[{"id":"m1","object":"model"}]}`)
		return
	}
	if strings.HasSuffix(r.URL.Path, "/moderations") && !broken {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"modr-1","model":"omni-moderation-latest","results":[{"flagged":false,"categories":{"violence":false},"category_scores":{"violence":0.01}}]}`)
		return
	}
	if broken {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"error":{"message":"upstream broken","type":"server_error"}}`)
		return
	}
	if !body.Stream {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`, body.Model)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl, _ := w.(http.Flusher)
	for _, word := range streamWords {
		b, _ := json.Marshal(word)
		fmt.Fprintf(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{\"content\":%s},\"finish_reason\":null}]}\n\n", body.Model, b)
		if fl != nil {
			fl.Flush()
		}
		time.Sleep(u.pause)
	}
	fmt.Fprintf(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":6,\"total_tokens\":9}}\n\ndata: [DONE]\n\n", body.Model)
}

// openLoggedIn opens the dashboard's page at path (below /dashboard/) and
// logs in with the test password.
func openLoggedIn(p *browser.Page, e *admintest.Env, path string) {
	p.Navigate(e.Srv.URL + "/dashboard/" + path)
	p.SetValue("#login-password", admintest.Password)
	p.Click("#login-submit")
	p.WaitVisible(".topbar .theme-toggle")
}

// texts is the visible text of every element matching sel, joined by "|".
func texts(p *browser.Page, sel string) string {
	return browser.Eval[string](p, `[...document.querySelectorAll(`+strconv.Quote(sel)+`)].map(e => e.innerText.trim()).join("|")`)
}
