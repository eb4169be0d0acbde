package images_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/admin/admintest"
	"github.com/omniedge/omni/internal/route/formats/formattest"
)

// received is one request a fake upstream got: for a multipart body,
// its fields and its files (form name: file name, size).
type received struct {
	path, auth, contentType string
	body                    []byte
	fields                  map[string]string
	files                   []string
}

// upstream is a fake image provider speaking OpenAI's Images API
// (/v1/images/generations, /v1/images/edits) or SD WebUI's
// (/sdapi/v1/txt2img, /sdapi/v1/img2img), answering the recorded
// fixtures of testdata, or a status set with fail.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	status int
	got    []received
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{status: http.StatusOK}
	answers := map[string][]byte{
		"/v1/images/generations": formattest.Testdata(t, "openai_generation_answer.json"),
		"/v1/images/edits":       formattest.Testdata(t, "openai_edit_answer.json"),
		"/sdapi/v1/txt2img":      formattest.Testdata(t, "sdwebui_answer.json"),
		"/sdapi/v1/img2img":      formattest.Testdata(t, "sdwebui_answer.json"),
	}
	urlAnswer := formattest.Testdata(t, "openai_url_answer.json")
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := received{path: r.URL.Path, auth: r.Header.Get("Authorization"), contentType: r.Header.Get("Content-Type")}
		if mt, _, _ := mime.ParseMediaType(rec.contentType); mt == "multipart/form-data" {
			rec.fields = map[string]string{}
			if err := r.ParseMultipartForm(1 << 20); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			for k, v := range r.MultipartForm.Value {
				rec.fields[k] = strings.Join(v, ",")
			}
			for k, fs := range r.MultipartForm.File {
				for _, f := range fs {
					rec.files = append(rec.files, k+":"+f.Filename+":"+f.Header.Get("Content-Type"))
				}
			}
			sort.Strings(rec.files)
		} else {
			rec.body, _ = io.ReadAll(r.Body)
		}
		u.mu.Lock()
		u.got = append(u.got, rec)
		status := u.status
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if status != http.StatusOK {
			w.WriteHeader(status)
			io.WriteString(w, `{"error":{"message":"The server had an error while processing your request.","type":"server_error"}}`)
			return
		}
		answer, ok := answers[r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"detail":"Not Found"}`)
			return
		}
		if bytes.Contains(rec.body, []byte(`"dall-e-3"`)) {
			answer = urlAnswer
		}
		w.Write(answer)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) fail(status int) { u.mu.Lock(); u.status = status; u.mu.Unlock() }

func (u *upstream) calls() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.got) }

func (u *upstream) last(t *testing.T) received {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) == 0 {
		t.Fatal("the upstream was not called")
	}
	return u.got[len(u.got)-1]
}

// newEnv is a gateway with its background writers running (usage
// records reach the store).
func newEnv(t *testing.T) *admintest.Env {
	e := admintest.NewEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.App.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e.Login()
	return e
}

// provider adds a provider of type typ named id at u: openai at
// {u}/v1, sdwebui at u itself.
func provider(e *admintest.Env, id, typ string, u *upstream, key string, models ...string) {
	e.T.Helper()
	base := u.URL + "/v1"
	if typ == "sdwebui" {
		base = u.URL
	}
	body := map[string]any{"id": id, "type": typ, "base_url": base, "models": models}
	if key != "" {
		body["api_key"] = key
	}
	e.Want(http.StatusCreated, "POST", "/api/providers", body)
}

func createKey(e *admintest.Env, body map[string]any) (id, raw string) {
	e.T.Helper()
	r := e.Want(http.StatusCreated, "POST", "/api/keys", body).Object(e.T)
	return r["id"].(string), r["key"].(string)
}

// client is the official client with a new key of no policy.
func client(e *admintest.Env) openai.Client {
	_, key := createKey(e, map[string]any{"name": "sdk"})
	return openai.NewClient(option.WithBaseURL(e.Srv.URL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// fixtureImage is the base64 image of a recorded answer.
func fixtureImage(t *testing.T, name string, i int) string {
	t.Helper()
	var a struct {
		Data []struct {
			B64JSON string `json:"b64_json"`
		} `json:"data"`
		Images []string `json:"images"`
	}
	if err := json.Unmarshal(formattest.Testdata(t, name), &a); err != nil {
		t.Fatal(err)
	}
	if len(a.Images) > 0 {
		return a.Images[i]
	}
	return a.Data[i].B64JSON
}

// lastUsage is the newest usage record.
func lastUsage(t *testing.T, e *admintest.Env, endpoint string) map[string]any {
	t.Helper()
	var rec map[string]any
	testenv.Eventually(t, "the image usage record", func() bool {
		logs := e.Want(http.StatusOK, "GET", "/api/usage/logs?limit=5", nil).Object(t)["logs"].([]any)
		if len(logs) == 0 {
			return false
		}
		rec = logs[0].(map[string]any)
		return rec["endpoint"] == endpoint
	})
	return rec
}

// The official client generates an image through the gateway: the
// OpenAI upstream is sent the client's fields with its own model name
// and key, its answer (base64, usage, output metadata) comes back as it
// was, and the usage record counts one image with the upstream's tokens.
func TestGenerateWithOpenAIClient(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t)
	provider(e, "oa", "openai", u, "sk-oa-upstream")
	c := client(e)
	var hdr http.Header
	res, err := c.Images.Generate(context.Background(), openai.ImageGenerateParams{
		Model: "oa/gpt-image-1", Prompt: "A beautiful sunset over mountains", N: openai.Int(1),
		Size: openai.ImageGenerateParamsSize1024x1024, Quality: openai.ImageGenerateParamsQualityLow,
		OutputFormat: openai.ImageGenerateParamsOutputFormatPNG,
	}, option.WithResponseInto(new(*http.Response)), option.WithMiddleware(func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		resp, err := next(r)
		if resp != nil {
			hdr = resp.Header
		}
		return resp, err
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Data) != 1 || res.Data[0].B64JSON != fixtureImage(t, "openai_generation_answer.json", 0) || res.Created != 1713833628 {
		t.Fatalf("answer %+v", res)
	}
	if res.Usage.InputTokens != 20 || res.Usage.OutputTokens != 272 || res.OutputFormat != "png" || res.Size != "1024x1024" {
		t.Fatalf("usage and metadata %+v", res)
	}
	if hdr.Get("X-OmniRoute-Model") != "oa/gpt-image-1" {
		t.Fatalf("X-OmniRoute-Model %q", hdr.Get("X-OmniRoute-Model"))
	}
	got := u.last(t)
	if got.path != "/v1/images/generations" || got.auth != "Bearer sk-oa-upstream" {
		t.Fatalf("upstream got %s with %q", got.path, got.auth)
	}
	formattest.Golden(t, filepath.Join("testdata", "golden", "openai_generation_request.json"), formattest.Reindent(t, got.body))

	rec := lastUsage(t, e, "/v1/images/generations")
	if rec["modality"] != "image" || rec["unit"] != "image" || rec["quantity"] != 1.0 || rec["provider"] != "oa" ||
		rec["inputTokens"] != 20.0 || rec["outputTokens"] != 272.0 {
		t.Fatalf("usage record %v", rec)
	}
}

// A dall-e model asked for URLs answers URLs and revised prompts, passed
// on as the upstream gave them.
func TestGenerateURLsPassedOn(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t)
	provider(e, "oa", "openai", u, "sk-oa-upstream")
	c := client(e)
	res, err := c.Images.Generate(context.Background(), openai.ImageGenerateParams{
		Model: "oa/dall-e-3", Prompt: "A sunset", ResponseFormat: openai.ImageGenerateParamsResponseFormatURL,
		Style: openai.ImageGenerateParamsStyleVivid,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Data) != 1 || !strings.HasPrefix(res.Data[0].URL, "https://oaidalleapiprodscus.blob.core.windows.net/") ||
		!strings.HasPrefix(res.Data[0].RevisedPrompt, "A vivid sunset") {
		t.Fatalf("answer %+v", res.Data)
	}
	var sent map[string]any
	if err := json.Unmarshal(u.last(t).body, &sent); err != nil || sent["response_format"] != "url" || sent["style"] != "vivid" || sent["model"] != "dall-e-3" {
		t.Fatalf("upstream got %v", sent)
	}
}

// The official client edits images through the gateway: several images
// go to the OpenAI upstream as "image[]" parts, one as "image", the mask
// as "mask", with the fields; the answer comes back as the upstream gave
// it.
func TestEditWithOpenAIClient(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t)
	provider(e, "oa", "openai", u, "sk-oa-upstream")
	c := client(e)
	png := formattest.Testdata(t, "input.png")
	mask := formattest.Testdata(t, "mask.png")
	res, err := c.Images.Edit(context.Background(), openai.ImageEditParams{
		Model: "oa/gpt-image-1", Prompt: "Add a red hat",
		Image: openai.ImageEditParamsImageUnion{OfFileArray: []io.Reader{
			openai.File(bytes.NewReader(png), "one.png", "image/png"), openai.File(bytes.NewReader(png), "two.png", "image/png")}},
		Mask: openai.File(bytes.NewReader(mask), "mask.png", "image/png"),
		N:    openai.Int(1), Size: openai.ImageEditParamsSize1024x1024, InputFidelity: openai.ImageEditParamsInputFidelityHigh,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Data) != 1 || res.Data[0].B64JSON != fixtureImage(t, "openai_edit_answer.json", 0) || res.Usage.InputTokensDetails.ImageTokens != 323 {
		t.Fatalf("answer %+v", res)
	}
	got := u.last(t)
	if got.path != "/v1/images/edits" || got.auth != "Bearer sk-oa-upstream" {
		t.Fatalf("upstream got %s with %q", got.path, got.auth)
	}
	want := map[string]string{"model": "gpt-image-1", "prompt": "Add a red hat", "n": "1", "size": "1024x1024", "input_fidelity": "high"}
	if !equalMaps(got.fields, want) {
		t.Fatalf("upstream fields %v, want %v", got.fields, want)
	}
	if strings.Join(got.files, " ") != "image[]:one.png:image/png image[]:two.png:image/png mask:mask.png:image/png" {
		t.Fatalf("upstream files %v", got.files)
	}
	rec := lastUsage(t, e, "/v1/images/edits")
	if rec["modality"] != "image" || rec["unit"] != "image" || rec["quantity"] != 1.0 || rec["inputTokens"] != 340.0 {
		t.Fatalf("usage record %v", rec)
	}

	// One image is the "image" part.
	if _, err := c.Images.Edit(context.Background(), openai.ImageEditParams{Model: "oa/gpt-image-1", Prompt: "Add a hat",
		Image: openai.ImageEditParamsImageUnion{OfFile: openai.File(bytes.NewReader(png), "one.png", "image/png")}}); err != nil {
		t.Fatal(err)
	}
	if got := u.last(t); strings.Join(got.files, " ") != "image:one.png:image/png" {
		t.Fatalf("upstream files %v", got.files)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// form is a multipart body of fields and files (name → contents).
func form(t *testing.T, fields map[string]string, files ...[2]string) (io.Reader, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		mw.WriteField(k, fields[k])
	}
	for _, f := range files {
		w, _ := mw.CreateFormFile(f[0], f[0]+".png")
		io.WriteString(w, f[1])
	}
	mw.Close()
	return &b, mw.FormDataContentType()
}

// post sends body with contentType and key, returning the status and the
// body.
func post(t *testing.T, e *admintest.Env, path, key, contentType string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.Srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := e.Srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// SD WebUI generates with txt2img and edits with img2img (the images
// and mask as base64), with the checkpoint as override_settings and the
// key as HTTP Basic authentication; asked for URLs, its base64 images
// come back as data: URLs.
func TestSDWebUI(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t)
	provider(e, "sd", "sdwebui", u, "webui:secret")
	_, key := createKey(e, map[string]any{"name": "sd"})
	r := e.Want(http.StatusOK, "POST", "/v1/images/generations", map[string]any{"model": "sd/v1-5-pruned-emaonly",
		"prompt": "a red fox", "n": 2, "size": "640x480", "response_format": "url", "quality": "hd"}, admintest.Bearer(key)...)
	got := u.last(t)
	if got.path != "/sdapi/v1/txt2img" || got.auth != "Basic "+base64.StdEncoding.EncodeToString([]byte("webui:secret")) {
		t.Fatalf("upstream got %s with %q", got.path, got.auth)
	}
	formattest.Golden(t, filepath.Join("testdata", "golden", "sdwebui_txt2img_request.json"), formattest.Reindent(t, got.body))
	var out struct {
		Created int64 `json:"created"`
		Data    []struct {
			URL     string  `json:"url"`
			B64JSON *string `json:"b64_json"`
		} `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil || len(out.Data) != 2 || out.Created == 0 {
		t.Fatalf("answer %s", r.Body)
	}
	for i, d := range out.Data {
		if d.URL != "data:image/png;base64,"+fixtureImage(t, "sdwebui_answer.json", i) || d.B64JSON != nil {
			t.Fatalf("image %d: %s", i, r.Body)
		}
	}

	body, ct := form(t, map[string]string{"model": "sd/v1-5-pruned-emaonly", "prompt": "make it night", "size": "512x512"},
		[2]string{"image", "img-bytes"}, [2]string{"mask", "mask-bytes"})
	status, b := post(t, e, "/v1/images/edits", key, ct, body)
	if status != http.StatusOK || !strings.Contains(string(b), `"b64_json":"`+fixtureImage(t, "sdwebui_answer.json", 1)+`"`) {
		t.Fatalf("edit %d %s", status, b)
	}
	var sent struct {
		InitImages []string `json:"init_images"`
		Mask       string   `json:"mask"`
		BatchSize  int      `json:"batch_size"`
		Width      int      `json:"width"`
	}
	got = u.last(t)
	if err := json.Unmarshal(got.body, &sent); err != nil || got.path != "/sdapi/v1/img2img" || len(sent.InitImages) != 1 ||
		sent.InitImages[0] != base64.StdEncoding.EncodeToString([]byte("img-bytes")) || sent.Mask != base64.StdEncoding.EncodeToString([]byte("mask-bytes")) ||
		sent.BatchSize != 1 || sent.Width != 512 {
		t.Fatalf("img2img got %s %s", got.path, got.body)
	}

	// A WebUI does not chat.
	e.Want(http.StatusBadRequest, "POST", "/v1/chat/completions", admintest.Chat("sd/v1-5-pruned-emaonly"), admintest.Bearer(key)...)
}

