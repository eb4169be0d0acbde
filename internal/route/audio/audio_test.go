package audio_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/omniedge/omni/internal/platform/config"
	"github.com/omniedge/omni/internal/platform/testenv"
	"github.com/omniedge/omni/internal/route/admin/admintest"
	"github.com/omniedge/omni/internal/route/audio"
	"github.com/omniedge/omni/internal/route/formats/formattest"
)

// call is what a fake upstream was sent.
type call struct {
	path, auth, query string
	fields            map[string][]string
	order             []string // the form's part names in order
	fileSHA           string
	fileSize          int64
	fileType          string
	json              map[string]any
}

// fake is an upstream speaking OpenAI's, Deepgram's and AssemblyAI's
// audio APIs at their paths with their recorded answers, or failing
// every call with the status set with fail.
type fake struct {
	*httptest.Server
	t      *testing.T
	mu     sync.Mutex
	status int
	calls  []call
	polls  int
	speech []byte
	// firstByte, when set, is closed when a file's first bytes arrive.
	firstByte chan struct{}
	once      sync.Once
}

func newFake(t *testing.T) *fake {
	f := &fake{t: t, status: http.StatusOK, speech: bytes.Repeat([]byte("ID3-audio-frame|"), 4<<10)}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fake) fail(status int) { f.mu.Lock(); f.status = status; f.mu.Unlock() }

func (f *fake) all() []call { f.mu.Lock(); defer f.mu.Unlock(); return append([]call(nil), f.calls...) }

func (f *fake) last(t *testing.T) call {
	t.Helper()
	c := f.all()
	if len(c) == 0 {
		t.Fatal("the upstream was not called")
	}
	return c[len(c)-1]
}

// readFile hashes a file body as it arrives.
func (f *fake) readFile(r io.Reader, c *call) error {
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			c.fileSize += int64(n)
			if f.firstByte != nil {
				f.once.Do(func() { close(f.firstByte) })
			}
		}
		if err == io.EOF {
			c.fileSHA = fmt.Sprintf("%x", h.Sum(nil))
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	c := call{path: r.URL.Path, auth: r.Header.Get("Authorization"), query: r.URL.RawQuery, fields: map[string][]string{}}
	var err error
	switch {
	case r.URL.Path == "/v1/audio/transcriptions":
		mr, merr := r.MultipartReader()
		if merr != nil {
			http.Error(w, merr.Error(), 400)
			return
		}
		for {
			p, perr := mr.NextPart()
			if perr == io.EOF {
				break
			}
			if perr != nil {
				err = perr
				break
			}
			c.order = append(c.order, p.FormName())
			if p.FormName() == "file" {
				c.fileType = p.Header.Get("Content-Type")
				if err = f.readFile(p, &c); err != nil {
					break
				}
				continue
			}
			b, _ := io.ReadAll(p)
			c.fields[p.FormName()] = append(c.fields[p.FormName()], string(b))
		}
	case r.URL.Path == "/v1/listen" || r.URL.Path == "/v2/upload":
		c.fileType = r.Header.Get("Content-Type")
		err = f.readFile(r.Body, &c)
	case r.Method == http.MethodPost:
		_ = json.NewDecoder(r.Body).Decode(&c.json)
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	status := f.status
	f.mu.Unlock()
	if err != nil { // the upload broke off: nothing to answer
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if status != http.StatusOK {
		w.WriteHeader(status)
		io.WriteString(w, `{"error":{"message":"The server had an error while processing your request.","type":"server_error"}}`)
		return
	}
	fixture := func(name string) { w.Write(formattest.Testdata(f.t, name)) }
	switch {
	case r.URL.Path == "/v1/audio/transcriptions":
		if rf := c.fields["response_format"]; len(rf) == 1 && rf[0] == "verbose_json" {
			fixture("openai_verbose.json")
		} else {
			fixture("openai_json.json")
		}
	case r.URL.Path == "/v1/audio/speech":
		w.Header().Set("Content-Type", "audio/mpeg")
		half := len(f.speech) / 2
		w.Write(f.speech[:half])
		w.(http.Flusher).Flush()
		w.Write(f.speech[half:])
	case r.URL.Path == "/v1/listen":
		fixture("deepgram_answer.json")
	case r.URL.Path == "/v2/upload":
		fmt.Fprintf(w, `{"upload_url":"https://cdn.assemblyai.com/upload/5b3e0a2c-9a7b-4a3c-8f2e-1d0c9b8a7f6e"}`)
	case r.URL.Path == "/v2/transcript":
		io.WriteString(w, `{"id":"6rlr37h7dg-8fb0-4e2c-9a3d-6b1c2f0e7a11","status":"queued","audio_url":"https://cdn.assemblyai.com/upload/5b3e0a2c-9a7b-4a3c-8f2e-1d0c9b8a7f6e","text":null,"words":null,"audio_duration":null,"error":null}`)
	case strings.HasPrefix(r.URL.Path, "/v2/transcript/"):
		f.mu.Lock()
		f.polls++
		n := f.polls
		f.mu.Unlock()
		if n < 2 {
			io.WriteString(w, `{"id":"6rlr37h7dg-8fb0-4e2c-9a3d-6b1c2f0e7a11","status":"processing","text":null,"words":null,"audio_duration":null,"error":null}`)
			return
		}
		fixture("assemblyai_transcript.json")
	default:
		w.WriteHeader(404)
		io.WriteString(w, `{"error":{"message":"no such path","type":"invalid_request_error"}}`)
	}
}

// env is a gateway with its background writers running (usage records
// reach the store), and the directory uploads are spooled in.
type env struct {
	*admintest.Env
	spool string
}

func newEnv(t *testing.T) *env {
	var data string
	e := admintest.NewEnv(t, func(c *config.Config) { data = c.DataDir })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.App.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e.Login()
	return &env{Env: e, spool: audio.TempDir(data)}
}

// base is each provider type's base URL at a fake.
func base(kind string, f *fake) string {
	if kind == "openai" {
		return f.URL + "/v1"
	}
	return f.URL
}

func (e *env) provider(id, kind string, f *fake) {
	e.T.Helper()
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": id, "type": kind,
		"base_url": base(kind, f), "api_key": "sk-" + id + "-upstream"})
}

