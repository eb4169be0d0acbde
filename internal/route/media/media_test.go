package media_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/admin/admintest"
)

// fake is a generation upstream speaking one provider's wire format
// (openai, runway or replicate) with its recorded fixtures
// (testdata/<api>_*.json): a create answers the queued job, successive
// polls answer the fixtures in polls (the last one repeating), and the
// output file is served where the fixtures say.
type fake struct {
	*httptest.Server
	api string

	mu           sync.Mutex
	createStatus int
	polls        []string
	pollCount    int
	creates      []created
	contentAuths []string
	content      []byte
}

type created struct {
	path, auth, contentType, version string
	body                             []byte
}

func newFake(t *testing.T, api string, polls ...string) *fake {
	f := &fake{api: api, createStatus: http.StatusOK, polls: polls, content: bytes.Repeat([]byte(api+" output "), 4096)}
	fixtures := map[string][]byte{}
	for _, name := range append([]string{"create", "starting"}, polls...) {
		if b, err := os.ReadFile(filepath.Join("testdata", api+"_"+name+".json")); err == nil {
			fixtures[name] = b
		} else if name != "create" && name != "starting" {
			t.Fatal(err)
		}
	}
	fixture := func(name string) []byte { return bytes.ReplaceAll(fixtures[name], []byte("{{BASE}}"), []byte(f.URL)) }
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost:
			b, _ := io.ReadAll(r.Body)
			f.creates = append(f.creates, created{path: r.URL.Path, auth: r.Header.Get("Authorization"),
				contentType: r.Header.Get("Content-Type"), version: r.Header.Get("X-Runway-Version"), body: b})
			if f.createStatus != http.StatusOK {
				w.WriteHeader(f.createStatus)
				io.WriteString(w, `{"error":{"message":"internal error","type":"server_error"}}`)
				return
			}
			name := map[string]string{"openai": "create", "runway": "create", "replicate": "starting"}[api]
			if api == "replicate" {
				w.WriteHeader(http.StatusCreated)
			}
			w.Write(fixture(name))
		case strings.HasPrefix(r.URL.Path, "/files/") || strings.HasSuffix(r.URL.Path, "/content"):
			f.contentAuths = append(f.contentAuths, r.Header.Get("Authorization"))
			ct := map[string]string{"openai": "video/mp4", "runway": "video/mp4", "replicate": "audio/mpeg"}[api]
			w.Header().Set("Content-Type", ct)
			w.Write(f.content)
		case r.Header.Get("Authorization") != "Bearer sk-upstream":
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"bad key"}`)
		default:
			i := min(f.pollCount, len(f.polls)-1)
			f.pollCount++
			w.Write(fixture(f.polls[i]))
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fake) contentAuth(i int) (auth string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i < len(f.contentAuths) {
		auth = f.contentAuths[i]
	}
	return auth, len(f.contentAuths)
}

func (f *fake) failCreates(status int) { f.mu.Lock(); f.createStatus = status; f.mu.Unlock() }

func (f *fake) stats() (creates, polls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.creates), f.pollCount
}

func (f *fake) lastCreate(t *testing.T) created {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.creates) == 0 {
		t.Fatal("the upstream got no create")
	}
	return f.creates[len(f.creates)-1]
}

// newEnv is a gateway with its background loops running.
func newEnv(t *testing.T) *admintest.Env {
	e := admintest.NewEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.App.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e.Login()
	return e
}

// provider adds a provider of type typ named id at f.
func provider(e *admintest.Env, id, typ string, f *fake) {
	e.T.Helper()
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": id, "type": typ,
		"base_url": f.URL + "/v1", "api_key": "sk-upstream"})
}

type job struct {
	ID          string `json:"id"`
	Object      string `json:"object"`
	Status      string `json:"status"`
	Progress    int    `json:"progress"`
	Model       string `json:"model"`
	Seconds     int    `json:"seconds"`
	Size        string `json:"size"`
	CreatedAt   int64  `json:"created_at"`
	CompletedAt *int64 `json:"completed_at"`
	ExpiresAt   int64  `json:"expires_at"`
	Error       *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func decodeJob(t *testing.T, b []byte) job {
	t.Helper()
	var j job
	if err := json.Unmarshal(b, &j); err != nil || j.ID == "" {
		t.Fatalf("not a job: %s", b)
	}
	return j
}

// poll reads the job at path until it is no longer active, and returns
// every status seen.
func poll(t *testing.T, e *admintest.Env, path string, hdr ...string) (job, []string) {
	t.Helper()
	var last job
	var seen []string
	testenv.Eventually(t, "the job finished", func() bool {
		last = decodeJob(t, e.Want(http.StatusOK, "GET", path, nil, hdr...).Body)
		if len(seen) == 0 || seen[len(seen)-1] != last.Status {
			seen = append(seen, last.Status)
		}
		return last.Status == "completed" || last.Status == "failed"
	})
	return last, seen
}

// OpenAI's Videos API: the submit goes out as multipart with the
// connection's key, the job is polled to completed through in_progress,
// and the MP4 is streamed through from /videos/{id}/content.
func TestVideoOpenAI(t *testing.T) {
	e := newEnv(t)
	f := newFake(t, "openai", "in_progress", "completed")
	provider(e, "oa", "openai", f)
	r := e.Want(http.StatusOK, "POST", "/v1/videos/generations",
		map[string]any{"model": "oa/sora-2", "prompt": "A calico cat playing a piano on stage", "seconds": "8", "size": "1280x720"})
	j := decodeJob(t, r.Body)
	if j.Object != "video.generation" || j.Status != "queued" || j.Model != "oa/sora-2" || j.Seconds != 8 || j.Size != "1280x720" ||
		!strings.HasPrefix(j.ID, "video_gen_") || j.CreatedAt == 0 || j.ExpiresAt <= j.CreatedAt || j.Error != nil {
		t.Fatalf("submit answered %s", r.Body)
	}
	if m := r.Header.Get("X-OmniRoute-Model"); m != "oa/sora-2" {
		t.Fatalf("X-OmniRoute-Model %q", m)
	}
	c := f.lastCreate(t)
	if c.path != "/v1/videos" || c.auth != "Bearer sk-upstream" {
		t.Fatalf("create at %s with %q", c.path, c.auth)
	}
	mt, params, _ := mime.ParseMediaType(c.contentType)
	if mt != "multipart/form-data" {
		t.Fatalf("create sent as %s", c.contentType)
	}
	form, err := multipart.NewReader(bytes.NewReader(c.body), params["boundary"]).ReadForm(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"model": "sora-2", "prompt": "A calico cat playing a piano on stage", "seconds": "8", "size": "1280x720"} {
		if got := form.Value[k]; len(got) != 1 || got[0] != want {
			t.Fatalf("form field %s = %v, want %q", k, got, want)
		}
	}
	done, seen := poll(t, e, "/v1/videos/generations/"+j.ID)
	if done.Status != "completed" || done.Progress != 100 || done.CompletedAt == nil || seen[len(seen)-2] != "in_progress" {
		t.Fatalf("finished %+v after %v", done, seen)
	}
	r = e.Want(http.StatusOK, "GET", "/v1/videos/generations/"+j.ID+"/content", nil)
	if !bytes.Equal(r.Body, f.content) || r.Header.Get("Content-Type") != "video/mp4" || r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("content: %d bytes of %s", len(r.Body), r.Header.Get("Content-Type"))
	}
	if auth, _ := f.contentAuth(0); auth != "Bearer sk-upstream" {
		t.Fatalf("content fetched with %q", auth)
	}
}

// Runway: text_to_video with X-Runway-Version, promptText, ratio and
// duration; the task's output URL is fetched without the key.
func TestVideoRunway(t *testing.T) {
	e := newEnv(t)
	f := newFake(t, "runway", "running", "succeeded")
	provider(e, "runway", "runway", f)
	r := e.Want(http.StatusOK, "POST", "/v1/videos/generations", map[string]any{"model": "runway/gen3a_turbo", "prompt": "waves at night", "duration": 5})
	j := decodeJob(t, r.Body)
	c := f.lastCreate(t)
	var sent map[string]any
	if err := json.Unmarshal(c.body, &sent); err != nil {
		t.Fatal(err)
	}
	if c.path != "/v1/text_to_video" || c.version != "2024-11-06" || c.auth != "Bearer sk-upstream" || sent["model"] != "gen3a_turbo" ||
		sent["promptText"] != "waves at night" || sent["ratio"] != "1280:720" || sent["duration"] != 5.0 {
		t.Fatalf("create %s %q %q: %s", c.path, c.version, c.auth, c.body)
	}
	done, seen := poll(t, e, "/v1/videos/generations/"+j.ID)
	if done.Status != "completed" || !strings.Contains(strings.Join(seen, ","), "in_progress") {
		t.Fatalf("finished %+v after %v", done, seen)
	}
	r = e.Want(http.StatusOK, "GET", "/v1/videos/generations/"+j.ID+"/content", nil)
	if auth, n := f.contentAuth(0); !bytes.Equal(r.Body, f.content) || n != 1 || auth != "" {
		t.Fatalf("content %d bytes, fetched %d times with %q", len(r.Body), n, auth)
	}

	// The spec's example names no length: Runway is asked for its 5
	// seconds, and that is what the job says and what is recorded.
	r = e.Want(http.StatusOK, "POST", "/v1/videos/generations", map[string]any{"model": "runway/gen-3", "prompt": "waves"})
	if j := decodeJob(t, r.Body); j.Seconds != 5 || !strings.Contains(string(f.lastCreate(t).body), `"duration":5`) {
		t.Fatalf("job %s after a create of %s", r.Body, f.lastCreate(t).body)
	}
	testenv.Eventually(t, "the usage record of 5 seconds", func() bool {
		logs := e.Want(http.StatusOK, "GET", "/api/usage/logs?limit=1", nil).Object(t)["logs"].([]any)
		return len(logs) == 1 && logs[0].(map[string]any)["model"] == "runway/gen-3" && logs[0].(map[string]any)["quantity"] == 5.0
	})
}

// Replicate makes music: the prediction's input carries the prompt and
// duration; the file comes back as audio.
func TestMusicReplicate(t *testing.T) {
	e := newEnv(t)
	f := newFake(t, "replicate", "processing", "succeeded")
	provider(e, "rep", "replicate", f)
	r := e.Want(http.StatusOK, "POST", "/v1/music/generations", map[string]any{"model": "rep/meta/musicgen", "prompt": "lo-fi beat with warm piano"})
	j := decodeJob(t, r.Body)
	if j.Object != "music.generation" || j.Seconds != 30 || !strings.HasPrefix(j.ID, "music_gen_") {
		t.Fatalf("submit answered %s", r.Body)
	}
	c := f.lastCreate(t)
	if c.path != "/v1/models/meta/musicgen/predictions" || string(c.body) != `{"input":{"duration":30,"prompt":"lo-fi beat with warm piano"}}` {
		t.Fatalf("create %s: %s", c.path, c.body)
	}
	done, _ := poll(t, e, "/v1/music/generations/"+j.ID)
	if done.Status != "completed" {
		t.Fatalf("finished %+v", done)
	}
	r = e.Want(http.StatusOK, "GET", "/v1/music/generations/"+j.ID+"/content", nil)
	if !bytes.Equal(r.Body, f.content) || r.Header.Get("Content-Type") != "audio/mpeg" {
		t.Fatalf("content %d bytes of %s", len(r.Body), r.Header.Get("Content-Type"))
	}
	// A video job's path does not reach a music job.
	e.WantError(http.StatusNotFound, "GET", "/v1/videos/generations/"+j.ID, nil)
}

// A job the upstream failed is failed with the upstream's reason; its
// content is a 409, not a download.
func TestFailedJob(t *testing.T) {
	for _, c := range []struct{ api, typ, model, fixture, code string }{
		{"runway", "runway", "rw/gen4_turbo", "runway_failed", "SAFETY.INPUT.TEXT"},
		{"openai", "openai", "oa/sora-2", "openai_failed", "moderation_blocked"},
		{"replicate", "replicate", "rep/minimax/video-01", "replicate_failed", "generation_failed"},
	} {
		t.Run(c.api, func(t *testing.T) {
			e := newEnv(t)
			f := newFake(t, c.api, strings.TrimPrefix(c.fixture, c.api+"_"))
			provider(e, strings.Split(c.model, "/")[0], c.typ, f)
			j := decodeJob(t, e.Want(http.StatusOK, "POST", "/v1/videos/generations", map[string]any{"model": c.model, "prompt": "p"}).Body)
			done, _ := poll(t, e, "/v1/videos/generations/"+j.ID)
			if done.Status != "failed" || done.Error == nil || done.Error.Code != c.code || done.Error.Message == "" || done.CompletedAt == nil {
				t.Fatalf("failed job %+v", done)
			}
			r := e.Want(http.StatusConflict, "GET", "/v1/videos/generations/"+j.ID+"/content", nil)
			if !strings.Contains(string(r.Body), `"code":"job_not_completed"`) {
				t.Fatalf("content of a failed job: %s", r.Body)
			}
		})
	}
}

func createKey(e *admintest.Env, body map[string]any) (id, raw string) {
	e.T.Helper()
	r := e.Want(http.StatusCreated, "POST", "/api/keys", body).Object(e.T)
	return r["id"].(string), r["key"].(string)
}

// A job is its key's: another key, and a client with no key, cannot see
// it, poll it or download it — the same 404 as a job that never was.
func TestJobsAreTheKeys(t *testing.T) {
	e := newEnv(t)
	f := newFake(t, "runway", "succeeded")
	provider(e, "rw", "runway", f)
	_, a := createKey(e, map[string]any{"name": "a"})
	_, b := createKey(e, map[string]any{"name": "b"})
	j := decodeJob(t, e.Want(http.StatusOK, "POST", "/v1/videos/generations", map[string]any{"model": "rw/gen4_turbo", "prompt": "p"}, admintest.Bearer(a)...).Body)
	done, _ := poll(t, e, "/v1/videos/generations/"+j.ID, admintest.Bearer(a)...)
	if done.Status != "completed" {
		t.Fatalf("job %+v", done)
	}
	for _, path := range []string{"/v1/videos/generations/" + j.ID, "/v1/videos/generations/" + j.ID + "/content"} {
		r := e.Want(http.StatusNotFound, "GET", path, nil, admintest.Bearer(b)...)
		if !strings.Contains(string(r.Body), `"code":"job_not_found"`) {
			t.Fatalf("another key's %s: %s", path, r.Body)
		}
		e.WantError(http.StatusNotFound, "GET", path, nil) // the keyless local client is no key's owner
		e.WantError(http.StatusUnauthorized, "GET", path, nil, admintest.Bearer("sk-omni-wrong")...)
	}
	e.WantError(http.StatusNotFound, "GET", "/v1/videos/generations/video_gen_00000000000000000000000000000000", nil, admintest.Bearer(a)...)
	e.WantError(http.StatusNotFound, "GET", "/v1/videos/generations/"+strings.Repeat("x", 500), nil, admintest.Bearer(a)...)
	if _, n := f.contentAuth(0); n != 0 {
		t.Fatalf("the upstream file was fetched %d times for refused downloads", n)
	}
}

// A combo's first target failing with a 500 falls back to the next one;
// the job lives at the target that accepted it, and the usage record
// names the video modality and its seconds.
func TestSubmitFallback(t *testing.T) {
	e := newEnv(t)
	bad, good := newFake(t, "openai", "completed"), newFake(t, "runway", "succeeded")
	bad.failCreates(http.StatusInternalServerError)
	provider(e, "oa", "openai", bad)
	provider(e, "rw", "runway", good)
	e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "video", "strategy": "priority",
		"targets": []string{"oa/sora-2", "rw/gen4_turbo"}})
	r := e.Want(http.StatusOK, "POST", "/v1/videos/generations", map[string]any{"model": "video", "prompt": "p", "seconds": 5})
	j := decodeJob(t, r.Body)
	if r.Header.Get("X-OmniRoute-Model") != "rw/gen4_turbo" || j.Model != "video" {
		t.Fatalf("answered by %q: %s", r.Header.Get("X-OmniRoute-Model"), r.Body)
	}
	if done, _ := poll(t, e, "/v1/videos/generations/"+j.ID); done.Status != "completed" {
		t.Fatalf("job %+v", done)
	}
	bc, bp := bad.stats()
	gc, gp := good.stats()
	if bc != 1 || bp != 0 || gc != 1 || gp == 0 {
		t.Fatalf("first target: %d creates %d polls; second: %d creates %d polls", bc, bp, gc, gp)
	}
	var rec map[string]any
	testenv.Eventually(t, "the video usage record", func() bool {
		logs := e.Want(http.StatusOK, "GET", "/api/usage/logs?limit=5", nil).Object(t)["logs"].([]any)
		for _, l := range logs {
			if m := l.(map[string]any); m["endpoint"] == "/v1/videos/generations" {
				rec = m
				return true
			}
		}
		return false
	})
	if rec["modality"] != "video" || rec["unit"] != "second" || rec["quantity"] != 5.0 || rec["provider"] != "rw" || rec["attempts"] != 2.0 {
		t.Fatalf("usage record %v", rec)
	}

	// Every target failing is the last failure, and leaves no job.
	good.failCreates(http.StatusServiceUnavailable)
	r = e.Want(http.StatusServiceUnavailable, "POST", "/v1/videos/generations", map[string]any{"model": "video", "prompt": "p"})
	if !strings.Contains(string(r.Body), `"attempts"`) {
		t.Fatalf("all failed: %s", r.Body)
	}
	var n int
	if err := e.DB.QueryRow(context.Background(), "SELECT COUNT(*) FROM gateway_media_jobs").Scan(&n); err != nil || n != 1 {
		t.Fatalf("jobs kept: %d, %v; want the one that was accepted", n, err)
	}
}

// A budget is kept in seconds of output at the model's price per second,
// reserved before the submit and charged after it.
func TestSubmitBudget(t *testing.T) {
	e := newEnv(t)
	f := newFake(t, "replicate", "processing")
	provider(e, "rep", "replicate", f)
	id, raw := createKey(e, map[string]any{"name": "ci"})
	// $0.01 per second: a 10-second track costs $0.10.
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "rep/*/*", "unit": "second", "unit_price": 0.01})
	e.Want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 0.15})
	body := map[string]any{"model": "rep/meta/musicgen", "prompt": "p", "duration": 10}
	e.Want(http.StatusOK, "POST", "/v1/music/generations", body, admintest.Bearer(raw)...)
	b := e.Want(http.StatusOK, "GET", "/api/usage/budget", nil).Object(t)["budgets"].([]any)[0].(map[string]any)
	if s := b["spentUsd"].(float64); s < 0.0999 || s > 0.1001 {
		t.Fatalf("spent %v after a 10-second track, want 0.10", s)
	}
	e.Want(http.StatusOK, "POST", "/v1/music/generations", body, admintest.Bearer(raw)...)
	r := e.Want(http.StatusTooManyRequests, "POST", "/v1/music/generations", body, admintest.Bearer(raw)...)
	if !strings.Contains(string(r.Body), `"code":"budget_exceeded"`) {
		t.Fatalf("over budget: %s", r.Body)
	}
	if c, _ := f.stats(); c != 2 {
		t.Fatalf("upstream creates %d, want 2", c)
	}
}

// A key may have at most 8 jobs in progress; the ninth is refused before
// any upstream is asked, and the other keys are not affected.
func TestJobsPerKeyCap(t *testing.T) {
	e := newEnv(t)
	f := newFake(t, "runway", "running")
	provider(e, "rw", "runway", f)
	_, a := createKey(e, map[string]any{"name": "a"})
	_, b := createKey(e, map[string]any{"name": "b"})
	for range 8 {
		e.Want(http.StatusOK, "POST", "/v1/videos/generations", map[string]any{"model": "rw/gen4_turbo", "prompt": "p"}, admintest.Bearer(a)...)
	}
	r := e.Want(http.StatusTooManyRequests, "POST", "/v1/music/generations", map[string]any{"model": "rw/gen4_turbo", "prompt": "p"}, admintest.Bearer(a)...)
	if !strings.Contains(string(r.Body), `"code":"too_many_jobs"`) {
		t.Fatalf("ninth job: %s", r.Body)
	}
	if c, _ := f.stats(); c != 8 {
		t.Fatalf("upstream creates %d, want 8", c)
	}
	e.Want(http.StatusOK, "POST", "/v1/videos/generations", map[string]any{"model": "rw/gen4_turbo", "prompt": "p"}, admintest.Bearer(b)...)
}

// Bad input is a 4xx in OpenAI's error shape before any upstream is
// called: a key holder cannot make the gateway send or pay for more than
// the caps.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	f := newFake(t, "runway", "running")
	provider(e, "rw", "runway", f)
	huge := `{"model":"rw/gen4_turbo","prompt":"` + strings.Repeat("a", 70<<10) + `"}`
	cases := []struct {
		name, path string
		status     int
		body       any
		hdr        []string
		code       string
	}{
		{"wrong content type", "videos", 415, map[string]any{"model": "rw/x", "prompt": "p"}, []string{"Content-Type", "text/plain"}, "unsupported_media_type"},
		{"not JSON", "videos", 400, "{", nil, ""},
		{"no model", "videos", 400, map[string]any{"prompt": "p"}, nil, "missing_model"},
		{"no prompt", "videos", 400, map[string]any{"model": "rw/x"}, nil, "missing_prompt"},
		{"blank prompt", "music", 400, map[string]any{"model": "rw/x", "prompt": "  "}, nil, "missing_prompt"},
		{"prompt too long", "videos", 400, map[string]any{"model": "rw/x", "prompt": strings.Repeat("é", 4001)}, nil, "prompt_too_long"},
		{"seconds zero", "videos", 400, map[string]any{"model": "rw/x", "prompt": "p", "seconds": 0}, nil, "invalid_duration"},
		{"seconds negative", "videos", 400, map[string]any{"model": "rw/x", "prompt": "p", "seconds": "-4"}, nil, "invalid_duration"},
		{"video too long", "videos", 400, map[string]any{"model": "rw/x", "prompt": "p", "seconds": 21}, nil, "invalid_duration"},
		{"music too long", "music", 400, map[string]any{"model": "rw/x", "prompt": "p", "duration": 301}, nil, "invalid_duration"},
		{"huge duration", "music", 400, map[string]any{"model": "rw/x", "prompt": "p", "duration": 1e300}, nil, "invalid_duration"},
		{"fractional seconds", "videos", 400, map[string]any{"model": "rw/x", "prompt": "p", "seconds": 4.5}, nil, "invalid_duration"},
		{"seconds not a number", "videos", 400, map[string]any{"model": "rw/x", "prompt": "p", "seconds": "NaN"}, nil, "invalid_duration"},
		{"seconds and duration differ", "videos", 400, map[string]any{"model": "rw/x", "prompt": "p", "seconds": 4, "duration": 8}, nil, "invalid_duration"},
		{"bad size", "videos", 400, map[string]any{"model": "rw/x", "prompt": "p", "size": "big"}, nil, "invalid_size"},
		{"huge size", "videos", 400, map[string]any{"model": "rw/x", "prompt": "p", "size": "9999x9999"}, nil, "invalid_size"},
		{"size of music", "music", 400, map[string]any{"model": "rw/x", "prompt": "p", "size": "1280x720"}, nil, "invalid_size"},
		{"oversize body", "videos", 413, huge, nil, ""},
		{"unknown model", "videos", 404, map[string]any{"model": "nowhere/x", "prompt": "p"}, nil, ""},
		{"music from a video-only upstream", "music", 400, map[string]any{"model": "rw/gen4_turbo", "prompt": "p"}, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.Want(c.status, "POST", "/v1/"+c.path+"/generations", c.body, c.hdr...)
			var eb struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(r.Body, &eb); err != nil || eb.Error.Message == "" || eb.Error.Type == "" {
				t.Fatalf("body %.300s is not an OpenAI error", r.Body)
			}
			if c.code != "" && (eb.Error.Code == nil || *eb.Error.Code != c.code) {
				t.Fatalf("code %v, want %s (%s)", eb.Error.Code, c.code, eb.Error.Message)
			}
		})
	}
	if n, _ := f.stats(); n != 0 {
		t.Fatalf("bad requests reached the upstream %d times", n)
	}
	var n int
	if err := e.DB.QueryRow(context.Background(), "SELECT COUNT(*) FROM gateway_media_jobs").Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused submits left %d jobs (%v)", n, err)
	}
}

// A target whose provider does not make the kind asked for (Runway and
// OpenAI make no music) is passed over for the next one; with none left
// the answer is a 400.
func TestMusicPassesOverVideoOnlyTargets(t *testing.T) {
	e := newEnv(t)
	rw, rep := newFake(t, "runway", "running"), newFake(t, "replicate", "processing")
	provider(e, "rw", "runway", rw)
	provider(e, "rep", "replicate", rep)
	e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "tunes", "strategy": "priority",
		"targets": []string{"rw/gen4_turbo", "rep/meta/musicgen"}})
	r := e.Want(http.StatusOK, "POST", "/v1/music/generations", map[string]any{"model": "tunes", "prompt": "p"})
	if r.Header.Get("X-OmniRoute-Model") != "rep/meta/musicgen" {
		t.Fatalf("answered by %q: %s", r.Header.Get("X-OmniRoute-Model"), r.Body)
	}
	if c, _ := rw.stats(); c != 0 {
		t.Fatalf("the video-only upstream got %d creates", c)
	}
	r = e.Want(http.StatusBadRequest, "POST", "/v1/music/generations", map[string]any{"model": "rw/gen4_turbo", "prompt": "p"})
	if !strings.Contains(string(r.Body), "music generation") {
		t.Fatalf("no target makes music: %s", r.Body)
	}
}

// /v1/models lists generation models declared with their kind; a
// generation provider routed a chat answers 400, not 500.
func TestModelsAndChat(t *testing.T) {
	e := newEnv(t)
	f := newFake(t, "replicate", "processing")
	provider(e, "rep", "replicate", f)
	e.Want(http.StatusCreated, "POST", "/api/provider-models", map[string]any{"provider": "rep", "model": "meta/musicgen", "kind": "music"})
	e.Want(http.StatusCreated, "POST", "/api/provider-models", map[string]any{"provider": "rep", "model": "minimax/video-01", "kind": "video"})
	r := e.Want(http.StatusOK, "GET", "/v1/models", nil)
	for _, want := range []string{`"id":"rep/meta/musicgen","object":"model","created":0,"owned_by":"rep","type":"music"`,
		`"id":"rep/minimax/video-01","object":"model","created":0,"owned_by":"rep","type":"video"`} {
		if !strings.Contains(string(r.Body), want) {
			t.Fatalf("models %s, want %s", r.Body, want)
		}
	}
	e.WantError(http.StatusBadRequest, "POST", "/v1/chat/completions", admintest.Chat("rep/meta/musicgen"))
	// Runway's models make videos whatever their names.
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "rw", "type": "runway",
		"base_url": newFake(t, "runway", "running").URL + "/v1", "api_key": "sk-upstream", "models": []string{"act_two"}})
	if r := e.Want(http.StatusOK, "GET", "/v1/models", nil); !strings.Contains(string(r.Body), `"id":"rw/act_two","object":"model","created":0,"owned_by":"rw","type":"video"`) {
		t.Fatalf("models %s", r.Body)
	}
}

// A key's policy and request limits hold for a submit as for chat, and
// a refused submit leaves no job behind.
func TestSubmitKeyPolicyAndRPM(t *testing.T) {
	e := newEnv(t)
	f := newFake(t, "runway", "running")
	provider(e, "rw", "runway", f)
	_, limited := createKey(e, map[string]any{"name": "only-openai", "allowed_providers": []string{"oa"}})
	r := e.Want(http.StatusForbidden, "POST", "/v1/videos/generations", map[string]any{"model": "rw/gen4_turbo", "prompt": "p"}, admintest.Bearer(limited)...)
	if !strings.Contains(string(r.Body), `"type":"permission_error"`) {
		t.Fatalf("policy refusal %s", r.Body)
	}
	_, slow := createKey(e, map[string]any{"name": "slow", "rpm": 1})
	e.Want(http.StatusOK, "POST", "/v1/videos/generations", map[string]any{"model": "rw/gen4_turbo", "prompt": "p"}, admintest.Bearer(slow)...)
	r = e.Want(http.StatusTooManyRequests, "POST", "/v1/videos/generations", map[string]any{"model": "rw/gen4_turbo", "prompt": "p"}, admintest.Bearer(slow)...)
	if !strings.Contains(string(r.Body), "rpm limit of 1 reached") || r.Header.Get("Retry-After") == "" {
		t.Fatalf("rpm refusal %s", r.Body)
	}
	if c, _ := f.stats(); c != 1 {
		t.Fatalf("upstream creates %d, want 1", c)
	}
	var n int
	if err := e.DB.QueryRow(context.Background(), "SELECT COUNT(*) FROM gateway_media_jobs").Scan(&n); err != nil || n != 1 {
		t.Fatalf("jobs %d (%v), want the one admitted", n, err)
	}
}