// A combo's first target failing with a 500 falls back to the next one
// before the answer; the usage record names the target that answered
// and both attempts.
func TestImageFallback(t *testing.T) {
	e := newEnv(t)
	bad, good := newUpstream(t), newUpstream(t)
	bad.fail(http.StatusInternalServerError)
	provider(e, "oa", "openai", bad, "sk-oa")
	provider(e, "sd", "sdwebui", good, "")
	e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "painter", "strategy": "priority",
		"targets": []string{"oa/gpt-image-1", "sd/sdxl"}})
	r := e.Want(http.StatusOK, "POST", "/v1/images/generations", map[string]any{"model": "painter", "prompt": "a fox"})
	if bad.calls() != 1 || good.calls() != 1 || r.Header.Get("X-OmniRoute-Model") != "sd/sdxl" {
		t.Fatalf("calls %d %d, model %q", bad.calls(), good.calls(), r.Header.Get("X-OmniRoute-Model"))
	}
	rec := lastUsage(t, e, "/v1/images/generations")
	if rec["modality"] != "image" || rec["unit"] != "image" || rec["quantity"] != 1.0 || rec["provider"] != "sd" || rec["attempts"] != 2.0 {
		t.Fatalf("usage record %v", rec)
	}
	// Edits fall back the same way.
	body, ct := form(t, map[string]string{"model": "painter", "prompt": "night"}, [2]string{"image", "img"})
	_, key := createKey(e, map[string]any{"name": "edit"})
	if status, b := post(t, e, "/v1/images/edits", key, ct, body); status != http.StatusOK || bad.calls() != 2 || good.calls() != 2 {
		t.Fatalf("edit %d %s, calls %d %d", status, b, bad.calls(), good.calls())
	}
	// Every target failing is the last failure, in OpenAI's shape.
	good.fail(http.StatusServiceUnavailable)
	r = e.Want(http.StatusServiceUnavailable, "POST", "/v1/images/generations", map[string]any{"model": "painter", "prompt": "a fox"})
	if !strings.Contains(string(r.Body), `"attempts"`) || !strings.Contains(string(r.Body), `"type":"server_error"`) {
		t.Fatalf("all failed: %s", r.Body)
	}
}