func (e *env) key(body map[string]any) (id, raw string) {
	e.T.Helper()
	r := e.Want(http.StatusCreated, "POST", "/api/keys", body).Object(e.T)
	return r["id"].(string), r["key"].(string)
}

func (e *env) client(key string) openai.Client {
	if key == "" {
		_, key = e.key(map[string]any{"name": "open"})
	}
	return openai.NewClient(option.WithBaseURL(e.Srv.URL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// spooled lists what is left in the upload directory.
func (e *env) spooled() []string {
	entries, _ := os.ReadDir(e.spool)
	var out []string
	for _, en := range entries {
		out = append(out, en.Name())
	}
	return out
}

// audioBytes is a generated "audio file" of n bytes.
func audioBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func sha(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// part is one part of a form built by form: a field, or the file when
// file is set.
type part struct {
	name, value string
	file        []byte
}

// form encodes parts in order as multipart/form-data.
func form(t *testing.T, parts ...part) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		if p.file != nil {
			h := make(textproto.MIMEHeader)
			h.Set("Content-Disposition", multipart.FileContentDisposition(p.name, "speech.mp3"))
			h.Set("Content-Type", "audio/mpeg")
			w, _ := mw.CreatePart(h)
			w.Write(p.file)
			continue
		}
		mw.WriteField(p.name, p.value)
	}
	mw.Close()
	return b.Bytes(), mw.FormDataContentType()
}

func (e *env) transcribe(status int, key string, parts ...part) admintest.Resp {
	e.T.Helper()
	body, ct := form(e.T, parts...)
	hdr := []string{"Content-Type", ct}
	if key != "" {
		hdr = append(hdr, admintest.Bearer(key)...)
	}
	return e.Want(status, "POST", "/v1/audio/transcriptions", body, hdr...)
}

// usageRecord waits for the newest usage record of n.
func (e *env) usageRecord(n int) map[string]any {
	e.T.Helper()
	var rec map[string]any
	testenv.Eventually(e.T, "the audio usage record", func() bool {
		logs := e.Want(http.StatusOK, "GET", "/api/usage/logs?limit=5", nil).Object(e.T)["logs"].([]any)
		if len(logs) < n {
			return false
		}
		rec = logs[0].(map[string]any)
		return true
	})
	return rec
}

// The official client transcribes through the gateway in json (its New)
// and text (Client.Post with a string answer): the file, sent before the
// model, reaches the upstream whole in OpenAI's multipart shape with the
// upstream's key; the answer is the spec's shape; the usage record counts
// the seconds the upstream reported; nothing stays on disk.
func TestTranscriptionWithOpenAIClient(t *testing.T) {
	e := newEnv(t)
	f := newFake(t)
	e.provider("oa", "openai", f)
	c := e.client("")
	data := audioBytes(300 << 10)
	ctx := context.Background()

	res, err := c.Audio.Transcriptions.New(ctx, openai.AudioTranscriptionNewParams{File: openai.File(bytes.NewReader(data), "speech.mp3", "audio/mpeg"),
		Model: "oa/whisper-1", Language: openai.String("en"), Temperature: openai.Float(0.2)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Text, "The beach was a popular spot") {
		t.Fatalf("transcription %+v", res)
	}
	var shape map[string]any
	if err := json.Unmarshal([]byte(res.RawJSON()), &shape); err != nil || shape["task"] != "transcribe" || shape["language"] != "en" ||
		shape["duration"] != 9.0 {
		t.Fatalf("answer %s, want the spec's shape {text, task, language, duration}", res.RawJSON())
	}
	got := f.last(t)
	if got.fileSHA != sha(data) || got.fileType != "audio/mpeg" || got.auth != "Bearer sk-oa-upstream" ||
		strings.Join(got.fields["model"], ",") != "whisper-1" || strings.Join(got.fields["language"], ",") != "en" ||
		strings.Join(got.fields["temperature"], ",") != "0.2" {
		t.Fatalf("upstream got %+v (size %d)", got, got.fileSize)
	}
	rec := e.usageRecord(1)
	if rec["modality"] != "audio" || rec["unit"] != "second" || rec["quantity"] != 9.0 || rec["provider"] != "oa" ||
		rec["endpoint"] != "/v1/audio/transcriptions" {
		t.Fatalf("usage record %v", rec)
	}

	var text string
	err = c.Post(ctx, "audio/transcriptions", openai.AudioTranscriptionNewParams{File: openai.File(bytes.NewReader(data), "speech.mp3", "audio/mpeg"),
		Model: "oa/whisper-1", ResponseFormat: openai.AudioResponseFormatText}, &text)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text, "The beach was") || strings.Contains(text, "{") {
		t.Fatalf("text answer %q", text)
	}
	if rf := f.last(t).fields["response_format"]; len(rf) != 1 || rf[0] != "json" {
		t.Fatalf("upstream response_format %v, want json for a text answer", rf)
	}
	if left := e.spooled(); len(left) != 0 {
		t.Fatalf("left in the upload directory: %v", left)
	}
}

// srt, vtt and verbose_json are rendered by the gateway from the
// upstream's segments (OpenAI) or words (Deepgram, AssemblyAI); a form
// whose model precedes the file is streamed on, the fields after the
// file included.
func TestTranscriptionFormats(t *testing.T) {
	e := newEnv(t)
	f := newFake(t)
	e.provider("oa", "openai", f)
	e.provider("dg", "deepgram", f)
	data := audioBytes(64 << 10)

	r := e.transcribe(200, "", part{name: "model", value: "oa/whisper-1"}, part{name: "language", value: "en"},
		part{name: "file", file: data}, part{name: "response_format", value: "srt"}, part{name: "prompt", value: "beach"})
	want := "1\n00:00:00,000 --> 00:00:03,320\nThe beach was a popular spot on a hot summer day.\n\n2\n00:00:03,320 --> 00:00:08,470\n"
	if !strings.HasPrefix(string(r.Body), want) || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("srt answer %q", r.Body)
	}
	got := f.last(t)
	if strings.Join(got.order, ",") != "model,language,file,response_format,prompt" || got.fields["response_format"][0] != "verbose_json" ||
		got.fileSHA != sha(data) {
		t.Fatalf("upstream form order %v fields %v", got.order, got.fields)
	}

	r = e.transcribe(200, "", part{name: "file", file: data}, part{name: "model", value: "dg/nova-3"}, part{name: "response_format", value: "vtt"})
	if !strings.HasPrefix(string(r.Body), "WEBVTT\n\n00:00:00.080 --> 00:00:00.320\nYeah.\n\n00:00:00.320 --> 00:00:04.240\nAs much as it's worth") ||
		r.Header.Get("Content-Type") != "text/vtt; charset=utf-8" {
		t.Fatalf("vtt answer %q", r.Body)
	}
	got = f.last(t)
	if got.path != "/v1/listen" || got.auth != "Token sk-dg-upstream" || got.query != "detect_language=true&model=nova-3&smart_format=true" ||
		got.fileSHA != sha(data) || got.fileType != "audio/mpeg" {
		t.Fatalf("deepgram got %+v", got)
	}

	r = e.transcribe(200, "", part{name: "model", value: "dg/nova-3"}, part{name: "language", value: "en"}, part{name: "file", file: data},
		part{name: "response_format", value: "verbose_json"}, part{name: "timestamp_granularities[]", value: "word"})
	var v struct {
		Text     string  `json:"text"`
		Task     string  `json:"task"`
		Language string  `json:"language"`
		Duration float64 `json:"duration"`
		Segments []struct {
			ID    int     `json:"id"`
			Start float64 `json:"start"`
			Text  string  `json:"text"`
		} `json:"segments"`
		Words []struct {
			Word string `json:"word"`
		} `json:"words"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil || v.Task != "transcribe" || v.Language != "en" || v.Duration != 25.933313 ||
		len(v.Segments) != 2 || v.Segments[1].Start != 0.32 || len(v.Words) != 13 || v.Words[12].Word != "remember." {
		t.Fatalf("verbose_json %s", r.Body)
	}
	if q := f.last(t).query; q != "language=en&model=nova-3&smart_format=true" {
		t.Fatalf("deepgram query %q", q)
	}
	rec := e.usageRecord(3)
	if rec["quantity"] != 26.0 || rec["provider"] != "dg" {
		t.Fatalf("usage record %v, want Deepgram's 26 seconds", rec)
	}
}

// AssemblyAI: the audio is uploaded, its transcript asked for with the
// speech model and polled until completed.
func TestTranscriptionAssemblyAI(t *testing.T) {
	e := newEnv(t)
	f := newFake(t)
	e.provider("aai", "assemblyai", f)
	data := audioBytes(50 << 10)
	r := e.transcribe(200, "", part{name: "file", file: data}, part{name: "model", value: "aai/best"}, part{name: "response_format", value: "srt"})
	if !strings.HasPrefix(string(r.Body), "1\n00:00:00,250 --> 00:00:04,980\nSmoke from hundreds of wildfires in Canada is triggering air quality alerts.\n") {
		t.Fatalf("srt %q", r.Body)
	}
	calls := f.all()
	if len(calls) != 4 || calls[0].path != "/v2/upload" || calls[0].fileSHA != sha(data) || calls[0].auth != "sk-aai-upstream" ||
		calls[1].path != "/v2/transcript" || calls[1].json["speech_model"] != "best" || calls[1].json["language_detection"] != true ||
		calls[1].json["audio_url"] != "https://cdn.assemblyai.com/upload/5b3e0a2c-9a7b-4a3c-8f2e-1d0c9b8a7f6e" ||
		calls[3].path != "/v2/transcript/6rlr37h7dg-8fb0-4e2c-9a3d-6b1c2f0e7a11" {
		t.Fatalf("assemblyai calls %+v", calls)
	}
	if rec := e.usageRecord(1); rec["quantity"] != 281.0 {
		t.Fatalf("usage record %v, want AssemblyAI's 281 seconds", rec)
	}
	// A transcription provider's models are audio models whatever their
	// names ("best").
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "aai2", "type": "assemblyai",
		"base_url": base("assemblyai", f), "api_key": "sk-aai2-upstream", "models": []string{"best"}})
	if r := e.Want(http.StatusOK, "GET", "/v1/models", nil); !strings.Contains(string(r.Body), `{"id":"aai2/best","object":"model","created":0,"owned_by":"aai2","type":"audio"}`) {
		t.Fatalf("models %s", r.Body)
	}
}

// A combo's first target failing with a 500 falls back to the next,
// which is sent the whole file again — from disk, then on from the
// client when the file was streamed.
func TestTranscriptionFallback(t *testing.T) {
	e := newEnv(t)
	bad, good := newFake(t), newFake(t)
	bad.fail(http.StatusInternalServerError)
	e.provider("first", "openai", bad)
	e.provider("second", "deepgram", good)
	e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "stt", "strategy": "priority",
		"targets": []string{"first/whisper-1", "second/nova-3"}})
	data := audioBytes(1 << 20)
	for i, parts := range [][]part{
		{{name: "model", value: "stt"}, {name: "file", file: data}},
		{{name: "file", file: data}, {name: "model", value: "stt"}},
	} {
		r := e.transcribe(200, "", parts...)
		if r.Header.Get("X-OmniRoute-Model") != "second/nova-3" || !strings.Contains(string(r.Body), "spacewalk") {
			t.Fatalf("form %d: %v %s", i, r.Header, r.Body)
		}
		if b, g := bad.last(t), good.last(t); b.fileSHA != sha(data) || g.fileSHA != sha(data) {
			t.Fatalf("form %d: first target got %d bytes, second %d; want both the whole file", i, b.fileSize, g.fileSize)
		}
	}
	rec := e.usageRecord(2)
	if rec["modality"] != "audio" || rec["attempts"] != 2.0 || rec["provider"] != "second" || rec["quantity"] != 26.0 {
		t.Fatalf("usage record %v", rec)
	}
	good.fail(http.StatusServiceUnavailable)
	r := e.transcribe(503, "", part{name: "model", value: "stt"}, part{name: "file", file: data})
	if !strings.Contains(string(r.Body), `"type":"server_error"`) {
		t.Fatalf("all failed: %s", r.Body)
	}
	if left := e.spooled(); len(left) != 0 {
		t.Fatalf("left in the upload directory: %v", left)
	}
}

// A budget is kept in seconds of audio: a call is admitted while the
// key's spend is under its budget, and charged the upstream's duration
// (26 s), not the reservation estimated from the upload's size (10 s at
// 32 kbit/s).
func TestTranscriptionBudget(t *testing.T) {
	e := newEnv(t)
	f := newFake(t)
	e.provider("dg", "deepgram", f)
	id, raw := e.key(map[string]any{"name": "ci"})
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "dg/nova-3", "unit": "second", "unit_price": 0.001})
	e.Want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 0.05})
	spent := func() float64 {
		b := e.Want(http.StatusOK, "GET", "/api/usage/budget", nil).Object(t)["budgets"].([]any)[0].(map[string]any)
		return b["spentUsd"].(float64)
	}
	small := audioBytes(40_000)
	e.transcribe(200, raw, part{name: "file", file: small}, part{name: "model", value: "dg/nova-3"})
	if s := spent(); s < 0.0259 || s > 0.0261 {
		t.Fatalf("spent %v, want 26 s at $0.001", s)
	}
	e.transcribe(200, raw, part{name: "model", value: "dg/nova-3"}, part{name: "file", file: small})
	if s := spent(); s < 0.0519 || s > 0.0521 {
		t.Fatalf("spent %v after two, want 52 s at $0.001", s)
	}
	r := e.transcribe(429, raw, part{name: "file", file: small}, part{name: "model", value: "dg/nova-3"})
	if !strings.Contains(string(r.Body), `"code":"budget_exceeded"`) || len(f.all()) != 2 {
		t.Fatalf("over budget: %s (upstream calls %d)", r.Body, len(f.all()))
	}
	if left := e.spooled(); len(left) != 0 {
		t.Fatalf("left in the upload directory: %v", left)
	}
}

// Who may call: no key is a 401; a key whose policy does not allow the
// provider is a 403 and the upstream is not called.
func TestTranscriptionKeyPolicy(t *testing.T) {
	e := newEnv(t)
	f := newFake(t)
	e.provider("dg", "deepgram", f)
	_, limited := e.key(map[string]any{"name": "only-oa", "allowed_providers": []string{"oa"}})
	data := audioBytes(1000)
	r := e.transcribe(403, limited, part{name: "model", value: "dg/nova-3"}, part{name: "file", file: data})
	if !strings.Contains(string(r.Body), `"type":"permission_error"`) || len(f.all()) != 0 {
		t.Fatalf("policy refusal %s, upstream calls %d", r.Body, len(f.all()))
	}
	body, ct := form(t, part{name: "model", value: "dg/nova-3"}, part{name: "file", file: data})
	e.Want(http.StatusUnauthorized, "POST", "/v1/audio/transcriptions", body, append([]string{"Content-Type", ct}, admintest.Remote...)...)
	e.Want(http.StatusUnauthorized, "POST", "/v1/audio/speech", map[string]any{"model": "oa/tts-1", "input": "hi", "voice": "alloy"}, admintest.Remote...)
	if len(f.all()) != 0 {
		t.Fatal("an unauthenticated call reached the upstream")
	}
}

// A page of another site in the operator's browser can post a
// multipart form to the gateway on the loopback without a preflight,
// but such a request is not a keyless local client: a cross-site Origin
// or Sec-Fetch-Site, or a rebound Host, is a 401 and no upstream is
// called.
func TestWebPageCannotTranscribe(t *testing.T) {
	e := newEnv(t)
	f := newFake(t)
	e.provider("dg", "deepgram", f)
	body, ct := form(t, part{name: "model", value: "dg/nova-3"}, part{name: "file", file: audioBytes(1000)})
	for _, hdr := range [][]string{
		{"Origin", "https://evil.example"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Host", "evil.example"},
	} {
		e.Want(http.StatusUnauthorized, "POST", "/v1/audio/transcriptions", body, append([]string{"Content-Type", ct}, hdr...)...)
		e.Want(http.StatusUnauthorized, "POST", "/v1/audio/speech", `{"model":"oa/tts-1","input":"hi","voice":"alloy"}`, hdr...)
	}
	if len(f.all()) != 0 {
		t.Fatal("a web page's request reached the upstream")
	}
	e.transcribe(200, "", part{name: "model", value: "dg/nova-3"}, part{name: "file", file: audioBytes(1000)})
}

// Bad input is a 4xx in OpenAI's shape before any upstream is called.
func TestTranscriptionBadInput(t *testing.T) {
	e := newEnv(t)
	f := newFake(t)
	e.provider("dg", "deepgram", f)
	data := audioBytes(1000)
	e.WantError(415, "POST", "/v1/audio/transcriptions", map[string]any{"model": "dg/nova-3"})
	check := func(status int, code string, parts ...part) {
		t.Helper()
		r := e.transcribe(status, "", parts...)
		if !strings.Contains(string(r.Body), `"code":"`+code+`"`) {
			t.Fatalf("%d: %s, want code %s", status, r.Body, code)
		}
	}
	check(400, "missing_file", part{name: "model", value: "dg/nova-3"})
	check(400, "missing_model", part{name: "file", file: data})
	check(400, "empty_file", part{name: "file", file: []byte{}}, part{name: "model", value: "dg/nova-3"})
	check(400, "invalid_response_format", part{name: "response_format", value: "mp3"}, part{name: "model", value: "dg/nova-3"}, part{name: "file", file: data})
	check(400, "invalid_temperature", part{name: "temperature", value: "7"}, part{name: "file", file: data})
	check(400, "too_many_files", part{name: "file", file: data}, part{name: "file", file: data}, part{name: "model", value: "dg/nova-3"})
	check(400, "field_too_long", part{name: "prompt", value: strings.Repeat("p", audio.MaxFieldBytes+1)}, part{name: "file", file: data})
	many := []part{{name: "model", value: "dg/nova-3"}}
	for range audio.MaxFields + 1 {
		many = append(many, part{name: "x", value: "y"})
	}
	check(400, "too_many_fields", append(many, part{name: "file", file: data})...)
	e.Want(400, "POST", "/v1/audio/transcriptions", []byte("--nope\r\n"), "Content-Type", "multipart/form-data; boundary=zzz")
	if len(f.all()) != 0 {
		t.Fatalf("the upstream was called %d times", len(f.all()))
	}
	if left := e.spooled(); len(left) != 0 {
		t.Fatalf("left in the upload directory: %v", left)
	}
}

// The official client's speech call gets the upstream's audio bytes and
// Content-Type; the upstream is sent OpenAI's JSON with its model name;
// the usage record counts characters.
func TestSpeechWithOpenAIClient(t *testing.T) {
	e := newEnv(t)
	f := newFake(t)
	e.provider("oa", "openai", f)
	c := e.client("")
	res, err := c.Audio.Speech.New(context.Background(), openai.AudioSpeechNewParams{Model: "oa/gpt-4o-mini-tts", Input: "Hello, wörld!",
		Voice: openai.AudioSpeechNewParamsVoiceUnion{OfString: openai.String("alloy")}, ResponseFormat: openai.AudioSpeechNewParamsResponseFormatMP3,
		Speed: openai.Float(1.25), Instructions: openai.String("cheerful")})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || !bytes.Equal(b, f.speech) || res.Header.Get("Content-Type") != "audio/mpeg" || res.Header.Get("X-OmniRoute-Model") != "oa/gpt-4o-mini-tts" {
		t.Fatalf("speech: %d bytes (want %d), %v, %v", len(b), len(f.speech), res.Header, err)
	}
	got := f.last(t)
	if got.path != "/v1/audio/speech" || got.auth != "Bearer sk-oa-upstream" || got.json["model"] != "gpt-4o-mini-tts" ||
		got.json["input"] != "Hello, wörld!" || got.json["voice"] != "alloy" || got.json["speed"] != 1.25 || got.json["instructions"] != "cheerful" {
		t.Fatalf("upstream got %+v", got)
	}
	rec := e.usageRecord(1)
	if rec["modality"] != "audio" || rec["unit"] != "character" || rec["quantity"] != 13.0 {
		t.Fatalf("usage record %v", rec)
	}
}

// The speech answer is streamed through: the client reads the first
// bytes while the upstream still holds the rest.
func TestSpeechStreamsThrough(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "audio/wav")
		w.Write([]byte("RIFF-first-chunk"))
		w.(http.Flusher).Flush()
		<-release
		w.Write([]byte("-second-chunk"))
	}))
	defer up.Close()
	defer close(release)
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "oa", "type": "openai-compatible", "base_url": up.URL, "api_key": "k"})
	_, key := e.key(map[string]any{"name": "s"})
	req, _ := http.NewRequest("POST", e.Srv.URL+"/v1/audio/speech", strings.NewReader(`{"model":"oa/tts-1","input":"hi","voice":"alloy","response_format":"wav"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	first := make([]byte, len("RIFF-first-chunk"))
	if _, err := io.ReadFull(res.Body, first); err != nil || string(first) != "RIFF-first-chunk" || res.Header.Get("Content-Type") != "audio/wav" {
		t.Fatalf("first chunk %q %v %v", first, err, res.Header)
	}
	release <- struct{}{}
	rest, _ := io.ReadAll(res.Body)
	if string(rest) != "-second-chunk" {
		t.Fatalf("rest %q", rest)
	}
}

// Speech falls back to the next target when the first fails before its
// answer began; a budget is kept in characters.
func TestSpeechFallbackAndBudget(t *testing.T) {
	e := newEnv(t)
	bad, good := newFake(t), newFake(t)
	bad.fail(http.StatusInternalServerError)
	e.provider("first", "openai", bad)
	e.provider("second", "openai", good)
	e.Want(http.StatusCreated, "POST", "/api/combos", map[string]any{"name": "voice", "strategy": "priority",
		"targets": []string{"first/tts-1", "second/tts-1-hd"}})
	id, raw := e.key(map[string]any{"name": "ci"})
	// $15 per million characters; 1,000 characters cost $0.015.
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "second/tts-1-hd", "unit": "character", "unit_price": 15})
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "first/tts-1", "unit": "character", "unit_price": 15})
	e.Want(http.StatusOK, "POST", "/api/usage/budget", map[string]any{"apiKeyId": id, "dailyLimitUsd": 0.02})
	body := map[string]any{"model": "voice", "input": strings.Repeat("a", 1000), "voice": "alloy"}
	r := e.Want(200, "POST", "/v1/audio/speech", body, admintest.Bearer(raw)...)
	if !bytes.Equal(r.Body, good.speech) || r.Header.Get("X-OmniRoute-Model") != "second/tts-1-hd" || len(bad.all()) != 1 {
		t.Fatalf("fallback: %d bytes, %v", len(r.Body), r.Header)
	}
	if m := good.last(t).json["model"]; m != "tts-1-hd" {
		t.Fatalf("second target got model %v", m)
	}
	rec := e.usageRecord(1)
	if rec["attempts"] != 2.0 || rec["quantity"] != 1000.0 || rec["provider"] != "second" {
		t.Fatalf("usage record %v", rec)
	}
	// Admitted while the spend ($0.015) is under the budget ($0.02).
	e.Want(200, "POST", "/v1/audio/speech", body, admintest.Bearer(raw)...)
	r = e.Want(429, "POST", "/v1/audio/speech", body, admintest.Bearer(raw)...)
	if !strings.Contains(string(r.Body), `"code":"budget_exceeded"`) || len(good.all()) != 2 {
		t.Fatalf("over budget: %.300s", r.Body)
	}
}