// A budget is kept in images at the model's price per image, reserved
// before the call and charged after it; a key over its budget is refused
// before the upstream is called.
func TestImageBudget(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t)
	provider(e, "sd", "sdwebui", u, "")
	id, raw := createKey(e, map[string]any{"name": "ci"})
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "sd/sdxl", "unit": "image", "unit_price": 0.04})
	e.Want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 0.05})
	spent := func() float64 {
		b := e.Want(http.StatusOK, "GET", "/api/usage/budget", nil).Object(t)["budgets"].([]any)[0].(map[string]any)
		return b["spentUsd"].(float64)
	}
	req := map[string]any{"model": "sd/sdxl", "prompt": "a fox", "n": 1}
	e.Want(http.StatusOK, "POST", "/v1/images/generations", req, admintest.Bearer(raw)...)
	if s := spent(); s != 0.04 {
		t.Fatalf("spent %v after one image, want 0.04", s)
	}
	// A call is admitted while the spend is under the limit.
	e.Want(http.StatusOK, "POST", "/v1/images/generations", req, admintest.Bearer(raw)...)
	if s := spent(); s != 0.08 {
		t.Fatalf("spent %v after two images, want 0.08", s)
	}
	r := e.Want(http.StatusTooManyRequests, "POST", "/v1/images/generations", req, admintest.Bearer(raw)...)
	if !strings.Contains(string(r.Body), `"code":"budget_exceeded"`) || r.Header.Get("Retry-After") == "" || u.calls() != 2 {
		t.Fatalf("over budget: %v %s (upstream calls %d)", r.Header, r.Body, u.calls())
	}
	// Edits are refused as well.
	body, ct := form(t, map[string]string{"model": "sd/sdxl", "prompt": "night"}, [2]string{"image", "img"})
	if status, b := post(t, e, "/v1/images/edits", raw, ct, body); status != http.StatusTooManyRequests || u.calls() != 2 {
		t.Fatalf("edit over budget %d %s", status, b)
	}
}

// A key's policy and request limits hold for images as for chat; a wrong
// key is a 401 on every image route.
func TestImageKeyPolicy(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t)
	provider(e, "oa", "openai", u, "sk-oa")
	_, limited := createKey(e, map[string]any{"name": "only-sd", "allowed_providers": []string{"sd"}})
	r := e.Want(http.StatusForbidden, "POST", "/v1/images/generations", map[string]any{"model": "oa/gpt-image-1", "prompt": "p"}, admintest.Bearer(limited)...)
	if !strings.Contains(string(r.Body), `"type":"permission_error"`) || u.calls() != 0 {
		t.Fatalf("policy refusal %s, upstream calls %d", r.Body, u.calls())
	}
	body, ct := form(t, map[string]string{"model": "oa/gpt-image-1", "prompt": "p"}, [2]string{"image", "img"})
	if status, _ := post(t, e, "/v1/images/edits", limited, ct, body); status != http.StatusForbidden || u.calls() != 0 {
		t.Fatalf("edit policy refusal %d", status)
	}
	_, slow := createKey(e, map[string]any{"name": "slow", "rpm": 1})
	e.Want(http.StatusOK, "POST", "/v1/images/generations", map[string]any{"model": "oa/gpt-image-1", "prompt": "p"}, admintest.Bearer(slow)...)
	r = e.Want(http.StatusTooManyRequests, "POST", "/v1/images/generations", map[string]any{"model": "oa/gpt-image-1", "prompt": "p"}, admintest.Bearer(slow)...)
	if !strings.Contains(string(r.Body), "rpm limit of 1 reached") || u.calls() != 1 {
		t.Fatalf("rpm refusal %s, upstream calls %d", r.Body, u.calls())
	}
	wrong := admintest.Bearer("sk-omni-wrong")
	e.Want(http.StatusUnauthorized, "POST", "/v1/images/generations", map[string]any{"model": "oa/gpt-image-1", "prompt": "p"}, wrong...)
	e.Want(http.StatusUnauthorized, "GET", "/v1/images/generations", nil, wrong...)
	e.Want(http.StatusUnauthorized, "POST", "/v1/providers/oa/images/generations", map[string]any{"model": "gpt-image-1", "prompt": "p"}, wrong...)
	body, ct = form(t, map[string]string{"model": "oa/gpt-image-1", "prompt": "p"}, [2]string{"image", "img"})
	if status, _ := post(t, e, "/v1/images/edits", "sk-omni-wrong", ct, body); status != http.StatusUnauthorized || u.calls() != 1 {
		t.Fatalf("edit with a wrong key %d", status)
	}

	// A web page in the operator's browser can post a form to the
	// gateway on the loopback without a key (no preflight for a
	// multipart body): it is not the gateway host's own client, so it is
	// refused before the form is read.
	for _, hdr := range [][2]string{{"Origin", "https://evil.example"}, {"Sec-Fetch-Site", "cross-site"}} {
		body, ct = form(t, map[string]string{"model": "oa/gpt-image-1", "prompt": "p"}, [2]string{"image", "img"})
		req, _ := http.NewRequest(http.MethodPost, e.Srv.URL+"/v1/images/edits", body)
		req.Header.Set("Content-Type", ct)
		req.Header.Set(hdr[0], hdr[1])
		resp, err := e.Srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || u.calls() != 1 {
			t.Fatalf("keyless form from another site (%s): %d %s", hdr[0], resp.StatusCode, b)
		}
		errorShape(t, b, "")
	}
	// The same form from the gateway host's own client is served.
	body, ct = form(t, map[string]string{"model": "oa/gpt-image-1", "prompt": "p"}, [2]string{"image", "img"})
	req, _ := http.NewRequest(http.MethodPost, e.Srv.URL+"/v1/images/edits", body)
	req.Header.Set("Content-Type", ct)
	if resp, err := e.Srv.Client().Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("keyless form from the gateway host: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// GET /v1/images/generations lists the image models only, in OpenAI's
// list shape.
func TestListImageModels(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t)
	provider(e, "oa", "openai", u, "sk-oa", "gpt-image-1", "dall-e-3", "gpt-4o")
	r := e.Want(http.StatusOK, "GET", "/v1/images/generations", nil).Object(t)
	var ids []string
	for _, m := range r["data"].([]any) {
		mm := m.(map[string]any)
		if mm["object"] != "model" || mm["type"] != "image" {
			t.Fatalf("model %v", mm)
		}
		ids = append(ids, mm["id"].(string))
	}
	if r["object"] != "list" || strings.Join(ids, " ") != "oa/dall-e-3 oa/gpt-image-1" {
		t.Fatalf("list %v", r)
	}
	// A WebUI's checkpoint is an image model whatever its name says.
	provider(e, "sd", "sdwebui", u, "", "v1-5-pruned-emaonly")
	r = e.Want(http.StatusOK, "GET", "/v1/images/generations", nil).Object(t)
	if n := len(r["data"].([]any)); n != 3 || r["data"].([]any)[2].(map[string]any)["id"] != "sd/v1-5-pruned-emaonly" {
		t.Fatalf("list %v", r)
	}
}