// Bad speech requests are 4xx in OpenAI's shape.
func TestSpeechBadInput(t *testing.T) {
	e := newEnv(t)
	f := newFake(t)
	e.provider("oa", "openai", f)
	for _, c := range []struct {
		body any
		code string
	}{
		{map[string]any{"input": "hi", "voice": "alloy"}, "missing_model"},
		{map[string]any{"model": "oa/tts-1", "voice": "alloy"}, "missing_input"},
		{map[string]any{"model": "oa/tts-1", "input": "hi"}, "missing_voice"},
		{map[string]any{"model": "oa/tts-1", "input": strings.Repeat("é", audio.MaxSpeechChars+1), "voice": "alloy"}, "input_too_long"},
		{map[string]any{"model": "oa/tts-1", "input": "hi", "voice": "alloy", "speed": 9}, "invalid_speed"},
		{map[string]any{"model": "oa/tts-1", "input": "hi", "voice": "alloy", "response_format": "mp4"}, "invalid_response_format"},
		{map[string]any{"model": "oa/tts-1", "input": "hi", "voice": strings.Repeat("v", 300)}, "invalid_voice"},
	} {
		r := e.Want(400, "POST", "/v1/audio/speech", c.body)
		if !strings.Contains(string(r.Body), `"code":"`+c.code+`"`) {
			t.Fatalf("%v: %s", c.code, r.Body)
		}
	}
	e.WantError(415, "POST", "/v1/audio/speech", "x", "Content-Type", "text/plain")
	e.WantError(413, "POST", "/v1/audio/speech", `{"model":"oa/tts-1","input":"`+strings.Repeat("a", 70<<10)+`","voice":"alloy"}`)
	if len(f.all()) != 0 {
		t.Fatal("the upstream was called")
	}
}