// The provider route adds the provider's prefix, refuses a model of
// another configured provider (400) and an unknown provider (404).
func TestProviderRoute(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t)
	provider(e, "oa", "openai", u, "sk-oa")
	provider(e, "sd", "sdwebui", u, "")
	r := e.Want(http.StatusOK, "POST", "/v1/providers/oa/images/generations", map[string]any{"model": "gpt-image-1", "prompt": "p"})
	if r.Header.Get("X-OmniRoute-Model") != "oa/gpt-image-1" || u.last(t).path != "/v1/images/generations" {
		t.Fatalf("routed to %q", r.Header.Get("X-OmniRoute-Model"))
	}
	e.Want(http.StatusOK, "POST", "/v1/providers/oa/images/generations", map[string]any{"model": "oa/gpt-image-1", "prompt": "p"})
	msg := e.WantError(http.StatusBadRequest, "POST", "/v1/providers/oa/images/generations", map[string]any{"model": "sd/sdxl", "prompt": "p"})
	if !strings.Contains(msg, "belongs to provider sd") {
		t.Fatalf("mismatch %q", msg)
	}
	e.Want(http.StatusNotFound, "POST", "/v1/providers/nope/images/generations", map[string]any{"model": "x", "prompt": "p"})
	if u.calls() != 2 {
		t.Fatalf("upstream calls %d", u.calls())
	}
}

// errorShape asserts an OpenAI error body with code.
func errorShape(t *testing.T, body []byte, code string) {
	t.Helper()
	var e struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" || (code != "" && e.Error.Code != code) {
		t.Fatalf("error body %s, want code %q", body, code)
	}
}

// A key holder cannot make the gateway hold, send or pay for more than
// the caps: bad and oversized requests are 4xx in OpenAI's error shape,
// before any upstream is called.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t)
	provider(e, "oa", "openai", u, "sk-oa")
	_, key := createKey(e, map[string]any{"name": "k"})
	gen := func(change func(map[string]any)) string {
		b := map[string]any{"model": "oa/gpt-image-1", "prompt": "a fox"}
		change(b)
		j, _ := json.Marshal(b)
		return string(j)
	}
	cases := []struct {
		name, contentType, body string
		status                  int
		code                    string
	}{
		{"not JSON", "text/plain", `{"model":"oa/gpt-image-1","prompt":"p"}`, 415, "unsupported_media_type"},
		{"broken JSON", "application/json", `{"model":`, 400, ""},
		{"no model", "application/json", gen(func(b map[string]any) { delete(b, "model") }), 400, "missing_model"},
		{"no prompt", "application/json", gen(func(b map[string]any) { delete(b, "prompt") }), 400, "missing_prompt"},
		{"n 0", "application/json", gen(func(b map[string]any) { b["n"] = 0 }), 400, "invalid_n"},
		{"n 11", "application/json", gen(func(b map[string]any) { b["n"] = 11 }), 400, "invalid_n"},
		{"n a string", "application/json", gen(func(b map[string]any) { b["n"] = "2" }), 400, "invalid_n"},
		{"prompt too long", "application/json", gen(func(b map[string]any) { b["prompt"] = strings.Repeat("é", 32001) }), 400, "prompt_too_long"},
		{"size", "application/json", gen(func(b map[string]any) { b["size"] = "99999x99999" }), 400, "invalid_size"},
		{"size words", "application/json", gen(func(b map[string]any) { b["size"] = "large" }), 400, "invalid_size"},
		{"response_format", "application/json", gen(func(b map[string]any) { b["response_format"] = "png" }), 400, "invalid_response_format"},
		{"quality", "application/json", gen(func(b map[string]any) { b["quality"] = strings.Repeat("h", 33) }), 400, "invalid_quality"},
		{"stream", "application/json", gen(func(b map[string]any) { b["stream"] = true }), 400, "unsupported_parameter"},
		{"an image in a generation", "application/json", gen(func(b map[string]any) { b["image"] = "x" }), 400, "invalid_parameter"},
		{"too many extras", "application/json", gen(func(b map[string]any) {
			for i := range 17 {
				b["x"+strings.Repeat("y", i)] = 1
			}
		}), 400, "too_many_parameters"},
		{"body too large", "application/json", gen(func(b map[string]any) { b["prompt"] = strings.Repeat("a", 2<<20) }), 413, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, b := post(t, e, "/v1/images/generations", key, c.contentType, strings.NewReader(c.body))
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, b)
			}
			errorShape(t, b, c.code)
		})
	}

	img := [2]string{"image", "img"}
	editFields := map[string]string{"model": "oa/gpt-image-1", "prompt": "p"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range editFields {
			m[a] = b
		}
		m[k] = v
		return m
	}
	manyImages := make([][2]string, 17)
	for i := range manyImages {
		manyImages[i] = img
	}
	edits := []struct {
		name   string
		fields map[string]string
		files  [][2]string
		status int
		code   string
	}{
		{"missing image part", editFields, nil, 400, "missing_image"},
		{"only a mask", editFields, [][2]string{{"mask", "m"}}, 400, "missing_image"},
		{"n 11", with("n", "11"), [][2]string{img}, 400, "invalid_n"},
		{"n words", with("n", "two"), [][2]string{img}, 400, "invalid_n"},
		{"17 images", editFields, manyImages, 400, "too_many_images"},
		{"two masks", editFields, [][2]string{img, {"mask", "m"}, {"mask", "m"}}, 400, "invalid_mask"},
		{"another file", editFields, [][2]string{img, {"other", "x"}}, 400, "unexpected_file"},
		{"empty image", editFields, [][2]string{{"image", ""}}, 400, "empty_image"},
		{"field too long", with("prompt", strings.Repeat("a", 161<<10)), [][2]string{img}, 400, "field_too_long"},
	}
	for _, c := range edits {
		t.Run("edit "+c.name, func(t *testing.T) {
			body, ct := form(t, c.fields, c.files...)
			status, b := post(t, e, "/v1/images/edits", key, ct, body)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, b)
			}
			errorShape(t, b, c.code)
		})
	}
	t.Run("edit as JSON", func(t *testing.T) {
		status, b := post(t, e, "/v1/images/edits", key, "application/json", strings.NewReader(`{"model":"oa/gpt-image-1","prompt":"p"}`))
		if status != http.StatusUnsupportedMediaType {
			t.Fatalf("status %d: %s", status, b)
		}
		errorShape(t, b, "unsupported_media_type")
	})
	t.Run("edit malformed", func(t *testing.T) {
		status, b := post(t, e, "/v1/images/edits", key, "multipart/form-data; boundary=xyz", strings.NewReader("--xyz\r\nbroken"))
		if status != http.StatusBadRequest {
			t.Fatalf("status %d: %s", status, b)
		}
		errorShape(t, b, "invalid_multipart")
	})
	// An image part of 50 MiB and a byte is a 413; so is a body past
	// 64 MiB in parts each under the cap. Both are streamed, never
	// built whole here.
	t.Run("oversize image", func(t *testing.T) {
		ct, body := streamedForm(t, [][2]any{{"image", 50<<20 + 1}})
		status, b := post(t, e, "/v1/images/edits", key, ct, body)
		if status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d: %s", status, b)
		}
		errorShape(t, b, "image_too_large")
	})
	t.Run("oversize body", func(t *testing.T) {
		ct, body := streamedForm(t, [][2]any{{"image[]", 40 << 20}, {"image[]", 40 << 20}})
		status, b := post(t, e, "/v1/images/edits", key, ct, body)
		if status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d: %s", status, b)
		}
		errorShape(t, b, "body_too_large")
	})
	if u.calls() != 0 {
		t.Fatalf("the upstream was called %d times", u.calls())
	}
}