// A speech answer cut short after it began is charged (its characters)
// and recorded as failed; the client's connection is cut.
func TestSpeechCutShortIsCharged(t *testing.T) {
	e := newEnv(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "audio/mpeg")
		w.Header().Set("Content-Length", "100000")
		w.Write(bytes.Repeat([]byte("a"), 1000))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	defer up.Close()
	e.Want(http.StatusCreated, "POST", "/api/providers", map[string]any{"id": "oa", "type": "openai", "base_url": up.URL, "api_key": "k"})
	e.Want(http.StatusOK, "PUT", "/api/pricing", map[string]any{"pattern": "oa/tts-1", "unit": "character", "unit_price": 15})
	_, key := e.key(map[string]any{"name": "s"})
	req, _ := http.NewRequest("POST", e.Srv.URL+"/v1/audio/speech", strings.NewReader(`{"model":"oa/tts-1","input":"hello there","voice":"alloy"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || err == nil {
		t.Fatalf("status %d, read error %v: want a cut body", res.StatusCode, err)
	}
	rec := e.usageRecord(1)
	if rec["modality"] != "audio" || rec["quantity"] != 11.0 || rec["status"] == 200.0 || rec["costUsd"].(float64) < 11*15/1e6*0.999 {
		t.Fatalf("usage record %v", rec)
	}
}