// streamedForm is a multipart edit whose image parts (name, size) are
// written as they are read.
func streamedForm(t *testing.T, parts [][2]any) (string, io.Reader) {
	t.Helper()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		mw.WriteField("model", "oa/gpt-image-1")
		mw.WriteField("prompt", "p")
		chunk := bytes.Repeat([]byte{0x89}, 1<<20)
		for _, p := range parts {
			w, err := mw.CreateFormFile(p[0].(string), "big.png")
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			for n := p[1].(int); n > 0; n -= len(chunk) {
				if _, err := w.Write(chunk[:min(n, len(chunk))]); err != nil {
					pw.CloseWithError(err)
					return
				}
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	t.Cleanup(func() { pr.Close() })
	return mw.FormDataContentType(), pr
}

// Edits hold their images; at most four are received at once, and a
// fifth is a 503 with Retry-After until one ends.
func TestEditsAtOnce(t *testing.T) {
	e := newEnv(t)
	u := newUpstream(t)
	provider(e, "oa", "openai", u, "sk-oa")
	_, key := createKey(e, map[string]any{"name": "k"})
	var (
		mu      sync.Mutex
		writers []*io.PipeWriter
		wg      sync.WaitGroup
		closing bool
	)
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		closing = true
		for _, w := range writers {
			w.CloseWithError(errors.New("gone"))
		}
	}
	t.Cleanup(closeAll) // before the gateway closes
	// hold sends an edit whose body stops after its first field, again
	// when it is refused or cut (the probe below may have had the slot).
	hold := func() {
		defer wg.Done()
		for range 100 {
			pr, pw := io.Pipe()
			mu.Lock()
			writers = append(writers, pw)
			mu.Unlock()
			mw := multipart.NewWriter(pw)
			go func() { mw.WriteField("model", "oa/gpt-image-1") }() // then nothing: the edit waits for its body
			req, _ := http.NewRequest(http.MethodPost, e.Srv.URL+"/v1/images/edits", pr)
			req.Header.Set("Content-Type", mw.FormDataContentType())
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := e.Srv.Client().Do(req)
			pw.Close()
			mu.Lock()
			done := closing
			mu.Unlock()
			if done {
				return
			}
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					return
				}
			}
		}
	}
	for range 4 {
		wg.Add(1)
		go hold()
	}
	var last []byte
	testenv.Eventually(t, "a fifth edit refused", func() bool {
		body, ct := form(t, map[string]string{"model": "oa/gpt-image-1", "prompt": "p"}, [2]string{"image", "img"})
		req, _ := http.NewRequest(http.MethodPost, e.Srv.URL+"/v1/images/edits", body)
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := e.Srv.Client().Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		last, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != ""
	})
	errorShape(t, last, "too_many_edits")
	closeAll()
	wg.Wait()
	// The slots are free again once the four have ended.
	testenv.Eventually(t, "an edit served after the four ended", func() bool {
		body, ct := form(t, map[string]string{"model": "oa/gpt-image-1", "prompt": "p"}, [2]string{"image", "img"})
		status, _ := post(t, e, "/v1/images/edits", key, ct, body)
		return status == http.StatusOK
	})
}

// An upstream cannot make the gateway hold more than 64 MiB of answer:
// a longer one is unreadable (502), and the next target is tried.
func TestUpstreamAnswerCap(t *testing.T) {
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"created":1,"data":[{"b64_json":"`)
		chunk := bytes.Repeat([]byte("A"), 1<<20)
		for range 65 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		io.WriteString(w, `"}]}`)
	}))
	defer huge.Close()
	e := newEnv(t)
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "big", "type": "openai", "base_url": huge.URL + "/v1", "api_key": "sk-big"})
	r := e.Want(http.StatusBadGateway, "POST", "/v1/images/generations", map[string]any{"model": "big/gpt-image-1", "prompt": "p"})
	if !strings.Contains(string(r.Body), "larger than 67108864 bytes") {
		t.Fatalf("answer %s", r.Body)
	}
	errorShape(t, r.Body, "")
	good := newUpstream(t)
	provider(e, "oa", "openai", good, "sk-oa")
	e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "c", "strategy": "priority",
		"targets": []string{"big/gpt-image-1", "oa/gpt-image-1"}})
	r = e.Want(http.StatusOK, "POST", "/v1/images/generations", map[string]any{"model": "c", "prompt": "p"})
	if r.Header.Get("X-OmniRoute-Model") != "oa/gpt-image-1" {
		t.Fatalf("answered by %q", r.Header.Get("X-OmniRoute-Model"))
	}
}
